"""GET /similar-items, /similar-users, /recommend: nearest neighbours under any model and metric."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.experiments.interleaving import INTERLEAVED_LABEL, exposure_rng, team_draft
from app.plumbing.metrics import NONE, SCOPE_LABELS
from app.plumbing.query_route import QueryModelRoute, invalid, json_response, require_model
from app.query import neighbours as search
from app.query.item_filter import ItemFilter, UnknownCategory, item_filter
from app.schemas.common import NOT_READY, Problem, ValidationProblem
from app.schemas.neighbours import (
    RecommendQuery,
    RecommendResponse,
    SimilarItemsQuery,
    SimilarItemsResponse,
    SimilarUsersQuery,
    SimilarUsersResponse,
)
from app.serving.version import Version
from models.artifact.manifest import RECOMMEND_METRICS

router = APIRouter(route_class=QueryModelRoute, tags=["neighbours"])


def errors(kind: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses of a neighbour endpoint (all application/problem+json)."""
    return {
        404: {"model": Problem, "description": f"Unknown {kind} id in the served artifact version."},
        422: {
            "model": ValidationProblem,
            "description": "Missing or invalid parameter: a model the served version does not have, an unknown "
            "metric or one the served version does not have (the allowed values are listed), k outside 1..1000; "
            "for /recommend, a metric without a user -> item score (whitened); for /similar-items and /recommend, an "
            "unknown category or more than 1000 exclude ids.",
        },
        414: {
            "model": Problem,
            "description": "The request target is longer than MAX_URL_BYTES (16 KiB unless configured): for "
            "/similar-items and /recommend, usually too many or too long exclude ids.",
        },
        **NOT_READY,
    }


def current_version(request: Request) -> Version:
    """The version this request uses from start to end (NotLoaded -> 503)."""
    return request.app.state.holder.require()


def check_model(request: Request, version: Version, model: str, param: str = "model", where: str = "query") -> None:
    """Models are data: the name must be one the served version lists (422 listing them otherwise).

    A refused name is not a metric label: request metrics keep one series per served model.
    """
    if model not in version.models:
        request.scope[SCOPE_LABELS] = (NONE, NONE)
        require_model(version.models, version.name, model, param, where)


def check_metric(version: Version, metric: str, recommend: bool = False, where: str = "query") -> None:
    """A 422 when the served version has no index for the metric (built before it existed), or, for
    /recommend, when the metric has no user -> item score."""
    if metric not in version.metrics:
        served = ", ".join(version.metrics)
        raise invalid(
            "metric", f"artifact version {version.name} does not serve metric {metric!r}; it serves {served}", metric, where=where
        )
    if recommend and metric not in RECOMMEND_METRICS:
        raise invalid(
            "metric",
            f"metric {metric!r} has no user -> item score (each side is whitened by its own covariance, so the inner "
            f"product of a whitened user and item is not the model's prediction); use one of {', '.join(RECOMMEND_METRICS)}",
            metric,
            {"metric": [m for m in RECOMMEND_METRICS if m in version.metrics]},
            where,
        )


def check_k(request: Request, k: int) -> None:
    """MAX_K may lower the contract's 1..1000 bound; same 422 shape as the model's own bound."""
    max_k = request.app.state.settings.max_k
    if k > max_k:
        raise invalid("k", f"Input should be less than or equal to {max_k}", k)


class Filtered(Protocol):
    """A request with the item filters: the GET queries and the batch bodies."""

    exclude: list[str] | None
    category: str | None


def requested_filter(version: Version, q: Filtered, where: str = "query") -> ItemFilter | None:
    """The request's exclude / category as an ItemFilter (None without them); 422 for an unknown category."""
    try:
        return item_filter(version, q.exclude, q.category)
    except UnknownCategory as e:
        raise invalid("category", str(e), q.category, {"category": e.known}, where) from None


def filter_echo(q: Filtered) -> dict[str, Any]:
    """The filter parameters the request gave, for its response body."""
    echo: dict[str, Any] = {}
    if q.exclude is not None:
        echo["exclude"] = list(q.exclude)
    if q.category is not None:
        echo["category"] = q.category
    return echo


