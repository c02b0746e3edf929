"""The app: `create_app(settings)`, and `app` for the FastAPI conventions.

`python -m app` (uvicorn workers, Prometheus multiprocess mode), `uvicorn app.main:app` and
`fastapi run app/main.py` start the same service from the same settings (environment variables);
`app` is built on first access, so importing this module for the factory builds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faiss
from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig

from app.experiments.service import ExperimentsService
from app.plumbing import metrics, problems
from app.plumbing.problems import PROBLEM_MEDIA_TYPE
from app.routers import batch, compare, figures, items, neighbours, ops, page, quality
from app.routers import experiments as experiments_routes
from app.serving.loader import LoadOptions
from app.serving.milvus_search import MilvusBackend
from app.serving.reload import Reloader, VersionHolder
from app.serving.workers import ReloadCoordinator, WorkerRegistry
from app.settings import Settings
from models.artifact.store import ArtifactStore

DESCRIPTION = """
Nearest neighbours from every model and metric of the offline job's artifacts
(Steck et al. 2024, "Is Cosine-Similarity of Embeddings Really About Similarity?").

* models: `denoising-symmetric` (default), `denoising-item-orthonormal`, `denoising-user-orthonormal`,
  `denoising-sigma-matched`, `weight-decay`, and whatever else the served version lists at GET /models
  (`ips-*`, `standardized-*`, `cosine-mf`, `als`, `bpr`, imported factors)
* metrics: `dot`, `cosine`, `projected` (default: cosine in the original space, D-invariant),
  `projected-centered` (Pearson in the original space), `whitened` (cosine of whitened embeddings)
* every response names the `artifact_version` that answered it (body and `artifact-version` header);
  new versions are picked up without a restart; errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app over settings.artifacts_dir. Loads the live version at startup and polls CURRENT."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    faiss.omp_set_num_threads(settings.faiss_threads)
    holder = VersionHolder()
    milvus = (
        MilvusBackend(settings.milvus_uri, settings.milvus_timeout)
        if settings.vector_backend == "milvus" and settings.milvus_uri
        else None
    )
    reloader = Reloader(
        holder,
        ArtifactStore(settings.artifacts_dir),
        LoadOptions(
            search_mode=settings.search_mode,
            min_hnsw_recall=settings.min_hnsw_recall,
            hnsw_ef_search=settings.hnsw_ef_search,
            mmap=settings.mmap_indexes,
            milvus=milvus,
        ),
        events=metrics.reload_events(),
    )

    coordinator = ReloadCoordinator(reloader)

    experiments: ExperimentsService | None = None
    if settings.experiments_file is not None:
        experiments = ExperimentsService(
            settings.experiments_file,
            settings.events_url(),
            settings.events_dir,
            on_count=metrics.count_event,
            on_refusal=metrics.experiments_refused,
        )

    async def poll_experiments(interval: float) -> None:
        assert experiments is not None
        while True:
            await asyncio.sleep(interval)
            try:
                experiments.check(holder.current)
            except Exception:  # a poller that dies silently would stop experiment reloads for good
                logging.getLogger("app.experiments").exception("experiments file check failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load before accepting requests: a worker that starts with a published version is ready at once.
        # not under `python -m app` (no RUN_DIR): this process is a server of its own
        run_dir = settings.run_dir or Path(tempfile.mkdtemp(prefix="simserve-run-"))
        coordinator.attach(WorkerRegistry(run_dir))
        await reloader.check_async("startup")
        coordinator.record()
        if experiments is not None:
            experiments.check(holder.current)
        app.openapi()  # build the schema now, not on the first request (the metrics middleware reads its paths)
        tasks = [asyncio.create_task(coordinator.watch(settings.reload_watch_interval))]
        if settings.reload_interval > 0:
            tasks.append(asyncio.create_task(reloader.poll_forever(settings.reload_interval)))
            if experiments is not None:
                tasks.append(asyncio.create_task(poll_experiments(settings.reload_interval)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if experiments is not None:
                await asyncio.to_thread(experiments.close)
            coordinator.registry.unregister()
            if settings.run_dir is None:
                shutil.rmtree(run_dir, ignore_errors=True)
            metrics.worker_exit()

    # FastAPI's native OpenTelemetry is off: metrics go to Prometheus, and its per-request provider check costs time.
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="simserve", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, telemetry=telemetry)
    app.state.settings = settings
    app.state.milvus = milvus
    app.state.holder = holder
    app.state.reloader = reloader
    app.state.coordinator = coordinator
    app.state.experiments = experiments
    problems.install(app)
    _include_flat(app, neighbours.router)
    app.include_router(ops.router)
    for router in (
        batch.router,
        compare.router,
        figures.router,
        items.router,
        page.router,
        quality.router,
        quality.evaluation_router,
        experiments_routes.router,
    ):
        app.include_router(router)
    if settings.admin_token:
        app.include_router(ops.admin_router)
    app.add_middleware(
        metrics.MetricsMiddleware,
        current_version=lambda: holder.current.name if holder.current else None,
        paths=lambda: set(app.openapi().get("paths", {})),  # routers added later (e.g. /compare-metrics) included
    )
    _problem_media_types(app)
    return app


def _include_flat(app: FastAPI, router: APIRouter) -> None:
    """Put a router's routes at the front of the app's own route list.

    include_router() dispatches through an extra matching layer per request (FastAPI's included
    routers), about 13 us per request on the hot neighbour endpoints; the app's router matches its
    own routes directly. Routers added later (e.g. /compare-metrics) can use include_router().
    """
    app.router.routes[0:0] = router.routes


def _configure_logging(level: str) -> None:
    """The app's own log lines (loads, refusals) next to uvicorn's, in the same shape."""
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     [%(process)d] %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _problem_media_types(app: FastAPI) -> None:
    """Document 4xx/5xx bodies as application/problem+json (FastAPI lists the route's media type)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    for status, response in op.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_app: FastAPI | None = None  # `app`, once created by __getattr__


def __getattr__(name: str) -> FastAPI:
    """`app.main.app`: the service with Settings() from the environment, created once on first use."""
    if name == "app":
        global _app
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), "app"]  # `fastapi run app/main.py` looks for an `app` among the module's names
