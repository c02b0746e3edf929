"""The API in this process: `create_app(Settings(...))` behind a `fastapi.testclient.TestClient`.

For fast tests where a server process is not what is being tested (HTTP tests proper run a real
`python -m app`: support.servers). `in_process_server` takes start_api_server's arguments, so a test
written against a real server can run on the in-process app too; the variables in `env` become the
Settings fields of the same name (RELOAD_INTERVAL -> reload_interval, ...). There is one process, so
`workers` is ignored, and the Prometheus counters are this process's (summed over every app it built).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette asks for `httpx2` instead of the httpx the project pins (pyproject.toml); the client works the same.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient


@dataclass
class InProcessServer:
    base_url: str
    app: FastAPI
    client: TestClient


def in_process_app(artifacts_dir: Path, **env: Any) -> FastAPI:
    """create_app on `artifacts_dir`; `env` as Settings fields (explicit values win over the environment)."""
    from app.main import create_app
    from app.settings import Settings

    fields: dict[str, Any] = {"admin_token": None, "reload_interval": 5.0}  # a developer's ADMIN_TOKEN stays out
    fields.update({name.lower(): value for name, value in env.items()})
    return create_app(Settings(artifacts_dir=artifacts_dir, **fields))


@contextlib.contextmanager
def in_process_server(
    artifacts_dir: Path, log_dir: Path | None = None, workers: int = 1, ready: str = "/readyz", **env: Any
) -> Iterator[InProcessServer]:
    """The app started (its lifespan: the startup load, the poller) with a TestClient on it; asserts that
    `ready` (or /healthz if ready="") answers 200, as start_api_server waits for it to."""
    del log_dir, workers  # one process, logging to this one's stderr
    app = in_process_app(artifacts_dir, **env)
    with TestClient(app) as client:
        r = client.get(ready or "/healthz")
        assert r.status_code == 200, f"the in-process app is not ready: {r.status_code} {r.text[:1000]}"
        yield InProcessServer(str(client.base_url), app, client)
