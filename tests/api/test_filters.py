"""exclude and category on /similar-items and /recommend, against the dense oracle over the items that pass.

Every answer: only items of the category, none excluded (nor, for /recommend with exclude_seen, seen), exactly
min(k, items passing) of them, and (exact indexes) the oracle's best among the passing items. The same on a
version with HNSW indexes and short stored neighbour lists, where the search and the lists both have to widen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.artifacts import API_BUILD, api_build
from support.oracle import dense_oracle
from support.servers import ApiServer, start_api_server

from models.artifact.manifest import RECOMMEND_METRICS

RTOL, ATOL = 2e-4, 2e-5


def _catalogue(version_dir: Path) -> tuple[list[str], list[str], dict[str, set[int]]]:
    items = json.loads((version_dir / "items.json").read_text())
    users = json.loads((version_dir / "users.json").read_text())
    cats: dict[str, set[int]] = {}
    for r, it in enumerate(items):
        for c in it.get("categories") or []:
            cats.setdefault(c, set()).add(r)
    return [it["id"] for it in items], users, cats


def _check(neighbors: list[dict], index: dict[str, int], row_scores: np.ndarray, passing: set[int], k: int, exact: bool) -> None:
    rows = [index[n["item_id"]] for n in neighbors]
    assert len(rows) == min(k, len(passing)), (len(rows), k, len(passing))
    assert set(rows) <= passing and len(set(rows)) == len(rows)
    got = np.array([n["score"] for n in neighbors])
    np.testing.assert_allclose(got, row_scores[rows], rtol=RTOL, atol=ATOL)
    assert (np.diff(got) <= ATOL).all()  # best first
    if exact:
        best = np.sort(row_scores[sorted(passing)])[::-1][: len(rows)]
        np.testing.assert_allclose(got, best, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def flat(api_artifact):
    item_ids, user_ids, cats = _catalogue(api_artifact.version_dir)
    oracle = dense_oracle(api_artifact.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])
    return item_ids, user_ids, cats, oracle


@pytest.fixture(scope="module")
def hnsw_server(tmp_path_factory) -> Iterator[tuple[ApiServer, Path]]:
    """A version with HNSW indexes and stored top-5 lists, served by `python -m app`."""
    root = tmp_path_factory.mktemp("hnsw-lists")
    version = api_build(root, flags=("--hnsw",), precompute_neighbours=5)
    with start_api_server(root, tmp_path_factory.mktemp("hnsw-logs")) as server:
        yield server, root / "versions" / version


CASES = [  # (model, metric, query item row, k, excluded: the first n unfiltered neighbours)
    ("denoising-symmetric", "projected", 0, 10, 3),
    ("weight-decay", "cosine", 17, 25, 5),
    ("denoising-item-orthonormal", "dot", 123, 10, 0),
    ("denoising-sigma-matched", "whitened", 250, 80, 2),  # more than the category holds: all of it
]


def _similar(client, item_id: str, model: str, metric: str, k: int, **params) -> dict:
    r = client.get("/similar-items", params={"item_id": item_id, "model": model, "metric": metric, "k": k, **params})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(("model", "metric", "q", "k", "n_excluded"), CASES)
def test_similar_items_category_and_exclude(api_server, flat, model, metric, q, k, n_excluded):
    item_ids, _, cats, oracle = flat
    index = {x: i for i, x in enumerate(item_ids)}
    plain = _similar(api_server.client, item_ids[q], model, metric, 20)["neighbors"]
    excluded = [n["item_id"] for n in plain[:n_excluded]] + ["not-an-item"]
    for category, rows in sorted(cats.items())[:3]:
        body = _similar(api_server.client, item_ids[q], model, metric, k, category=category, exclude=excluded)
        assert body["category"] == category and body["exclude"] == excluded
        passing = rows - {q} - {index[i] for i in excluded if i in index}
        _check(body["neighbors"], index, oracle.items(model, metric)[q], passing, k, exact=True)
        assert all(category in n["categories"] for n in body["neighbors"])
    body = _similar(api_server.client, item_ids[q], model, metric, k, exclude=excluded)
    passing = set(range(len(item_ids))) - {q} - {index[i] for i in excluded if i in index}
    _check(body["neighbors"], index, oracle.items(model, metric)[q], passing, k, exact=True)
    assert "category" not in body


@pytest.mark.parametrize("metric", RECOMMEND_METRICS)
def test_recommend_category_and_exclude(api_server, flat, metric):
    item_ids, user_ids, cats, oracle = flat
    index = {x: i for i, x in enumerate(item_ids)}
    model = "denoising-symmetric"
    M = oracle.recommend(model, metric)
    for u in (2, 900):
        seen = set(np.flatnonzero(oracle.X[u]).tolist())
        top = np.argsort(-M[u])[:4].tolist()
        excluded = [item_ids[r] for r in top]
        category = sorted(cats)[u % len(cats)]
        for exclude_seen in (True, False):
            r = api_server.client.get(
                "/recommend",
                params={
                    "user_id": user_ids[u],
                    "model": model,
                    "metric": metric,
                    "k": 30,
                    "exclude_seen": str(exclude_seen).lower(),
                    "category": category,
                    "exclude": excluded,
                },
            )
            assert r.status_code == 200, r.text
            body = r.json()
            passing = cats[category] - set(top) - (seen if exclude_seen else set())
            _check(body["neighbors"], index, M[u], passing, 30, exact=True)
            assert body["exclude_seen"] is exclude_seen and body["category"] == category


def test_unknown_category_is_a_422_listing_the_categories(api_server, flat):
    item_ids, user_ids, cats, _ = flat
    for path, params in (("/similar-items", {"item_id": item_ids[0]}), ("/recommend", {"user_id": user_ids[0]})):
        r = api_server.client.get(path, params={**params, "category": "no-such-shelf"})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        (error,) = [e for e in r.json()["errors"] if e["param"] == "category"]
        assert "unknown category 'no-such-shelf'" in error["message"]
        assert sorted(error["allowed"]) == sorted(cats)


def test_too_many_excluded_ids_is_a_422(api_server, flat):
    item_ids = flat[0]
    r = api_server.client.get("/similar-items", params={"item_id": item_ids[0], "exclude": [f"x{j}" for j in range(1001)]})
    assert r.status_code == 422 and "exclude" in r.text


def test_excluding_the_whole_category_gives_an_empty_list(api_server, flat):
    item_ids, _, cats, _ = flat
    category, rows = sorted(cats.items())[0]
    q = next(r for r in range(len(item_ids)) if r not in rows)
    body = _similar(
        api_server.client, item_ids[q], "weight-decay", "dot", 10, category=category, exclude=[item_ids[r] for r in sorted(rows)]
    )
    assert body["neighbors"] == []


@pytest.mark.parametrize("metric", ["dot", "cosine", "projected"])
def test_hnsw_and_short_lists_still_answer_k_that_pass(hnsw_server, metric):
    server, version_dir = hnsw_server
    item_ids, user_ids, cats = _catalogue(version_dir)
    index = {x: i for i, x in enumerate(item_ids)}
    oracle = dense_oracle(version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])
    manifest = json.loads((version_dir / "manifest.json").read_text())
    entry = manifest["indexes"][f"items/denoising-symmetric/{metric}"]
    assert entry["neighbours"]["n"] == 5 and "hnsw" in entry
    M = oracle.items("denoising-symmetric", metric)
    for q in (3, 77, 201):
        for category, rows in sorted(cats.items())[:2]:
            # k beyond the stored lists (5): the filtered list cannot answer, the search must widen
            body = _similar(server.client, item_ids[q], "denoising-symmetric", metric, 12, category=category)
            _check(body["neighbors"], index, M[q], rows - {q}, 12, exact=False)
            # k within the lists and a loose filter: answered from the list, which is exact
            body = _similar(server.client, item_ids[q], "denoising-symmetric", metric, 3, exclude=[item_ids[(q + 1) % 300]])
            passing = set(range(len(item_ids))) - {q, (q + 1) % 300}
            _check(body["neighbors"], index, M[q], passing, 3, exact=True)
    R = oracle.recommend("denoising-symmetric", "projected")
    for u in (5, 1500):
        seen = set(np.flatnonzero(oracle.X[u]).tolist())
        category = sorted(cats)[u % len(cats)]
        r = server.client.get(
            "/recommend", params={"user_id": user_ids[u], "model": "denoising-symmetric", "k": 40, "category": category}
        )
        assert r.status_code == 200, r.text
        _check(r.json()["neighbors"], index, R[u], cats[category] - seen, 40, exact=False)


def test_batch_filters_answer_each_query_as_get_does(api_server, flat):
    item_ids, user_ids, cats, oracle = flat
    index = {x: i for i, x in enumerate(item_ids)}
    category = sorted(cats)[1]
    excluded = [item_ids[r] for r in sorted(cats[category])[:5]] + ["not-an-item"]
    body = {"model": "weight-decay", "metric": "cosine", "category": category, "exclude": excluded}
    queries = [{"item_id": item_ids[q], "k": k} for q, k in ((0, 10), (44, 70), (299, 3))] + [{"item_id": "nope"}]
    r = api_server.client.post("/similar-items/batch", json={**body, "queries": queries})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["category"] == category and out["exclude"] == excluded
    for q, got in zip(queries[:3], out["results"][:3], strict=True):
        want = _similar(api_server.client, q["item_id"], "weight-decay", "cosine", q["k"], category=category, exclude=excluded)
        assert got == want
        passing = cats[category] - {index[q["item_id"]]} - {index[i] for i in excluded if i in index}
        _check(got["neighbors"], index, oracle.items("weight-decay", "cosine")[index[q["item_id"]]], passing, q["k"], exact=True)
    assert out["results"][3]["status"] == 404
    users = [{"user_id": user_ids[u], "k": 25} for u in (2, 900)]
    r = api_server.client.post(
        "/recommend/batch", json={**body, "model": "denoising-symmetric", "metric": "dot", "queries": users}
    )
    assert r.status_code == 200, r.text
    for q, got in zip(users, r.json()["results"], strict=True):
        params = {
            "user_id": q["user_id"],
            "model": "denoising-symmetric",
            "metric": "dot",
            "k": 25,
            "category": category,
            "exclude": excluded,
        }
        assert got == api_server.client.get("/recommend", params=params).json()
    r = api_server.client.post("/recommend/batch", json={"category": "no-such-shelf", "queries": users})
    assert r.status_code == 422
    (error,) = [e for e in r.json()["errors"] if e["param"] == "category"]
    assert error["in"] == "body" and sorted(error["allowed"]) == sorted(cats)
