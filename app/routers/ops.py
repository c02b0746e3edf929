"""GET /models, /healthz, /readyz, /metrics and POST /admin/reload."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.plumbing import metrics
from app.plumbing.auth import require_token
from app.plumbing.problems import ProblemError, refusal_dict
from app.plumbing.query_route import json_response
from app.schemas.common import DEFAULT_K, DEFAULT_METRIC, DEFAULT_MODEL, Problem
from app.schemas.ops import HealthResponse, ModelsResponse, ReadyResponse, ReloadResponse
from app.serving.milvus_search import BackendUnavailable, MilvusBackend
from app.serving.version import NotLoaded, VectorIndex, Version
from app.serving.workers import status_dict

router = APIRouter(tags=["operations"])
admin_router = APIRouter(tags=["operations"])
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "No artifact version loaded yet; detail says why."}
}


def _index_info(index: VectorIndex, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows": index.rows,
        "dim": index.dim,
        "zero_rows": int(entry.get("zero_rows", 0)),
        "served_by": index.kind,
        "backend": "milvus" if index.kind == "milvus" else "faiss",
        "collection": index.collection,
        "recall_at_10": index.recall_at_10,
        "ef_search": index.ef_search,
        "nprobe": index.nprobe,
        # the build's reason is FAISS's choice; under Milvus the collection's index is what serves
        "serving": f"milvus: collection {index.collection}, recall@10 {index.recall_at_10} measured when published"
        if index.kind == "milvus"
        else entry.get("serving"),
    }


def models_body(version: Version) -> dict[str, Any]:
    """The /models document of a version: models, metrics, parameters, counts and which index serves what."""
    m = version.manifest
    models = {}
    for name in version.models:
        info = dict(m["models"][name])
        indexes = {}
        for key, index in version.indexes.items():
            if key.model == name:
                indexes[f"{key.side}/{key.metric}"] = _index_info(index, m["indexes"][str(key)])
        for (model, metric), pair in version.recommend_pairs.items():
            if model == name:
                indexes[f"recommend/{metric}"] = _index_info(pair.items, m["recommend"][model][metric]["items"])
        gauge = f"/models/{name}/gauge" if m.get("gauge") else None
        models[name] = {"source": "closed-form", **info, "gauge": gauge, "indexes": indexes}
    svd = {k: v for k, v in m.get("svd", {}).items() if k != "singular_values"}
    svd["singular_values"] = m.get("svd", {}).get("singular_values", [])
    return {
        "artifact_version": version.name,
        "created_at": m.get("created_at", ""),
        "loaded_at": version.loaded_at,
        "defaults": {"model": DEFAULT_MODEL, "metric": DEFAULT_METRIC, "k": DEFAULT_K},
        "metrics": list(version.metrics),
        "models": models,
        "evaluation": "/evaluation" if m.get("evaluation") else None,
        "counts": m["counts"],
        "params": m.get("params", {}),
        "svd": svd,
        "dataset": m.get("dataset", {}),
    }


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses=NOT_READY,
    summary="Models, metrics and parameters of the served version",
    description="Every model with its objective, D-variant, lambda and surviving dimensions; the metrics; build "
    "parameters, counts, SVD accuracy; and for every index how it is served (flat or HNSW with its recall).",
)
async def list_models(request: Request) -> Response:
    version: Version = request.app.state.holder.require()
    return json_response(models_body(version), version.name)


@router.get(
    "/healthz",
    response_model=HealthResponse,
    summary="Liveness: the process answers",
    description="Always 200 while the process runs, loaded version or not (use /readyz for readiness).",
)
async def healthz(request: Request) -> Response:
    live = request.app.state.holder.current
    name = live.name if live else None
    return json_response({"status": "ok", "artifact_version": name, "pid": os.getpid()}, name)


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses=NOT_READY,
    summary="Readiness: a verified version is served",
    description="200 when this worker serves a verified artifact version; 503 (problem+json) when none is loaded, "
    "with the reason. `last_refusal` names the most recent version refused (bad checksum or "
    "unloadable) while the served one stayed. `fallback` is set while this worker serves an older version because "
    "the one CURRENT names was refused when it started (it had no version of its own to keep).",
)
async def readyz(request: Request) -> Response:
    holder = request.app.state.holder
    live = holder.current
    if live is None:
        raise NotLoaded(holder.not_loaded_reason)
    milvus: MilvusBackend | None = request.app.state.milvus
    backend: dict[str, Any] = {"name": "faiss"}
    if milvus is not None:
        problem = await asyncio.to_thread(milvus.problem)
        backend = {"name": "milvus", "uri": milvus.uri, "reachable": problem is None, "problem": problem}
        if problem is not None:
            raise BackendUnavailable(problem)
    return json_response(
        {
            "status": "ready",
            "artifact_version": live.name,
            "loaded_at": live.loaded_at,
            "last_refusal": refusal_dict(holder.last_refusal),
            "fallback": None if holder.fallback is None else dataclasses.asdict(holder.fallback),
            "pid": os.getpid(),
            "vector_backend": backend,
            **({"experiments": service.status()} if (service := request.app.state.experiments) is not None else {}),
        },
        live.name,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics of all workers",
    description="Requests, errors and latency histograms by endpoint, model and metric; the served artifact "
    "version per worker; reloads and refused versions (with the reason).",
    responses={
        200: {
            "content": {"text/plain": {"example": 'simserve_requests_total{endpoint="/similar-items",...} 42.0\n'}},
            "description": "Prometheus text exposition format.",
        }
    },
)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


bearer = HTTPBearer(auto_error=False, description="ADMIN_TOKEN of the server.")


@admin_router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Check CURRENT now in every worker and swap in a new version",
    description="Token-protected (Authorization: Bearer ADMIN_TOKEN; the endpoint does not exist when ADMIN_TOKEN is "
    "unset). Every worker of the server loads the version CURRENT names if it differs from the one it serves, retrying "
    "one refused before; the call returns once every live worker has (at most RELOAD_WAIT_TIMEOUT seconds), and "
    "`workers` lists each worker's served version. 409 when the version is refused (the served one stays).",
    responses={
        401: {"model": Problem, "description": "Missing or wrong token."},
        409: {"model": Problem, "description": "The version CURRENT names was refused; detail says why."},
    },
)
async def admin_reload(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Response:
    settings = request.app.state.settings
    require_token(settings.admin_token, credentials, "admin", "a valid bearer token is required")
    coordinator = request.app.state.coordinator
    result, generation, statuses, complete = await coordinator.reload_everywhere(settings.reload_wait_timeout)
    workers = [status_dict(s, generation) for s in statuses]
    everywhere = {
        "workers": workers,
        "all_workers_reloaded": complete,
        "workers_expected": settings.workers,
    }
    fell_back = request.app.state.holder.fallback is not None
    if result.refusal is not None and (not result.changed or fell_back):  # CURRENT's version itself was refused
        raise ProblemError(
            409,
            "Version refused",
            result.refusal.reason,
            "/problems/version-refused",
            refused_version=result.refusal.version,
            **everywhere,
        )
    return json_response(
        {
            "artifact_version": result.current,
            "previous_version": result.previous,
            "changed": result.changed,
            "pid": os.getpid(),
            **everywhere,
        },
        result.current,
    )
