"""POST /feedback, GET /experiments and GET /experiments/{name}/report: the online side of the experiments."""

from __future__ import annotations

import asyncio
import dataclasses
import email.message
import json
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.experiments.event_log import EventLogParams
from app.experiments.events import Feedback, StoreUnavailable
from app.experiments.report import experiment_report, format_report
from app.experiments.service import ExperimentsService
from app.plumbing.auth import require_token
from app.plumbing.problems import ProblemError, encodable_text
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


class JsonBodyRoute(APIRoute):
    """A route whose body is read and checked before FastAPI parses and validates it, so that no body is buffered
    past MAX_FEEDBACK_BYTES and every refusal says what is wrong (FastAPI's own are a bare 400, or a 422 naming
    no parameter):

        413  more than MAX_FEEDBACK_BYTES, declared (refused unread) or sent (refused at the bound)
        415  a body whose content type is not application/json (or application/*+json), or has none
        400  not JSON: bad syntax, not UTF-8/16/32, nested too deeply
        422  an empty body, or JSON that is not an object: `errors` names `body`; a field holding an integer
             past 64 bits: `errors` names the field (its error would echo a value no problem document holds)

    FastAPI then validates the fields of the object as usual (422, `errors` naming each field).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            body = await bounded_body(request, MAX_FEEDBACK_BYTES)
            check_json_object(request.headers.get("content-type"), body)
            return await handler(Request(request.scope, replay(body, request.receive)))

        return checked


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, read up to `limit` bytes; a 413 problem beyond (a declared length is refused unread)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ProblemError(400, "Bad Request", "the client disconnected before the end of the body") from None
    return b"".join(chunks)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Content Too Large", f"the body is larger than {limit} bytes", "/problems/request-too-large")


def check_json_object(content_type: str | None, body: bytes) -> None:
    """Problems for a body that is not a JSON object (what FastAPI would parse and hand to the model)."""
    if not body:
        raise invalid("body", "required: a JSON object (see the schema)", None, where="body")
    if not _is_json(content_type):
        sent = f"it is sent as {content_type}" if content_type else "it has no content type"
        raise ProblemError(415, "Unsupported Media Type", f"the body must be sent as application/json ({sent})")
    try:
        value = json.loads(body)  # what FastAPI parses the body with (NaN and Infinity are then refused by field)
    except json.JSONDecodeError as e:
        raise _not_json(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise _not_json(f"not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except RecursionError:
        raise _not_json("nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise _not_json(str(e)) from None
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise invalid("body", f"Input should be a JSON object, not {kind}", None, where="body")
    for key, field in value.items():
        # a value that is not Unicode is refused by its field; a key would be named by nothing
        if encodable_text(key) != key:
            raise invalid("body", f"the key {encodable_text(key)!r} is not Unicode (a lone surrogate escape)", None, where="body")
        # a field's error echoes its value, and a problem document cannot carry an integer past 64 bits (orjson)
        if isinstance(field, int) and not isinstance(field, bool) and not -(2**63) <= field < 2**63:
            raise invalid(key, "Input should be a number within 64 bits (this integer is larger)", None, where="body")


def _is_json(content_type: str | None) -> bool:
    """application/json or application/*+json, parameters aside (FastAPI's rule, without a type: not JSON)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _not_json(reason: str) -> ProblemError:
    return ProblemError(400, "Bad Request", f"the body is not readable JSON: {reason}", "/problems/malformed-request")


def replay(body: bytes, receive: Receive) -> Receive:
    """An ASGI receive that hands out `body` (already read) once, then defers to the connection's."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


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
    route_class_override=JsonBodyRoute,
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
