"""Fault 4: hostile input against `python -m app` (2 workers, ADMIN_TOKEN set so /admin/reload exists, on
the session's diagnostics artifact so /figures has files to guard). Never a 500; every error is
application/problem+json, including the ones the HTTP layer answers (malformed requests, oversized
request heads: app.plumbing.limits).

- schemathesis (v4) on the schema the server serves, positive and negative data, NUL bytes allowed,
  HOSTILE_MAX_EXAMPLES (default 300) per operation. tests/api/test_contract.py checks conformance to the
  checked-in schema with a small budget; this one checks robustness with a large one (slow: through the
  real HTTP stack, which is the point, so there is no in-process twin).
- hand-written cases: huge / negative / non-numeric k, 100 KB and unicode ids, repeated and unknown
  parameters, path tricks in every parameter and in the path, over-long URLs and headers (and that a
  worker does not grow from them), large bodies, malformed HTTP, and the admin token.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection
from support.artifacts import ApiArtifact
from support.problems import PROBLEM, assert_problem
from support.processes import memory, worker_processes
from support.servers import ApiServer, start_api_server, wait_serving

from app.settings import MAX_HEAD_BYTES, MAX_URL_BYTES

MAX_EXAMPLES = int(os.environ.get("HOSTILE_MAX_EXAMPLES", "300"))
TOKEN = "rel-test-token-0123456789abcdef"
WORKERS = 2
ENDPOINTS = [("/similar-items", "item_id"), ("/similar-users", "user_id"), ("/recommend", "user_id")]
TRAVERSALS = [
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2fCURRENT",  # sent percent-encoded once more: the app sees the %2f literally
    "%2e%2e/%2e%2e/CURRENT",
    "/etc/passwd",
    "....//....//CURRENT",
    "..\\..\\CURRENT",
    "CURRENT",
    "manifest.json",
    "versions/../CURRENT",
    "a\x00b",
    "\x00",
    "../manifest.json\x00.png",
]


@pytest.fixture(scope="module")
def server(diag_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with start_api_server(
        diag_artifact.root, tmp_path_factory.mktemp("hostile"), workers=WORKERS, RELOAD_INTERVAL="0", ADMIN_TOKEN=TOKEN
    ) as server:
        wait_serving(server, diag_artifact.version, WORKERS)
        yield server


def raw_request(server: ApiServer, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are on a fresh connection; (status, headers, body) of the first response."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)  # the server may answer and close before reading everything: read its answer
        f = s.makefile("rb")
        status_line = f.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = f.read(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


def assert_raw_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> dict:
    got, headers, body = answer
    assert got == status, (got, body[:300])
    assert headers["content-type"].startswith(PROBLEM), headers
    doc = json.loads(body)
    assert doc["status"] == status and doc["detail"], doc
    return doc


# --------------------------------------------------------------------------- schemathesis, large budget


def served_schema() -> dict:
    """The schema a server with an admin token serves (built from the app, as /openapi.json does)."""
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings(admin_token=TOKEN)).openapi()


# schemathesis.pytest.from_fixture would take it from the running server, but does not work with pytest 9
# (schemathesis 4.32.5 reads Function._nodeid); test_the_fuzzed_schema_is_the_served_one checks the equality.
schema = schemathesis.openapi.from_dict(served_schema())
schema.config.generation.update(allow_x00=True, max_examples=MAX_EXAMPLES)


def errors_are_problems(ctx, response, case) -> None:
    """Every 4xx/5xx is an RFC 9457 problem document whose status is the response's."""
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith(PROBLEM), (response.status_code, response.headers)
        assert response.json()["status"] == response.status_code


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_and_errors_are_problems(case, server):
    case.call_and_validate(base_url=server.base_url, checks=[not_a_server_error, errors_are_problems, negative_data_rejection])


def test_the_fuzzed_schema_is_the_served_one(server):
    served = server.client.get("/openapi.json").json()
    assert served == served_schema()
    assert {"/similar-items", "/similar-users", "/recommend", "/admin/reload", "/figures/{name}"} <= set(served["paths"])


# --------------------------------------------------------------------------- k


