"""POST /feedback, GET /experiments and GET /experiments/{name}/report: the online side of the experiments."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.experiments.event_log import EventLogParams
from app.experiments.events import Feedback, StoreUnavailable
from app.experiments.report import experiment_report, format_report
from app.experiments.service import ExperimentsService
from app.plumbing.auth import require_token
from app.plumbing.json_body import json_body_route
from app.plumbing.problems import ProblemError
from app.plumbing.query_route import invalid, json_response
from app.schemas.common import NOT_READY, Problem, ValidationProblem
from app.schemas.experiments import ExperimentsResponse, FeedbackAccepted, FeedbackBody, ReportResponse

router = APIRouter(tags=["experiments"])
# seconds between looks for an exposure the database does not have yet (another worker's, written within its
# writer's flush interval); the last look is 7 intervals after the first, then the exposure is unknown
UNKNOWN_EXPOSURE_RETRIES = tuple(EventLogParams().flush_interval * f for f in (1, 2, 4))
# ~10x the largest valid body (every field at its bound, each character \u-escaped as a surrogate pair: ~6 KB)
MAX_FEEDBACK_BYTES = 64 * 1024
bearer = HTTPBearer(auto_error=False, description="ADMIN_TOKEN of the server (reports, when ADMIN_TOKEN is set).")


def _service(request: Request) -> ExperimentsService:
    service = request.app.state.experiments
    if service is None:
        raise ProblemError(
            404, "No experiments", "this server runs no experiments (EXPERIMENTS_FILE is unset)", "/problems/no-experiments"
        )
    return service


async def feedback(body: FeedbackBody, request: Request) -> Response:
    service = _service(request)
    validated, shown = True, None
    try:
        # another worker's exposure reaches the database within its writer's flush interval: look a few times
        for wait in (0.0, *UNKNOWN_EXPOSURE_RETRIES):
            await asyncio.sleep(wait)
            shown = await asyncio.to_thread(service.shown_in, body.exposure_id)
            if shown is not None:
                break
    except StoreUnavailable:
        shown, validated = None, False  # the database is down: never fail the request, keep the event
    if validated:
        if shown is None:
            raise invalid("exposure_id", f"unknown exposure {body.exposure_id!r}", body.exposure_id, where="body")
        if body.item_id not in shown:
            raise invalid(
                "item_id", f"item {body.item_id!r} was not shown in exposure {body.exposure_id!r}", body.item_id, where="body"
            )
    service.give_feedback(Feedback(body.exposure_id, body.item_id, body.event, body.value, body.event_id, time.time()))
    accepted = {"accepted": True, "exposure_id": body.exposure_id, "event_id": body.event_id, "validated": validated}
    return json_response(accepted, None, status_code=202)


router.add_api_route(
    "/feedback",
    feedback,
    methods=["POST"],
    route_class_override=json_body_route(MAX_FEEDBACK_BYTES),
    status_code=202,
    response_model=FeedbackAccepted,
    summary="Record an event (click, conversion, ...) on an item an experiment response showed",
    description="Accepted (202) and queued for the events database off the request path. Refused (422, naming the "
    "field) when the exposure is unknown or the item was not shown in it. Repeating an `event_id` is idempotent. "
    "Anyone holding an exposure id may post feedback for it: exposure ids (the time, then 64 random bits) are handed only to "
    f"the client that received the response. The body is a JSON object of at most {MAX_FEEDBACK_BYTES} bytes, sent as "
    "`application/json`.",
    responses={
        400: {"model": Problem, "description": "The body is not JSON."},
        404: {"model": Problem, "description": "This server runs no experiments (EXPERIMENTS_FILE is unset)."},
        413: {"model": Problem, "description": f"The body is larger than {MAX_FEEDBACK_BYTES} bytes."},
        415: {"model": Problem, "description": "The body is not sent as `application/json`."},
        422: {
            "model": ValidationProblem,
            "description": "Unknown exposure, an item it did not show, a bad field; an empty body or one that is not "
            "a JSON object (`body`).",
        },
    },
)


@router.get(
    "/experiments",
    response_model=ExperimentsResponse,
    summary="The experiments this server runs, and the state of their file and events",
    responses=NOT_READY,
)
async def list_experiments(request: Request) -> Response:
    service = request.app.state.experiments
    if service is None:
        return json_response({"configured": False, "experiments": [], "status": None}, None)
    experiments = [
        {
            "name": e.name,
            "endpoint": e.endpoint,
            "salt": e.salt,
            "mode": e.mode,
            "arms": [dataclasses.asdict(a) for a in e.arms],
            "report": f"/experiments/{e.name}/report",
        }
        for e in service.current.experiments
    ]
    return json_response({"configured": True, "experiments": experiments, "status": service.status()}, None)


@router.get(
    "/experiments/{name}/report",
    response_model=ReportResponse,
    summary="Per-arm units, exposures, events, CTR with intervals, lift, sample-ratio check (and interleaving)",
    description="From the events database. When ADMIN_TOKEN is set the report needs `Authorization: Bearer "
    "ADMIN_TOKEN` (results are for the team running the experiment); `?format=markdown` for tables.",
    responses={
        401: {"model": Problem, "description": "ADMIN_TOKEN is set and the token is missing or wrong."},
        404: {"model": Problem, "description": "No such experiment (or no experiments)."},
        422: {"model": ValidationProblem, "description": "A bad `format`."},
        503: {"model": Problem, "description": "The events database is unreachable."},
    },
)
async def report(
    request: Request,
    name: Annotated[str, Path(description="An experiment of GET /experiments.")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    format: Annotated[str, Query(pattern="^(json|markdown)$", description="json (default) or markdown.")] = "json",
) -> Response:
    token = request.app.state.settings.admin_token
    if token:  # reports are open when no ADMIN_TOKEN is set (docs/experiments.md)
        require_token(token, credentials, "reports", "reports need the bearer token (ADMIN_TOKEN)")
    service = _service(request)
    experiment = service.current.by_name.get(name)
    if experiment is None:
        raise ProblemError(
            404, "Unknown experiment", f"no experiment {name!r} (see /experiments)", "/problems/unknown-experiment"
        )
    try:
        body = await asyncio.to_thread(experiment_report, experiment, service.store)
    except StoreUnavailable as e:
        raise ProblemError(503, "Events database unavailable", str(e), "/problems/events-unavailable") from e
    if format == "markdown":
        return PlainTextResponse(format_report(body), media_type="text/markdown")
    return json_response(body, None)
