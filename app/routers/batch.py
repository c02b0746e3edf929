"""POST /similar-items/batch and /recommend/batch: many queries of one model and metric, one search for all."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.plumbing.json_body import json_body_route
from app.plumbing.metrics import SCOPE_LABELS
from app.plumbing.problems import unknown_id_body
from app.plumbing.query_route import QueryValidationError, json_response
from app.query import neighbours as search
from app.query.item_filter import ItemFilter
from app.routers.neighbours import (
    check_metric,
    check_model,
    current_version,
    filter_echo,
    item_neighbours,
    neighbour_body,
    requested_filter,
)
from app.schemas.batch import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    RecommendBatch,
    RecommendBatchResponse,
    SimilarItemsBatch,
    SimilarItemsBatchResponse,
)
from app.schemas.common import NOT_READY, Problem, ValidationProblem
from app.serving.version import Side, UnknownId, Version

router = APIRouter(tags=["neighbours"], route_class=json_body_route(MAX_BATCH_BYTES))


def _errors(kind: str) -> dict[int | str, dict[str, Any]]:
    return {
        404: {"model": Problem, "description": "The served version has no index for the model and metric."},
        422: {
            "model": ValidationProblem,
            "description": f"A bad body: a model or metric the served version does not have, no queries or more than "
            f"{MAX_BATCH}, a k outside 1..1000 (or above MAX_K), an unknown field, a value of another JSON type than "
            f"the schema's, an unknown category. An unknown {kind} id is not a 422: it fails its own entry of "
            "`results` (a 404 problem there).",
        },
        400: {"model": Problem, "description": "The body is not JSON."},
        413: {"model": Problem, "description": f"The body is larger than {MAX_BATCH_BYTES} bytes."},
        415: {"model": Problem, "description": "The body is not sent as `application/json`."},
        **NOT_READY,
    }


def _check_ks(request: Request, ks: list[int]) -> None:
    """MAX_K may lower the contract's bound: a 422 naming every query above it."""
    max_k = request.app.state.settings.max_k
    errors = [
        {
            "type": "value_error",
            "loc": ("body", "queries", i, "k"),
            "msg": f"Input should be less than or equal to {max_k}",
            "input": k,
        }
        for i, k in enumerate(ks)
        if k > max_k
    ]
    if errors:
        raise QueryValidationError(errors, {})


def _rows(version: Version, side: Side, ids: list[str], path: str) -> tuple[list[int], list[int], list[Any]]:
    """(rows of the known ids, their positions, results with the unknown ids' problems in place)."""
    rows: list[int] = []
    at: list[int] = []
    results: list[Any] = [None] * len(ids)
    for i, external_id in enumerate(ids):
        try:
            rows.append(version.row(side, external_id))
            at.append(i)
        except UnknownId as e:
            results[i] = unknown_id_body(e, path)
    return rows, at, results


def _similar_items(version: Version, body: SimilarItemsBatch, only: ItemFilter | None, path: str) -> list[Any]:
    index = version.index("items", body.model, body.metric)
    rows, at, results = _rows(version, "items", [q.item_id for q in body.queries], path)
    ks = [body.queries[i].k for i in at]
    if only is None:
        answers = search.neighbours_of_rows(index, rows, ks)
    else:  # each query widens its own fetch until k pass
        answers = [search.filtered_neighbours_of_row(index, r, k, only) for r, k in zip(rows, ks, strict=True)]
    for i, (r, s) in zip(at, answers, strict=True):
        q = body.queries[i]
        entries = item_neighbours(version, r, s)
        results[i] = neighbour_body(version, {"item_id": q.item_id}, body.model, body.metric, q.k, entries, **filter_echo(body))
    return results


def _recommend(version: Version, body: RecommendBatch, only: ItemFilter | None, path: str) -> list[Any]:
    rows, at, results = _rows(version, "users", [q.user_id for q in body.queries], path)
    ks = [body.queries[i].k for i in at]
    if only is None:
        answers = search.recommend_many(version, rows, body.model, body.metric, ks, body.exclude_seen)
    else:
        answers = [
            search.recommend_rows(version, r, body.model, body.metric, k, body.exclude_seen, only)
            for r, k in zip(rows, ks, strict=True)
        ]
    for i, (r, s) in zip(at, answers, strict=True):
        q = body.queries[i]
        entries = item_neighbours(version, r, s)
        extra = {"exclude_seen": body.exclude_seen, **filter_echo(body)}
        results[i] = neighbour_body(version, {"user_id": q.user_id}, body.model, body.metric, q.k, entries, **extra)
    return results


@router.post(
    "/similar-items/batch",
    response_model=SimilarItemsBatchResponse,
    responses=_errors("item"),
    summary="Items most similar to each of many items, in one call",
    description=f"Up to {MAX_BATCH} /similar-items queries of one `model` and `metric` (defaults as in the GET "
    "endpoint), answered with one batched search: `results[i]` is what GET /similar-items would answer for "
    "`queries[i]` (same neighbours and scores on exact indexes and stored lists; on HNSW one search as deep as the "
    "largest k), or its problem.",
)
async def similar_items_batch(body: SimilarItemsBatch, request: Request) -> Response:
    version = current_version(request)
    check_model(request, version, body.model, where="body")
    check_metric(version, body.metric, where="body")
    _check_ks(request, [q.k for q in body.queries])
    only = requested_filter(version, body, where="body")
    request.scope[SCOPE_LABELS] = (body.model, body.metric)
    # off the event loop: a thousand queries take milliseconds, and other requests keep being answered meanwhile
    results = await asyncio.to_thread(_similar_items, version, body, only, request.url.path)
    out = {"model": body.model, "metric": body.metric, **filter_echo(body), "artifact_version": version.name, "results": results}
    return json_response(out, version.name)


@router.post(
    "/recommend/batch",
    response_model=RecommendBatchResponse,
    responses=_errors("user"),
    summary="Items to recommend to each of many users, in one call",
    description=f"Up to {MAX_BATCH} /recommend queries of one `model`, `metric` and `exclude_seen` (defaults as in "
    "the GET endpoint), answered with one batched search: `results[i]` is what GET /recommend would answer for "
    "`queries[i]` (the same items and scores on exact indexes), or its problem.",
)
async def recommend_batch(body: RecommendBatch, request: Request) -> Response:
    version = current_version(request)
    check_model(request, version, body.model, where="body")
    check_metric(version, body.metric, recommend=True, where="body")
    _check_ks(request, [q.k for q in body.queries])
    only = requested_filter(version, body, where="body")
    request.scope[SCOPE_LABELS] = (body.model, body.metric)
    results = await asyncio.to_thread(_recommend, version, body, only, request.url.path)
    out = {
        "model": body.model,
        "metric": body.metric,
        "exclude_seen": body.exclude_seen,
        **filter_echo(body),
        "artifact_version": version.name,
        "results": results,
    }
    return json_response(out, version.name)
