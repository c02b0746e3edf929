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
