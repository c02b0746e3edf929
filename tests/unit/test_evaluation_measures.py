"""Held-out evaluation: the per-user split, Recall / nDCG / coverage / Spearman, and the rankings of each metric.

Expected values are hand-computed (written as arithmetic) or recomputed densely here: Xhat = P Q^T and
its row / column norms, a sort by (-score, id) per row, scipy's rankdata. Nothing is compared with the
code under test itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata

from models.artifact.manifest import METRICS, RECOMMEND_METRICS
from models.errors import InputError
from models.evaluation.measures import coverage, ndcg_at, recall_at, similarity_spearman
from models.evaluation.report import format_metric_grid
from models.evaluation.scoring import (
    EvalParams,
    baselines,
    eval_users,
    evaluate_model,
    item_lists,
    item_vectors,
    rank_users,
)
from models.evaluation.split import holdout_split


def log2(x: float) -> float:
    return math.log2(x)


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """0/1 csr with row u holding the items rows[u]."""
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def random_interactions(seed: int, n_users: int = 120, n_items: int = 60) -> sp.csr_matrix:
    """Users with 1 to 30 distinct items (some below min_interactions), values in (0.5, 5)."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(n_items, int(rng.integers(1, 31)), replace=False).tolist() for _ in range(n_users)]
    X = csr(rows, n_items)
    X.data = rng.uniform(0.5, 5.0, X.nnz)
    return X


# ---------------------------------------------------------------- measures


def test_recall_and_ndcg_hand_cases():
    n_items = 8
    ranked = np.array(
        [
            [3, 1, 4, 0, 2],  # held out {3, 4}: hits at ranks 1 and 3
            [5, 6, 7, 0, 1],  # held out {1, 2, 6}: hits at ranks 2 and 5
            [0, 1, 2, 3, 4],  # held out nothing
            [2, -1, -1, -1, -1],  # a short ranking: -1 never hits; held out {2, 7}
        ]
    )
    heldout = csr([[3, 4], [1, 2, 6], [], [2, 7]], n_items)

    np.testing.assert_allclose(recall_at(ranked, heldout, 3), [2 / 2, 1 / 3, np.nan, 1 / 2], equal_nan=True)
    np.testing.assert_allclose(recall_at(ranked, heldout, 5), [2 / 2, 2 / 3, np.nan, 1 / 2], equal_nan=True)
    # R below |held-out|: the denominator is R
    np.testing.assert_allclose(recall_at(ranked, heldout, 2), [1 / 2, 1 / 2, np.nan, 1 / 2], equal_nan=True)

    want3 = [
        (1 / log2(2) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3)),
        (1 / log2(3)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4)),
        np.nan,
        (1 / log2(2)) / (1 / log2(2) + 1 / log2(3)),
    ]
    np.testing.assert_allclose(ndcg_at(ranked, heldout, 3), want3, equal_nan=True, rtol=1e-12)
    want5_user1 = (1 / log2(3) + 1 / log2(6)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4))
    assert ndcg_at(ranked, heldout, 5)[1] == pytest.approx(want5_user1, rel=1e-12)
    # ideal DCG of min(R, |held-out|) = 2 hits when R = 2
    want2_user1 = (1 / log2(3)) / (1 / log2(2) + 1 / log2(3))
    assert ndcg_at(ranked, heldout, 2)[1] == pytest.approx(want2_user1, rel=1e-12)


def test_measures_read_only_the_top_R_and_ignore_explicit_zeros():
    ranked = np.array([[0, 1, 2, 3]])
    heldout = sp.csr_matrix((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([0, 3]))), shape=(1, 4))
    # item 0 is an explicit zero: not held out; item 3 is at rank 4, outside the top 3
    assert recall_at(ranked, heldout, 3)[0] == 0.0
    assert ndcg_at(ranked, heldout, 4)[0] == pytest.approx((1 / log2(5)) / (1 / log2(2)))


def test_coverage():
    assert coverage(np.array([[0, 1], [1, 2]]), 5) == 3 / 5
    assert coverage(np.array([[4, -1], [4, -1]]), 5) == 1 / 5
    assert coverage(np.arange(6).reshape(3, 2), 6) == 1.0
    with pytest.raises(InputError, match="outside the catalogue"):
        coverage(np.array([[0, 7]]), 5)


