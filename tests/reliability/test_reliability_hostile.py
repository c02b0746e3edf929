"""Fault 4: hostile input against `python -m app` (2 workers, ADMIN_TOKEN set so /admin/reload exists, on
the session's diagnostics artifact so /figures has files to guard, with an experiments file of one A/B
experiment per neighbour endpoint and one interleave experiment, and an SQLite events database). Never a
500; every error is application/problem+json, including the ones the HTTP layer answers (malformed
requests, oversized request heads: app.plumbing.limits).

- schemathesis (v4) on the schema the server serves, positive and negative data, NUL bytes allowed,
  HOSTILE_MAX_EXAMPLES (default 300) per operation. tests/api/test_contract.py checks conformance to the
  checked-in schema with a small budget; this one checks robustness with a large one (slow: through the
  real HTTP stack, which is the point, so there is no in-process twin). Random strings never name an
  experiment, an exposure or an id, so most positive cases of those operations are steered there: valid
  experiment names (and known ids) on the neighbour endpoints, real exposure ids and shown items in
  POST /feedback, listed names and the token on the reports, known ids in most batch entries; a test checks
  that the fuzz got there.
- hand-written cases: huge / negative / non-numeric k, 100 KB and unicode ids, repeated and unknown
  parameters, path tricks in every parameter and in the path, over-long URLs and headers (and that a
  worker does not grow from them), large bodies, malformed HTTP, and the admin token.
- the batch endpoints: hostile entries among good ones (path tricks, NUL, unicode, 10 KB ids: each entry's own
  404, the others answered), hostile bodies (deep nesting, huge numbers, duplicate keys, nulls, wrong shapes,
  1,001 queries) and hostile filters.
- the experiments: hostile POST /feedback bodies (not JSON, wrong types, NaN, nulls, long and unicode
  strings, unknown fields, wrong content types, empty and oversized bodies), exposure ids that are not
  ids, hostile `experiment` and `unit_id` values, experiment together with model or metric, hostile
  report names and formats, and the report's token. Each names what is wrong, and the server serves on.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import socket
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection
from support.artifacts import ApiArtifact
from support.problems import PROBLEM, REJECTED_STATUSES, assert_problem
from support.processes import memory, worker_processes
from support.prometheus import metric
from support.servers import ApiServer, metrics_text, start_api_server, wait_serving

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
# One A/B experiment per neighbour endpoint (a three-armed one on /recommend) and one interleave experiment, on the
# diagnostics artifact's models (denoising-symmetric, weight-decay, als) and metrics.
EXPERIMENTS_TOML = """
[[experiment]]
name = "items-ab"
endpoint = "similar-items"
salt = "hostile-1"
mode = "ab"
arms = [
  { name = "cosine",    model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]

[[experiment]]
name = "users-ab"
endpoint = "similar-users"
salt = "hostile-2"
mode = "ab"
arms = [
  { name = "cosine",   model = "weight-decay", metric = "cosine",   weight = 1 },
  { name = "whitened", model = "weight-decay", metric = "whitened", weight = 1 },
]

[[experiment]]
name = "rec-ab"
endpoint = "recommend"
salt = "hostile-3"
mode = "ab"
arms = [
  { name = "dot",       model = "denoising-symmetric", metric = "dot",       weight = 2 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
  { name = "als",       model = "als",                 metric = "dot",       weight = 1 },
]

[[experiment]]
name = "rec-interleave"
endpoint = "recommend"
salt = "hostile-4"
mode = "interleave"
arms = [
  { name = "dot",       model = "weight-decay", metric = "dot",       weight = 1 },
  { name = "projected", model = "weight-decay", metric = "projected", weight = 1 },
]
"""
EXPERIMENTS = {"items-ab": "/similar-items", "users-ab": "/similar-users", "rec-ab": "/recommend", "rec-interleave": "/recommend"}
QUERY_ID = {"/similar-items": "item_id", "/similar-users": "user_id", "/recommend": "user_id"}
BATCH = {"/similar-items/batch": "item_id", "/recommend/batch": "user_id"}
EXPOSURE_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def server(diag_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "experiments.toml").write_text(EXPERIMENTS_TOML)
    experiments = {
        "EXPERIMENTS_FILE": str(root / "experiments.toml"),
        "EVENTS_DB": f"sqlite://{(root / 'events' / 'events.db').resolve()}",
        "EVENTS_DIR": str(root / "events"),
    }
    with start_api_server(
        diag_artifact.root, root, workers=WORKERS, RELOAD_INTERVAL="0", ADMIN_TOKEN=TOKEN, **experiments
    ) as server:
        wait_serving(server, diag_artifact.version, WORKERS)
        yield server


@dataclass(frozen=True)
class Exposed:
    """One experiment response: its exposure id and the ids it showed (items, or users on /similar-users)."""

    experiment: str
    exposure_id: str
    shown: tuple[str, ...]


def expose(server: ApiServer, experiment: str, unit: str, query_id: str = "", k: int = 5) -> Exposed:
    """GET the experiment's endpoint for `unit` (query id: i<n> / u<n> from the unit's number unless given)."""
    path = EXPERIMENTS[experiment]
    param = QUERY_ID[path]
    query_id = query_id or f"{param[0]}{int(unit.rsplit('-', 1)[1]) % 100}"
    r = server.client.get(path, params={param: query_id, "experiment": experiment, "unit_id": unit, "k": k})
    assert r.status_code == 200, (experiment, r.status_code, r.text[:300])
    block = r.json()["experiment"]
    assert block["name"] == experiment and EXPOSURE_ID.match(block["exposure_id"]), block
    ids = tuple(n["user_id" if path == "/similar-users" else "item_id"] for n in r.json()["neighbors"])
    return Exposed(experiment, block["exposure_id"], ids)


# Real exposures for the fuzz's POST /feedback cases: filled by the `exposures` fixture of the fuzz test.
EXPOSURES: list[Exposed] = []


@pytest.fixture(scope="module")
def exposures(server: ApiServer) -> list[Exposed]:
    if not EXPOSURES:
        EXPOSURES.extend(expose(server, name, f"fuzz-unit-{i}") for name in EXPERIMENTS for i in range(3))
    return EXPOSURES


def assert_serving(server: ApiServer) -> None:
    """After a hostile request: a plain query and an experiment query are still answered."""
    assert server.client.get("/similar-items", params={"item_id": "i1", "k": 3}).status_code == 200
    expose(server, "items-ab", "after-hostile-1")


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
schema.config.checks.negative_data_rejection.expected_statuses = REJECTED_STATUSES


def errors_are_problems(ctx, response, case) -> None:
    """Every 4xx/5xx is an RFC 9457 problem document whose status is the response's."""
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith(PROBLEM), (response.status_code, response.headers)
        assert response.json()["status"] == response.status_code


# What the steered fuzz cases got: (operation path, "exposure" for an experiment response, else the status).
REACHED: collections.Counter[tuple[str, str]] = collections.Counter()
REPORT = "/experiments/{name}/report"


def steer(case: Any) -> None:
    """Steer most positive cases of the experiment operations to where random strings never go: a valid experiment
    name (a known id, a unit, no model or metric) on the neighbour endpoints, a real exposure id and an item it
    showed in POST /feedback, a listed name and the token on the report. The rest stay as generated: unknown names
    and exposures (those cost 0.7 s of look-ups each, so they are rare), items not shown, model or metric given
    too, no token. Done when the case is called (the coverage phase's cases are made at collection, before the
    exposures exist); the choice is a hash of the generated case, so a case is steered the same way every time.
    Steered values are valid for the schema: a case stays positive."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    path = case.operation.path
    rng = random.Random(zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()))
    if path in QUERY_ID and (choice := rng.randrange(4)):
        names = [name for name, endpoint in EXPERIMENTS.items() if endpoint == path]
        param = QUERY_ID[path]
        query = {k: v for k, v in (case.query or {}).items() if choice == 3 or k not in ("model", "metric")}
        query.update({param: f"{param[0]}{rng.randrange(100)}", "experiment": rng.choice(names)})
        if not query.get("unit_id"):
            query["unit_id"] = f"fuzz-unit-{rng.randrange(1000)}"
        case.query = query
    elif path == "/feedback" and isinstance(case.body, dict) and rng.randrange(16):
        exposed = rng.choice(EXPOSURES)
        body = {**case.body, "exposure_id": exposed.exposure_id}
        if rng.randrange(8):
            body["item_id"] = rng.choice(exposed.shown)
        case.body = body
    elif path in BATCH and isinstance(case.body, dict) and isinstance(case.body.get("queries"), list) and rng.randrange(4):
        param = BATCH[path]
        queries = [
            {**q, param: f"{param[0]}{rng.randrange(100)}"} if isinstance(q, dict) and rng.randrange(4) else q
            for q in case.body["queries"]
        ]
        case.body = {**case.body, "queries": queries}
    elif path == REPORT and rng.randrange(4):
        case.path_parameters = {**(case.path_parameters or {}), "name": rng.choice(sorted(EXPERIMENTS))}
        if rng.randrange(3):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}


def outcome(response: Any) -> str:
    """'exposure' for a response served under an experiment, 'answered' for a batch with an entry answered (not a
    problem), else the status code."""
    if response.status_code == 200 and response.headers.get("content-type", [""])[0].startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("experiment"), dict):
            return "exposure"
        if isinstance(body, dict) and any("neighbors" in r for r in body.get("results", ())):
            return "answered"
    return str(response.status_code)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_and_errors_are_problems(case, server, exposures):
    steer(case)
    response = case.call_and_validate(
        base_url=server.base_url, checks=[not_a_server_error, errors_are_problems, negative_data_rejection]
    )
    REACHED[(case.operation.path, outcome(response))] += 1


@pytest.mark.slow
def test_the_fuzz_reached_the_experiment_paths(server):
    """Run after the fuzz: its steered cases were served under experiments, accepted as feedback, and reported,
    and batches were answered."""
    fuzzed = {path for path, _ in REACHED}
    if not fuzzed & {*QUERY_ID, "/feedback", REPORT, *BATCH}:
        pytest.skip("the fuzz of the experiment operations did not run in this session")
    least = max(1, MAX_EXAMPLES // 30)
    wanted = {**{(path, "exposure"): least for path in QUERY_ID}, ("/feedback", "202"): least, (REPORT, "200"): least}
    for (path, what), n in wanted.items():
        if path in fuzzed:
            assert REACHED[(path, what)] >= n, (path, what, sorted(REACHED.items()))
    for path in BATCH:
        if path in fuzzed:  # the steered batches reached the searches, not only the per-entry 404s
            assert REACHED[(path, "answered")] >= least, (path, sorted(REACHED.items()))
    events = "simserve_experiment_events_total"
    text = metrics_text(server)
    assert metric(text, events, outcome="queued") > 0 and metric(text, events, outcome="dropped") == 0  # all kept


def test_the_fuzzed_schema_is_the_served_one(server):
    served = server.client.get("/openapi.json").json()
    assert served == served_schema()
    assert {"/similar-items", "/similar-users", "/recommend", "/admin/reload", "/figures/{name}"} <= set(served["paths"])
    assert {"/feedback", "/experiments", REPORT} <= set(served["paths"])
    params = {p["name"] for path in QUERY_ID for p in served["paths"][path]["get"]["parameters"]}
    assert {"experiment", "unit_id"} <= params


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
    "path",
    [
        "/similar-items",
        "/similar-users",
        "/recommend",
        "/compare-metrics",
        "/compare-metrics/summary",
        "/items/search",
        "/evaluation",
        "/models/denoising-symmetric/gauge",
    ],
)
def test_path_tricks_in_every_parameter_are_plain_bad_values(server, path):
    params = ("item_id", "user_id", "model", "metric", "k", "exclude_seen", "q", "limit", "format", "compare", "a", "b")
    params += ("exclude", "category", "models", "rbo_p", "tau_rows")
    for param in (*params, "experiment", "unit_id"):
        for value in TRAVERSALS:
            r = server.client.get(path, params={"item_id": "i1", "user_id": "u1", param: value})
            where = (path, param, value, r.status_code, r.text[:200])
            assert r.status_code in (200, 404, 422), where
            assert b"root:" not in r.content and b"schema_version" not in r.content, where  # no file's content leaks
            if r.status_code != 200:
                assert_problem(r, r.status_code)


@pytest.mark.parametrize("name", [quote(t, safe="") for t in TRAVERSALS] + ["..", "%2e%2e", "CURRENT", "manifest.json"])
def test_path_tricks_in_the_gauge_model_name_are_404_or_422(server, name):
    r = server.client.get(f"/models/{name}/gauge")
    assert r.status_code in (404, 422), (name, r.status_code, r.text[:200])
    assert_problem(r, r.status_code)
    assert b"root:" not in r.content and b"schema_version" not in r.content


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


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    """A body of `total` bytes sent chunked (no Content-Length for the server to refuse it by)."""
    for _ in range(total // size):
        yield b"z" * size


@pytest.mark.parametrize(
    "method,path,chunked",
    [
        ("POST", "/admin/reload", False),
        ("GET", "/similar-items?item_id=i1", False),
        ("POST", "/similar-items?item_id=i1", False),
        ("POST", "/feedback", False),
        ("POST", "/feedback", True),
    ],
)
def test_large_bodies_are_not_buffered(server, method, path, chunked):
    workers = worker_processes(server)
    before = {p.pid: memory(p).rss for p in workers}
    content = chunks(20_000_000) if chunked else b"z" * 20_000_000
    headers = {"content-type": "application/json"}
    r = httpx.request(method, server.base_url + path, content=content, headers=headers, timeout=30)
    assert r.status_code in (200, 401, 405, 413), r.status_code
    if r.status_code != 200:
        assert_problem(r, r.status_code)
    if path == "/feedback":  # the one endpoint that reads a body: refused at its bound
        assert r.status_code == 413 and r.json()["type"] == "/problems/request-too-large"
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


# --------------------------------------------------------------------------- the batch endpoints

HOSTILE_IDS = [*TRAVERSALS, "é" * 300, "\u202eevil", "\u200b", "i1\r\nX-Injected: 1", "' OR 1=1 --", "i" * 1024]


@pytest.mark.parametrize("path", list(BATCH))
def test_hostile_batch_entries_fail_alone_and_the_rest_is_answered(server, path):
    param = BATCH[path]
    good = f"{param[0]}1"
    queries = [{param: good, "k": 3}] + [{param: bad, "k": 3} for bad in HOSTILE_IDS] + [{param: good, "k": 2}]
    r = server.client.post(path, json={"queries": queries})
    assert r.status_code == 200, r.text[:500]
    results = r.json()["results"]
    assert len(results) == len(queries)
    assert len(results[0]["neighbors"]) == 3 and len(results[-1]["neighbors"]) == 2
    for result, query in zip(results[1:-1], queries[1:-1], strict=True):
        assert result["status"] == 404 and result["type"].startswith("/problems/unknown-"), result
        assert "neighbors" not in result and result[param] == query[param], result  # echoed as data
    too_long = server.client.post(path, json={"queries": [{param: good}, {param: "i" * 1025}]})  # above the id bound
    assert [e["param"] for e in assert_problem(too_long, 422)["errors"]] == [param]
    assert_serving(server)


@pytest.mark.parametrize(
    "content,status",
    [
        (b'{"queries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),  # nesting deeper than any parser's limit
        (b'{"queries": [{"item_id": "i1", "k": 1e400}]}', 422),
        (b'{"queries": [{"item_id": "i1", "k": 99999999999999999999999999}]}', 422),
        (b'{"queries": [{"item_id": "i1", "k": NaN}]}', 422),
        (b'{"queries": [{"item_id": "i1", "k": -1}]}', 422),
        (b'{"queries": [{"item_id": "i1", "item_id": "i2"}]}', 200),  # a duplicate key: the last one, as JSON parsers do
        (b'\xef\xbb\xbf{"queries": [{"item_id": "i2"}]}', 200),  # a byte-order mark, which RFC 8259 lets a parser skip
        (b'{"queries": null}', 422),
        (b'{"queries": [null]}', 422),
        (b'{"queries": "i1"}', 422),
        (b'{"queries": [["i1"]]}', 422),
        (b'{"queries": [{"item_id": null}]}', 422),
        (b'{"queries": [{"item_id": ""}]}', 422),
        (b'{"queries": [{"item_id": "i1"}], "model": "../../CURRENT"}', 422),
        (b'{"queries": [{"item_id": "i1"}], "category": "../../CURRENT"}', 422),
        (b'{"queries": [{"item_id": "i1"}], "exclude": "i2"}', 422),
        (b'{"queries": [{"item_id": "i1"}], "exclude": [null]}', 422),
        (b'{"queries": [{"item_id": "i1"}]} trailing', 400),
        (b'{"queries": [' + b",".join([b'{"item_id": "i1", "k": 1000}'] * 1001) + b"]}", 422),
    ],
)
def test_hostile_batch_bodies_are_4xx_problems_or_answers(server, content, status):
    r = server.client.post("/similar-items/batch", content=content, headers={"content-type": "application/json"})
    if status == 200:
        result = r.json()["results"][0]
        assert r.status_code == 200 and (result["item_id"], result["k"]) == ("i2", 10), r.text[:300]
    else:
        body = assert_problem(r, status)
        assert body["detail"], body
    assert_serving(server)


def test_the_largest_batch_of_the_largest_k_is_answered(server):
    """1,000 queries of k = 1,000 (the bounds; more than the catalogue holds): one answer, every entry full."""
    queries = [{"item_id": f"i{j % 100}", "k": 1000} for j in range(1000)]
    r = server.client.post("/similar-items/batch", json={"queries": queries}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    counts = server.client.get("/models").json()["counts"]
    assert all(len(res["neighbors"]) == counts["items"] - 1 for res in r.json()["results"])
    assert_serving(server)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"])
def test_other_methods_are_405_problems(server, method):
    assert_problem(server.client.request(method, "/similar-items", params={"item_id": "i1"}), 405)


# --------------------------------------------------------------------------- the admin token


WRONG_AUTHORIZATIONS = [
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
]


def authorization_headers(authorization: str | None) -> dict[str, bytes]:
    return {} if authorization is None else {"Authorization": authorization.encode("utf-8")}


@pytest.mark.parametrize("authorization", WRONG_AUTHORIZATIONS)
def test_admin_reload_without_the_exact_token_is_401(server, authorization):
    headers = authorization_headers(authorization)
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


# --------------------------------------------------------------------------- experiments: serving (the controls)

JSON = {"content-type": "application/json"}


def assert_names(r: httpx.Response, *params: str, where: str = "query") -> dict[str, Any]:
    """A 422 invalid-parameters problem whose `errors` name exactly `params`, in that order, all `in` `where`."""
    body = assert_problem(r, 422)
    assert body["type"] == "/problems/invalid-parameters", body
    assert [(e["param"], e["in"]) for e in body["errors"]] == [(p, where) for p in params], body["errors"]
    return body


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_each_experiment_serves_its_arms(server, experiment):
    # Control for the cases below: the experiments are live on this server, with the arms the file gives them.
    listed = {e["name"]: e for e in server.client.get("/experiments").json()["experiments"]}
    assert set(listed) == set(EXPERIMENTS) and listed[experiment]["endpoint"] == EXPERIMENTS[experiment][1:]
    arms = listed[experiment]["arms"]
    for unit in ("u-a", "u-b", "u-c"):
        path = EXPERIMENTS[experiment]
        r = server.client.get(
            path, params={QUERY_ID[path]: "u3" if path != "/similar-items" else "i3", "experiment": experiment, "unit_id": unit}
        )
        body = r.json()
        assert r.status_code == 200 and EXPOSURE_ID.match(body["experiment"]["exposure_id"]), r.text[:300]
        if listed[experiment]["mode"] == "ab":
            arm = next(a for a in arms if a["name"] == body["experiment"]["arm"])
            assert (body["model"], body["metric"]) == (arm["model"], arm["metric"])
        else:
            assert body["experiment"]["arm"] is None and set(body["experiment"]["teams"]) <= {a["name"] for a in arms}


# --------------------------------------------------------------------------- experiments: POST /feedback bodies


@pytest.fixture(scope="module")
def exposed(server: ApiServer) -> Exposed:
    """One exposure: the hostile bodies below carry its id and an item it showed, so only the part under test is wrong."""
    return expose(server, "items-ab", "hostile-unit-1")


def valid_body(exposed: Exposed, **fields: Any) -> dict[str, Any]:
    return {"exposure_id": exposed.exposure_id, "item_id": exposed.shown[0], "event": "click", **fields}


def with_tail(exposed: Exposed, tail: str) -> bytes:
    """The exposure and a shown item, then `tail` written as is (for literals json.dumps does not write)."""
    return f'{{"exposure_id": "{exposed.exposure_id}", "item_id": "{exposed.shown[0]}", {tail}}}'.encode()


def post_feedback(server: ApiServer, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return server.client.post("/feedback", content=content, headers=JSON if headers is None else headers)


def test_a_valid_feedback_is_accepted(server, exposed):
    # Control: the body the cases below spoil is accepted as it is.
    r = post_feedback(server, json.dumps(valid_body(exposed, value=2.5, event_id="ev-control")).encode())
    assert r.status_code == 202 and r.json()["validated"] is True, r.text


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{",
        b'{"event": "click",}',
        b"{'exposure_id': 'x'}",
        b'{"exposure_id": "\xff\xfe"}',  # not UTF-8
        b"\x00",
        b"[" * 30_000 + b"]" * 30_000,  # 60 KB, under the body bound: nested too deeply to parse
        b'{"value": ' + b"9" * 5000 + b"}",  # more digits than Python converts to an int
    ],
    ids=["text", "unterminated", "trailing-comma", "single-quotes", "not-utf8", "nul", "deep", "5000-digits"],
)
def test_feedback_that_is_not_json_is_a_400(server, content):
    body = assert_problem(post_feedback(server, content), 400)
    assert body["type"] == "/problems/malformed-request" and body["detail"].startswith("the body is not readable JSON")
    assert_serving(server)


@pytest.mark.parametrize("content", [b"[]", b"null", b"1", b'"click"', b"true", b"1e400", b"[{}]"])
def test_feedback_json_that_is_not_an_object_is_a_422_naming_the_body(server, content):
    assert_names(post_feedback(server, content), "body", where="body")
    assert_serving(server)


@pytest.mark.parametrize(
    "field,value",
    [
        ("exposure_id", 5),
        ("exposure_id", True),
        ("exposure_id", None),
        ("exposure_id", {"$ne": ""}),
        ("exposure_id", ["a", "b"]),
        ("exposure_id", 1.5),
        ("exposure_id", 2**63),  # one past what a problem document can echo: refused before validation
        ("exposure_id", -(10**400)),
        ("item_id", {"a": [1, {"b": None}]}),
        ("item_id", ["i1"]),
        ("item_id", 0),
        ("item_id", None),
        ("event", None),
        ("event", 1),
        ("event", ["click"]),
        ("event", {"click": True}),
        ("value", "1.5"),
        ("value", True),
        ("value", [1]),
        ("value", {"v": 1}),
        ("value", 10**400),
        ("value", 2**64),
        ("event_id", 5),
        ("event_id", []),
        ("event_id", {}),
        ("event_id", False),
    ],
)
def test_feedback_fields_of_the_wrong_type_are_422s_naming_them(server, exposed, field, value):
    assert_names(post_feedback(server, json.dumps(valid_body(exposed, **{field: value})).encode()), field, where="body")
    assert_serving(server)


@pytest.mark.parametrize(
    "tail,field",
    [
        ('"event": "click", "value": NaN', "value"),
        ('"event": "click", "value": Infinity', "value"),
        ('"event": "click", "value": -Infinity', "value"),
        ('"event": "click", "value": 1e400', "value"),
        ('"event": "click", "value": -1e400', "value"),
        ('"event": NaN', "event"),
        ('"event": "click", "event_id": Infinity', "event_id"),
    ],
)
def test_non_finite_numbers_are_422s_naming_the_field(server, exposed, tail, field):
    assert_names(post_feedback(server, with_tail(exposed, tail)), field, where="body")
    assert_serving(server)


def test_null_required_fields_are_each_named(server):
    body = {"exposure_id": None, "item_id": None, "event": None}
    assert_names(post_feedback(server, json.dumps(body).encode()), "exposure_id", "item_id", "event", where="body")


@pytest.mark.parametrize("fields", [{"value": None}, {"event_id": None}, {"event": "a" * 32}, {"event": "a"}, {"value": -0.0}])
def test_optional_nulls_and_the_bounds_themselves_are_accepted(server, exposed, fields):
    # Control for the bounds below: null optional fields and a 32-character event name are valid.
    r = post_feedback(server, json.dumps(valid_body(exposed, **fields)).encode())
    assert r.status_code == 202 and r.json()["validated"] is True, r.text


@pytest.mark.parametrize(
    "event",
    [
        "clíck",
        "cl\x00ick",
        "click\x00",
        "\x00",
        "CLICK",
        "Click",
        "🙂",
        "ｃｌｉｃｋ",
        "click\u200b",
        "click\n",
        " click",
        "",
        "1click",
        "click!",
        "a" * 33,
        "a" * 10_000,
    ],
)
@pytest.mark.parametrize("ascii_only", [True, False], ids=["escaped", "utf8"])
def test_odd_event_names_are_422s_naming_event(server, exposed, event, ascii_only):
    content = json.dumps(valid_body(exposed, event=event), ensure_ascii=ascii_only).encode()
    assert_names(post_feedback(server, content), "event", where="body")
    assert_serving(server)


@pytest.mark.parametrize(
    "field,value",
    [
        ("exposure_id", "é" * 65),  # bounds count characters, not bytes
        ("item_id", "é" * 257),
        ("event_id", "é" * 129),
        ("item_id", "x" * 60_000),  # long, yet under the body's bound
        ("exposure_id", ""),
        ("item_id", ""),
        ("event_id", ""),
    ],
)
def test_strings_past_their_field_bound_are_422s_naming_the_field(server, exposed, field, value):
    assert_names(post_feedback(server, json.dumps(valid_body(exposed, **{field: value})).encode()), field, where="body")
    assert_serving(server)


@pytest.mark.parametrize("field", ["exposure_id", "item_id", "event", "event_id", "unknown"])
def test_100_kb_strings_are_413s(server, exposed, field):
    r = post_feedback(server, json.dumps(valid_body(exposed, **{field: "x" * 100_000})).encode())
    body = assert_problem(r, 413)
    assert body["type"] == "/problems/request-too-large" and "65536" in body["detail"]
    assert_serving(server)


@pytest.mark.parametrize(
    "extra",
    [
        {"foo": 1},
        {"__proto__": {"admin": True}},
        {"Exposure_Id": "x"},
        {"exposure_id ": "x"},
        {"\x00": 1},
        {"validated": False},
        {"accepted": True},
        {"é中文🙂": None},
        {"0": 1},  # an all-digit key is a name, not a list position
    ],
)
def test_unknown_fields_are_422s_naming_them(server, exposed, extra):
    assert_names(post_feedback(server, json.dumps(valid_body(exposed, **extra)).encode()), *extra, where="body")
    assert_serving(server)


@pytest.mark.parametrize("field", ["exposure_id", "item_id", "event", "event_id"])
def test_a_lone_surrogate_in_a_field_is_a_422_naming_it(server, exposed, field):
    # JSON may escape a code point that is not Unicode ("\ud800"); the 422 that echoes it must still be JSON.
    content = json.dumps(valid_body(exposed, **{field: "i\ud800x"})).encode()
    assert b"\\ud800" in content
    assert_names(post_feedback(server, content), field, where="body")
    assert_serving(server)


def test_a_lone_surrogate_in_a_key_is_a_422_naming_the_body(server, exposed):
    assert_names(post_feedback(server, json.dumps(valid_body(exposed, **{"k\udfff": 1})).encode()), "body", where="body")
    assert_serving(server)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        "application/jsonx",
        "json",
        "*/*",
    ],
)
def test_a_body_not_sent_as_json_is_a_415(server, exposed, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    body = assert_problem(post_feedback(server, json.dumps(valid_body(exposed)).encode(), headers), 415)
    assert "application/json" in body["detail"]
    assert_serving(server)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/merge-patch+json"])
def test_json_content_types_are_accepted(server, exposed, content_type):
    # Control for the test above: the JSON media types are read whatever their parameters and case.
    r = post_feedback(server, json.dumps(valid_body(exposed)).encode(), {"content-type": content_type})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("headers", [JSON, {}, {"content-type": "text/plain"}])
def test_an_empty_body_is_a_422_naming_the_body(server, headers):
    assert_names(post_feedback(server, b"", headers), "body", where="body")
    assert_serving(server)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_feedback_are_405_problems(server, method):
    assert_problem(server.client.request(method, "/feedback"), 405)


# --------------------------------------------------------------------------- experiments: exposure ids and items


NOT_IDS = {
    "traversal": lambda _: "../../etc/passwd",
    "percent": lambda _: "%",
    "percent-nul": lambda _: "%00",
    "sql": lambda _: "' OR '1'='1",
    "nul": lambda _: "\x00",
    "star": lambda _: "*",
    "64-chars": lambda _: "a" * 64,
    "unicode": lambda _: "é中文🙂",
    "upper-cased": str.upper,
    "trailing-space": lambda e: e + " ",
    "one-digit-short": lambda e: e[:-1],
}


@pytest.mark.parametrize("mangle", NOT_IDS.values(), ids=NOT_IDS.keys())
def test_exposure_ids_that_are_not_ids_are_422s_naming_exposure_id(server, exposed, mangle):
    r = post_feedback(server, json.dumps(valid_body(exposed, exposure_id=mangle(exposed.exposure_id))).encode())
    body = assert_names(r, "exposure_id", where="body")
    assert "unknown exposure" in body["detail"]
    assert_serving(server)


def test_an_item_the_exposure_did_not_show_is_a_422_naming_item_id(server, exposed):
    other = expose(server, "rec-ab", "hostile-unit-2", k=20)
    unshown = next(i for i in (*other.shown, "i0", "i1", "i2", "i3", "i4", "i5") if i not in exposed.shown)
    for item in (unshown, "i-never", "\x00", exposed.shown[0].upper(), exposed.shown[0] + " "):
        body = assert_names(
            post_feedback(server, json.dumps(valid_body(exposed, item_id=item)).encode()), "item_id", where="body"
        )
        assert "was not shown" in body["detail"]
    assert_serving(server)


# --------------------------------------------------------------------------- experiments: experiment and unit_id


@pytest.mark.parametrize("path,param", ENDPOINTS)
def test_odd_experiment_names_are_422s_naming_experiment(server, path, param):
    values = ["nope", "", " ", "ITEMS-AB", " items-ab", "items-ab ", "items-ab\x00", "é中文🙂", "x" * 10_000, "*", "%"]
    for value in values + TRAVERSALS + ["items-ab/../rec-ab", "rec-ab/../items-ab", "../users-ab"]:
        r = server.client.get(path, params={param: "i1" if param == "item_id" else "u1", "experiment": value, "unit_id": "u1"})
        body = assert_names(r, "experiment")
        assert "unknown experiment" in body["detail"] and body["errors"][0]["allowed"] == list(EXPERIMENTS), value
    assert_serving(server)


@pytest.mark.parametrize(
    "path,experiment", [("/similar-items", "rec-ab"), ("/similar-users", "items-ab"), ("/recommend", "users-ab")]
)
def test_an_experiment_of_another_endpoint_is_a_422_naming_experiment(server, path, experiment):
    r = server.client.get(path, params={QUERY_ID[path]: "u1", "experiment": experiment, "unit_id": "u1"})
    assert EXPERIMENTS[experiment] in assert_names(r, "experiment")["detail"]


@pytest.mark.parametrize("path,param", ENDPOINTS)
@pytest.mark.parametrize("name", ["experiment", "unit_id"])
def test_a_100_kb_experiment_or_unit_is_a_414(server, path, param, name):
    some_id, experiment = ("i1", "items-ab") if param == "item_id" else ("u1", "users-ab")
    query = {param: some_id, "experiment": experiment, "unit_id": "u1", name: "é" * 50_000}
    target = f"{path}?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())
    body = assert_raw_problem(raw_request(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()), 414)
    assert body["type"] == "/problems/request-too-large"
    assert_serving(server)


@pytest.mark.parametrize("unit_id", [None, "", "x" * 257, "é" * 257, "u" * 10_000])
def test_bad_unit_ids_are_422s_naming_unit_id(server, unit_id):
    params = {"item_id": "i1", "experiment": "items-ab"} | ({} if unit_id is None else {"unit_id": unit_id})
    assert_names(server.client.get("/similar-items", params=params), "unit_id")
    assert_serving(server)


@pytest.mark.parametrize(
    "unit_query",
    [
        "%ED%A0%80%FF%C0%AF",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "%3Cscript%3E",
        "u1%0D%0ASet-Cookie:%20a=b",
        "x" * 256,
        "%C3%A9" * 256,
    ],
    ids=["invalid-utf8", "nul", "traversal", "script", "crlf", "256", "256-multibyte"],
)
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_odd_unit_ids_are_units(server, unit_query, experiment):
    # Any string of 1..256 characters is a unit: served under its arm, the same one every time.
    path = EXPERIMENTS[experiment]
    target = f"{path}?{QUERY_ID[path]}={'i1' if path == '/similar-items' else 'u1'}&experiment={experiment}&unit_id={unit_query}"
    answers = [server.client.get(target) for _ in range(2)]
    for r in answers:
        assert r.status_code == 200 and "set-cookie" not in r.headers, r.text[:300]
    first, second = (r.json()["experiment"] for r in answers)
    assert first["name"] == second["name"] == experiment and first["arm"] == second["arm"]
    assert first["exposure_id"] != second["exposure_id"]  # two responses, two exposures


@pytest.mark.parametrize("path,param", ENDPOINTS)
@pytest.mark.parametrize(
    "extra,named",
    [
        ({"model": "denoising-symmetric"}, ["model"]),
        ({"model": "weight-decay"}, ["model"]),
        ({"metric": "cosine"}, ["metric"]),
        ({"metric": "dot"}, ["metric"]),
        ({"model": ""}, ["model"]),
        ({"metric": ""}, ["metric"]),
        ({"model": "nope"}, ["model"]),
        ({"model": "../../CURRENT"}, ["model"]),
        ({"metric": "euclid"}, ["metric"]),
    ],
)
def test_experiment_with_model_or_metric_is_a_422_naming_it(server, path, param, extra, named):
    experiment = next(name for name, endpoint in EXPERIMENTS.items() if endpoint == path)
    some_id = "i1" if param == "item_id" else "u1"
    r = server.client.get(path, params={param: some_id, "experiment": experiment, "unit_id": "u1", **extra})
    assert_names(r, *named)


@pytest.mark.parametrize("path,param", ENDPOINTS)
def test_experiment_with_model_and_metric_is_a_422_naming_them(server, path, param):
    experiment = next(name for name, endpoint in EXPERIMENTS.items() if endpoint == path)
    some_id = "i1" if param == "item_id" else "u1"
    params = {param: some_id, "experiment": experiment, "unit_id": "u1", "model": "weight-decay", "metric": "dot"}
    body = assert_problem(server.client.get(path, params=params), 422)
    assert {e["param"] for e in body["errors"]} <= {"model", "metric"} and body["errors"], body


# --------------------------------------------------------------------------- experiments: reports

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_reports_with_the_token(server, experiment):
    # Control for the cases below: each report is served, in JSON and in markdown.
    r = server.client.get(f"/experiments/{experiment}/report", headers=BEARER)
    assert r.status_code == 200 and r.json()["name"] == experiment, r.text[:300]
    r = server.client.get(f"/experiments/{experiment}/report", params={"format": "markdown"}, headers=BEARER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown") and experiment in r.text


@pytest.mark.parametrize(
    "name", ["nope", "ITEMS-AB", "items-ab ", " items-ab", "items-ab\x00", "é中文🙂", "x" * 5000, "report", "..."]
)
def test_the_report_of_an_unknown_experiment_is_a_404(server, name):
    r = server.client.get(f"/experiments/{quote(name, safe='')}/report", headers=BEARER)
    assert assert_problem(r, 404)["type"] == "/problems/unknown-experiment"
    assert_serving(server)


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "%2e%2e",
        "%2E%2E",
        "..%2fitems-ab",
        "items-ab%2f..",
        "rec-ab%2f..%2fitems-ab",
        "%2e%2e%2f%2e%2e%2fCURRENT",
        "..%5c..%5cCURRENT",
        "items-ab%00",
        "%252e%252e",
        "items-ab/../rec-ab",
        "../../../../etc/passwd",
        "",
    ],
)
def test_path_tricks_in_the_report_name_are_404s(server, name):
    # raw: an HTTP client would normalise the dot segments away before sending
    request = f"GET /experiments/{name}/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    status, headers, body = raw_request(server, request.encode())
    assert status == 404 and headers["content-type"].startswith(PROBLEM), (status, body[:300])
    assert b"root:" not in body and b"schema_version" not in body and b'"arms"' not in body  # no file, no report
    assert_serving(server)


@pytest.mark.parametrize("fmt", ["xml", "", "JSON", "Markdown", "markdown\x00", "json ", "csv", "../markdown", "x" * 10_000])
def test_bad_report_formats_are_422s_naming_format(server, fmt):
    r = server.client.get("/experiments/items-ab/report", params={"format": fmt}, headers=BEARER)
    assert_names(r, "format")
    assert_serving(server)


@pytest.mark.parametrize("authorization", WRONG_AUTHORIZATIONS)
@pytest.mark.parametrize("name", ["items-ab", "nope"])
def test_reports_without_the_exact_token_are_401(server, authorization, name):
    # The token is checked first, so an unknown name answers the same; it is never read from the query.
    r = server.client.get(f"/experiments/{name}/report", headers=authorization_headers(authorization), params={"token": TOKEN})
    body = assert_problem(r, 401)
    assert body["type"] == "/problems/unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
    assert "arms" not in body
