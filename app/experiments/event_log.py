"""Exposure and feedback logging off the request path: a bounded queue, one batch writer, a spill file.

A request only appends to an in-memory queue (`submit`: a deque append, never blocks, never raises). One
writer thread wakes every `flush_interval` and takes what is queued, in batches of at most `batch` records,
into the event store (app.experiments.events), one transaction per kind and batch. When the store cannot
take a batch (down, slow, any error), the batch is appended to a bounded local spill file (JSON lines)
instead, and the spill file is replayed into the store, oldest first, once the store answers again; the file
is truncated only after its records are written. A record is dropped only when both the queue and the spill
file are full, and every drop is counted and logged. Counts (records): queued, written, spilled, replayed,
dropped, exposed through `counts()` and, published by the writer after each pass, `on_count(name, n)` (the
Prometheus counters).

Ordering: within a kind records are written in submission order (replayed spill first). Idempotency of the
store (exposure_id, event_id) makes a replay of a batch that did reach the store before a failure harmless.

Several processes (the server's workers) share one spill directory, each with a spill file of its own. A log
holds an exclusive flock on `<spill file>.lock` for its life; the kernel releases it when the process dies,
however it dies. Given `siblings` (a glob of the other processes' spill files), the writer looks every
`adopt_interval` seconds for sibling files whose lock it can take: their process is gone, so it replays them
into the store like its own spill, then deletes them. A live sibling's file is never touched.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from app.experiments.events import (
    Exposure,
    ExposureFields,
    ExposureRow,
    Feedback,
    RecordRefused,
    exposure_id_of,
    exposure_of,
    shown_of,
)

log = logging.getLogger("app.experiments.event_log")  # under the app logger: its format and level

Kind = Literal["exposure", "feedback"]
COUNTS = ("queued", "written", "spilled", "replayed", "dropped")


class Store(Protocol):
    """What the log needs of app.experiments.events.EventStore."""

    def write_exposures(self, rows: Sequence[Any]) -> int: ...
    def write_feedback(self, rows: Sequence[Any]) -> int: ...
    def ping(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class EventLogParams:
    queue_size: int = 20_000  # records held in memory
    batch: int = 2_000  # records per store transaction at most
    # seconds between the writer's passes: a batch is what arrived meanwhile. Longer intervals cost less CPU per
    # exposure (a pass costs about a hundred rows besides its rows: its code and SQLite's pages are out of the
    # caches by the next one) but make each pass a longer hold of the GIL, which the event loop waits out: at 0.5 s
    # the quick experiment benchmark's p99 was 4.7 to 9 x plain's (1.2 to 1.4 x at 0.1 s).
    flush_interval: float = 0.1
    retry_interval: float = 1.0  # seconds between attempts to reach a store that failed
    spill_max_bytes: int = 64 << 20  # the spill file's bound
    adopt_interval: float = 10.0  # seconds between looks for spill files left by processes that are gone


class EventLog:
    """The queue of exposure rows (Exposure, or the request path's ExposureFields) and Feedback rows
    (app.experiments.events), and its writer thread.

    A spill file left by an earlier process (a restart while the store was down) is replayed like any other.
    """

    def __init__(
        self,
        store: Store,
        spill_path: Path,
        params: EventLogParams = EventLogParams(),
        on_count: Callable[[str, int], None] | None = None,
        siblings: str | None = None,
    ) -> None:
        self.store, self.spill_path, self.params = store, Path(spill_path), params
        self.siblings = siblings
        self._adopt_at = 0.0
        # A deque, not a queue.Queue: append and popleft are atomic without a lock, and the writer takes
        # records in bulk instead of waking on each one.
        self._queue: collections.deque[tuple[Kind, Any]] = collections.deque()
        self._queue_size = params.queue_size
        self._counts = collections.Counter({name: 0 for name in COUNTS})
        self._published = collections.Counter({name: 0 for name in COUNTS})
        self._on_count = on_count
        self._lock = threading.Lock()  # the counts and the spill file
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the writer's wait short (flush, close)
        self._busy = False  # the writer holds records taken from the queue
        # The records the writer took from the queue and has not yet stored or spilled, published before they leave
        # the queue (see shown_in): raw queue entries, replaced as a whole, never changed in place.
        self._in_flight: list[tuple[Kind, Any]] = []
        self._retry_at = 0.0
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        # Blocking: a sibling may be replaying this file (a dead process had the same pid) for a moment.
        lock_fd = _lock(_lock_path(self.spill_path), blocking=True)
        assert lock_fd is not None  # a blocking lock is always taken
        self._lock_fd = lock_fd
        self._spilled = _count_lines(self.spill_path)  # left by an earlier process with this pid
        self._thread = threading.Thread(target=self._run, name="simserve-event-log", daemon=True)
        self._thread.start()

    # -- request path ------------------------------------------------------------------------------

    def submit(self, kind: Kind, row: ExposureRow | Feedback) -> None:
        """Queue one record; when the queue is full, spill it; when the spill file is full too, drop and count it.

        Not counted here (no lock, no Prometheus increment on the request path): the writer counts records
        queued as it takes them, and counts() adds those still waiting."""
        if len(self._queue) >= self._queue_size:
            self._spill([(kind, row)])
            return
        self._queue.append((kind, row))

    def submit_exposure(self, fields: ExposureFields) -> None:
        """submit("exposure", fields), the request path's form: the tuple it has is queued and written as it is."""
        if len(self._queue) >= self._queue_size:
            self._spill([("exposure", fields)])
            return
        self._queue.append(("exposure", fields))

    def shown_in(self, exposure_id: str) -> tuple[str, ...] | None:
        """The ids shown by an exposure of this log that is queued or being written, None when neither holds it.

        The queue first, then the batch in flight: the writer publishes a batch before it takes it from the queue
        and lets go of it only once it is stored or spilled, so an exposure submitted before this call is in one
        of the two, in the store, or in the spill file. Copying the deque is one C call that holds the GIL, so the
        request thread's appends cannot change it meanwhile. Newest first: feedback follows its exposure soon."""
        for records in (list(self._queue), self._in_flight):
            for kind, row in reversed(records):
                if kind == "exposure" and exposure_id_of(row) == exposure_id:
                    return shown_of(row)
        return None

    # -- observability -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
        counts["queued"] += len(self._queue)
        return counts

    def spilled_records(self) -> int:
        """Records in this log's spill file, not yet replayed into the store."""
        return self._spilled_records()

    def pending(self) -> int:
        """Records not yet in the store: queued plus spilled."""
        return len(self._queue) + self._spilled_records()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and nothing is spilled (True), or `timeout` seconds (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # _busy is set before the writer takes records, so an empty queue and an idle writer mean written
            if not self._queue and not self._busy and self._spilled_records() == 0:
                self._publish()
                return True
            self._retry_at = 0.0  # a flush asks for a replay now
            self._wake.set()
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what can be written within `timeout`; what cannot stays in the spill file for the next start."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        leftover = self._take(len(self._queue))
        if leftover:
            self._spill(leftover)
        self._in_flight = []
        self._publish()
        if self._spilled_records() == 0:  # nothing left for anyone: no file per process id piles up
            self.spill_path.unlink(missing_ok=True)
            _lock_path(self.spill_path).unlink(missing_ok=True)
        os.close(self._lock_fd)  # releases the flock: what is left in the file is a sibling's to adopt

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.siblings is not None and time.monotonic() >= self._adopt_at:
                self._adopt_at = time.monotonic() + self.params.adopt_interval
                self._adopt_orphans()
            if self._spilled_records() and time.monotonic() >= self._retry_at:
                self._replay()
            self._busy = True
            records = self._take(self.params.batch)
            if records:
                self._write(records)
            self._in_flight = []
            self._publish()
            self._busy = False
            if len(self._queue) < self.params.batch:  # a full batch waiting is written at once
                self._wake.wait(self.params.flush_interval)
                self._wake.clear()

    def _take(self, n: int) -> list[tuple[Kind, Any]]:
        """Up to `n` records from the head of the queue, oldest first.

        Waking every flush_interval and taking what arrived meanwhile is what makes batches: a writer that
        woke on each record would commit one record per transaction, and a transaction costs far more than
        a row; it would also take Python's GIL from the request path once per record.
        """
        queue = self._queue
        taken = list(itertools.islice(queue, min(n, len(queue))))
        self._in_flight = taken  # before they leave the queue: shown_in finds each record in one of the two
        popleft = queue.popleft
        for _ in range(len(taken)):
            popleft()
        self._count("queued", len(taken))
        return taken

    def _write(self, records: list[tuple[Kind, Any]]) -> None:
        """One transaction per kind; a failure spills the whole batch (the store's idempotency makes a retry safe)."""
        if time.monotonic() < self._retry_at or self._spilled_records():
            self._spill(records)  # keep the order: older records are waiting in the spill file
            return
        try:
            written = self._store_or_split(records)
        except Exception as e:  # any other failure of the store: never lose the batch
            self._retry_at = time.monotonic() + self.params.retry_interval
            log.warning(
                "event store unavailable (%s: %s): %d records spilled to %s", type(e).__name__, e, len(records), self.spill_path
            )
            self._spill(records)
            return
        self._count("written", written)

    def _store_records(self, records: list[tuple[Kind, Any]]) -> None:
        exposures = [row for kind, row in records if kind == "exposure"]
        feedback = [row for kind, row in records if kind == "feedback"]
        if exposures:
            self.store.write_exposures(exposures)
        if feedback:  # after the exposures of the same batch: feedback refers to them
            self.store.write_feedback(feedback)

    def _store_or_split(self, records: list[tuple[Kind, Any]]) -> int:
        """Write `records`; when the store refuses the batch for a record's content (RecordRefused: no retry would
        cure it), write them one by one and drop, count and log each record refused. Returns the records
        written. An outage raises."""
        try:
            self._store_records(records)
            return len(records)
        except RecordRefused as e:
            if len(records) > 1:
                return sum(self._store_or_split([record]) for record in records)
            kind, row = records[0]
            log.error("event log: the store refuses %s %r (%s): dropped", kind, _id_of(kind, row), e)
            self._count("dropped", 1)
            return 0

    def _spill(self, records: list[tuple[Kind, Any]]) -> None:
        lines = [json.dumps({"kind": kind, "row": _as_json(row)}) + "\n" for kind, row in records]
        with self._lock:
            size = self.spill_path.stat().st_size if self.spill_path.exists() else 0
            room = self.params.spill_max_bytes - size
            kept: list[str] = []
            for line in lines:
                if len(line) > room:
                    break
                kept.append(line)
                room -= len(line)
            if kept:
                with open(self.spill_path, "a", encoding="utf-8") as f:
                    f.writelines(kept)
                    f.flush()
                    os.fsync(f.fileno())
                self._spilled += len(kept)
            dropped = len(lines) - len(kept)
        self._count("spilled", len(kept))
        if dropped:
            self._count("dropped", dropped)
            log.error("event log: queue and spill file (%d bytes) full: %d records dropped", self.params.spill_max_bytes, dropped)

    def _spilled_records(self) -> int:
        """Records in this log's spill file, kept in memory: the writer asks on every pass."""
        with self._lock:
            return self._spilled

    def _replay(self) -> None:
        """Write the spill file into the store in batches, then truncate it; on failure keep it and retry later."""
        with self._lock:
            try:
                text = self.spill_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return
        rows, bad = _decode_lines(text)
        try:
            written = self._write_replayed(rows)
        except Exception as e:
            self._retry_at = time.monotonic() + self.params.retry_interval
            log.info("event store still unavailable (%s); %d spilled records kept", type(e).__name__, len(rows))
            return
        with self._lock:
            # records spilled while replaying (the queue was full) stay for the next round
            rest = self.spill_path.read_text(encoding="utf-8")[len(text) :]
            self.spill_path.write_text(rest, encoding="utf-8")
            self._spilled = rest.count("\n")
        self._count_unreadable(bad, self.spill_path)  # once: the lines are gone with the replayed text
        log.info("event log: %d spilled records written to the store", written)

    def _adopt_orphans(self) -> None:
        """Replay, then delete, every sibling spill file whose process is gone (its lock can be taken)."""
        assert self.siblings is not None
        for path in sorted(self.spill_path.parent.glob(self.siblings)):
            if path == self.spill_path or path.suffix == ".lock":
                continue
            fd = _lock(_lock_path(path), blocking=False)
            if fd is None:  # its process is alive and replays it itself
                continue
            try:
                rows, bad = _read_spill(path)
                written = self._write_replayed(rows)
                path.unlink(missing_ok=True)
                _lock_path(path).unlink(missing_ok=True)
                self._count_unreadable(bad, path)
            except Exception as e:  # the store is down: the file stays for a later look
                log.info("event log: %s left by a stopped process kept (%s: %s)", path.name, type(e).__name__, e)
                continue
            finally:
                os.close(fd)
            if written:
                log.info("event log: %d records spilled by a stopped process written to the store (%s)", written, path.name)

    def _write_replayed(self, rows: list[tuple[Kind, Any]]) -> int:
        """Write spilled records into the store in batches and count them replayed and written; their number.

        Raises when the store is unavailable (nothing counted then; the store's idempotency makes the retry of
        a batch that did reach it harmless)."""
        self.store.ping()
        batch = self.params.batch
        written = sum(self._store_or_split(rows[start : start + batch]) for start in range(0, len(rows), batch))
        self._count("replayed", written)
        self._count("written", written)
        return written

    def _count_unreadable(self, n: int, path: Path) -> None:
        if n:  # a process killed in the middle of a spill write leaves a partial last line
            self._count("dropped", n)
            log.error("event log: %d unreadable lines of %s dropped", n, path)

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def _publish(self) -> None:
        """Report the counts that grew since the last call to on_count (the Prometheus counters)."""
        with self._lock:
            deltas = {name: self._counts[name] - self._published[name] for name in COUNTS}
            self._published.update(deltas)
        if self._on_count is not None:
            for name, n in deltas.items():
                if n:
                    self._on_count(name, n)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _lock_path(spill_path: Path) -> Path:
    return spill_path.with_name(spill_path.name + ".lock")


def _lock(path: Path, blocking: bool) -> int | None:
    """An open descriptor holding an exclusive flock on `path` (created if missing); None if another holds it.

    A holder deletes the lock file before it lets go, so a lock taken on a file that is no longer at `path`
    protects nothing: then try again (blocking) or report it held (not blocking).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)
        if not blocking:
            return None


def _decode_lines(text: str) -> tuple[list[tuple[Kind, Any]], int]:
    """The records of a spill file's text, and the number of lines that are no record (a write cut short)."""
    rows: list[tuple[Kind, Any]] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append((r["kind"], decode(r["kind"], r["row"])))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return rows, bad


def _read_spill(path: Path) -> tuple[list[tuple[Kind, Any]], int]:
    try:
        return _decode_lines(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return [], 0


def _as_json(row: ExposureRow | Feedback) -> dict[str, Any]:
    return dataclasses.asdict(row if isinstance(row, Feedback) else exposure_of(row))


def _id_of(kind: Kind, row: ExposureRow | Feedback) -> str:
    """The id a log line names a record by: the exposure's, or the exposure a feedback is about."""
    return row.exposure_id if isinstance(row, Feedback) else exposure_id_of(row)


def decode(kind: str, row: dict[str, Any]) -> Exposure | Feedback:
    """The row of a spilled record (JSON turned the tuples into lists)."""
    if kind == "exposure":
        teams = row.get("teams")
        shown = row["shown"]
        exposure = {**row, "shown": tuple(shown) if isinstance(shown, list) else shown}
        return Exposure(**{**exposure, "teams": tuple(teams) if isinstance(teams, list) else teams}).check()
    return Feedback(**row)