def test_similarity_spearman_against_direct_ranks():
    rng = np.random.default_rng(3)
    m = 9
    S = rng.standard_normal((m, m))
    T = S + rng.standard_normal((m, m))
    T[0, 1] = T[0, 2]  # a tie: average ranks
    iu = np.triu_indices(m, k=1)
    rs, rt = rankdata(S[iu]), rankdata(T[iu])
    want = float(np.corrcoef(rs, rt)[0, 1])
    assert similarity_spearman(S, T) == pytest.approx(want, abs=1e-12)
    # the diagonal and the lower triangle are not read
    S2, T2 = S.copy(), T.copy()
    S2[np.tril_indices(m)] = rng.standard_normal(m * (m + 1) // 2)
    T2[np.diag_indices(m)] = 100.0
    assert similarity_spearman(S2, T2) == pytest.approx(want, abs=1e-12)
    assert math.isnan(similarity_spearman(np.ones((4, 4)), T[:4, :4]))


# ---------------------------------------------------------------- split


@pytest.mark.parametrize(("fraction", "min_interactions"), [(0.2, 5), (0.05, 3), (0.5, 1)])
def test_split_invariants(fraction, min_interactions):
    X = random_interactions(0)
    s = holdout_split(X, fraction=fraction, min_interactions=min_interactions, seed=7)
    assert s.train.shape == s.test.shape == X.shape
    assert abs(s.train + s.test - X).max() == 0  # values moved intact
    assert s.train.multiply(s.test).nnz == 0  # disjoint
    n_u = np.diff(X.indptr)
    n_test = np.diff(s.test.indptr)
    eligible = n_u >= min_interactions
    # at least one each: round(0.05 * n) is 0 below 10 interactions
    want = np.array([max(1, round(fraction * n)) if ok else 0 for n, ok in zip(n_u, eligible, strict=True)])
    np.testing.assert_array_equal(n_test, want)
    assert eligible.any() and ((~eligible).any() or min_interactions == 1)  # both kinds of user are present
    assert s.info == {
        "method": "per-user random holdout",
        "fraction": fraction,
        "min_interactions": min_interactions,
        "seed": 7,
        "eval_users": int(eligible.sum()),
        "train_interactions": int(X.nnz - want.sum()),
        "test_interactions": int(want.sum()),
    }


def test_split_is_seeded():
    X = random_interactions(1)
    a, b, c = (holdout_split(X, seed=seed) for seed in (3, 3, 4))
    assert (a.test != b.test).nnz == 0 and (a.train != b.train).nnz == 0
    assert (a.test != c.test).nnz > 0


def test_split_draws_every_interaction_alike():
    # one user, 10 items, 2 held out: over many seeds each item is held out ~20% of the time
    X = csr([list(range(10))], 10)
    counts = sum(holdout_split(X, 0.2, 5, seed).test.toarray()[0] for seed in range(400))
    assert counts.sum() == 800
    assert counts.min() > 50 and counts.max() < 110  # binomial(400, 0.2): mean 80, sd 8


def test_split_rejects_bad_parameters():
    X = random_interactions(2)
    with pytest.raises(InputError, match="fraction"):
        holdout_split(X, fraction=1.0)
    with pytest.raises(InputError, match="min_interactions"):
        holdout_split(X, min_interactions=0)


# ---------------------------------------------------------------- rankings


def dense_scores(P: np.ndarray, Q: np.ndarray, metric: str) -> np.ndarray:
    """The metric's user -> item score matrix (n_users, n_items), recomputed from Xhat = P Q^T."""
    Xhat = P @ Q.T
    if metric == "dot":
        return Xhat
    if metric == "projected-centered":  # Xhat with each item's mean over users removed, cosine-normalised
        Xhat = Xhat - Xhat.mean(axis=0)
    if metric == "cosine":
        pn, qn = np.linalg.norm(P, axis=1), np.linalg.norm(Q, axis=1)
    else:
        pn, qn = np.linalg.norm(Xhat, axis=1), np.linalg.norm(Xhat, axis=0)
    denom = np.outer(pn, qn)
    return np.divide(Xhat, denom, out=np.zeros_like(Xhat), where=denom > 0)


def by_rule(scores: np.ndarray, exclude: set[int], R: int) -> list[int]:
    """Top-R ids of a score vector: descending score, equal scores by lower id, excluded ids left out, -1 padded."""
    ids = sorted((i for i in range(scores.size) if i not in exclude), key=lambda i: (-scores[i], i))[:R]
    return ids + [-1] * (R - len(ids))


def test_whitened_has_no_ranking():
    P, Q = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(InputError, match="whitened"):
        rank_users(P, Q, "whitened", np.arange(3), csr([[], [], []], 4), 2)


@pytest.mark.parametrize("metric", RECOMMEND_METRICS)
def test_rank_users_equals_a_dense_sort(metric):
    rng = np.random.default_rng(11)
    n_users, n_items, k = 40, 70, 5
    P = rng.standard_normal((n_users, k)) * np.array([0.1, 1, 3, 10, 0.5])
    Q = rng.standard_normal((n_items, k))
    lil = random_interactions(5, n_users, n_items).tolil()
    lil[3, :] = 1.0  # a user who has seen everything: an empty ranking
    train = lil.tocsr()
    S = dense_scores(P, Q, metric)
    users = np.array([0, 3, 5, 17, 39, 5])
    for R in (10, 69):
        got = rank_users(P, Q, metric, users, train, R, batch=4)
        for row, u in zip(got, users, strict=True):
            seen = set(train[u].indices.tolist())
            want = by_rule(S[u], seen, R)
            assert row.tolist() == want, (metric, R, u)
            assert not seen & set(row.tolist())
            # no near-ties in the data that rounding could order either way
            s = np.sort(S[u, [i for i in range(n_items) if i not in seen]])
            assert s.size < 2 or np.diff(s).min() > 1e-9
    assert (got[1] == -1).all()


def test_rank_users_tie_rule_and_zero_norms():
    # integer factors: every dot score is exact, so ties are real ties
    P = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    Q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    train = csr([[0], [], []], 6)
    dot = rank_users(P, Q, "dot", np.arange(3), train, 6)
    # user 0 scores [1, 0, 1, 1, 0, 1], item 0 seen; user 1 [1, 1, 1, 2, 0, 2]; user 2 all 0
    assert dot.tolist() == [[2, 3, 5, 1, 4, -1], [3, 5, 0, 1, 2, 4], [0, 1, 2, 3, 4, 5]]
    # projected: user 2 and item 4 have zero norms, so every score involving them is 0 (not NaN)
    proj = rank_users(P, Q, "projected", np.array([2, 1]), train, 6)
    assert proj[0].tolist() == [0, 1, 2, 3, 4, 5]
    # user 1: Xhat_1 = [1, 1, 1, 2, 0, 2] over column norms [sqrt 2, 1, sqrt 2, sqrt 5, 0, sqrt 5]
    # = [0.71, 1, 0.71, 0.89, 0, 0.89]; items 3 and 5 (and 0 and 2) are identical, so tie exactly
    assert proj[1].tolist() == [1, 3, 5, 0, 2, 4]


@pytest.mark.parametrize("metric", METRICS)
def test_item_lists_equal_a_dense_sort(metric):
    rng = np.random.default_rng(12)
    P = rng.standard_normal((30, 4)) * np.array([0.2, 1.0, 5.0, 20.0])
    Q = rng.standard_normal((25, 4))
    Xhat = P @ Q.T
    if metric == "dot":
        G = Q @ Q.T
    elif metric == "cosine":
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        G = Qn @ Qn.T
    elif metric == "projected-centered":  # Pearson of the columns of Xhat
        G = np.corrcoef(Xhat.T)
    elif metric == "whitened":  # Mahalanobis cosine of the rows of Q (its covariance is full rank here)
        Qc = Q - Q.mean(axis=0)
        M = Qc @ np.linalg.inv(np.cov(Qc.T)) @ Qc.T
        d = np.sqrt(np.diag(M))
        G = M / np.outer(d, d)
    else:  # cosine of the columns of Xhat
        Xn = Xhat / np.linalg.norm(Xhat, axis=0, keepdims=True)
        G = Xn.T @ Xn
    got = item_lists(item_vectors(P, Q, metric), k=6, batch=7)
    assert got.tolist() == [by_rule(G[i], {i}, 6) for i in range(25)]


# ---------------------------------------------------------------- evaluate_model


def model_and_data(seed: int):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 150, 80, 6
    P = rng.standard_normal((n_users, k))
    Q = rng.standard_normal((n_items, k))
    # interactions drawn from the model itself, so that rankings carry signal
    logits = P @ Q.T
    X = sp.csr_matrix((logits > np.quantile(logits, 0.8)).astype(np.float64))
    s = holdout_split(X, 0.2, 5, seed)
    popularity = np.asarray((s.train > 0).sum(axis=0)).ravel().astype(np.float64)
    categories = rng.random((n_items, 4)) < 0.3
    truth = np.corrcoef(Q)
    return P, Q, s, popularity, categories, truth


def test_projected_rows_are_gauge_invariant_and_cosine_rows_are_not():
    P, Q, s, popularity, categories, truth = model_and_data(21)
    rng = np.random.default_rng(22)
    d = np.exp(rng.uniform(np.log(0.01), np.log(100.0), P.shape[1]))
    params = EvalParams(list_k=5, recall_at=10, ndcg_at=30, batch=32)
    a = {r["metric"]: r for r in evaluate_model(P, Q, s.train, s.test, popularity, categories, truth, params)}
    b = {r["metric"]: r for r in evaluate_model(P * d, Q / d, s.train, s.test, popularity, categories, truth, params)}
    keys = ["recall_at_10", "ndcg_at_30", "category_precision_at_5", "popularity_ratio", "coverage_at_5", "spearman_truth"]
    assert set(a["projected"]) == {"metric", *keys}
    for metric in ("projected", "projected-centered", "whitened"):
        for key in keys:
            if metric == "whitened" and key in keys[:2]:  # no user -> item score: no ranking measures
                assert a[metric][key] is None and b[metric][key] is None
                continue
            assert isinstance(a[metric][key], float), (metric, key)
            assert a[metric][key] == pytest.approx(b[metric][key], abs=1e-9), (metric, key)
    assert a["projected"]["recall_at_10"] > 0.2  # the model ranks its own interactions well
    # cosine of the factor rows moves with D: its item-item similarities (a continuous measure) change
    assert abs(a["cosine"]["spearman_truth"] - b["cosine"]["spearman_truth"]) > 1e-3
    assert any(abs(a["cosine"][key] - b["cosine"][key]) > 1e-9 for key in keys[:5])


def test_equal_item_norms_make_cosine_rank_like_dot():
    P, Q, s, popularity, _, _ = model_and_data(23)
    Q = 3.0 * Q / np.linalg.norm(Q, axis=1, keepdims=True)
    params = EvalParams(recall_at=10, ndcg_at=30, batch=50)
    listed = evaluate_model(P, Q, s.train, s.test, popularity, None, None, params)
    json.dumps(listed, allow_nan=False)  # plain floats and None: the rows go to evaluation.json as they are
    rows = {r["metric"]: r for r in listed}
    assert rows["cosine"]["recall_at_10"] == pytest.approx(rows["dot"]["recall_at_10"], abs=1e-12)
    assert rows["cosine"]["ndcg_at_30"] == pytest.approx(rows["dot"]["ndcg_at_30"], abs=1e-12)
    assert rows["dot"]["category_precision_at_10"] is None and rows["dot"]["spearman_truth"] is None


def test_evaluate_model_recomputed_densely():
    P, Q, s, popularity, categories, _ = model_and_data(24)
    params = EvalParams(recall_at=5, ndcg_at=8, list_k=4, max_users=40, seed=3)
    row = evaluate_model(P, Q, s.train, s.test, popularity, categories, None, params)[2]
    assert row["metric"] == "projected"
    has_test = np.flatnonzero(np.diff(s.test.indptr) > 0)
    S = dense_scores(P, Q, "projected")
    recalls, ndcgs, evaluated = [], [], 0
    for u in has_test:
        seen, held = set(s.train[u].indices.tolist()), set(s.test[u].indices.tolist())
        top = by_rule(S[u], seen, 8)
        recalls.append(len(held & set(top[:5])) / min(5, len(held)))
        dcg = sum(1 / log2(r + 2) for r, i in enumerate(top) if i in held)
        ndcgs.append(dcg / sum(1 / log2(r + 2) for r in range(min(8, len(held)))))
        evaluated += 1
    assert evaluated > 40
    full = evaluate_model(P, Q, s.train, s.test, popularity, categories, None, EvalParams(recall_at=5, ndcg_at=8, list_k=4))[2]
    assert full["recall_at_5"] == pytest.approx(np.mean(recalls), abs=1e-12)
    assert full["ndcg_at_8"] == pytest.approx(np.mean(ndcgs), abs=1e-12)
    # the sample: 40 of the users with held-out items, seeded; the row averages over exactly them
    sample = eval_users(s.test, params)
    assert sample.size == 40 and set(sample.tolist()) <= set(has_test.tolist())
    np.testing.assert_array_equal(sample, eval_users(s.test, params))
    assert set(sample.tolist()) != set(eval_users(s.test, EvalParams(max_users=40, seed=4)).tolist())
    in_sample = np.isin(has_test, sample)
    assert row["recall_at_5"] == pytest.approx(np.mean(np.array(recalls)[in_sample]), abs=1e-12)
    assert row["ndcg_at_8"] == pytest.approx(np.mean(np.array(ndcgs)[in_sample]), abs=1e-12)
    # item lists of the projected metric: cosine of the columns of Xhat
    Xhat = P @ Q.T
    Xn = Xhat / np.linalg.norm(Xhat, axis=0, keepdims=True)
    G = Xn.T @ Xn
    lists = np.array([by_rule(G[i], {i}, 4) for i in range(Q.shape[0])])
    median = np.median(popularity)
    assert full["popularity_ratio"] == pytest.approx(np.mean(np.median(popularity[lists], axis=1)) / median, abs=1e-12)
    assert full["coverage_at_4"] == len(set(lists.ravel().tolist())) / Q.shape[0]
    shares = [
        np.mean([(categories[i] & categories[j]).any() for j in lists[i]]) for i in range(Q.shape[0]) if categories[i].any()
    ]
    assert full["category_precision_at_4"] == pytest.approx(np.mean(shares), abs=1e-12)


# ---------------------------------------------------------------- baselines


def test_popular_baseline_hand_case():
    # training popularity (users per item): [2, 3, 2, 0, 1]; by popularity, ties by lower id: 1, 0, 2, 4, 3
    train = csr([[0, 1, 2], [0, 1, 2, 4], [1], []], 5)
    test = csr([[3, 4], [3], [2, 3], [2, 4]], 5)
    popularity = np.array([2.0, 3.0, 2.0, 0.0, 1.0])
    categories = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]], dtype=bool)
    params = EvalParams(recall_at=2, ndcg_at=3, list_k=2)
    rows = {r["model"]: r for r in baselines(train, test, popularity, categories, params)}
    popular = rows["popular"]
    assert popular["metric"] is None
    # rankings of the unseen items: u0 [4, 3], u1 [3], u2 [0, 2, 4], u3 [1, 0, 2]
    recalls = [2 / 2, 1 / 1, 1 / 2, 0 / 2]
    ndcgs = [1.0, 1.0, (1 / log2(3)) / (1 / log2(2) + 1 / log2(3)), (1 / log2(4)) / (1 / log2(2) + 1 / log2(3))]
    assert popular["recall_at_2"] == pytest.approx(np.mean(recalls), abs=1e-12)
    assert popular["ndcg_at_3"] == pytest.approx(np.mean(ndcgs), abs=1e-12)
    # item lists, the two most popular other items: 0 [1, 2], 1 [0, 2], 2 [1, 0], 3 [1, 0], 4 [1, 0]
    assert popular["coverage_at_2"] == 3 / 5
    # items with a category: 0 (1 shares A), 1 (0 shares A), 2 (B: none), 4 (B: none); item 3 has none
    assert popular["category_precision_at_2"] == pytest.approx((1 / 2 + 1 / 2 + 0 + 0) / 4, abs=1e-12)
    # catalogue median 2; list medians 2.5, 2, 2.5, 2.5, 2.5
    assert popular["popularity_ratio"] == pytest.approx((2.5 + 2 + 2.5 + 2.5 + 2.5) / 5 / 2, abs=1e-12)
    assert popular["spearman_truth"] is None
    assert rows["random"]["metric"] is None


