"""GET /compare-metrics and /compare-metrics/summary: how much the metrics disagree, per query and over the catalogue."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.plumbing.metrics import NONE, SCOPE_LABELS, VERSION_HEADER
from app.plumbing.query_route import QueryModelRoute, invalid, json_response
from app.query.comparison import Target, compare
from app.query.documents import version_document
from app.routers.neighbours import check_k, check_metric, check_model, current_version
from app.schemas.common import DEFAULT_MODEL, NOT_READY, Problem, ValidationProblem
from app.schemas.compare import DEFAULT_MODELS_METRIC, CompareQuery, CompareResponse, SummaryQuery, SummaryResponse
from app.serving.version import Side, Version
from models.artifact.manifest import METRICS
from models.diagnostics.report import format_summary

router = APIRouter(route_class=QueryModelRoute, tags=["diagnostics"])


@router.get(
    "/compare-metrics",
    response_model=CompareResponse,
    responses={
        404: {"model": Problem, "description": "Unknown item or user id in the served artifact version."},
        422: {
            "model": ValidationProblem,
            "description": "Neither or both of item_id and user_id; model together with models; fewer than two "
            "different models; metric without models; an unknown model or metric (the allowed values are listed); "
            "k, rbo_p or tau_rows out of range.",
        },
        **NOT_READY,
    },
    summary="Neighbour lists of every metric side by side, and how much they agree",
    description="For one item (`item_id`) or user (`user_id`): the neighbour lists of every metric the version serves (dot, "
    "cosine, projected, projected-centered, whitened) of one `model`, exactly as /similar-items (/similar-users) "
    "serves them, with titles and categories; per list the popularity of the neighbours relative to the catalogue "
    "median and (items with categories) the share sharing a category with the query; for every pair of lists the "
    "Jaccard overlap@k, rank-biased overlap (p stated) and the weighted Kendall tau of the full score vectors "
    "(bounded by `tau_rows`). With `models` (repeated) instead of `model`: one `metric` across models, which shows "
    "the D-sensitivity of cosine.",
)
async def compare_metrics(q: Annotated[CompareQuery, Query()], request: Request) -> Response:
    request.scope[SCOPE_LABELS] = (NONE, NONE)  # until the lists are known (QueryModelRoute put the raw, maybe null, values)
    targets, labels = _targets(q)
    if (q.item_id is None) == (q.user_id is None):
        given = "both" if q.item_id is not None else "neither"
        raise invalid("item_id", f"give exactly one of item_id and user_id ({given} given)", q.item_id or q.user_id)
    version = current_version(request)
    if q.models is None:  # a model's metrics: those the version serves (one built before a metric existed lacks it)
        targets = [t for t in targets if t.metric in version.metrics]
    for t in targets:
        check_model(request, version, t.model, "model" if q.models is None else "models")
    if q.metric is not None:
        check_metric(version, q.metric)
    request.scope[SCOPE_LABELS] = labels
    check_k(request, q.k)
    side: Side = "items" if q.item_id is not None else "users"
    external_id = q.item_id if q.item_id is not None else q.user_id
    row = version.row(side, external_id)  # type: ignore[arg-type]
    for t in targets:
        version.index(side, t.model, t.metric)  # Unavailable -> 404 before any work
    # ~10-100 ms of numpy/scipy (the weighted tau): off the event loop, so other requests keep flowing
    body = await asyncio.to_thread(compare, version, side, row, targets, q.k, q.rbo_p, q.tau_rows)
    if side == "items":
        meta = version.item_meta[row]
        query = {"item_id": external_id, "title": meta.get("title"), "categories": meta.get("categories")}
    else:
        query = {"user_id": external_id}
    many = q.models is not None
    head = {
        "side": side,
        "compare": "models" if many else "metrics",
        "query": query,
        "model": None if many else (q.model or DEFAULT_MODEL),
        "models": [t.model for t in targets] if many else None,
        "metric": (q.metric or DEFAULT_MODELS_METRIC) if many else None,
        "k": q.k,
        "rbo_p": q.rbo_p,
        "artifact_version": version.name,
    }
    return json_response({**head, **body}, version.name)


def _targets(q: CompareQuery) -> tuple[list[Target], tuple[str, str]]:
    """The lists to compare and the (model, metric) labels of the request metrics; 422 on a bad combination."""
    if q.models is None:
        if q.metric is not None:
            raise invalid("metric", "metric applies only with models= (comparing one metric across models)", q.metric)
        model = q.model or DEFAULT_MODEL
        return [Target(metric, model, metric) for metric in METRICS], (model, "all")
    if q.model is not None:
        raise invalid("model", "give model (compare its metrics) or models (compare models), not both", q.model)
    models = list(dict.fromkeys(q.models))  # repeated names once, in the order given
    if len(models) < 2:
        raise invalid("models", "give at least two different models", ",".join(q.models))
    metric = q.metric or DEFAULT_MODELS_METRIC
    return [Target(model, model, metric) for model in models], ("several", metric)


def _summary(version: Version) -> dict[str, Any]:
    """summary.json of a version (404 when it was built with --no-diagnostics)."""
    entry = version.manifest.get("diagnostics") or {}
    return version_document(version, entry.get("summary"), "summary", "has no metric summary (built with --no-diagnostics)")


@router.get(
    "/compare-metrics/summary",
    response_model=SummaryResponse,
    responses={
        200: {
            "content": {
                "text/markdown": {"schema": {"type": "string"}, "example": "| model | cat.prec@10 dot | ... |"},
                "text/plain": {"schema": {"type": "string"}, "example": "  model  cat.prec@10 dot ..."},
            },
            "description": "The summary of the served version: JSON (default) or its tables as markdown or plain text.",
        },
        404: {"model": Problem, "description": "The served version has no summary (built with --no-diagnostics)."},
        422: {"model": ValidationProblem, "description": "Unknown format (the allowed values are listed)."},
        **NOT_READY,
    },
    summary="Metric agreement over the whole catalogue (the build's summary.json)",
    description="What the offline job measured over every item (or a seeded sample) and a sample of users, per model x "
    "metric: category precision@k, popularity bias; per model the mean Jaccard@k, RBO and weighted tau of each "
    "metric pair; per metric the D-sensitivity (mean Jaccard@k between the four denoising D-variants). "
    "`format=markdown` or `text` returns the same as tables.",
)
async def compare_summary(q: Annotated[SummaryQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    summary = _summary(version)
    if q.format == "json":
        return json_response(
            {"artifact_version": version.name, "dataset": version.manifest.get("dataset", {}), "summary": summary},
            version.name,
        )
    text = format_summary(summary, markdown=q.format == "markdown")
    head = f"Metric agreement of artifact version {version.name}\n\n"
    media = "text/markdown" if q.format == "markdown" else "text/plain"
    return Response(head + text + "\n", media_type=f"{media}; charset=utf-8", headers={VERSION_HEADER: version.name})
