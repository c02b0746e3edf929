"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Body: {"type", "title", "status", "detail", "instance", "artifact_version", ...extensions}.
Problem types are relative URIs under /problems/ (documented in docs/api.md#errors); framework
errors without a specific type (unknown route, wrong method) use "about:blank".
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.plumbing.metrics import VERSION_HEADER
from app.serving.milvus_search import BackendUnavailable
from app.serving.version import NotLoaded, Unavailable, UnknownId

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("app.plumbing.problems")


class ProblemError(Exception):
    """Raise from an endpoint to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        type_: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    version: str | None = None,
    **extensions: Any,
) -> Response:
    """A problem+json response naming the artifact version (the live one unless given)."""
    if version is None:
        live = request.app.state.holder.current
        version = live.name if live else None
    return problem_json(problem_body(status, title, detail, type_, request.url.path, version, **extensions), headers)


def problem_json(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """A problem document (problem_body) as its response, with the artifact-version header of the version it names."""
    out_headers = dict(headers or {})
    if body["artifact_version"] is not None:
        out_headers[VERSION_HEADER] = body["artifact_version"]
    return Response(orjson.dumps(body), status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=out_headers)


def validation_errors(
    errors: Sequence[Mapping[str, Any]], allowed: Mapping[str, Sequence[Any]] | None = None
) -> list[dict[str, Any]]:
    """FastAPI/pydantic error dicts -> [{"param", "in", "message", "type", "input"?, "allowed"?}]."""
    out = []
    for e in errors:
        raw = tuple(e.get("loc", ()))
        loc = [str(x) for x in raw]
        where = loc[0] if len(loc) > 1 else "query"
        # ("query", "models", 1): models. List positions are ints; a body key "0" is a str and is kept.
        names = [str(x) for x in raw[1:] if not isinstance(x, int)] if len(raw) > 1 else loc
        param = encodable_text(names[-1]) if names else ""
        item: dict[str, Any] = {
            "param": param,
            "in": where,
            "message": encodable_text(str(e.get("msg", "invalid"))),
            "type": e.get("type", "value_error"),
        }
        value = e.get("input")
        if e.get("type") != "missing" and isinstance(value, str | int | float | bool):
            # a JSON body can hold what the problem document's encoder (orjson) cannot: an integer past 64 bits
            # (left out of the echo; the message still says what is wrong) and a lone surrogate (escaped)
            if isinstance(value, str):
                item["input"] = encodable_text(value)
            elif not isinstance(value, int) or isinstance(value, bool) or -(1 << 63) <= value < 1 << 64:
                item["input"] = value
        if allowed and param in allowed:
            item["allowed"] = list(allowed[param])
        out.append(item)
    return out


def encodable_text(text: str) -> str:
    """`text` with lone surrogates as backslash escapes (the only code points UTF-8 cannot encode)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def literal_choices(model: type) -> dict[str, list[Any]]:
    """{field name: allowed values} for the Literal-typed fields of a pydantic model."""
    out = {}
    for name, f in model.model_fields.items():  # type: ignore[attr-defined]
        if typing.get_origin(f.annotation) is typing.Literal:
            out[name] = list(typing.get_args(f.annotation))
        else:  # Literal | None, list[Literal] (a repeatable parameter), list[Literal] | None
            inner = [a for arg in typing.get_args(f.annotation) for a in (arg, *typing.get_args(arg))]
            literal = next((a for a in inner if typing.get_origin(a) is typing.Literal), None)
            if literal is not None:
                out[name] = list(typing.get_args(literal))
    return out


def problem_body(
    status: int, title: str, detail: str, type_: str, instance: str, version: str | None, **extensions: Any
) -> dict[str, Any]:
    """The problem document: type, title, status, detail, instance (the request path), artifact_version, extensions."""
    return {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "artifact_version": version,
        **extensions,
    }


def unknown_id_body(exc: UnknownId, instance: str) -> dict[str, Any]:
    """The 404 problem of an item or user id the served version does not have (also a batch entry's)."""
    kind = "item" if exc.side == "items" else "user"
    extension: dict[str, Any] = {f"{kind}_id": exc.external_id}
    return problem_body(404, f"Unknown {kind}", str(exc), f"/problems/unknown-{kind}", instance, exc.version, **extension)


def install(app: FastAPI) -> None:
    """Exception handlers turning every error into problem+json (never a 500 for bad input)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        allowed = getattr(exc, "allowed", None)
        errors = validation_errors(exc.errors(), allowed)
        detail = "; ".join(
            f"{e['param']}: {e['message']}" + (f" (allowed: {', '.join(map(str, e['allowed']))})" if "allowed" in e else "")
            for e in errors
        )
        return problem_response(request, 422, "Invalid request parameters", detail, "/problems/invalid-parameters", errors=errors)

    @app.exception_handler(UnknownId)
    async def _unknown(request: Request, exc: UnknownId) -> Response:
        return problem_json(unknown_id_body(exc, request.url.path))

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> Response:
        return problem_response(request, 404, "Index not in this version", str(exc), "/problems/index-unavailable")

    @app.exception_handler(NotLoaded)
    async def _not_loaded(request: Request, exc: NotLoaded) -> Response:
        holder = request.app.state.holder
        return problem_response(
            request,
            503,
            "No artifact version loaded",
            str(exc),
            "/problems/not-ready",
            headers={"Retry-After": "5"},
            last_refusal=refusal_dict(holder.last_refusal),
        )

    @app.exception_handler(BackendUnavailable)
    async def _backend(request: Request, exc: BackendUnavailable) -> Response:
        return problem_response(
            request,
            503,
            "Vector backend unavailable",
            str(exc),
            "/problems/vector-backend-unavailable",
            headers={"Retry-After": "1"},
            backend="milvus",
        )

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(request, exc.status, exc.title, exc.detail, exc.type, exc.headers, **exc.extensions)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(request, exc.status_code, title, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(request, 500, "Internal Server Error", "unexpected server error; see the server log")


def refusal_dict(refusal: Any) -> dict[str, Any] | None:
    if refusal is None:
        return None
    return {"version": refusal.version, "reason": refusal.reason, "at": refusal.at, "trigger": refusal.trigger}
