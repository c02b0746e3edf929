"""The one bearer-token check of the token-protected endpoints (ADMIN_TOKEN)."""

from __future__ import annotations

import hmac

from fastapi.security import HTTPAuthorizationCredentials

from app.plumbing.problems import ProblemError


def require_token(expected: str | None, credentials: HTTPAuthorizationCredentials | None, realm: str, detail: str) -> None:
    """A 401 problem unless the request's bearer token equals `expected` (compared in constant time); an
    unset or empty `expected` admits nobody."""
    given = credentials.credentials if credentials else ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ProblemError(
            401, "Unauthorized", detail, "/problems/unauthorized", headers={"WWW-Authenticate": f'Bearer realm="{realm}"'}
        )
