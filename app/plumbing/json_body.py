"""JSON request bodies read with a bound and checked before FastAPI validates them (POST /feedback, the batch
endpoints): a body past the route's bound is refused (413) without being buffered, and every refusal names
what is wrong."""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.plumbing.problems import ProblemError, encodable_text
from app.plumbing.query_route import invalid


def json_body_route(max_bytes: int) -> type[JsonBodyRoute]:
    """A JsonBodyRoute class whose bodies may hold at most `max_bytes` bytes."""
    return type(f"JsonBodyRoute{max_bytes}", (JsonBodyRoute,), {"max_bytes": max_bytes})


class JsonBodyRoute(APIRoute):
    """A route whose body is read and checked before FastAPI parses and validates it, so that no body is buffered
    past `max_bytes` (a subclass sets its own: json_body_route) and every refusal says what is wrong (FastAPI's own
    are a bare 400, or a 422 naming no parameter):

        413  more than max_bytes, declared (refused unread) or sent (refused at the bound)
        415  a body whose content type is not application/json (or application/*+json), or has none
        400  not JSON: bad syntax, not UTF-8/16/32, nested too deeply
        422  an empty body, or JSON that is not an object: `errors` names `body`; a field holding an integer
             past 64 bits: `errors` names the field (its error would echo a value no problem document holds)

    FastAPI then validates the fields of the object as usual (422, `errors` naming each field).
    """

    max_bytes = 64 * 1024

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_bytes

        async def checked(request: Request) -> Response:
            body = await bounded_body(request, limit)
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
