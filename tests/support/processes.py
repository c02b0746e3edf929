"""The worker processes of a running server, their memory and their memory-mapped artifact files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from support.servers import ApiServer, wait_for


def worker_processes(server: ApiServer) -> list[psutil.Process]:
    """The uvicorn worker processes of a server (the server process itself when it runs one worker)."""
    root = psutil.Process(server.proc.pid)
    workers = [p for p in root.children(recursive=True) if "multiprocessing.spawn" in " ".join(p.cmdline())]
    return workers or [root]


def all_worker_pids(server: ApiServer, n: int, timeout: float = 20.0) -> set[int]:
    """Wait until `n` worker processes exist; their pids."""
    return wait_for(
        lambda: {p.pid for p in worker_processes(server)} if len(worker_processes(server)) == n else None, timeout, f"{n} workers"
    )


def mapped_versions(proc: psutil.Process, artifacts_root: Path) -> dict[str, int]:
    """{version: resident bytes} of the artifact files a process has memory-mapped, by version folder."""
    prefix = str(artifacts_root.resolve() / "versions") + "/"
    out: Counter[str] = Counter()
    for m in proc.memory_maps(grouped=True):
        if m.path.startswith(prefix):
            out[m.path[len(prefix) :].split("/", 1)[0]] += m.rss
    return dict(out)


@dataclass(frozen=True)
class Memory:
    rss: int
    pss: int
    uss: int


def memory(proc: psutil.Process) -> Memory:
    info = proc.memory_full_info()
    return Memory(info.rss, info.pss, info.uss)
