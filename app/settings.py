"""The service's settings: one pydantic-settings object, read from environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

K_LIMIT = 1000  # the API contract: k outside 1..1000 is a 422, whatever MAX_K says
MAX_URL_BYTES = 16 * 1024  # request target; longer is a 414 (app.plumbing.limits)
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; more is a 431 (app.plumbing.limits)


def default_workers() -> int:
    """One worker per CPU this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every knob of the server. Environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    artifacts_dir: Path = Field(
        Path("artifacts"), description="Artifacts root written by `python -m models.build` (CURRENT, versions/)."
    )
    host: str = Field("127.0.0.1", description="Address `python -m app` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `python -m app` binds to.")
    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        le=64,
        description="uvicorn worker processes (default: CPUs available to this process).",
    )
    reload_interval: float = Field(
        5.0, ge=0, description="Seconds between checks of CURRENT for a new version; 0 disables polling."
    )
    run_dir: Path | None = Field(
        None,
        description="Folder the workers of one server share: each worker's status and forced reload requests "
        "(app.serving.workers). `python -m app` makes a fresh one; unset otherwise: a folder of this process alone.",
    )
    reload_watch_interval: float = Field(
        0.1, gt=0, le=10, description="Seconds between a worker's checks for a forced reload another worker was asked for."
    )
    reload_wait_timeout: float = Field(
        60.0,
        gt=0,
        description="Longest POST /admin/reload waits for every worker to have reloaded (verifying a large version "
        "takes seconds); the answer says which workers had not.",
    )
    admin_token: str | None = Field(
        None, description="Bearer token of POST /admin/reload; the endpoint does not exist when unset."
    )
    max_k: int = Field(K_LIMIT, ge=1, le=K_LIMIT, description="Largest k a request may ask for (the contract allows up to 1000).")
    max_url_bytes: int = Field(
        MAX_URL_BYTES, ge=1024, le=65_536, description="Longest request target (path + query) in bytes; longer is a 414."
    )
    max_head_bytes: int = Field(
        MAX_HEAD_BYTES, ge=4096, le=1 << 20, description="Largest request line + headers in bytes; more is a 431."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a client has to send a request's line and headers, from the connection's start or the "
        "request's first byte; later is a 408 and the connection is closed (slow clients, slowloris).",
    )
    keepalive_timeout: int = Field(
        5, ge=1, le=600, description="Seconds an idle kept-alive connection stays open between requests (uvicorn's)."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Connections (or requests in flight) per worker above which a request is answered 503 at once. "
        "`python -m app` raises the open-files limit to fit it.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the app and uvicorn."
    )
    access_log: bool = Field(
        False, description="uvicorn access log (one line per request; off by default, /metrics counts requests)."
    )
    search_mode: Literal["auto", "exact"] = Field(
        "auto",
        description="auto: serve an index's HNSW twin when the build wrote one with recall@10 >= MIN_HNSW_RECALL; "
        "exact: always the flat (exhaustive) index.",
    )
    min_hnsw_recall: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Lowest recall@10 the build measured at which an approximate index (HNSW or IVF) is served.",
    )
    hnsw_ef_search: int | None = Field(
        None, ge=1, description="Override the efSearch the build measured recall with (default: keep it)."
    )
    mmap_indexes: bool = Field(
        True,
        description="Memory-map index files (one page-cache copy shared by every worker); false reads them into "
        "each worker's own memory.",
    )
    vector_backend: Literal["faiss", "milvus"] = Field(
        "faiss",
        description="faiss: search the version's index files in this process; milvus: search its Milvus collections "
        "(published with `models.build --milvus-uri`) at MILVUS_URI (docs/scale-out.md).",
    )
    milvus_uri: str | None = Field(
        None, description="Milvus server of VECTOR_BACKEND=milvus: http://HOST:19530 (a cluster, or `milvus-lite server`)."
    )
    milvus_timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds a Milvus call may take before the request is answered 503."
    )
    faiss_threads: int = Field(
        1, ge=1, description="OpenMP threads per worker for FAISS; 1 because workers already use every core."
    )
    experiments_file: Path | None = Field(
        None,
        description="TOML file of online experiments (docs/experiments.md), reloaded when it changes; unset: no "
        "experiments (and no events database is opened).",
    )
    events_db: str | None = Field(
        None,
        description="Where exposures and feedback go: sqlite:///ABSOLUTE/PATH (WAL) or postgresql://...; default "
        "sqlite:// + EVENTS_DIR/events.db.",
    )
    events_dir: Path = Field(
        Path("events"),
        description="Read-write folder of the default SQLite events database and of each worker's bounded spill file "
        "(events the database could not take yet). Never inside ARTIFACTS_DIR, which may be read-only.",
    )

    @model_validator(mode="after")
    def _milvus_needs_uri(self) -> Settings:
        if self.vector_backend == "milvus" and not self.milvus_uri:
            raise ValueError("VECTOR_BACKEND=milvus needs MILVUS_URI (http://HOST:19530)")
        return self

    def events_url(self) -> str:
        """EVENTS_DB, or the default SQLite file under EVENTS_DIR."""
        return self.events_db or f"sqlite://{(self.events_dir / 'events.db').resolve()}"
