"""Hot reload: the live version, swapped atomically, and the check of CURRENT that loads a new one.

- `VersionHolder.current` is the live version. A request reads it once and keeps that object, so a
  swap (one reference assignment) never changes the version under a request already running.
- `Reloader.check()` compares CURRENT with the live version and loads a new one; a version that
  fails verification or loading is refused with a reason and the live one stays.
- A worker with no live version (one starting, or restarted by the supervisor) whose CURRENT is refused
  falls back to the newest older version under versions/ that verifies: what its siblings, which
  loaded before CURRENT went bad, still serve. `VersionHolder.fallback` says so until CURRENT names a
  version that loads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from app.serving.loader import LoadOptions, load_version
from app.serving.version import NotLoaded, Version
from models.artifact.store import ArtifactError, ArtifactStore

log = logging.getLogger("app.serving.reload")


@dataclass(frozen=True)
class Refusal:
    """A version that was not served, and why."""

    version: str | None
    reason: str
    at: float
    trigger: str


@dataclass(frozen=True)
class Fallback:
    """A worker serving an older version because the one CURRENT names was refused when it had none."""

    served: str
    current: str
    reason: str
    at: float


@dataclass
class ReloadResult:
    previous: str | None
    current: str | None
    changed: bool
    refusal: Refusal | None = None


@dataclass
class VersionHolder:
    """The live version, replaced by one reference assignment (atomic under the GIL).

    Read `holder.current` (or `require()`) once per request and use that object throughout: a
    concurrent swap does not affect it, and the old version is freed when its last request ends.
    """

    _current: Version | None = None
    last_refusal: Refusal | None = None
    fallback: Fallback | None = None
    not_loaded_reason: str = "starting: no version loaded yet"
    reloads: int = 0
    refused: int = 0

    @property
    def current(self) -> Version | None:
        return self._current

    def require(self) -> Version:
        v = self._current
        if v is None:
            raise NotLoaded(self.not_loaded_reason)
        return v

    def swap(self, version: Version) -> Version | None:
        previous, self._current = self._current, version
        self.reloads += 1
        return previous


@dataclass
class ReloadEvents:
    """Hooks the metrics module attaches to (kept out of this module so it stays free of Prometheus)."""

    loaded: Callable[[Version, Version | None, str], None] = lambda new, old, trigger: None
    refused: Callable[[Refusal], None] = lambda refusal: None
    fallback: Callable[[Fallback | None], None] = lambda fallback: None


@dataclass
class Reloader:
    """Checks CURRENT and swaps in a new version; one check at a time (poller and admin share a lock)."""

    holder: VersionHolder
    store: ArtifactStore
    options: LoadOptions = field(default_factory=LoadOptions)
    events: ReloadEvents = field(default_factory=ReloadEvents)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def check(self, trigger: str, force: bool = False) -> ReloadResult:
        """Load the version CURRENT names if it differs from the live one (blocking: call from a thread).

        A version refused before is not retried by the poller (verifying costs a full read of the
        version); `force=True` (the admin endpoint) retries it.
        """
        live = self.holder.current
        live_name = live.name if live else None
        try:
            wanted = self.store.current_version()
        except OSError as e:
            return self._refuse(None, f"cannot read {self.store.current_file}: {e}", trigger, live_name)
        if wanted is None:
            if live is None:
                self.holder.not_loaded_reason = f"no version published: {self.store.current_file} is missing or empty"
            return ReloadResult(live_name, live_name, False)
        if wanted == live_name:
            if self.holder.fallback is not None:  # CURRENT was rolled back onto the version served: no fallback now
                self._end_fallback()
            return ReloadResult(live_name, live_name, False)
        last = self.holder.last_refusal
        if not force and last is not None and last.version == wanted:
            return ReloadResult(live_name, live_name, False, last)
        t0 = time.perf_counter()
        try:
            version = load_version(self.store.version_dir(wanted), self.options)
        except (ArtifactError, OSError) as e:  # OSError: e.g. retention removed the folder while we read it
            result = self._refuse(wanted, str(e), trigger, live_name)
            if live is None:
                return self._fall_back(wanted, str(e), trigger) or result
            if self.holder.fallback is not None:  # still serving the fallback, now instead of this version
                self._set_fallback(replace(self.holder.fallback, current=wanted, reason=str(e), at=time.time()))
            return result
        self._swap(version, trigger, t0)
        if self.holder.fallback is not None:
            self._end_fallback()
        return ReloadResult(live_name, wanted, True)

    def _set_fallback(self, fallback: Fallback) -> None:
        self.holder.fallback = fallback
        self.events.fallback(fallback)

    def _end_fallback(self) -> None:
        self.holder.fallback = None
        self.events.fallback(None)

    def _swap(self, version: Version, trigger: str, t0: float) -> None:
        previous = self.holder.swap(version)
        log.info(
            "serving artifact version %s (was %s; %s, loaded in %.2fs)",
            version.name,
            previous.name if previous else None,
            trigger,
            time.perf_counter() - t0,
        )
        self.events.loaded(version, previous, trigger)

    def _fall_back(self, refused: str, reason: str, trigger: str) -> ReloadResult | None:
        """Serve the newest version older than `refused` that verifies and loads; None when there is none.

        Only older ones: a newer folder is not one CURRENT ever named before the refused one (an operator
        who switched CURRENT back to an older version did not mean a newer one).
        """
        for name in sorted((v for v in self.store.list_versions() if v < refused), reverse=True):
            t0 = time.perf_counter()
            try:
                version = load_version(self.store.version_dir(name), self.options)
            except (ArtifactError, OSError) as e:
                log.warning("fallback candidate %s refused too: %s", name, e)
                continue
            self._swap(version, "fallback", t0)
            fallback = Fallback(served=name, current=refused, reason=reason, at=time.time())
            log.warning(
                "CURRENT names %s, which was refused (%s); serving the newest older version that verifies, %s, "
                "until CURRENT names a version that loads",
                refused,
                reason,
                name,
            )
            self._set_fallback(fallback)
            return ReloadResult(None, name, True, self.holder.last_refusal)
        self.holder.not_loaded_reason = f"version {refused} refused: {reason}; no older version verifies either"
        return None

    def _refuse(self, version: str | None, reason: str, trigger: str, live_name: str | None) -> ReloadResult:
        refusal = Refusal(version=version, reason=reason, at=time.time(), trigger=trigger)
        self.holder.last_refusal = refusal
        self.holder.refused += 1
        if live_name is None:
            self.holder.not_loaded_reason = f"version {version} refused: {reason}"
        log.warning("refused artifact version %s (%s): %s; still serving %s", version, trigger, reason, live_name)
        self.events.refused(refusal)
        return ReloadResult(live_name, live_name, False, refusal)

    async def check_async(self, trigger: str, force: bool = False) -> ReloadResult:
        """`check` in a worker thread, so verifying a large version never blocks the event loop."""
        async with self._lock:
            return await asyncio.to_thread(self.check, trigger, force)

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_async("poll")
            except Exception:  # a poller that dies silently would stop reloads for good
                log.exception("reload check failed")
