"""The workers of one server, through a folder they share (RUN_DIR): who serves what, and forced reloads.

uvicorn's workers are separate processes with no channel between them, and a request reaches one of
them. So that `POST /admin/reload` reaches every worker before it returns:

    RUN_DIR/workers/<pid>.json   each worker's status: the version it serves, the last reload request it
                                 handled, its last refusal; rewritten (atomically) when any of them changes
    RUN_DIR/reload-request       a counter: the generation of the newest forced reload

The worker that answers the admin call increments the counter (under an flock); every worker watches
it (a stat-sized read every RELOAD_WATCH_INTERVAL seconds), reloads when it grows, and records the
generation it handled; the answering worker waits until every live worker has. A worker's file goes
with a clean exit; the file of a SIGKILLed worker is ignored (its pid is gone) and removed by the next
reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.serving.reload import Reloader, ReloadResult
from models.artifact.store import process_alive

log = logging.getLogger("app.serving.workers")

WORKERS_DIR = "workers"
REQUEST_FILE = "reload-request"
LOCK_FILE = "reload-request.lock"


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as it last wrote itself down."""

    pid: int
    parent: int
    started: int | None  # the process's start time (clock ticks since boot): a reused pid is another process
    artifact_version: str | None
    handled: int  # the newest reload request generation this worker has acted on
    refusal: str | None  # the reason of its most recent refusal (None: none)
    refused_version: str | None
    fallback: str | None  # the older version it serves because CURRENT's was refused at its start


class WorkerRegistry:
    """This worker's view of RUN_DIR (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.workers = run_dir / WORKERS_DIR
        self.workers.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.started = process_start(self.pid)
        self._written: WorkerStatus | None = None

    # ---------------------------------------------------------------- reload requests

    def generation(self) -> int:
        """The newest forced reload's generation (0: none yet)."""
        try:
            return int((self.run_dir / REQUEST_FILE).read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def request_reload(self) -> int:
        """Start a forced reload of every worker; returns its generation."""
        with open(self.run_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two admin calls at once get two generations
            generation = self.generation() + 1
            _write_atomically(self.run_dir / REQUEST_FILE, f"{generation}\n")
        return generation

    # ---------------------------------------------------------------- statuses

    def record(
        self,
        version: str | None,
        handled: int,
        refusal: str | None = None,
        refused_version: str | None = None,
        fallback: str | None = None,
    ) -> None:
        """Write this worker's status (only when it changed)."""
        status = WorkerStatus(
            pid=self.pid,
            parent=os.getppid(),
            started=self.started,
            artifact_version=version,
            handled=handled,
            refusal=refusal,
            refused_version=refused_version,
            fallback=fallback,
        )
        path = self.workers / f"{self.pid}.json"
        if status == self._written and path.exists():  # rewritten if someone removed it (a /tmp cleaner)
            return
        self.workers.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, json.dumps(asdict(status)))
        self._written = status

    def siblings(self) -> list[WorkerStatus]:
        """Every live worker of this server (this one included), by pid; files of dead workers are removed."""
        out = []
        for path in sorted(self.workers.glob("*.json")):
            try:
                status = WorkerStatus(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):  # being replaced, or not ours
                continue
            if status.pid != self.pid:
                alive = process_alive(status.pid) and process_start(status.pid) == status.started
                if not alive:
                    with contextlib.suppress(OSError):
                        path.unlink()
                if not alive or status.parent != os.getppid():
                    continue
            out.append(status)
        return out

    def unregister(self) -> None:
        with contextlib.suppress(OSError):
            (self.workers / f"{self.pid}.json").unlink()


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22); None when it is gone or not Linux."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def status_dict(status: WorkerStatus, generation: int) -> dict[str, Any]:
    """A worker's entry in the admin reload's answer."""
    return {
        "pid": status.pid,
        "artifact_version": status.artifact_version,
        "reloaded": status.handled >= generation,
        "refused_version": status.refused_version,
        "refusal": status.refusal,
        "fallback": status.fallback,
    }


class ReloadCoordinator:
    """Forced reloads of every worker of a server, and this worker's status in RUN_DIR."""

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.handled = 0  # the newest request generation this worker has acted on
        self._claimed = 0  # the newest it has started on (its watcher leaves that one to the admin call)
        self._registry: WorkerRegistry | None = None

    def attach(self, registry: WorkerRegistry) -> None:
        """Start using RUN_DIR (at startup, before the first request)."""
        self._registry = registry
        # Requests made before this worker started are covered by its own startup load of CURRENT.
        self.handled = self._claimed = registry.generation()

    @property
    def registry(self) -> WorkerRegistry:
        if self._registry is None:
            raise RuntimeError("ReloadCoordinator used before attach()")
        return self._registry

    def record(self) -> None:
        holder = self.reloader.holder
        live, refusal, fallback = holder.current, holder.last_refusal, holder.fallback
        self.registry.record(
            live.name if live else None,
            self.handled,
            refusal=refusal.reason if refusal else None,
            refused_version=refusal.version if refusal else None,
            fallback=fallback.served if fallback else None,
        )

    async def watch(self, interval: float) -> None:
        """Act on reload requests made by other workers; keep this worker's status current."""
        while True:
            try:
                generation = self.registry.generation()
                # != rather than >: a counter that went back (its file removed) is a new request too
                if generation != self.handled and generation != self._claimed:
                    self._claimed = generation
                    await self.reloader.check_async("admin", force=True)
                    self.handled = generation
                self.record()
            except Exception:  # a watcher that dies silently would stop forced reloads for good
                log.exception("reload request check failed")
            await asyncio.sleep(interval)

    async def reload_everywhere(self, timeout: float) -> tuple[ReloadResult, int, list[WorkerStatus], bool]:
        """Force a check of CURRENT in this worker and every sibling; wait up to `timeout` s for the siblings.

        Returns (this worker's result, the request's generation, every live worker's status, whether all
        of them handled the request in time).
        """
        generation = self.registry.request_reload()
        self._claimed = generation  # this worker answers it here, not in its watcher
        result = await self.reloader.check_async("admin", force=True)
        self.handled = generation  # only now: a sibling's admin call waiting on this worker must see it done
        self.record()
        deadline = time.monotonic() + timeout
        while True:
            statuses = await asyncio.to_thread(self.registry.siblings)
            done = all(s.handled >= generation for s in statuses)
            if done or time.monotonic() > deadline:
                return result, generation, statuses, done
            await asyncio.sleep(0.02)
