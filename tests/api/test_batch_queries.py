"""POST /similar-items/batch and /recommend/batch on the real server (2 workers): every entry of `results` is what
the GET endpoint answers for that query (a body, or for an unknown id its 404 problem), in order; a bad call is a
422 naming the field; an unknown id fails its entry only.

Ties (the weight-decay model collapses some items onto one direction) may be ordered differently in a batched
search: score lists must agree, and the ids wherever the score is not tied (as in test_api_scores).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from support.answers import same_answer

from models.artifact.manifest import RECOMMEND_METRICS
from models.fit.closed_forms import MODELS

KS = [1, 5, 10, 40, 10, 3]


@pytest.fixture(scope="module")
def ids(api_artifact) -> tuple[list[str], list[str]]:
    d = api_artifact.version_dir
    return [it["id"] for it in json.loads((d / "items.json").read_text())], json.loads((d / "users.json").read_text())


def assert_same_body(got: dict[str, Any], want: dict[str, Any], key: str) -> None:
    """The batch entry equals the GET body: every field, and the neighbours up to the order of tied scores."""
    assert {f: v for f, v in got.items() if f != "neighbors"} == {f: v for f, v in want.items() if f != "neighbors"}
    a, b = got["neighbors"], want["neighbors"]
    if not b:
        assert a == b
        return
    same_answer(*(np.array([n[f] for n in side]) for side in (a, b) for f in (key, "score")))
    by_id = {n[key]: {**n, "score": None} for n in b}
    assert all({**n, "score": None} == by_id[n[key]] for n in a if n[key] in by_id)  # titles, categories


def problem_of(r) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


@pytest.mark.parametrize("metric", ["dot", "cosine", "projected", "whitened"])
@pytest.mark.parametrize("model", MODELS)
def test_similar_items_batch_equals_get_per_query(api_server, ids, model, metric):
    item_ids, _ = ids
    picked = [item_ids[0], item_ids[17], "no-such-item", item_ids[123], item_ids[17], item_ids[-1]]
    queries = [{"item_id": i, "k": k} for i, k in zip(picked, KS, strict=True)]
    r = api_server.client.post("/similar-items/batch", json={"model": model, "metric": metric, "queries": queries})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and body["metric"] == metric
    assert body["artifact_version"] == r.headers["artifact-version"]
    assert len(body["results"]) == len(queries)
    for q, entry in zip(queries, body["results"], strict=True):
        g = api_server.client.get("/similar-items", params={**q, "model": model, "metric": metric})
        if g.status_code == 404:
            want = problem_of(g)
            assert entry == {**want, "instance": "/similar-items/batch"}
            assert entry["item_id"] == q["item_id"] and entry["type"] == "/problems/unknown-item"
        else:
            assert g.status_code == 200, g.text
            assert_same_body(entry, g.json(), "item_id")


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("metric", RECOMMEND_METRICS)
def test_recommend_batch_equals_get_per_query(api_server, ids, metric, exclude_seen):
    _, user_ids = ids
    picked = [user_ids[0], user_ids[5], user_ids[999], "no-such-user", user_ids[5], user_ids[-1]]
    queries = [{"user_id": u, "k": k} for u, k in zip(picked, KS, strict=True)]
    payload = {"model": "denoising-symmetric", "metric": metric, "exclude_seen": exclude_seen, "queries": queries}
    r = api_server.client.post("/recommend/batch", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["exclude_seen"] is exclude_seen and len(body["results"]) == len(queries)
    for q, entry in zip(queries, body["results"], strict=True):
        params = {**q, "model": "denoising-symmetric", "metric": metric, "exclude_seen": str(exclude_seen).lower()}
        g = api_server.client.get("/recommend", params=params)
        if g.status_code == 404:
            assert entry == {**problem_of(g), "instance": "/recommend/batch"}
        else:
            assert g.status_code == 200, g.text
            assert_same_body(entry, g.json(), "item_id")


def test_defaults_are_the_get_endpoints(api_server, ids):
    item_ids, user_ids = ids
    r = api_server.client.post("/similar-items/batch", json={"queries": [{"item_id": item_ids[3]}]})
    g = api_server.client.get("/similar-items", params={"item_id": item_ids[3]})
    assert r.status_code == 200 and g.status_code == 200
    assert (r.json()["model"], r.json()["metric"]) == (g.json()["model"], g.json()["metric"])
    assert_same_body(r.json()["results"][0], g.json(), "item_id")
    r = api_server.client.post("/recommend/batch", json={"queries": [{"user_id": user_ids[3]}]})
    g = api_server.client.get("/recommend", params={"user_id": user_ids[3]})
    assert r.status_code == 200 and g.status_code == 200 and r.json()["exclude_seen"] is True
    assert_same_body(r.json()["results"][0], g.json(), "item_id")


@pytest.mark.parametrize(
    "path,payload,param",
    [
        ("/similar-items/batch", {"queries": []}, "queries"),
        ("/similar-items/batch", {"queries": [{"item_id": "i1"}] * 1001}, "queries"),
        ("/similar-items/batch", {"model": "nope", "queries": [{"item_id": "i1"}]}, "model"),
        ("/similar-items/batch", {"metric": "euclid", "queries": [{"item_id": "i1"}]}, "metric"),
        ("/similar-items/batch", {"queries": [{"item_id": "i1", "k": 0}]}, "k"),
        ("/similar-items/batch", {"queries": [{"item_id": "i1", "k": 1001}]}, "k"),
        ("/similar-items/batch", {"queries": [{"item_id": "i1", "extra": 1}]}, "extra"),
        ("/similar-items/batch", {"queries": [{"k": 3}]}, "item_id"),
        ("/similar-items/batch", {"queries": [{"item_id": "i1"}], "exclude_seen": True}, "exclude_seen"),
        ("/recommend/batch", {"metric": "whitened", "queries": [{"user_id": "u1"}]}, "metric"),
        ("/recommend/batch", {"queries": [{"user_id": 7}]}, "user_id"),
        ("/recommend/batch", {}, "queries"),
    ],
)
def test_a_bad_call_is_a_422_naming_the_field(api_server, path, payload, param):
    r = api_server.client.post(path, json=payload)
    assert r.status_code == 422, r.text
    problem = problem_of(r)
    assert param in {e["param"] for e in problem["errors"]}, problem
    assert all(e["in"] == "body" for e in problem["errors"]), problem


def test_a_body_that_is_not_json_is_a_400(api_server):
    r = api_server.client.post("/similar-items/batch", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "line 1 column 2" in problem_of(r)["detail"]
    assert api_server.client.get("/healthz").status_code == 200


def test_an_id_that_is_not_unicode_is_a_422_naming_it(api_server):
    content = b'{"queries": [{"item_id": "i1"}, {"item_id": "\\ud800x"}]}'  # a lone surrogate escape
    r = api_server.client.post("/similar-items/batch", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert [e["param"] for e in problem_of(r)["errors"]] == ["item_id"]


@pytest.mark.parametrize(
    "content,headers,status",
    [
        (b'{"queries": [{"item_id": "i1"}]}', {"content-type": "text/plain"}, 415),
        (b'{"queries": [{"item_id": "i1", "k": "5"}]}', {"content-type": "application/json"}, 422),
        (b"[1, 2]", {"content-type": "application/json"}, 422),
        (b" " * (9 << 20), {"content-type": "application/json"}, 413),
    ],
)
def test_bodies_are_checked_like_feedback(api_server, content, headers, status):
    r = api_server.client.post("/similar-items/batch", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert problem_of(r)["status"] == status


def test_a_large_recommend_batch_equals_get_for_every_user(api_server, ids):
    """200 users with different k and seen counts (searched in groups by candidates needed), each as GET answers."""
    _, user_ids = ids
    rng = np.random.default_rng(5)
    picked = rng.choice(len(user_ids), 200, replace=False).tolist()
    queries = [{"user_id": user_ids[u], "k": int(k)} for u, k in zip(picked, rng.integers(1, 60, 200), strict=True)]
    r = api_server.client.post("/recommend/batch", json={"metric": "dot", "queries": queries})
    assert r.status_code == 200, r.text
    for q, entry in zip(queries, r.json()["results"], strict=True):
        g = api_server.client.get("/recommend", params={**q, "metric": "dot"})
        assert g.status_code == 200, g.text
        assert_same_body(entry, g.json(), "item_id")
