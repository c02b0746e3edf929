"""The IVF twin of a large index (models.indexes.ivf): inner products kept by the augmentation, recall measured
as its definition says, and the choice (exact below the row count, the twin when its recall holds, exact when
no probe count reaches it), every figure recomputed here with dense numpy."""

from __future__ import annotations

import numpy as np
import pytest

from models.indexes.ivf import IvfParams, IvfSearcher, QuerySet, augment, choose, recall_per_query, sample_queries


def _clustered(rows: int, dim: int, clusters: int, seed: int, spread: float = 0.15) -> np.ndarray:
    """Rows around `clusters` random directions, with log-normal norms (so raw inner product favours long rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, rows)] + spread * np.sqrt(dim) * rng.standard_normal((rows, dim)) / np.sqrt(dim)
    return (x * rng.lognormal(0.0, 0.5, rows)[:, None]).astype(np.float32)


def _dense_recall(found: np.ndarray, queries: np.ndarray, vectors: np.ndarray, own: np.ndarray | None) -> float:
    """Mean over queries of: of the first 10 found rows (own row and -1 left out), the share whose dense float64
    inner product with the query is at least the query's 10th best (its own row left out)."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    if own is not None:
        scores[np.arange(len(own)), own] = -np.inf
    kth = -np.sort(-scores, axis=1)[:, 9]
    hits = []
    for i, f in enumerate(found):
        first = [r for r in f.tolist() if r >= 0 and (own is None or r != own[i])][:10]
        hits.append(sum(scores[i, r] >= kth[i] - 1e-5 * abs(kth[i]) - 1e-6 for r in first) / 10)
    return float(np.mean(hits))


def test_augmentation_keeps_inner_products_and_equalises_norms():
    x = _clustered(500, 12, 5, seed=1)
    q = np.random.default_rng(2).standard_normal((7, 12)).astype(np.float32)
    xa, augmented = augment(x)
    assert augmented and xa.shape == (500, 13)
    np.testing.assert_allclose(np.linalg.norm(xa, axis=1), np.linalg.norm(x, axis=1).max(), rtol=1e-5)
    qa = np.hstack([q, np.zeros((7, 1), np.float32)])
    np.testing.assert_allclose(qa @ xa.T, q @ x.T, rtol=1e-5, atol=1e-5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    same, again = augment(unit)
    assert not again and same.shape == unit.shape  # equal norms: nothing to add


def test_recall_per_query_counts_rows_scoring_at_least_the_tenth():
    truth = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]])
    truth_scores = np.array([np.linspace(2.0, 1.0, 11), np.linspace(2.0, 1.0, 11)])
    found = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 11, -1], [20, 21, 22, 23, 24, 40, 41, 42, 43, 44, 45]])
    found_scores = np.vstack(
        [np.r_[truth_scores[0, 1:10], 0.5, -np.inf], np.r_[truth_scores[1, :5], [1.0, 1.0, 0.9, 0.9, 0.9, 0.9]]]
    )
    got = recall_per_query(found, found_scores, truth, truth_scores, np.array([0, 99]))
    # query 0: its own row 0 dropped, so the truth is rows 1..10 (10th score 1.0); found 1..9 and row 11 at 0.5 -> 9 of 10
    # query 1: 10th exact score 1.1; found 20..24, then 40, 41 at 1.0 (below it) and three at 0.9 -> 5 of 10
    np.testing.assert_allclose(got, [0.9, 0.5])
    tied = found_scores.copy()
    tied[1, 5:10] = truth_scores[1, 9]  # five other rows tied with the 10th (duplicates): right answers too
    np.testing.assert_allclose(recall_per_query(found, tied, truth, truth_scores, np.array([0, 99])), [0.9, 1.0])


def test_small_index_stays_exact():
    x = _clustered(800, 8, 4, seed=3)
    choice = choose(x, [sample_queries(x, "rows", 50, 0, own=True)], IvfParams(exact_max_rows=800))
    assert choice.index is None and "800 rows <= exact_max_rows 800" in choice.reason


@pytest.mark.parametrize("normalise", [False, True], ids=["dot", "cosine"])
def test_twin_recall_is_the_measured_recall_and_holds_on_fresh_queries(normalise):
    x = _clustered(6000, 16, 40, seed=4)
    if normalise:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    outside = _clustered(400, 16, 40, seed=5)  # /recommend's users: queries that are not rows of the index
    params = IvfParams(exact_max_rows=1000, queries=300)
    own = sample_queries(x, "rows", params.queries, 7, own=True)
    users = QuerySet("users", outside[:300])
    choice = choose(x, [own, users], params, seed=7)
    assert choice.index is not None, choice.reason
    assert choice.augmented is not normalise
    assert 1 <= choice.nprobe <= choice.nlist and "ivf: 6000 rows > exact_max_rows 1000" in choice.reason
    searcher = IvfSearcher(choice.index, choice.augmented, choice.nprobe)
    for qs in (own, users):  # the recorded figure is the recall of these queries, by the definition
        _, found = searcher.search(qs.queries, 11)
        recall = _dense_recall(found, qs.queries, x, qs.rows)
        assert recall == pytest.approx(choice.recall_at_10[qs.name], abs=2e-3)
        assert recall >= params.target_recall
    fresh = np.random.default_rng(8).choice(6000, 500, replace=False)  # rows the build never measured
    _, found = searcher.search(x[fresh], 11)
    # the target, within the sampling error of 500 queries
    assert _dense_recall(found, x[fresh], x, fresh) >= params.target_recall - 0.02


def test_no_probe_count_reaching_the_recall_means_exact():
    # isotropic noise has no clusters to probe: within 5% of the rows an IVF finds few true neighbours
    x = np.random.default_rng(9).standard_normal((4000, 48)).astype(np.float32)
    params = IvfParams(exact_max_rows=1000, max_scan=0.05)
    choice = choose(x, [sample_queries(x, "rows", 200, 0, own=True)], params)
    assert choice.index is None
    assert choice.reason.startswith(
        "exact: 4000 rows > exact_max_rows 1000, but no nprobe reaches recall@10 0.95 scanning at most 5% of the rows"
    )
