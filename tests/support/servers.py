"""Real API server processes, and what the tests ask of a running one.

- `start_api_server(root, log_dir, workers=1, **env)`: `python -m app` on a free loopback port (or another
  command that starts the same service, `command=`), a context manager yielding an `ApiServer` once
  `ready` answers 200; stopped (its whole process group) on exit.
- `free_port()`, `wait_for(predicate)`, `stop(proc)`: the one copy of each.
- `metrics_text(server)`, `each_worker(server, path, n)`, `wait_serving(server, version, n)`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from support.artifacts import ROOT
from support.prometheus import metric

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@dataclass
class ApiServer:
    base_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def python_m_app(port: int, workers: int) -> list[str]:
    """The command line of `python -m app` (the production entry point) on 127.0.0.1:port."""
    return [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


@contextlib.contextmanager
def start_api_server(
    artifacts_dir: Path,
    log_dir: Path,
    workers: int = 1,
    ready: str = "/readyz",
    timeout: float = 60.0,
    command: Callable[[int, int], list[str]] = python_m_app,
    **env: str,
) -> Iterator[ApiServer]:
    """`python -m app` on a free loopback port; waits until `ready` answers 200 (or /healthz if ready="").

    `command(port, workers)` is the command line (default `python -m app`), run in the project root
    with ARTIFACTS_DIR, LOG_LEVEL=info and `env` on top of this environment.
    """
    for _attempt in range(3):  # a free port can be taken between the probe and uvicorn's bind
        port = free_port()
        log = log_dir / f"server-{port}.log"
        full_env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "ARTIFACTS_DIR": str(artifacts_dir),
            "LOG_LEVEL": "info",
            **env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command(port, workers),
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=10.0)
        server = ApiServer(base, proc, log, client)
        try:
            if wait_ready(server, ready or "/healthz", timeout):
                yield server
                return
        finally:
            client.close()
            stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            raise AssertionError(f"API server did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
    raise AssertionError("API server could not bind a free port")


def wait_ready(server: ApiServer, path: str, timeout: float) -> bool:
    """True once `path` answers 200; False if the process exits first; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if server.client.get(path).status_code == 200:
                return True
        time.sleep(0.1)
    raise AssertionError(f"API server not ready after {timeout}s:\n{server.logs()[-4000:]}")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group of a server started by start_api_server (SIGKILL after 15 s)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group: uvicorn's supervisor and its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --------------------------------------------------------------------------- asking a running server


def metrics_text(server: ApiServer) -> str:
    r = server.client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


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