@pytest.mark.parametrize(
    "k",
    [
        "0",
        "-1",
        "-9223372036854775809",
        "1001",
        "9" * 400,
        "1e400",
        "1e3",
        "NaN",
        "inf",
        "-inf",
        "2.5",
        "",
        " ",
        "ten",
        "0x10",
        "\x00",
        "1\x00",
        "١٠",
    ],
)
@pytest.mark.parametrize("path,param", ENDPOINTS)
def test_bad_k_is_a_422_naming_k(server, diag_artifact, path, param, k):
    some_id = "i1" if param == "item_id" else "u1"
    body = assert_problem(server.client.get(path, params={param: some_id, "k": k}), 422)
    assert body["type"] == "/problems/invalid-parameters" and [e["param"] for e in body["errors"]] == ["k"]


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize("path,param", ENDPOINTS)
@pytest.mark.parametrize(
    "value",
    [
        "é中文🙂",
        "\u202eevil",
        "e\u0301",
        "\u200b",
        "\ufeffi1",
        "i1\r\nSet-Cookie: a=b",
        "<script>alert(1)</script>",
        "i1' OR '1'='1",
        "%",
        "%%32%35",
        "x" * 10_000,
        " i1",
        "I1",
    ],
)
def test_odd_ids_are_unknown_not_errors(server, path, param, value):
    r = server.client.get(path, params={param: value})
    body = assert_problem(r, 404)
    assert body[param] == value and "set-cookie" not in r.headers  # echoed as data, never as a header


@pytest.mark.parametrize("path,param", ENDPOINTS)
def test_invalid_utf8_in_an_id_is_not_an_error(server, path, param):
    r = server.client.get(f"{path}?{param}=%ED%A0%80%FF%C0%AF")  # lone surrogate, 0xFF, overlong '/'
    assert_problem(r, 404)


