"""The gauge probe against dense recomputations: lists by an independent argsort, invariance of the predictions,
projected cosine exactly unmoved while cosine and dot move, seeded diagonals, zero rows without NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.diagnostics.agreement import rbo
from models.diagnostics.gauge import (
    METRICS,
    SIDES,
    GaugeParams,
    gauge_probe,
    list_agreement,
    neighbour_ids,
    probe_lists,
    random_diagonals,
)
from models.errors import InputError


def scaled_factors(seed: int, n_users: int = 300, n_items: int = 240, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Random P, Q whose columns are scaled by 1e-2 .. 1e2: cosine of raw rows is dominated by a few columns."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-2, 2, k)
    return rng.standard_normal((n_users, k)) * scales, rng.standard_normal((n_items, k)) * scales


def dense_lists(V: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The tie rule by a full sort: (-score, row id) ascending, the query itself left out."""
    S = V[rows] @ V.T
    out = []
    for q, row in enumerate(rows):
        order = np.lexsort((np.arange(V.shape[0]), -S[q]))
        out.append([j for j in order if j != row][:k])
    return np.array(out)


def unit_rows(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return np.divide(M, norms, out=np.zeros_like(M), where=norms > 0)


def figures(doc: dict) -> list[float]:
    return [v for side in doc["sides"].values() for metric in side.values() for v in metric.values()]


def test_projected_is_exactly_unmoved_and_cosine_moves_on_both_sides():
    P, Q = scaled_factors(0)
    doc = gauge_probe(P, Q, GaugeParams(item_queries=120, user_queries=120))
    for side in SIDES:
        assert doc["sides"][side]["projected"] == {"jaccard_mean": 1.0, "jaccard_p05": 1.0, "rbo_mean": 1.0}
        cosine = doc["sides"][side]["cosine"]
        assert cosine["jaccard_mean"] < 0.9
        assert cosine["rbo_mean"] < 0.9
        assert cosine["jaccard_p05"] <= cosine["jaccard_mean"]
    assert doc["queries"] == {"items": 120, "users": 120}
    assert doc["transforms"] == 4 and doc["range"] == [0.1, 10.0] and doc["k"] == 10 and doc["seed"] == 0


def test_probe_compares_the_lists_a_dense_argsort_gives():
    P, Q = scaled_factors(1)
    d = random_diagonals(P.shape[1], GaugeParams(seed=3))[:1]
    rows = {"items": np.array([0, 7, 19, 101, 239]), "users": np.array([2, 50, 151, 299])}
    lists = probe_lists(P, Q, d, rows, 10)
    moved_any = False
    for side, V, V_d in (("items", Q, Q / d[0]), ("users", P, P * d[0])):
        base, moved = lists[side, "cosine"]
        want_base = dense_lists(unit_rows(V), rows[side], 10)
        want_moved = dense_lists(unit_rows(V_d), rows[side], 10)
        np.testing.assert_array_equal(base, want_base)
        np.testing.assert_array_equal(moved[0], want_moved)
        jac, rb = list_agreement(base, moved)
        for q in range(rows[side].size):
            a, b = set(want_base[q].tolist()), set(want_moved[q].tolist())
            assert jac[0, q] == pytest.approx(len(a & b) / len(a | b), abs=1e-15)
            assert rb[0, q] == pytest.approx(rbo(want_base[q], want_moved[q]), abs=1e-12)
            moved_any |= a != b
        # dot and projected lists are the same argsort over their own vectors
        np.testing.assert_array_equal(lists[side, "dot"][1][0], dense_lists(V_d, rows[side], 10))
    assert moved_any  # the comparison above is not between identical lists only


def test_neighbour_ids_follow_the_tie_rule_on_exact_ties():
    rng = np.random.default_rng(5)
    for m, d in ((400, 3), (37, 2), (12, 1), (5, 2), (2, 1)):
        V = rng.integers(-2, 3, (m, d)).astype(np.float64)  # integer scores: exact, heavily tied
        V[rng.integers(0, m, max(1, m // 5))] = 0  # zero rows score 0 against everything
        rows = np.arange(m)
        for k in (1, 10, m + 3):
            np.testing.assert_array_equal(neighbour_ids(V, rows, k), dense_lists(V, rows, k))


def test_near_ties_below_float32_resolution_are_ranked_in_float64():
    # 300 rows are copies of row 0's direction scaled by 1 + e, |e| <= 1e-8 (apart by more than the 1e-10 grid,
    # closer than float32's 6e-8): the float32 product cannot order them, the float64 rescoring must.
    rng = np.random.default_rng(8)
    V = rng.standard_normal((5000, 16))
    V[1:301] = V[0] * (0.5 + rng.uniform(-1e-8, 1e-8, 300))[:, None]
    V[301:400] = -V[0] * (0.5 + rng.uniform(-1e-8, 1e-8, 99))[:, None]  # the same near-ties at the bottom
    rows = np.array([0, 1, 2, 150, 350, 4999])
    for k in (1, 10, 40):
        np.testing.assert_array_equal(neighbour_ids(V, rows, k), dense_lists(V, rows, k))


def test_scores_closer_than_the_grid_count_as_tied():
    # Query row 0 = (1, 0): scores 0.5, 0.5 (1 + 1e-13), 0.5 (1 + 1e-6) and 0.25. The 1e-13 difference is
    # below the 10-significant-digit grid (ranked by id), the 1e-6 one is not.
    V = np.array([[1.0, 0.0], [0.5, 0.0], [0.5 * (1 + 1e-13), 0.0], [0.5 * (1 + 1e-6), 0.0], [0.25, 0.0]])
    np.testing.assert_array_equal(neighbour_ids(V, np.array([0]), 3), [[3, 1, 2]])
    for scale in (1e-60, 1e60):  # the grid is relative to the row's scores
        np.testing.assert_array_equal(neighbour_ids(V * scale, np.array([0]), 3), [[3, 1, 2]])


def test_seeded_and_log_uniform():
    params = GaugeParams(seed=11, transforms=8)
    D = random_diagonals(64, params)
    assert D.shape == (8, 64)
    np.testing.assert_array_equal(D, random_diagonals(64, GaugeParams(seed=11, transforms=8)))
    assert not np.array_equal(D, random_diagonals(64, GaugeParams(seed=12, transforms=8)))
    assert D.min() >= 0.1 and D.max() <= 10.0
    logs = np.log(D).ravel()
    # log-uniform on [-log 10, log 10]: mean 0, sd log(100)/sqrt(12) = 1.33; the mean of 512 has sd 0.06
    assert abs(logs.mean()) < 0.25
    assert 1.15 < logs.std() < 1.5
    assert (logs < -1.5).mean() > 0.15 and (logs > 1.5).mean() > 0.15  # both ends reached, not a lump at 1
    narrow = random_diagonals(16, GaugeParams(low=0.5, high=2.0))
    assert narrow.min() >= 0.5 and narrow.max() <= 2.0

    P, Q = scaled_factors(2, n_users=80, n_items=60, k=6)
    small = GaugeParams(item_queries=30, user_queries=30, seed=4, transforms=3)
    assert gauge_probe(P, Q, small) == gauge_probe(P, Q, small)
    other = gauge_probe(P, Q, GaugeParams(item_queries=30, user_queries=30, seed=5, transforms=3))
    assert other["sides"]["items"]["cosine"] != gauge_probe(P, Q, small)["sides"]["items"]["cosine"]


def test_dot_of_items_moves_while_the_predictions_do_not():
    P, Q = scaled_factors(3)
    for d in random_diagonals(P.shape[1], GaugeParams()):
        X = P @ Q.T
        np.testing.assert_allclose((P * d) @ (Q / d).T, X, rtol=0, atol=1e-12 * np.abs(X).max())
        assert not np.allclose((Q / d) @ (Q / d).T, Q @ Q.T, rtol=1e-3)  # item-item dot is not invariant
    doc = gauge_probe(P, Q, GaugeParams(item_queries=100, user_queries=100))
    assert doc["sides"]["items"]["dot"]["jaccard_mean"] < 0.9
    assert doc["sides"]["users"]["dot"]["jaccard_mean"] < 0.9


def test_zero_user_rows_give_no_nan():
    P, Q = scaled_factors(4, n_users=60, n_items=50, k=6)
    P[[0, 3, 59]] = 0  # users without interactions
    doc = gauge_probe(P, Q, GaugeParams(transforms=3))
    assert doc["queries"] == {"items": 50, "users": 60}  # fewer rows than the default 500: all of them
    json.dumps(doc, allow_nan=False)
    for v in figures(doc):
        assert type(v) is float and math.isfinite(v) and 0.0 <= v <= 1.0
    assert doc["sides"]["users"]["projected"]["jaccard_mean"] == 1.0
    lists = probe_lists(P, Q, random_diagonals(6, GaugeParams(transforms=2)), {"users": np.array([0, 3])}, 5)
    for metric in METRICS:
        base, moved = lists["users", metric]
        if metric != "whitened":  # whitening centres the users first: a zero user is no longer zero there
            # every score of a zero user is 0: the rows by id, in every gauge
            np.testing.assert_array_equal(base, [[1, 2, 3, 4, 5], [0, 1, 2, 4, 5]])
        # zero users tie everywhere, and whitened lists are invariant: the same lists in every gauge
        np.testing.assert_array_equal(moved, np.broadcast_to(base, moved.shape))


def test_sides_without_lists_get_null_figures():
    P, Q = scaled_factors(5, n_users=20, n_items=1, k=3)
    doc = gauge_probe(P, Q, GaugeParams(transforms=2, user_queries=0))
    assert doc["queries"] == {"items": 0, "users": 0}
    for side in SIDES:
        for metric in METRICS:
            assert doc["sides"][side][metric] == {"jaccard_mean": None, "jaccard_p05": None, "rbo_mean": None}
    json.dumps(doc, allow_nan=False)


def test_bad_input_is_named():
    P, Q = scaled_factors(6, n_users=10, n_items=8, k=4)
    with pytest.raises(InputError, match="factor dimension"):
        gauge_probe(P, Q[:, :3])
    Q_nan = Q.copy()
    Q_nan[2, 1] = np.nan
    with pytest.raises(InputError, match="finite"):
        gauge_probe(P, Q_nan)
    with pytest.raises(InputError, match="parameter transforms"):
        gauge_probe(P, Q, GaugeParams(transforms=0))
    with pytest.raises(InputError, match="low, high"):
        random_diagonals(4, GaugeParams(low=0.0))
    with pytest.raises(InputError, match="low, high"):
        gauge_probe(P, Q, GaugeParams(low=3.0, high=2.0))
    with pytest.raises(InputError, match="positive"):
        probe_lists(P, Q, -np.ones((1, 4)), {"items": np.array([0])}, 3)


def test_score_budget_caps_the_queries_of_the_larger_side_only():
    P, Q = scaled_factors(6, n_users=3000, n_items=200, k=6)
    doc = gauge_probe(P, Q, GaugeParams(item_queries=500, user_queries=500, transforms=2, score_budget=60_000))
    assert doc["queries"] == {"items": 200, "users": 50}  # items: all 200 (budget 300); users: 60_000 // 3000 = 20 -> 50
    doc = gauge_probe(P, Q, GaugeParams(item_queries=500, user_queries=500, transforms=2, score_budget=900_000))
    assert doc["queries"] == {"items": 200, "users": 300}


def test_shared_metrics_are_checked_under_the_first_transforms_only():
    P, Q = scaled_factors(7)
    D = random_diagonals(P.shape[1], GaugeParams(transforms=4))
    rows = {"items": np.arange(30), "users": np.arange(30)}
    lists = probe_lists(P, Q, D, rows, 10, shared_transforms=2)
    for (side, metric), (base, moved) in lists.items():
        assert moved.shape[0] == (2 if metric in ("projected", "projected-centered", "whitened") else 4), (side, metric)
        if metric == "projected":  # unmoved exactly (test above); the other shared metrics up to the rounding grid
            np.testing.assert_array_equal(moved, np.stack([base, base]))
    full = probe_lists(P, Q, D, rows, 10)
    for key, (_, moved) in lists.items():
        np.testing.assert_array_equal(moved, full[key][1][: moved.shape[0]])


def test_users_on_dask_workers_are_probed_on_a_sample(monkeypatch) -> None:
    """A dask P (the Dask engine's users) is probed on GAUGE_USERS sampled rows, said in the entry; the items'
    dot and cosine lists, which do not involve P, score as the full in-memory probe's."""
    import dask.array as da

    from models.build import pipeline
    from models.diagnostics.gauge import GaugeParams, gauge_probe

    rng = np.random.default_rng(7)
    P, Q = rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5], rng.normal(size=(80, 5))
    params = GaugeParams(transforms=3, item_queries=40, user_queries=30)
    monkeypatch.setattr(pipeline, "GAUGE_USERS", 120)
    entry = pipeline._probe("m", da.from_array(P, chunks=100), Q, params, None)
    assert entry["users_sampled"] == 120 and entry["users_total"] == 300
    assert entry["queries"]["users"] <= 120
    full = gauge_probe(P, Q, params)
    for metric in ("dot", "cosine"):
        assert entry["sides"]["items"][metric] == full["sides"]["items"][metric]
