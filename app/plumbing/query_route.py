"""A FastAPI route class for hot GET endpoints, and the JSON response helper they share.

`QueryModelRoute` serves endpoints of the form

    async def endpoint(q: Annotated[SomeQuery, Query()], request: Request) -> Response

where SomeQuery is a pydantic model whose fields are the query parameters. FastAPI documents the
parameters from the model as usual (descriptions, examples, defaults, enums, bounds); at request time
the whole query string is validated with a single `SomeQuery.model_validate` call instead of FastAPI's
per-parameter dependency solving, which is most of the per-request cost of a fast endpoint. Same
validation rules (the model is the single source of truth), same 422 errors, same exception handlers.
Not supported on these routes: dependencies, request bodies, response_model validation (endpoints
return a ready Response; response_model is documentation only).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.plumbing.metrics import SCOPE_LABELS, VERSION_HEADER
from app.plumbing.problems import literal_choices


class QueryValidationError(RequestValidationError):
    """A 422 that also knows the allowed values of each enumerated parameter."""

    def __init__(self, errors: list[Any], allowed: dict[str, list[Any]]) -> None:
        super().__init__(errors)
        self.allowed = allowed


def json_response(body: Any, version: str | None, status_code: int = 200) -> Response:
    """orjson-encoded JSON with the artifact-version header of the version that produced it."""
    headers = {VERSION_HEADER: version} if version else None
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)


def invalid(
    param: str, message: str, value: Any, allowed: dict[str, list[Any]] | None = None, where: str = "query"
) -> QueryValidationError:
    """A 422 for one query (or path) parameter, in the same shape as a failed model validation."""
    return QueryValidationError([{"type": "value_error", "loc": (where, param), "msg": message, "input": value}], allowed or {})


def require_model(models: tuple[str, ...], version: str, model: str, param: str = "model", where: str = "query") -> None:
    """A 422 naming the models of the served version when `model` is not one of them."""
    if model not in models:
        raise QueryValidationError([_unknown_model(models, version, model, param, where)], {param: list(models)})


def _unknown_model(models: tuple[str, ...], version: str, model: str, param: str, where: str = "query") -> dict[str, Any]:
    """The error entry of a model name the served version does not have."""
    message = f"unknown model {model!r}; artifact version {version} serves {', '.join(models)}"
    return {"type": "value_error", "loc": (where, param), "msg": message, "input": model}


class QueryModelRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{endpoint.__qualname__}: QueryModelRoute endpoints must be async")
        hints = typing.get_type_hints(endpoint, include_extras=True)
        query_name = request_name = None
        query_model: type[BaseModel] | None = None
        for name in inspect.signature(endpoint).parameters:
            hint = hints.get(name)
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            if inspect.isclass(base) and issubclass(base, BaseModel):
                query_name, query_model = name, base
            elif base is Request:
                request_name = name
            else:
                raise TypeError(f"{endpoint.__qualname__}: parameter {name!r} must be the query model or the Request")
        if query_model is None or query_name is None:  # both are set together
            raise TypeError(f"{endpoint.__qualname__}: QueryModelRoute needs one pydantic query-model parameter")
        allowed = literal_choices(query_model)
        validate = query_model.model_validate
        has_labels = "model" in query_model.model_fields and "metric" in query_model.model_fields
        repeatable = [name for name, f in query_model.model_fields.items() if _is_list(f.annotation)]

        async def handler(request: Request) -> Response:
            scope = request.scope
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            raw: dict[str, Any] = dict(pairs)
            for name in repeatable:  # list fields (e.g. models=a&models=b) get every value, not the last one
                if name in raw:
                    raw[name] = [v for key, v in pairs if key == name]
            try:
                params = validate(raw)
            except ValidationError as e:
                errors = [{**err, "loc": ("query", *err["loc"])} for err in e.errors(include_url=False)]
                raise QueryValidationError(*_with_unknown_models(request, raw, errors, allowed)) from None
            if has_labels:
                scope[SCOPE_LABELS] = (params.model, params.metric)  # type: ignore[attr-defined]
            kwargs: dict[str, Any] = {query_name: params}
            if request_name:
                kwargs[request_name] = request
            return await endpoint(**kwargs)

        return handler


def _with_unknown_models(
    request: Request, raw: dict[str, Any], errors: list[Any], allowed: dict[str, list[Any]]
) -> tuple[list[Any], dict[str, list[Any]]]:
    """A request refused for another parameter also hears about its model names, as the endpoint would check them
    (require_model): every problem of the request in one 422."""
    holder = getattr(request.app.state, "holder", None)
    version = getattr(holder, "current", None)
    if version is None:
        return errors, allowed
    models: tuple[str, ...] = version.models
    named = {loc[1] for loc in (tuple(err["loc"]) for err in errors) if len(loc) > 1}
    out, allowed = list(errors), dict(allowed)
    for param in ("model", "models"):
        values = raw.get(param)
        names = values if isinstance(values, list) else [values] if isinstance(values, str) and values else []
        unknown = [name for name in names if name not in models]
        if unknown and param not in named:
            out.append(_unknown_model(models, version.name, unknown[0], param))
            allowed[param] = list(models)
    return out, allowed


def _is_list(annotation: Any) -> bool:
    """list[...] or list[...] | None: a repeatable query parameter."""
    if typing.get_origin(annotation) is list:
        return True
    return any(typing.get_origin(arg) is list for arg in typing.get_args(annotation))
