"""filtered_top against a sort of every passing row by (score descending, row), on vectors full of exact ties."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.query.neighbours import filtered_top
from app.serving.version import VectorIndex


def _index(V: np.ndarray, kind: str) -> VectorIndex:
    flat = faiss.IndexFlatIP(V.shape[1])
    flat.add(V)
    searcher = flat
    if kind == "hnsw":
        searcher = faiss.IndexHNSWFlat(V.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
        searcher.hnsw.efSearch = 16
        searcher.add(V)
    return VectorIndex(file="t", kind=kind, recall_at_10=None, ef_search=16, searcher=searcher, exact=flat, vectors=V)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("share", [0.02, 0.3, 0.97])
def test_exact_index_gives_the_rule_s_top_k_of_the_passing_rows(seed, share):
    rng = np.random.default_rng(seed)
    V = rng.integers(-2, 3, size=(400, 4)).astype(np.float32)  # small integers: many exactly tied scores
    keep = rng.random(400) < share
    q = V[rng.integers(400)][None, :]
    index = _index(V, "flat")
    scores = (V.astype(np.float64) @ q[0].astype(np.float64)).tolist()
    for k in (1, 5, 40, 500):
        want = sorted(np.flatnonzero(keep).tolist(), key=lambda r: (-scores[r], r))[:k]
        rows, got = filtered_top(index, q, keep, k)
        assert rows.tolist() == want
        np.testing.assert_array_equal(got, [scores[r] for r in want])


@pytest.mark.parametrize("seed", range(4))
def test_approximate_index_still_returns_k_passing_rows(seed):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((600, 8)).astype(np.float32)
    keep = rng.random(600) < 0.05
    index = _index(V, "hnsw")
    for k in (3, 20, 100):
        rows, scores = filtered_top(index, V[7][None, :], keep, k)
        assert len(rows) == min(k, int(keep.sum())) and keep[rows].all() and len(set(rows.tolist())) == len(rows)
        np.testing.assert_allclose(scores, V[rows] @ V[7], rtol=1e-5, atol=1e-5)
        assert (np.diff(scores) <= 1e-6).all()


def test_nothing_passes():
    V = np.eye(3, dtype=np.float32)
    rows, scores = filtered_top(_index(V, "flat"), V[:1], np.zeros(3, dtype=bool), 5)
    assert rows.size == 0 and scores.size == 0
