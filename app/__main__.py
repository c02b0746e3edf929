"""`python -m app --host 127.0.0.1 --port 8000 --workers N`: serve ARTIFACTS_DIR with uvicorn.

Command-line values override the environment (HOST, PORT, WORKERS, ARTIFACTS_DIR). Sets up
Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR: a fresh temporary folder unless given), the
workers' shared folder (RUN_DIR: likewise) and one OpenMP/BLAS thread per worker before anything
imports prometheus_client, FAISS or numpy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", help="bind address (env HOST, default 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port (env PORT, default 8000)")
    ap.add_argument("--workers", type=int, help="worker processes (env WORKERS, default: CPUs available)")
    ap.add_argument("--artifacts-dir", help="artifacts root (env ARTIFACTS_DIR, default ./artifacts)")
    return ap


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """The uvicorn settings of production serving (the benchmark runs its reference app with the same)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "http": "app.plumbing.limits:BoundedHttpToolsProtocol",  # httptools, with bounded request heads
        "loop": "uvloop",
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keepalive_timeout,
        # HEADER_TIMEOUT and MAX_CONNECTIONS are the protocol's (app.plumbing.limits): uvicorn has no head timeout,
        # and its limit_concurrency answers a plain-text 503.
    }


def prepare_environment(overrides: dict[str, str]) -> list[Path]:
    """Export overrides for the workers, pin thread pools, set up the metrics and run folders; returns the
    folders made here, to remove at exit."""
    os.environ.update(overrides)
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")  # workers already use every core: nested thread pools only contend
    made: list[Path] = []
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # samples of a previous run would be summed into this one
            stale.unlink()
    else:
        made.append(Path(tempfile.mkdtemp(prefix="simserve-metrics-")))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made[-1])
    if os.environ.get("RUN_DIR"):  # the workers' shared folder (app.serving.workers); stale state goes
        run_dir = Path(os.environ["RUN_DIR"])
        shutil.rmtree(run_dir / "workers", ignore_errors=True)
        (run_dir / "reload-request").unlink(missing_ok=True)
    else:
        made.append(Path(tempfile.mkdtemp(prefix="simserve-run-")))
        os.environ["RUN_DIR"] = str(made[-1])
    return made


def open_files_for(connections: int, spare: int = 256) -> None:
    """Raise the soft open-files limit so a worker can hold `connections` sockets besides its own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            print(f"warning: open-files limit {hard} is below MAX_CONNECTIONS + {spare}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = {name.upper(): str(value) for name, value in vars(args).items() if value is not None}
    cleanup = prepare_environment(overrides)
    try:
        import uvicorn
        from pydantic import ValidationError

        from app.settings import Settings

        try:
            settings = Settings()
        except ValidationError as e:
            print(f"error: invalid settings:\n{e}", file=sys.stderr)
            return 2
        open_files_for(settings.max_connections)
        uvicorn.run("app.main:create_app", factory=True, **uvicorn_options(settings))
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
