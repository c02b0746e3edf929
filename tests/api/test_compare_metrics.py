"""GET /compare-metrics and /items/search over HTTP against `python -m app` (the session's fixture artifact).

Every figure of a response is recomputed here independently: the lists against /similar-items
(/similar-users), Jaccard and RBO from those lists by their definitions (written out below), the
weighted tau with scipy on the dense float64 scores of the dense oracle (support.oracle: PAPER.md's
closed forms, no index, no models/ code), popularity ratios from interactions.npz and category shares
from items.json.
"""

from __future__ import annotations

import json
import time
from itertools import combinations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import weightedtau
from support.artifacts import API_BUILD
from support.oracle import dense_oracle
from support.problems import PROBLEM

from models.artifact.manifest import METRICS
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS

K = 10
ITEM_QUERIES = (0, 17, 123)
USER_QUERIES = (1, 400)


@pytest.fixture(scope="module")
def oracle(api_artifact):
    return dense_oracle(api_artifact.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])


@pytest.fixture(scope="module")
def catalogue(api_artifact) -> dict:
    d = api_artifact.version_dir
    items = json.loads((d / "items.json").read_text())
    X = sp.load_npz(d / "interactions.npz").tocsr()
    return {
        "items": items,
        "item_ids": [it["id"] for it in items],
        "user_ids": json.loads((d / "users.json").read_text()),
        "item_pop": np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel(),  # users per item
        "user_pop": np.asarray((X > 0).sum(axis=1), dtype=np.float64).ravel(),  # items per user
    }


def rbo_ext(a: list, b: list, p: float) -> float:
    """RBO_ext of two equal-length lists, Webber et al. (2010) eq. 30: (1-p)/p sum_d A_d p^d + A_k p^k, A_d = X_d / d."""
    k = len(a)
    agreement = [len(set(a[:d]) & set(b[:d])) / d for d in range(1, k + 1)]
    return (1 - p) / p * sum(x * p**d for d, x in enumerate(agreement, start=1)) + agreement[-1] * p**k


def jaccard(a: list, b: list) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def ids_of(lst: dict, key: str) -> list[str]:
    return [n[key] for n in lst["neighbors"]]


