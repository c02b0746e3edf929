"""The scores the API serves equal the same quantities computed directly from the embeddings.

The oracle (support.oracle.dense_oracle) rebuilds A, B from svd.npz with PAPER.md's closed forms, P = X A
from interactions.npz, the dense Xhat = P B^T, and every cosine by its definition: no index, no
models/ code. For each response: its scores equal the oracle's at the returned (query, neighbour)
pairs, and the score list equals the oracle's best k (so the neighbours are the true top k, ties aside).

test_zero_vectors_score_zero_not_nan builds its own version and server (slow); its fast twin runs the
same body on a version built in this process and the API in this process (TestClient).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from support.artifacts import API_BUILD, api_build, api_build_in_process
from support.in_process import in_process_server
from support.oracle import dense_oracle
from support.servers import start_api_server

from models.artifact.manifest import METRICS, RECOMMEND_METRICS
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS

RTOL, ATOL = 2e-4, 2e-5  # float32 indexes against a float64 oracle
K = 10


@pytest.fixture(scope="module")
def oracle(api_artifact):
    return dense_oracle(api_artifact.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])


@pytest.fixture(scope="module")
def ids(api_artifact) -> tuple[list[str], list[str]]:
    d = api_artifact.version_dir
    return [it["id"] for it in json.loads((d / "items.json").read_text())], json.loads((d / "users.json").read_text())


def check(neighbors: list[dict], key: str, index: dict[str, int], row_scores: np.ndarray, exclude: set[int]) -> None:
    """Scores at the returned rows match the oracle row; the list equals the oracle's top len(neighbors)."""
    rows = [index[n[key]] for n in neighbors]
    got = np.array([n["score"] for n in neighbors])
    assert not exclude & set(rows)
    np.testing.assert_allclose(got, row_scores[rows], rtol=RTOL, atol=ATOL)
    candidates = np.delete(row_scores, sorted(exclude))
    best = np.sort(candidates)[::-1][: len(rows)]
    np.testing.assert_allclose(got, best, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("model", MODELS)
def test_similar_items_scores(api_server, oracle, ids, model, metric):
    item_ids, _ = ids
    index = {x: i for i, x in enumerate(item_ids)}
    M = oracle.items(model, metric)
    for q in (0, 17, 123):
        r = api_server.client.get("/similar-items", params={"item_id": item_ids[q], "model": model, "metric": metric, "k": K})
        assert r.status_code == 200, r.text
        neighbors = r.json()["neighbors"]
        assert len(neighbors) == K
        check(neighbors, "item_id", index, M[q], {q})


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("model", MODELS)
def test_similar_users_scores(api_server, oracle, ids, model, metric):
    _, user_ids = ids
    index = {x: i for i, x in enumerate(user_ids)}
    M = oracle.users(model, metric)
    for q in (1, 400, 1999):
        r = api_server.client.get("/similar-users", params={"user_id": user_ids[q], "model": model, "metric": metric, "k": K})
        assert r.status_code == 200, r.text
        check(r.json()["neighbors"], "user_id", index, M[q], {q})


@pytest.mark.parametrize("metric", RECOMMEND_METRICS)
@pytest.mark.parametrize("model", MODELS)
def test_recommend_scores(api_server, oracle, ids, model, metric):
    item_ids, user_ids = ids
    index = {x: i for i, x in enumerate(item_ids)}
    M = oracle.recommend(model, metric)
    for u in (2, 900):
        seen = set(np.flatnonzero(oracle.X[u]).tolist())
        for exclude_seen, exclude in ((True, seen), (False, set())):
            r = api_server.client.get(
                "/recommend",
                params={
                    "user_id": user_ids[u],
                    "model": model,
                    "metric": metric,
                    "k": K,
                    "exclude_seen": str(exclude_seen).lower(),
                },
            )
            assert r.status_code == 200, r.text
            neighbors = r.json()["neighbors"]
            assert len(neighbors) == K
            check(neighbors, "item_id", index, M[u], exclude)


def test_whitened_has_no_recommend_score(api_server, ids):
    _, user_ids = ids
    r = api_server.client.get("/recommend", params={"user_id": user_ids[2], "metric": "whitened"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    (error,) = r.json()["errors"]
    assert error["param"] == "metric" and "no user -> item score" in error["message"]
    assert set(error["allowed"]) == set(RECOMMEND_METRICS)


@pytest.mark.parametrize("metric", ["projected", "projected-centered", "whitened"])
def test_shared_metrics_are_the_same_for_every_denoising_variant(api_server, ids, metric):
    item_ids, user_ids = ids
    for path, params in (
        ("/similar-items", {"item_id": item_ids[5]}),
        ("/similar-users", {"user_id": user_ids[5]}),
        ("/recommend", {"user_id": user_ids[5]}),
    ):
        if path == "/recommend" and metric not in RECOMMEND_METRICS:
            continue
        answers = [
            api_server.client.get(path, params={**params, "model": m, "metric": metric}).json()["neighbors"]
            for m in DENOISING_VARIANTS
        ]
        for other in answers[1:]:
            assert [n.get("item_id", n.get("user_id")) for n in other] == [n.get("item_id", n.get("user_id")) for n in answers[0]]
            np.testing.assert_allclose([n["score"] for n in other], [n["score"] for n in answers[0]], rtol=1e-5, atol=1e-6)


def test_cosine_depends_on_the_d_variant(api_server, ids):
    """The paper's point, visible through the API: raw cosine differs between equivalent solutions."""
    item_ids, _ = ids
    lists = {
        m: [
            n["item_id"]
            for n in api_server.client.get(
                "/similar-items", params={"item_id": item_ids[5], "model": m, "metric": "cosine", "k": K}
            ).json()["neighbors"]
        ]
        for m in DENOISING_VARIANTS
    }
    assert len({tuple(v) for v in lists.values()}) > 1


@pytest.mark.slow
def test_zero_vectors_score_zero_not_nan(tmp_path):
    """Weight decay with lambda above every singular value kills every dimension: all embeddings are 0."""
    version = api_build(tmp_path / "art", lambda_weight_decay=1e9)
    manifest = json.loads((tmp_path / "art" / "versions" / version / "manifest.json").read_text())
    assert manifest["models"]["weight-decay"]["surviving_dims"] == 0
    with start_api_server(tmp_path / "art", tmp_path) as server:
        for metric in METRICS:
            for path, params in (
                ("/similar-items", {"item_id": "i3"}),
                ("/similar-users", {"user_id": "u3"}),
                ("/recommend", {"user_id": "u3"}),
            ):
                if path == "/recommend" and metric not in RECOMMEND_METRICS:
                    continue
                r = server.client.get(path, params={**params, "model": "weight-decay", "metric": metric, "k": 5})
                assert r.status_code == 200, r.text
                assert "NaN" not in r.text and "null" not in r.text
                neighbors = r.json()["neighbors"]
                assert len(neighbors) == 5 and all(n["score"] == 0.0 for n in neighbors)
                if path != "/recommend":  # all scores tie at 0: the query row must still be left out
                    query = params.get("item_id") or params.get("user_id")
                    assert query not in {n.get("item_id") or n.get("user_id") for n in neighbors}


def test_zero_vectors_score_zero_not_nan_in_process(tmp_path, monkeypatch):
    """The slow test's body, with the version built in this process and the API in this process."""
    monkeypatch.setattr(sys.modules[__name__], "api_build", api_build_in_process)
    monkeypatch.setattr(sys.modules[__name__], "start_api_server", in_process_server)
    test_zero_vectors_score_zero_not_nan(tmp_path)