@pytest.mark.parametrize("path,param", ENDPOINTS)
@pytest.mark.parametrize("value", ["i" * 100_000, "é" * 50_000])
def test_a_100_kb_id_is_a_414(server, path, param, value):
    # raw: httpx itself refuses to send a URL this long
    target = f"{path}?{param}={quote(value)}"
    answer = raw_request(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = assert_raw_problem(answer, 414)
    assert body["type"] == "/problems/request-too-large" and str(MAX_URL_BYTES) in body["detail"]
    assert body["instance"] == path and answer[1]["connection"] == "close"


def test_ids_up_to_the_url_bound_are_served(server):
    r = server.client.get("/similar-items", params={"item_id": "i" * (MAX_URL_BYTES - 100)})
    assert_problem(r, 404)  # an unknown id, answered by the app: the bound is not below what it says


# --------------------------------------------------------------------------- parameters


def test_repeated_parameters_take_the_last_value(server):
    r = server.client.get("/similar-items?item_id=nope&item_id=i1&k=1&k=3&metric=dot&metric=cosine")
    body = r.json()
    assert r.status_code == 200 and (body["item_id"], body["k"], body["metric"]) == ("i1", 3, "cosine")
    r = server.client.get("/similar-items?" + "&".join(["k=2"] * 2000) + "&item_id=i1")  # 8 KB of repeats
    assert r.status_code == 200 and r.json()["k"] == 2


def test_unknown_parameters_are_ignored(server):
    plain = server.client.get("/similar-items", params={"item_id": "i1", "k": 4}).json()
    noisy = server.client.get(
        "/similar-items", params={"item_id": "i1", "k": 4, "foo": "bar", "../x": "../y", "__proto__": "1", "ITEM_ID": "i2"}
    ).json()
    assert noisy == plain


@pytest.mark.parametrize(
    "path", ["/similar-items", "/similar-users", "/recommend", "/compare-metrics", "/compare-metrics/summary", "/items/search"]
)
def test_path_tricks_in_every_parameter_are_plain_bad_values(server, path):
    for param in ("item_id", "user_id", "model", "metric", "k", "exclude_seen", "q", "limit", "format", "compare", "a", "b"):
        for value in TRAVERSALS:
            r = server.client.get(path, params={"item_id": "i1", "user_id": "u1", param: value})
            where = (path, param, value, r.status_code, r.text[:200])
            assert r.status_code in (200, 404, 422), where
            assert b"root:" not in r.content and b"schema_version" not in r.content, where  # no file's content leaks
            if r.status_code != 200:
                assert_problem(r, r.status_code)


@pytest.mark.parametrize(
    "name",
    [quote(t, safe="") for t in TRAVERSALS]
    + TRAVERSALS[:3]
    + ["..", ".", "%2e%2e", "..%2f..%2fCURRENT", "heatmaps.png%00", "heatmaps.png/..", "manifest.json", "%2fetc%2fpasswd"],
)
def test_path_tricks_in_the_figure_name_are_404(server, name):
    # raw: an HTTP client would normalise the dot segments away before sending
    status, headers, body = raw_request(server, f"GET /figures/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b"schema_version" not in body and not body.startswith(b"\x89PNG"), (status, body[:200])
    assert status in (400, 404), (status, body[:200])
    assert headers["content-type"].startswith(PROBLEM)


def test_a_listed_figure_is_served(server):
    # Control for the test above: figures do exist on this server, and only listed names reach them.
    figures = server.client.get("/figures").json()["figures"]
    assert figures
    r = server.client.get(figures[0]["url"])
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/similar-items/..%2f..%2fCURRENT",
        "/figures/../../CURRENT",
        "/figures/..%2F..%2Fmanifest.json",
        "/static/../app/settings.py",
        "//etc/passwd",
        "/%00",
        "/models%00",
        "/similar-items;item_id=i1",
        "http://evil.example/models",
        "*",
    ],
)
def test_path_tricks_in_the_request_target(server, target):
    status, headers, body = raw_request(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status in (200, 400, 404, 405), (status, body[:300])
    assert b"root:" not in body and b"schema_version" not in body
    if status != 200:
        assert headers["content-type"].startswith(PROBLEM), (status, headers)


# --------------------------------------------------------------------------- request size bounds


def test_oversized_heads_are_414_or_431_and_cost_the_worker_nothing(server):
    workers = worker_processes(server)
    before = {p.pid: memory(p).rss for p in workers}
    for _ in range(3):  # 3 x (every worker may take it) x 20 MB
        assert_raw_problem(
            raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000_000 + b"\r\n\r\n"), 431
        )
        assert_raw_problem(raw_request(server, b"GET /healthz?x=" + b"a" * 20_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 414)
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))  # 20,000 small headers
        assert_raw_problem(raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"), 431)
    after = {p.pid: memory(p).rss for p in workers}
    for pid in before:  # a worker that buffered one of those heads would have grown by >= 20 MB
        assert after[pid] - before[pid] < 8 << 20, (pid, before[pid] >> 20, after[pid] >> 20)
    assert server.client.get("/healthz").status_code == 200


def test_heads_just_under_the_bound_are_served(server):
    headers = {f"x-pad-{i}": "v" * 1000 for i in range((MAX_HEAD_BYTES - 2000) // 1020)}
    assert server.client.get("/healthz", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "method,path", [("POST", "/admin/reload"), ("GET", "/similar-items?item_id=i1"), ("POST", "/similar-items?item_id=i1")]
)
def test_large_bodies_are_not_buffered(server, method, path):
    workers = worker_processes(server)
    before = {p.pid: memory(p).rss for p in workers}
    r = httpx.request(method, server.base_url + path, content=b"z" * 20_000_000, timeout=30)
    assert r.status_code in (200, 401, 405), r.status_code
    if r.status_code != 200:
        assert_problem(r, r.status_code)
    after = {p.pid: memory(p).rss for p in workers}
    for pid in before:
        assert after[pid] - before[pid] < 8 << 20, (pid, before[pid] >> 20, after[pid] >> 20)


@pytest.mark.parametrize(
    "data",
    [
        b"FOO /models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /mo\x00dels HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /models HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /models HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"GET /models HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"GET /models HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /models HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
    ],
)
def test_malformed_http_is_a_400_problem(server, data):
    assert_raw_problem(raw_request(server, data), 400)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"])
def test_other_methods_are_405_problems(server, method):
    assert_problem(server.client.request(method, "/similar-items", params={"item_id": "i1"}), 405)


# --------------------------------------------------------------------------- the admin token


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN[:8]}",
        "Bearer " + "x" * 10_000,
        f"Bearer {TOKEN}\u00e9",
        "Bearer \u00ff\u00fe",
        f"Token {TOKEN}",
    ],
)
def test_admin_reload_without_the_exact_token_is_401(server, authorization):
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    r = server.client.post("/admin/reload", headers=headers, params={"token": TOKEN})  # never read from the query
    body = assert_problem(r, 401)
    assert body["type"] == "/problems/unauthorized" and r.headers["www-authenticate"].startswith("Bearer")


def test_admin_reload_with_the_token(server):
    r = server.client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["changed"] is False


@pytest.mark.parametrize("token", [None, ""])
def test_admin_endpoint_does_not_exist_without_a_token(api_artifact, tmp_path, token):
    env = {} if token is None else {"ADMIN_TOKEN": token}
    with start_api_server(api_artifact.root, tmp_path, workers=1, RELOAD_INTERVAL="0", **env) as s:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer anything"}):
            assert_problem(s.client.post("/admin/reload", headers=headers), 404)
        assert "/admin/reload" not in s.client.get("/openapi.json").json()["paths"]
