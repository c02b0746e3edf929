"""`python -m app --host 127.0.0.1 --port 8000 --workers N`: serve ARTIFACTS_DIR with uvicorn.

Command-line values override the environment (HOST, PORT, WORKERS, ARTIFACTS_DIR). Sets up
Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR: a fresh temporary folder unless given) and
one OpenMP/BLAS thread per worker before anything imports prometheus_client, FAISS or numpy.
"""

from __future__ import annotations

import argparse
import os
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
    }


def prepare_environment(overrides: dict[str, str]) -> Path | None:
    """Export overrides for the workers, pin thread pools, set up the metrics folder; returns a folder to remove."""
    os.environ.update(overrides)
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")  # workers already use every core: nested thread pools only contend
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # samples of a previous run would be summed into this one
            stale.unlink()
        return None
    folder = Path(tempfile.mkdtemp(prefix="simserve-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


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
        uvicorn.run("app.main:create_app", factory=True, **uvicorn_options(settings))
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
