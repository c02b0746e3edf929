"""GET /models/{model}/gauge and GET /evaluation: is a model's cosine meaningful, and which similarity to serve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app.plumbing.metrics import VERSION_HEADER
from app.plumbing.problems import ProblemError
from app.plumbing.query_route import QueryModelRoute, json_response, require_model
from app.query.documents import version_document
from app.routers.neighbours import current_version
from app.schemas.common import NOT_READY, Problem, ValidationProblem
from app.schemas.quality import EvaluationQuery, EvaluationResponse, GaugeResponse
from models.evaluation.report import format_evaluation

router = APIRouter(tags=["quality"])
evaluation_router = APIRouter(route_class=QueryModelRoute, tags=["quality"])


@router.get(
    "/models/{model}/gauge",
    response_model=GaugeResponse,
    responses={
        404: {"model": Problem, "description": "The served version has no gauge probe (built with --gauge-transforms 0)."},
        422: {"model": ValidationProblem, "description": "A model the served version does not have (they are listed)."},
        **NOT_READY,
    },
    summary="How arbitrary a model's cosine is: its lists under random diagonal rescalings",
    description="For P D, Q D^-1 (identical predictions) with random diagonal D, how much the served top-10 lists of each "
    "metric and side stay put: Jaccard@10 (mean, 5th percentile) and RBO. Projected cosine is invariant (1.0); "
    "cosine and dot of the raw factors are not. Computed by the build (docs/offline-job.md#the-gauge-probe).",
)
async def model_gauge(
    model: Annotated[str, Path(description="A model of the served version (GET /models).")], request: Request
) -> Response:
    version = current_version(request)
    require_model(version.models, version.name, model, where="path")
    probes = version_document(
        version, version.manifest.get("gauge"), "gauge", "has no gauge probe (built with --gauge-transforms 0)"
    )
    probe: dict[str, Any] | None = probes.get(model)
    if probe is None:  # a model added to the manifest without a probe (none is, today); say so rather than fail
        detail = f"artifact version {version.name} has no gauge probe of model {model!r}"
        raise ProblemError(404, "No gauge in this version", detail, "/problems/gauge-unavailable")
    return json_response({**probe, "model": model, "artifact_version": version.name}, version.name)


@evaluation_router.get(
    "/evaluation",
    response_model=EvaluationResponse,
    responses={
        200: {
            "content": {"text/markdown": {"schema": {"type": "string"}, "example": "| model | metric | Recall@20 | ... |"}},
            "description": "The held-out evaluation of the served version: JSON (default) or a markdown table.",
        },
        404: {"model": Problem, "description": "The served version was built without --evaluate."},
        422: {"model": ValidationProblem, "description": "Unknown format (the allowed values are listed)."},
        **NOT_READY,
    },
    summary="Which model x metric is better: held-out evaluation (the build's evaluation.json)",
    description="Every model refitted on a seeded per-user split, then per model x metric: user -> item Recall@20 and "
    "nDCG@100 (training items excluded), item -> item category precision@10, popularity ratio and catalogue coverage, "
    "and (simulation) the Spearman correlation with the true similarities; random and most-popular baselines for "
    "scale. What is served is fitted on all the data (docs/offline-job.md#held-out-evaluation).",
)
async def evaluation(q: Annotated[EvaluationQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    doc = version_document(
        version, version.manifest.get("evaluation"), "evaluation", "has no evaluation (built without --evaluate)"
    )
    if q.format == "json":
        return json_response({"artifact_version": version.name, **doc}, version.name)
    head = f"Held-out evaluation of artifact version {version.name}\n\n"
    return Response(
        head + format_evaluation(doc) + "\n", media_type="text/markdown; charset=utf-8", headers={VERSION_HEADER: version.name}
    )