def test_random_baseline_is_seeded_and_excludes_training_items():
    P, Q, s, popularity, categories, _ = model_and_data(25)
    params = EvalParams(recall_at=10, ndcg_at=20, list_k=5)
    a = baselines(s.train, s.test, popularity, categories, params)
    b = baselines(s.train, s.test, popularity, categories, params)
    c = baselines(s.train, s.test, popularity, categories, EvalParams(recall_at=10, ndcg_at=20, list_k=5, seed=1))
    assert a == b and a[0] != c[0]
    assert [r["model"] for r in a] == ["random", "popular"]
    # a random ranking hits about |held-out| / |unseen| of its slots: far below the model's own
    model = evaluate_model(P, Q, s.train, s.test, popularity, categories, None, params)[0]
    assert a[0]["recall_at_10"] < model["recall_at_10"] / 2
    assert 0.9 <= a[0]["coverage_at_5"] <= 1.0


def test_metric_grid_puts_each_rows_figures_in_its_cell():
    doc = {
        "results": [
            {"model": "m1", "metric": "dot", "spearman_truth": 0.5, "category_precision_at_10": 0.25},
            {"model": "m1", "metric": "whitened", "spearman_truth": None, "category_precision_at_10": 1.0},
            {"model": "m2", "metric": "dot", "spearman_truth": -0.125, "category_precision_at_10": 0.0},
            {"model": "random", "metric": None, "spearman_truth": None, "category_precision_at_10": 0.1},
        ]
    }
    lines = format_metric_grid(doc).splitlines()
    assert lines[0] == "| model (Spearman vs truth / cat.prec@10) | dot | whitened |"
    assert lines[2:] == ["| m1 | 0.500 / 0.250 | – / 1.000 |", "| m2 | -0.125 / 0.000 | – |"]  # baselines left out
