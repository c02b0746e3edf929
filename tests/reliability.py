"""Helpers of the reliability tests (tests/test_reliability_*.py): waiting, metrics, worker processes,
their memory and mappings, hand-published versions, and a bounded load generator.

Everything runs against real `python -m app` processes started by conftest.start_api_server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from conftest import API_BUILD, ROOT, ApiServer

from models.artifact.store import MANIFEST, ArtifactStore

T = TypeVar("T")
PROBLEM = "application/problem+json"


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", every: float = 0.1) -> T:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of one Prometheus metric whose labels include `labels` (summed over workers)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def metrics_text(server: ApiServer) -> str:
    r = server.client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status; returns its body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and isinstance(body["title"], str) and isinstance(body["detail"], str), body
    return body


# --------------------------------------------------------------------------- processes and memory


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


# --------------------------------------------------------------------------- hand-published versions


def new_version_name() -> str:
    """A fresh name in the offline job's format (timestamp + 8 hex digits)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def copy_version(root: Path, src: str) -> tuple[str, Path]:
    """Copy versions/<src> to a new version folder whose manifest names it: a complete, valid version."""
    name = new_version_name()
    dst = root / "versions" / name
    shutil.copytree(root / "versions" / src, dst)
    manifest = json.loads((dst / MANIFEST).read_text(encoding="utf-8"))
    manifest["version"] = name
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return name, dst


def publish_by_hand(root: Path, version: str) -> None:
    """Switch CURRENT to `version` the way the offline job does (atomic rename)."""
    ArtifactStore(root).switch_current(version)


# --------------------------------------------------------------------------- load generator


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    bodies: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (query, version) -> body digests
    seconds: float = 0.0


class LoadGenerator:
    """Threads sending GET requests to a server until stopped, or until `max_requests` / `max_seconds`.

    Every response must be a 200 whose body names an artifact version equal to its header; anything
    else (status, connection error, timeout) is recorded as a failure. Half of the threads keep their
    connection alive, the other half open a new connection per request so that every worker serves.
    `pause` seconds between a thread's requests leave CPU to whatever runs next to the load (a build).
    """

    def __init__(
        self,
        base_url: str,
        queries: list[tuple[str, dict[str, Any]]],
        threads: int = 4,
        max_requests: int = 50_000,
        max_seconds: float = 120.0,
        pause: float = 0.0,
    ) -> None:
        self.base_url, self.queries, self.threads, self.pause = base_url, queries, threads, pause
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def __enter__(self) -> LoadGenerator:
        self._t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)
        self.result.seconds = time.monotonic() - self._t0
        return self.result

    def _run(self, thread: int) -> None:
        headers = {} if thread % 2 == 0 else {"Connection": "close"}
        with httpx.Client(base_url=self.base_url, timeout=10.0, headers=headers) as client:
            i = thread
            while not self._stop.is_set() and time.monotonic() - self._t0 < self.max_seconds:
                with self._lock:
                    if self.result.requests >= self.max_requests:
                        return
                    self.result.requests += 1
                path, params = self.queries[i % len(self.queries)]
                i += self.threads
                self._one(client, path, params)
                if self.pause:
                    self._stop.wait(self.pause)

    def _one(self, client: httpx.Client, path: str, params: dict[str, Any]) -> None:
        key = f"{path}?{sorted(params.items())}"
        try:
            r = client.get(path, params=params)
        except httpx.HTTPError as e:
            self._fail(f"{key}: {type(e).__name__}: {e}")
            return
        if r.status_code != 200:
            self._fail(f"{key}: {r.status_code} {r.text[:300]}")
            return
        body = r.json()
        version = body.get("artifact_version")
        if not version or r.headers.get("artifact-version") != version or len(body["neighbors"]) != params["k"]:
            self._fail(f"{key}: inconsistent response {r.headers.get('artifact-version')} {str(body)[:300]}")
            return
        digest = hashlib.sha256(json.dumps(body["neighbors"], sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.result.versions[version] += 1
            self.result.bodies.setdefault((key, version), set()).add(digest)

    def _fail(self, message: str) -> None:
        with self._lock:
            self.result.failures.append(message)


def neighbour_queries(
    version_dir: Path, models: Iterable[str], metrics: Iterable[str], ids: int = 4, k: int = 5
) -> list[tuple[str, dict[str, Any]]]:
    """Queries over every endpoint x model x metric for a few item and user ids of a version."""
    items = [it["id"] for it in json.loads((version_dir / "items.json").read_text(encoding="utf-8"))][:ids]
    users = json.loads((version_dir / "users.json").read_text(encoding="utf-8"))[:ids]
    out: list[tuple[str, dict[str, Any]]] = []
    for model in models:
        for metric_name in metrics:
            base = {"model": model, "metric": metric_name, "k": k}
            out += [("/similar-items", {**base, "item_id": i}) for i in items]
            out += [("/similar-users", {**base, "user_id": u}) for u in users]
            out += [("/recommend", {**base, "user_id": u}) for u in users]
    return out


# --------------------------------------------------------------------------- killing the offline job


def kill_build_when(out: Path, marker: str, **overrides: float | int | str) -> tuple[int, str]:
    """Start `python -m models.build` (conftest's API build parameters) and SIGKILL it as soon as its
    progress output shows `marker`; returns (return code, what it printed). The return code is 0 when
    the build finished before the signal landed."""
    params = {**API_BUILD, **overrides}
    args = [arg for key, value in params.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(out), "--no-diagnostics", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stderr.close()
    return proc.wait(timeout=60), "".join(seen)


def each_worker(server: ApiServer, path: str, workers: int, attempts: int = 200) -> dict[int, dict[str, Any]]:
    """GET `path` (/readyz or /healthz: they name the answering pid) on fresh connections until every
    worker has answered; {pid: its last body}. Any answer but a 200 is an AssertionError."""
    answers: dict[int, dict[str, Any]] = {}
    for _ in range(attempts):
        r = httpx.get(server.base_url + path, timeout=10.0)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        body = r.json()
        answers[body["pid"]] = body
        if len(answers) >= workers:
            return answers
    raise AssertionError(f"only workers {sorted(answers)} of {workers} answered {path}")


def wait_serving(server: ApiServer, version: str, workers: int, timeout: float = 60.0) -> None:
    """Wait until `workers` workers serve `version` (start_api_server returns once one worker is ready)."""
    wait_for(
        lambda: metric(metrics_text(server), "simserve_artifact_version_info", version=version) == workers,
        timeout,
        f"{workers} workers serving {version}",
    )
