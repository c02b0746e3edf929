"""RFC 9457 problem documents, the API's error bodies."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status; returns its body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and isinstance(body["title"], str) and isinstance(body["detail"], str), body
    return body


# What schemathesis' negative_data_rejection check accepts as a rejection of invalid data: its defaults plus 414, which
# the server answers before reading any parameter when the request target exceeds MAX_URL_BYTES (1,001 `exclude` ids).
REJECTED_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429", "5xx"]
