"""The API contract over HTTP against `python -m app` (2 workers) on the fixture artifact."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.problems import PROBLEM
from support.prometheus import metric

from models.artifact.manifest import METRICS, RECOMMEND_METRICS
from models.fit.closed_forms import MODELS


def problem(r, status: int) -> dict:
    """Assert an RFC 9457 problem document with this status; return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status
    for key in ("type", "title", "detail", "instance"):
        assert isinstance(body[key], str) and body[key], body
    assert "artifact_version" in body
    return body


@pytest.fixture(scope="module")
def manifest(api_artifact) -> dict:
    return json.loads((api_artifact.version_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def items(api_artifact) -> list[dict]:
    return json.loads((api_artifact.version_dir / "items.json").read_text())


@pytest.fixture(scope="module")
def users(api_artifact) -> list[str]:
    return json.loads((api_artifact.version_dir / "users.json").read_text())


# --------------------------------------------------------------------------- neighbour endpoints


def test_similar_items_defaults_shape_and_metadata(api_server, api_artifact, items):
    item = items[7]
    r = api_server.client.get("/similar-items", params={"item_id": item["id"]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"item_id", "model", "metric", "k", "artifact_version", "neighbors"}
    assert (body["item_id"], body["model"], body["metric"], body["k"]) == (item["id"], "denoising-symmetric", "projected", 10)
    assert body["artifact_version"] == api_artifact.version == r.headers["artifact-version"]
    by_id = {it["id"]: it for it in items}
    ids = [n["item_id"] for n in body["neighbors"]]
    assert len(ids) == 10 == len(set(ids)) and item["id"] not in ids
    scores = [n["score"] for n in body["neighbors"]]
    assert scores == sorted(scores, reverse=True)
    for n in body["neighbors"]:
        assert n["title"] == by_id[n["item_id"]]["title"] and n["categories"] == by_id[n["item_id"]]["categories"]


def test_similar_users_shape(api_server, api_artifact, users):
    r = api_server.client.get("/similar-users", params={"user_id": users[3], "model": "weight-decay", "metric": "cosine", "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"user_id", "model", "metric", "k", "artifact_version", "neighbors"}
    assert (body["user_id"], body["model"], body["metric"], body["k"]) == (users[3], "weight-decay", "cosine", 4)
    assert body["artifact_version"] == api_artifact.version
    assert [set(n) for n in body["neighbors"]] == [{"user_id", "score"}] * 4
    assert users[3] not in {n["user_id"] for n in body["neighbors"]}


def test_recommend_excludes_seen_items_by_default(api_server, api_artifact, users):
    import scipy.sparse as sp

    X = sp.load_npz(api_artifact.version_dir / "interactions.npz").tocsr()
    items = json.loads((api_artifact.version_dir / "items.json").read_text())
    u = int(max(range(len(users)), key=lambda row: X[row].nnz))  # the most active user: exclusion matters most
    seen = {items[j]["id"] for j in X[u].indices}
    r = api_server.client.get("/recommend", params={"user_id": users[u], "k": 20})
    body = r.json()
    assert r.status_code == 200 and body["exclude_seen"] is True and body["k"] == 20
    got = [n["item_id"] for n in body["neighbors"]]
    assert len(got) == min(20, len(items) - len(seen)) and not seen & set(got)
    r = api_server.client.get("/recommend", params={"user_id": users[u], "k": 20, "exclude_seen": "false"})
    assert r.json()["exclude_seen"] is False
    assert seen & {n["item_id"] for n in r.json()["neighbors"]}, "a heavy user's top items include items it has seen"


def test_k_at_the_limits(api_server, items):
    r = api_server.client.get("/similar-items", params={"item_id": items[0]["id"], "k": 1000})
    assert r.status_code == 200 and r.json()["k"] == 1000
    assert len(r.json()["neighbors"]) == len(items) - 1  # everything but the query item
    r = api_server.client.get("/similar-items", params={"item_id": items[0]["id"], "k": 1})
    assert len(r.json()["neighbors"]) == 1


@pytest.mark.parametrize("k", ["0", "1001", "-3", "ten", "", "2.5"])
def test_k_outside_1_to_1000_is_422(api_server, items, k):
    body = problem(api_server.client.get("/similar-items", params={"item_id": items[0]["id"], "k": k}), 422)
    assert [e["param"] for e in body["errors"]] == ["k"]


@pytest.mark.parametrize("path,param", [("/similar-items", "item_id"), ("/similar-users", "user_id"), ("/recommend", "user_id")])
def test_unknown_model_and_metric_are_422_listing_allowed_values(api_server, path, param):
    body = problem(api_server.client.get(path, params={param: "x", "model": "svd++", "metric": "euclid"}), 422)
    errors = {e["param"]: e for e in body["errors"]}
    assert errors["model"]["allowed"] == list(MODELS) and errors["model"]["input"] == "svd++"
    assert errors["metric"]["allowed"] == list(METRICS) and errors["metric"]["input"] == "euclid"
    for name in (*MODELS, *METRICS):
        assert name in body["detail"]


@pytest.mark.parametrize("path,param", [("/similar-items", "item_id"), ("/similar-users", "user_id"), ("/recommend", "user_id")])
def test_missing_id_is_422(api_server, path, param):
    body = problem(api_server.client.get(path, params={"k": 3}), 422)
    assert [(e["param"], e["type"]) for e in body["errors"]] == [(param, "missing")]


def test_bad_exclude_seen_is_422(api_server, users):
    body = problem(api_server.client.get("/recommend", params={"user_id": users[0], "exclude_seen": "maybe"}), 422)
    assert [e["param"] for e in body["errors"]] == ["exclude_seen"]


@pytest.mark.parametrize(
    "path,param,kind",
    [("/similar-items", "item_id", "item"), ("/similar-users", "user_id", "user"), ("/recommend", "user_id", "user")],
)
def test_unknown_id_is_404(api_server, api_artifact, path, param, kind):
    body = problem(api_server.client.get(path, params={param: "no-such-id"}), 404)
    assert body["type"] == f"/problems/unknown-{kind}" and body[param] == "no-such-id"
    assert body["artifact_version"] == api_artifact.version and "no-such-id" in body["detail"]


def test_unknown_route_and_method_are_problems(api_server):
    problem(api_server.client.get("/no-such-endpoint"), 404)
    problem(api_server.client.post("/similar-items", params={"item_id": "i1"}), 405)


def test_admin_endpoint_absent_without_token(api_server):
    problem(api_server.client.post("/admin/reload", headers={"Authorization": "Bearer anything"}), 404)


ids = st.one_of(st.text(max_size=40), st.sampled_from(["i1", "u1", "", " ", "%", "i1&k=0", "\u00e9\u4e2d", "i" * 5000]))
params = st.fixed_dictionaries(
    {},
    optional={
        "item_id": ids,
        "user_id": ids,
        "model": st.one_of(st.sampled_from(MODELS), st.text(max_size=12)),
        "metric": st.one_of(st.sampled_from(METRICS), st.text(max_size=12)),
        "k": st.one_of(st.integers(-5, 1005).map(str), st.text(max_size=6)),
        "exclude_seen": st.text(max_size=6),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/similar-items", "/similar-users", "/recommend"]), query=params)
def test_bad_input_never_500(api_server, path, query):
    r = api_server.client.get(path, params=query)
    assert r.status_code in (200, 404, 422), (r.status_code, r.text)
    if r.status_code != 200:
        problem(r, r.status_code)


# --------------------------------------------------------------------------- operations


def test_models_lists_models_metrics_parameters_counts(api_server, api_artifact, manifest):
    r = api_server.client.get("/models")
    body = r.json()
    assert r.status_code == 200 and body["artifact_version"] == api_artifact.version
    assert list(body["models"]) == list(MODELS) and body["metrics"] == list(METRICS)
    assert body["defaults"] == {"model": "denoising-symmetric", "metric": "projected", "k": 10}
    assert body["counts"] == manifest["counts"] and body["counts"]["k"] == 16
    assert body["params"]["lambda_denoising"] == 100.0 and body["params"]["lambda_weight_decay"] == 5.0
    for name, info in body["models"].items():
        assert info["lambda"] == (5.0 if name == "weight-decay" else 100.0)
        assert info["objective"] == ("weight-decay" if name == "weight-decay" else "denoising")
        assert 0 <= info["surviving_dims"] <= 16
        keys = {f"{side}/{metric}" for side in ("items", "users") for metric in METRICS}
        keys |= {f"recommend/{metric}" for metric in RECOMMEND_METRICS}  # whitened has no user -> item score
        assert set(info["indexes"]) == keys
        assert all(ix["served_by"] == "flat" for ix in info["indexes"].values())  # the fixture has no HNSW
        assert info["indexes"]["items/dot"]["rows"] == 300 and info["indexes"]["users/dot"]["rows"] == 2000


def test_healthz_and_readyz(api_server, api_artifact):
    r = api_server.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["artifact_version"] == api_artifact.version
    r = api_server.client.get("/readyz")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ready"
    assert body["artifact_version"] == api_artifact.version and body["last_refusal"] is None


def test_metrics_count_requests_errors_latency_across_workers(api_server, api_artifact, users):
    client = api_server.client
    before = client.get("/metrics").text
    labels = {"endpoint": "/similar-users", "model": "denoising-sigma-matched", "metric": "dot"}
    n = 24  # with 2 workers, both answer some of them: /metrics must sum over processes
    for i in range(n):
        assert (
            client.get(
                "/similar-users", params={"user_id": users[i], "model": labels["model"], "metric": "dot", "k": 2}
            ).status_code
            == 200
        )
    for _ in range(3):
        client.get("/similar-users", params={"user_id": "nobody", "model": labels["model"], "metric": "dot"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text

    def delta(name: str, **extra: str) -> float:
        return metric(after, name, **labels, **extra) - metric(before, name, **labels, **extra)

    assert delta("simserve_requests_total", status="200") == n
    assert delta("simserve_requests_total", status="404") == 3
    assert delta("simserve_request_errors_total", status="404") == 3
    assert delta("simserve_request_errors_total", status="200") == 0
    assert delta("simserve_request_duration_seconds_count") == n + 3
    assert delta("simserve_request_duration_seconds_bucket", le="+Inf") == n + 3
    assert metric(after, "simserve_artifact_version_info", version=api_artifact.version) == 2  # one per worker
    assert metric(after, "simserve_reloads_total", trigger="startup") == 2
    assert metric(after, "simserve_reload_refused_total") == 0


def test_every_response_names_the_artifact_version(api_server, api_artifact):
    for path in ("/healthz", "/readyz", "/models", "/metrics", "/openapi.json", "/similar-items?item_id=nope", "/nowhere"):
        assert api_server.client.get(path).headers.get("artifact-version") == api_artifact.version, path


def test_openapi_documents_every_parameter_default_and_error(api_server):
    spec = api_server.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/similar-items", "/similar-users", "/recommend", "/models", "/healthz", "/readyz", "/metrics"):
        assert path in paths
    defaults = {"model": "denoising-symmetric", "metric": "projected", "k": 10}
    for path, required in (("/similar-items", "item_id"), ("/similar-users", "user_id"), ("/recommend", "user_id")):
        op = paths[path]["get"]
        assert op["summary"] and op["description"]
        params = {p["name"]: p for p in op["parameters"]}
        assert params[required]["required"] is True
        for name, p in params.items():
            assert p["in"] == "query" and p["description"], (path, name)
            assert p["schema"].get("examples"), (path, name)
            if name in defaults:
                assert p["schema"]["default"] == defaults[name] and str(defaults[name]) in p["description"]
        # models are data: no enum in the contract, the served version's names are checked per request
        assert "enum" not in params["model"]["schema"] and "GET /models" in params["model"]["description"]
        assert params["metric"]["schema"]["enum"] == list(METRICS)
        assert (params["k"]["schema"]["minimum"], params["k"]["schema"]["maximum"]) == (1, 1000)
        for status in ("404", "422", "503"):
            assert PROBLEM in op["responses"][status]["content"], (path, status)
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].rsplit("/", 1)[-1].endswith("Response")
    schemas = spec["components"]["schemas"]
    for name in (
        "SimilarItemsResponse",
        "SimilarUsersResponse",
        "RecommendResponse",
        "ItemNeighbor",
        "ModelsResponse",
        "Problem",
    ):
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description") or "$ref" in prop or "allOf" in prop or prop.get("items"), (name, field)
    for name in ("SimilarItemsResponse", "SimilarUsersResponse", "RecommendResponse"):
        assert schemas[name].get("examples"), name