def item_neighbours(version: Version, rows: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """[{"item_id", "title"?, "categories"?, "score"}] for item rows and their scores."""
    entry = version.item_entry
    return [entry(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


def user_neighbours(version: Version, rows: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """[{"user_id", "score"}] for user rows and their scores."""
    entry = version.user_entry
    return [entry(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


@router.get(
    "/similar-items",
    response_model=SimilarItemsResponse,
    responses=errors("item"),
    summary="Items most similar to an item",
    description="The k items whose embeddings score highest against the query item's under `model` and `metric`; "
    "the query item is excluded. Entries carry title and categories when the dataset has them.",
)
async def similar_items(q: Annotated[SimilarItemsQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    if q.experiment is not None:
        return _experiment_answer(request, version, "similar-items", q, {"item_id": q.item_id})
    check_model(request, version, q.model)
    check_metric(version, q.metric)
    check_k(request, q.k)
    only = requested_filter(version, q)
    rows, scores = search.similar(version, "items", q.item_id, q.model, q.metric, q.k, only)
    return _answer(version, {"item_id": q.item_id}, q, item_neighbours(version, rows, scores), **filter_echo(q))


@router.get(
    "/similar-users",
    response_model=SimilarUsersResponse,
    responses=errors("user"),
    summary="Users most similar to a user",
    description="The k users whose embeddings score highest against the query user's under `model` and `metric`; "
    "the query user is excluded.",
)
async def similar_users(q: Annotated[SimilarUsersQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    if q.experiment is not None:
        return _experiment_answer(request, version, "similar-users", q, {"user_id": q.user_id})
    check_model(request, version, q.model)
    check_metric(version, q.metric)
    check_k(request, q.k)
    rows, scores = search.similar(version, "users", q.user_id, q.model, q.metric, q.k)
    return _answer(version, {"user_id": q.user_id}, q, user_neighbours(version, rows, scores))


@router.get(
    "/recommend",
    response_model=RecommendResponse,
    responses=errors("user"),
    summary="Items to recommend to a user",
    description="The k items with the highest user -> item score under `model` and `metric` (see the metric "
    "parameter); with exclude_seen (default) the user's own items are left out.",
)
async def recommend(q: Annotated[RecommendQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    if q.experiment is not None:
        return _experiment_answer(request, version, "recommend", q, {"user_id": q.user_id}, exclude_seen=q.exclude_seen)
    check_model(request, version, q.model)
    check_metric(version, q.metric, recommend=True)
    check_k(request, q.k)
    only = requested_filter(version, q)
    rows, scores = search.recommend(version, q.user_id, q.model, q.metric, q.k, q.exclude_seen, only)
    return _answer(
        version, {"user_id": q.user_id}, q, item_neighbours(version, rows, scores), exclude_seen=q.exclude_seen, **filter_echo(q)
    )


def _answer(
    version: Version,
    query: dict[str, Any],
    q: SimilarItemsQuery | SimilarUsersQuery | RecommendQuery,
    neighbours: list[dict[str, Any]],
    **extra: Any,
) -> Response:
    """The body every neighbour endpoint answers with (neighbour_body), as its response."""
    return json_response(neighbour_body(version, query, q.model, q.metric, q.k, neighbours, **extra), version.name)


def neighbour_body(
    version: Version, query: dict[str, Any], model: str, metric: str, k: int, neighbours: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """The body of a neighbour query: the query's id, model, metric, k, extras, version, neighbors."""
    body = {**query, "model": model, "metric": metric, "k": k, **extra, "artifact_version": version.name}
    body["neighbors"] = neighbours
    return body


AnyQuery = SimilarItemsQuery | SimilarUsersQuery | RecommendQuery


def _lists_of(
    version: Version, endpoint: str, q: AnyQuery, model: str, metric: str, only: ItemFilter | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(neighbour entries, their external ids) of one model and metric for the endpoint's query."""
    if endpoint == "similar-items":
        rows, scores = search.similar(version, "items", q.item_id, model, metric, q.k, only)  # type: ignore[union-attr]
        entries = item_neighbours(version, rows, scores)
        return entries, [e["item_id"] for e in entries]
    if endpoint == "similar-users":
        rows, scores = search.similar(version, "users", q.user_id, model, metric, q.k)  # type: ignore[union-attr]
        entries = user_neighbours(version, rows, scores)
        return entries, [e["user_id"] for e in entries]
    assert isinstance(q, RecommendQuery)
    rows, scores = search.recommend(version, q.user_id, model, metric, q.k, q.exclude_seen, only)
    entries = item_neighbours(version, rows, scores)
    return entries, [e["item_id"] for e in entries]


def _experiment_answer(
    request: Request, version: Version, endpoint: str, q: AnyQuery, query: dict[str, Any], **extra: Any
) -> Response:
    """The endpoint's body under an experiment: the unit's arm decides model and metric (team-draft of both arms in
    interleave mode); the response is queued as an exposure (app.experiments.service)."""
    service = request.app.state.experiments
    request.scope[SCOPE_LABELS] = (NONE, NONE)
    if service is None:
        raise invalid("experiment", "no experiments are configured on this server (EXPERIMENTS_FILE is unset)", q.experiment)
    given = q.model_fields_set  # the parameters in the query (request.query_params would parse it all again)
    if "model" in given or "metric" in given:
        param = "model" if "model" in given else "metric"
        raise invalid(param, "the experiment's arm decides model and metric: leave this parameter out", getattr(q, param))
    if q.unit_id is None:
        raise invalid("unit_id", "required with experiment (the unit the experiment assigns to an arm)", None)
    assert q.experiment is not None
    resolved = service.assign(q.experiment, q.unit_id)
    if resolved is None:
        names = [e.name for e in service.current.experiments]
        raise invalid(
            "experiment",
            f"unknown experiment {q.experiment!r}; this server runs {', '.join(names) or 'none'}",
            q.experiment,
            {"experiment": names},
        )
    experiment, arm = resolved
    if experiment.endpoint != endpoint:
        raise invalid(
            "experiment", f"experiment {experiment.name!r} is for /{experiment.endpoint}, not /{endpoint}", q.experiment
        )
    check_k(request, q.k)
    query_id = str(next(iter(query.values())))
    if service.valid_for != version.name:  # the experiments file was validated against another version
        for a in experiment.arms:
            check_model(request, version, a.model)
            check_metric(version, a.metric, recommend=endpoint == "recommend")
    only = requested_filter(version, q) if isinstance(q, SimilarItemsQuery | RecommendQuery) else None
    if isinstance(q, SimilarItemsQuery | RecommendQuery):
        extra.update(filter_echo(q))
    if experiment.mode == "interleave":
        first, second = experiment.arms
        exposure_id = service.ids.new()
        lists = [_lists_of(version, endpoint, q, a.model, a.metric, only) for a in (first, second)]
        ids, teams = team_draft(lists[0][1], lists[1][1], q.k, exposure_rng(exposure_id))
        by_id = [dict(zip(names, entries, strict=True)) for entries, names in lists]
        neighbours = [by_id[t][i] for i, t in zip(ids, teams, strict=True)]
        service.expose(experiment, INTERLEAVED_LABEL, q.unit_id, query_id, q.k, version.name, ids, teams, exposure_id)
        model = first.model if first.model == second.model else f"{first.model}|{second.model}"
        metric = first.metric if first.metric == second.metric else f"{first.metric}|{second.metric}"
        block = {
            "name": experiment.name,
            "arm": None,
            "exposure_id": exposure_id,
            "teams": [experiment.arms[t].name for t in teams],
        }
    else:
        neighbours, shown = _lists_of(version, endpoint, q, arm.model, arm.metric, only)
        exposure_id = service.expose(experiment, arm.name, q.unit_id, query_id, q.k, version.name, shown)
        model, metric = arm.model, arm.metric
        block = {"name": experiment.name, "arm": arm.name, "exposure_id": exposure_id, "teams": None}
    request.scope[SCOPE_LABELS] = (model, metric)
    body = neighbour_body(version, query, model, metric, q.k, neighbours, **extra)
    body["experiment"] = block
    return json_response(body, version.name)