def get_ok(server, **params) -> dict:
    r = server.client.get("/compare-metrics", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["artifact_version"] == r.headers["artifact-version"]
    return body


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["artifact_version"]
    return body


# --------------------------------------------------------------------------- three metrics of one model


@pytest.mark.parametrize("model", MODELS)
def test_items_metrics_side_by_side_equal_an_independent_recomputation(api_server, api_artifact, oracle, catalogue, model):
    item_ids, by_id = catalogue["item_ids"], {it["id"]: it for it in catalogue["items"]}
    pop = catalogue["item_pop"]
    for q in ITEM_QUERIES:
        body = get_ok(api_server, item_id=item_ids[q], model=model, k=K)
        assert body["artifact_version"] == api_artifact.version
        head = (body["side"], body["compare"], body["model"], body["models"], body["metric"])
        assert head == ("items", "metrics", model, None, None)
        assert body["query"] == {"item_id": item_ids[q], **{f: by_id[item_ids[q]][f] for f in ("title", "categories")}}
        assert [lst["name"] for lst in body["lists"]] == list(METRICS)
        lists = {}
        for lst in body["lists"]:
            single = api_server.client.get(
                "/similar-items", params={"item_id": item_ids[q], "model": model, "metric": lst["metric"], "k": K}
            ).json()
            assert lst["neighbors"] == single["neighbors"]  # the same list, scores, titles and categories as /similar-items
            assert (lst["model"], lst["metric"]) == (model, lst["name"])
            ids = ids_of(lst, "item_id")
            rows = [item_ids.index(i) for i in ids]
            lists[lst["name"]] = ids
            assert lst["popularity_ratio"] == pytest.approx(np.median(pop[rows]) / np.median(pop), rel=1e-12)
            query_cats = set(by_id[item_ids[q]]["categories"])
            share = np.mean([bool(query_cats & set(by_id[i]["categories"])) for i in ids])
            assert lst["category_share"] == pytest.approx(share, rel=1e-12)
        assert body["rbo_p"] == 0.9
        assert body["weighted_tau"] == {
            **body["weighted_tau"],
            "rows": len(item_ids) - 1,
            "sampled": False,
            "catalogue_rows": len(item_ids),
        }
        assert body["popularity"]["catalogue_median"] == np.median(pop) and body["popularity"]["query"] == pop[q]
        assert [(p["a"], p["b"]) for p in body["pairs"]] == list(combinations(METRICS, 2))
        for pair in body["pairs"]:
            a, b = lists[pair["a"]], lists[pair["b"]]
            assert pair["jaccard"] == pytest.approx(jaccard(a, b), abs=1e-12)
            assert pair["rbo"] == pytest.approx(rbo_ext(a, b, 0.9), abs=1e-9)
            x = np.delete(oracle.items(model, pair["a"])[q], q)
            y = np.delete(oracle.items(model, pair["b"])[q], q)
            assert pair["weighted_tau"] == pytest.approx(weightedtau(x, y).statistic, abs=1e-3)


def test_users_metrics_side_by_side(api_server, oracle, catalogue):
    user_ids, pop = catalogue["user_ids"], catalogue["user_pop"]
    model = "weight-decay"
    for q in USER_QUERIES:
        body = get_ok(api_server, user_id=user_ids[q], model=model, k=K, rbo_p=0.8)
        assert (body["side"], body["query"], body["rbo_p"]) == ("users", {"user_id": user_ids[q]}, 0.8)
        assert body["popularity"] == {"definition": "items per user", "catalogue_median": np.median(pop), "query": pop[q]}
        lists = {}
        for lst in body["lists"]:
            single = api_server.client.get(
                "/similar-users", params={"user_id": user_ids[q], "model": model, "metric": lst["metric"], "k": K}
            ).json()
            assert lst["neighbors"] == single["neighbors"]
            lists[lst["name"]] = ids_of(lst, "user_id")
            rows = [user_ids.index(u) for u in lists[lst["name"]]]
            assert lst["popularity_ratio"] == pytest.approx(np.median(pop[rows]) / np.median(pop), rel=1e-12)
            assert lst["category_share"] is None  # users have no categories
        for pair in body["pairs"]:
            a, b = lists[pair["a"]], lists[pair["b"]]
            assert pair["jaccard"] == pytest.approx(jaccard(a, b), abs=1e-12)
            assert pair["rbo"] == pytest.approx(rbo_ext(a, b, 0.8), abs=1e-9)
            x = np.delete(oracle.users(model, pair["a"])[q], q)
            y = np.delete(oracle.users(model, pair["b"])[q], q)
            assert pair["weighted_tau"] == pytest.approx(weightedtau(x, y).statistic, abs=1e-3)


def test_weighted_tau_on_a_seeded_sample_when_the_catalogue_is_larger_than_tau_rows(api_server, oracle, catalogue):
    user_ids = catalogue["user_ids"]
    m, n, q = len(user_ids), 500, 400
    body = get_ok(api_server, user_id=user_ids[q], model="denoising-symmetric", tau_rows=n)
    # the documented sample: numpy default_rng(0), n of the m rows without replacement, minus the query row
    rows = np.sort(np.random.default_rng(0).choice(m, size=n, replace=False))
    rows = rows[rows != q]
    assert body["weighted_tau"] == {**body["weighted_tau"], "rows": rows.size, "catalogue_rows": m, "sampled": True, "seed": 0}
    for pair in body["pairs"]:
        x = oracle.users("denoising-symmetric", pair["a"])[q, rows]
        y = oracle.users("denoising-symmetric", pair["b"])[q, rows]
        assert pair["weighted_tau"] == pytest.approx(weightedtau(x, y).statistic, abs=1e-3)
    full = get_ok(api_server, user_id=user_ids[q], model="denoising-symmetric")
    assert [p["jaccard"] for p in full["pairs"]] == [p["jaccard"] for p in body["pairs"]]  # only tau changes
    skipped = get_ok(api_server, user_id=user_ids[q], model="denoising-symmetric", tau_rows=0)
    assert skipped["weighted_tau"]["rows"] == 0 and all(p["weighted_tau"] is None for p in skipped["pairs"])


# --------------------------------------------------------------------------- one metric across models: D-sensitivity


def test_d_sensitivity_cosine_lists_move_between_denoising_variants_projected_do_not(api_server, catalogue):
    item_ids = catalogue["item_ids"]
    moved = 0
    for q in ITEM_QUERIES:
        params = {"item_id": item_ids[q], "models": list(DENOISING_VARIANTS), "k": K}
        cos = get_ok(api_server, **params, metric="cosine")
        proj = get_ok(api_server, **params, metric="projected")
        default = get_ok(api_server, **params)
        assert default["metric"] == "cosine" and default["pairs"] == cos["pairs"]
        for body, metric in ((cos, "cosine"), (proj, "projected")):
            head = (body["compare"], body["model"], body["models"], body["metric"])
            assert head == ("models", None, list(DENOISING_VARIANTS), metric)
            assert [lst["name"] for lst in body["lists"]] == list(DENOISING_VARIANTS)
            assert len(body["pairs"]) == 6
            for lst in body["lists"]:
                single = api_server.client.get(
                    "/similar-items", params={"item_id": item_ids[q], "model": lst["model"], "metric": metric, "k": K}
                ).json()
                assert lst["neighbors"] == single["neighbors"]
        # projected cosine depends only on A B^T: one list for every D-variant, perfect agreement
        assert len({json.dumps(lst["neighbors"]) for lst in proj["lists"]}) == 1
        assert all(
            p["jaccard"] == 1.0 and p["rbo"] == pytest.approx(1.0) and p["weighted_tau"] == pytest.approx(1.0)
            for p in proj["pairs"]
        )
        lists = {lst["name"]: ids_of(lst, "item_id") for lst in cos["lists"]}
        for p in cos["pairs"]:
            assert p["jaccard"] == pytest.approx(jaccard(lists[p["a"]], lists[p["b"]]), abs=1e-12)
        moved += len({tuple(v) for v in lists.values()}) > 1
    assert moved >= 1, "cosine lists were identical across the D-variants for every query"


def test_models_on_users_and_repeated_names(api_server, catalogue):
    user = catalogue["user_ids"][7]
    body = get_ok(api_server, user_id=user, models=["weight-decay", "denoising-symmetric", "weight-decay"], metric="dot", k=5)
    assert body["models"] == ["weight-decay", "denoising-symmetric"]  # a repeated name counts once, order kept
    assert [(p["a"], p["b"]) for p in body["pairs"]] == [("weight-decay", "denoising-symmetric")]
    for lst in body["lists"]:
        single = api_server.client.get("/similar-users", params={"user_id": user, "model": lst["model"], "metric": "dot", "k": 5})
        assert lst["neighbors"] == single.json()["neighbors"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("params", "param", "allowed"),
    [
        ({}, "item_id", None),
        ({"item_id": "i1", "user_id": "u1"}, "item_id", None),
        ({"item_id": "i1", "model": "svd"}, "model", MODELS),
        ({"item_id": "i1", "models": ["denoising-symmetric", "nope"]}, "models", MODELS),
        ({"item_id": "i1", "models": ["weight-decay"]}, "models", None),
        ({"item_id": "i1", "models": ["weight-decay", "weight-decay"]}, "models", None),
        ({"item_id": "i1", "models": ["weight-decay", "denoising-symmetric"], "model": "weight-decay"}, "model", None),
        ({"item_id": "i1", "models": ["weight-decay", "denoising-symmetric"], "metric": "euclid"}, "metric", METRICS),
        ({"item_id": "i1", "metric": "cosine"}, "metric", None),
        ({"item_id": "i1", "k": 0}, "k", None),
        ({"item_id": "i1", "k": 1001}, "k", None),
        ({"item_id": "i1", "rbo_p": 1}, "rbo_p", None),
        ({"item_id": "i1", "tau_rows": 5001}, "tau_rows", None),
        ({"item_id": "i1", "tau_rows": -1}, "tau_rows", None),
    ],
)
def test_invalid_parameters_are_422_problems(api_server, params, param, allowed):
    body = problem(api_server.client.get("/compare-metrics", params=params), 422)
    assert body["type"] == "/problems/invalid-parameters"
    errors = {e["param"]: e for e in body["errors"]}
    assert param in errors, body
    if allowed is not None:
        assert errors[param]["allowed"] == list(allowed)


def test_unknown_ids_are_404_problems(api_server, api_artifact):
    body = problem(api_server.client.get("/compare-metrics", params={"item_id": "no-such-item"}), 404)
    assert (body["type"], body["item_id"]) == ("/problems/unknown-item", "no-such-item")
    assert body["artifact_version"] == api_artifact.version
    body = problem(api_server.client.get("/compare-metrics", params={"user_id": "no-such-user", "model": "weight-decay"}), 404)
    assert (body["type"], body["user_id"]) == ("/problems/unknown-user", "no-such-user")


def test_latency_is_bounded(api_server, catalogue):
    """Five models x 2,000 users: 10 list pairs, each weighted tau on all 1,999 other users (the default bound)."""
    user = catalogue["user_ids"][3]
    params = {"user_id": user, "models": list(MODELS), "metric": "cosine", "k": 50}
    get_ok(api_server, **params)  # warm (first touch of the memory-mapped indexes)
    t0 = time.perf_counter()
    body = get_ok(api_server, **params)
    assert len(body["pairs"]) == 10 and body["weighted_tau"]["rows"] == 1999
    assert time.perf_counter() - t0 < 2.0  # ~0.2 s on a quiet 2-core machine; generous for a loaded CI


# --------------------------------------------------------------------------- /items/search


def test_item_search_ranks_exact_id_then_title_matches(api_server, api_artifact, catalogue):
    items, pop = catalogue["items"], catalogue["item_pop"]
    r = api_server.client.get("/items/search", params={"q": "I17", "limit": 50})
    assert r.status_code == 200 and r.headers["artifact-version"] == api_artifact.version
    body = r.json()
    assert (body["q"], body["limit"], body["artifact_version"]) == ("I17", 50, api_artifact.version)
    found = body["items"]
    assert found[0]["item_id"] == "i17"  # exact id (case-insensitive) first
    expected = {it["id"] for it in items if "i17" in it["id"].lower() or "i17" in it["title"].lower()}
    assert {f["item_id"] for f in found} == expected
    by_id = {it["id"]: (it, i) for i, it in enumerate(items)}
    for f in found:
        it, row = by_id[f["item_id"]]
        assert f == {"item_id": it["id"], "title": it["title"], "categories": it["categories"], "popularity": pop[row]}
    # a title fragment: every item whose title holds it, whole-word title prefix first, then by popularity
    title = items[5]["title"]  # "item 5 (cluster c)"
    words = title.split(" (")[0]
    found = api_server.client.get("/items/search", params={"q": words.upper(), "limit": 50}).json()["items"]
    assert found[0]["item_id"] == items[5]["id"]
    rest = [f["popularity"] for f in found[1:]]
    assert rest == sorted(rest, reverse=True)
    assert {f["item_id"] for f in found} == {it["id"] for it in items if words in it["title"]}
    assert len(api_server.client.get("/items/search", params={"q": "item", "limit": 3}).json()["items"]) == 3
    assert api_server.client.get("/items/search", params={"q": "zzz-nothing"}).json()["items"] == []


def test_popular_items_are_the_most_popular_ties_by_row(api_server, api_artifact, catalogue):
    items, pop = catalogue["items"], np.asarray(catalogue["item_pop"])
    order = sorted(range(len(items)), key=lambda r: (-pop[r], r))  # the rule, recomputed
    body = api_server.client.get("/items/popular", params={"limit": 50}).json()
    assert body["artifact_version"] == api_artifact.version and body["limit"] == 50
    assert [f["item_id"] for f in body["items"]] == [items[r]["id"] for r in order[:50]]
    assert [f["popularity"] for f in body["items"]] == [int(pop[r]) for r in order[:50]]
    for limit in ("0", "51", "x"):
        problem(api_server.client.get("/items/popular", params={"limit": limit}), 422)


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {"q": "a", "limit": 51}])
def test_item_search_rejects_bad_parameters(api_server, params):
    problem(api_server.client.get("/items/search", params=params), 422)
