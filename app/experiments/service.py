"""The experiments of a worker: the definitions (EXPERIMENTS_FILE, hot-reloaded like artifact versions), the
event store (EVENTS_DB) and the event log that takes every exposure off the request path.

Definitions are validated against the served version's models and metrics: on load, when the file changes
and when a new version is served. A refused file keeps the previous definitions; the reason is in
`status()` (GET /readyz, GET /experiments), the log and /metrics.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.experiments.assignment import assign
from app.experiments.definitions import Arm, Experiment, Experiments, ExperimentsError, file_fingerprint, load_experiments
from app.experiments.event_log import EventLog
from app.experiments.events import EventStore, Feedback, StoreUnavailable, open_store
from app.serving.version import Version
from models.artifact.manifest import RECOMMEND_METRICS

log = logging.getLogger("app.experiments")


@dataclass(frozen=True)
class Refusal:
    reason: str
    at: float


class ExperimentsService:
    """One per worker; `check(version)` is called at startup and by the poller."""

    def __init__(self, path: Path, events_db: str, spill_dir: Path, on_count: Any = None, on_refusal: Any = None) -> None:
        self.path = path
        self.current = Experiments()
        self.loaded_at: float | None = None
        self.last_refusal: Refusal | None = None
        self._checked: tuple[str, str] | None = None  # (file fingerprint, version) last validated
        # the served version that `current` was validated against: requests on it need not check the arms again
        self.valid_for: str | None = None
        self._on_refusal = on_refusal
        self.store: EventStore = open_store(events_db, connect=False)
        self.ids = ExposureIds()
        self.log = EventLog(
            self.store, spill_dir / f"events-spill-{os.getpid()}.jsonl", on_count=on_count, siblings="events-spill-*.jsonl"
        )

    def check(self, version: Version | None) -> None:
        """Load the file when it or the served version changed since the last check; keep the previous on refusal."""
        if version is None:
            return
        try:
            fingerprint = file_fingerprint(self.path)
        except (ExperimentsError, OSError) as e:  # gone or unreadable: refused below, once, like any bad file
            fingerprint = f"unreadable: {e}"
        key = (fingerprint, version.name)
        if key == self._checked:
            return
        self._checked = key
        try:
            loaded = load_experiments(self.path, version.models, version.metrics, RECOMMEND_METRICS)
        except (ExperimentsError, OSError) as e:
            self.last_refusal = Refusal(str(e), time.time())
            log.error("experiments file refused, the previous definitions stay: %s", e)
            if self._on_refusal is not None:
                self._on_refusal(str(e))
            return
        changed = loaded.fingerprint != self.current.fingerprint
        self.current, self.loaded_at, self.last_refusal = loaded, time.time(), None
        self.valid_for = version.name
        if changed:
            log.info("experiments: %d loaded from %s", len(loaded.experiments), self.path)

    def assign(self, name: str, unit_id: str) -> tuple[Experiment, Arm] | None:
        experiment = self.current.by_name.get(name)
        return None if experiment is None else (experiment, assign(experiment, unit_id))

    def expose(
        self,
        experiment: Experiment,
        arm: str,
        unit_id: str,
        query_id: str,
        k: int,
        version: str,
        shown: Sequence[str],
        teams: Sequence[int] | None = None,
        exposure_id: str | None = None,
    ) -> str:
        """Queue the exposure (never blocks, never fails the request); its id. `shown` and `teams` are the caller's
        to give away: they are queued as they are, not copied."""
        now = time.time_ns()
        exposure_id = exposure_id or self.ids.new(now)
        # One tuple, not an Exposure: the writer makes that (its __init__, and keeping the object tracked by the
        # garbage collector until the writer takes it, cost a request several µs).
        endpoint = experiment.endpoint
        self.log.submit_exposure((exposure_id, now, experiment.name, arm, unit_id, endpoint, query_id, k, version, shown, teams))
        return exposure_id

    def shown_in(self, exposure_id: str) -> tuple[str, ...] | None:
        """The ids an exposure showed, from the store or, not written yet, this worker's event log; None for an
        unknown exposure, StoreUnavailable when nobody can tell (the store is down and this worker does not hold
        the exposure, or it may be among this worker's spilled records).

        Store, log, store again: an exposure the log does not hold any more was written after the first look.
        Feedback mostly comes after its exposure reached the store, so the log is searched only on a miss.
        """
        unavailable: StoreUnavailable | None = None
        try:
            row = self.store.get_exposure(exposure_id)
        except StoreUnavailable as e:
            row, unavailable = None, e
        if row is not None:
            return row.shown
        shown = self.log.shown_in(exposure_id)
        if shown is not None:
            return shown
        if unavailable is not None:
            raise unavailable
        row = self.store.get_exposure(exposure_id)
        if row is not None:
            return row.shown
        if self.log.spilled_records():
            raise StoreUnavailable(f"exposure {exposure_id!r} may be among this worker's spilled records, not yet replayed")
        return None

    def give_feedback(self, row: Feedback) -> None:
        self.log.submit("feedback", row)

    def status(self) -> dict[str, Any]:
        refusal = self.last_refusal
        return {
            "file": str(self.path),
            "experiments": [e.name for e in self.current.experiments],
            "fingerprint": self.current.fingerprint or None,
            "loaded_at": self.loaded_at,
            "last_refusal": None if refusal is None else {"reason": refusal.reason, "at": refusal.at},
            "events": self.log.counts(),
        }

    def close(self) -> None:
        self.log.close()
        self.store.close()


class ExposureIds:
    """Exposure ids: 32 hex digits, the time in nanoseconds (16), then 64 random bits (16).

    Time first, so that the ids a server writes grow and each lands at the end of the event store's
    primary-key index, not on a random page (see app.experiments.events); 64 random bits from os.urandom keep
    ids of the same nanosecond, in any number of workers, apart, and unguessable. The random bits are read 4 KiB
    at a time (one system call per 512 ids, not one per request) into a deque, which any thread may take from:
    each value is popped once. One per process: a forked child would hand out its parent's values again.
    """

    def __init__(self) -> None:
        self._pool: collections.deque[str] = collections.deque()

    def new(self, now_ns: int | None = None) -> str:
        """A new id at `now_ns` (or now)."""
        try:
            random_hex = self._pool.popleft()
        except IndexError:
            digits = os.urandom(4096).hex()
            self._pool.extend(digits[i : i + 16] for i in range(16, len(digits), 16))
            random_hex = digits[:16]
        return f"{time.time_ns() if now_ns is None else now_ns:016x}{random_hex}"
