"""Embedding health against independent computations: brute-force cosines over every pair, np.linalg.svd,
ranks by scipy.stats.rankdata with a Pearson correlation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from models.diagnostics.embedding_health import (
    HealthParams,
    anisotropy,
    effective_rank,
    embedding_health,
    health_of_model,
    norm_popularity_correlation,
)
from models.errors import InputError


def all_pair_cosines(M: np.ndarray) -> np.ndarray:
    """Cosines of every unordered pair of distinct nonzero rows, by a dense n x n product."""
    norms = np.linalg.norm(M, axis=1)
    U = M[norms > 0] / norms[norms > 0, None]
    C = U @ U.T
    return C[np.triu_indices(U.shape[0], k=1)]


def defined(x: float | None) -> float:
    assert x is not None
    return x


def svd_effective_rank(M: np.ndarray) -> float:
    s = np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)
    p = s[s > 0] / s.sum()
    return math.exp(-float(np.sum(p * np.log(p))))


def cone(m: int, k: int, offset: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return offset * rng.standard_normal(k) + noise * rng.standard_normal((m, k))


def test_anisotropy_sample_within_three_standard_errors_of_the_all_pairs_mean():
    M = cone(400, 8, offset=0.6, noise=1.0, seed=1)  # 79,800 pairs: more than the sample, so it is sampled
    c = all_pair_cosines(M)
    pairs = 10_000
    se = c.std() / math.sqrt(pairs)  # the sample is uniform over pairs, with replacement
    assert 0.1 < c.mean() < 0.9 and se < 0.01  # a mean far from 0 and 1, estimated to within a few 1e-3
    for seed in range(3):
        assert abs(defined(anisotropy(M, pairs, seed)) - c.mean()) < 3 * se


def test_anisotropy_is_the_exact_mean_when_pairs_cover_every_pair_and_skips_zero_rows():
    M = cone(60, 5, offset=0.8, noise=1.0, seed=2)
    M[[3, 17, 40]] = 0.0  # no direction: left out of the pairs, not counted as cosine 0
    c = all_pair_cosines(M)
    assert c.size == 57 * 56 // 2
    for seed in (0, 7):
        assert anisotropy(M, c.size, seed) == pytest.approx(c.mean(), abs=1e-12)
    assert anisotropy(M, c.size - 1, 0) != pytest.approx(c.mean(), abs=1e-12)  # one pair short: sampled


def test_sampled_pairs_are_of_distinct_nonzero_rows():
    # Orthogonal rows: every distinct pair has cosine 0, a row with itself 1; 100 of the 190 pairs: sampled.
    assert anisotropy(np.diag(np.arange(1.0, 21.0)), 100, 0) == 0.0
    # Equal rows among zero rows: every pair of nonzero rows has cosine 1, a pair with a zero row none.
    M = np.zeros((60, 3))
    M[::3] = [1.0, -2.0, 0.5]
    assert anisotropy(M, 100, 0) == pytest.approx(1.0, abs=1e-12)


def test_anisotropy_near_zero_for_isotropic_gaussian_rows():
    M = np.random.default_rng(3).standard_normal((5000, 64))
    # Cosines of independent isotropic vectors: mean 0, sd 1/sqrt(k); the 10,000-pair mean has sd ~0.00125.
    assert abs(defined(anisotropy(M, 10_000, 0))) < 0.01


def test_anisotropy_near_one_for_a_common_vector_plus_small_noise():
    M = cone(5000, 32, offset=1.0, noise=0.02, seed=4)
    assert defined(anisotropy(M, 10_000, 0)) > 0.95


def test_anisotropy_depends_on_the_diagonal_gauge():
    # P Q^T = (P D^-1)(Q D)^T: the model's predictions are unchanged, but the cosines of the rows of Q D are
    # not those of Q, so neither is their mean. The diagnostic describes the stored vectors (what cosine
    # sees), not the model; a different gauge of the same model can look more or less anisotropic.
    rng = np.random.default_rng(5)
    P, Q = rng.standard_normal((30, 6)), cone(50, 6, offset=0.7, noise=1.0, seed=6)
    d = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=6))
    np.testing.assert_allclose((P / d) @ (Q * d).T, P @ Q.T, rtol=1e-10, atol=1e-12)
    exact = 50 * 49 // 2  # every pair: the difference is the gauge's, not sampling noise
    assert anisotropy(Q * d, exact, 0) == pytest.approx(all_pair_cosines(Q * d).mean(), abs=1e-12)
    assert abs(defined(anisotropy(Q * d, exact, 0)) - defined(anisotropy(Q, exact, 0))) > 0.05


def test_items_and_users_draw_pairs_from_different_streams():
    M = cone(1000, 8, offset=0.5, noise=1.0, seed=7)
    pop = np.arange(1000)
    health = health_of_model(M, M, pop, pop, HealthParams(pairs=500, seed=0))
    assert health["items"]["anisotropy"] != health["users"]["anisotropy"]
    assert health["items"] == embedding_health(M, pop, HealthParams(pairs=500, seed=0), stream=0)
    assert health["users"] == embedding_health(M, pop, HealthParams(pairs=500, seed=0), stream=1)


def test_effective_rank_of_a_scaled_isometry_is_k():
    V, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((500, 16)))  # orthonormal columns
    assert effective_rank(3.7 * V) == pytest.approx(16.0, rel=1e-12)
    assert effective_rank((3.7 * V).astype(np.float32)) == pytest.approx(16.0, rel=1e-6)


def test_effective_rank_of_a_rank_one_matrix_is_one():
    rng = np.random.default_rng(9)
    assert effective_rank(np.outer(rng.standard_normal(300), rng.standard_normal(12))) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_effective_rank_equals_exp_entropy_of_the_svd_spectrum(dtype):
    rng = np.random.default_rng(10)
    M = (rng.standard_normal((2000, 20)) * np.logspace(0, -3, 20) + 0.3).astype(dtype)  # uncentred, uneven
    expected = svd_effective_rank(M)
    assert 1.0 < expected < 20.0
    assert effective_rank(M) == pytest.approx(expected, rel=1e-9)


def test_extreme_scales_neither_overflow_nor_underflow_and_leave_the_input_alone():
    M = cone(300, 6, offset=0.5, noise=1.0, seed=16)
    pop = np.arange(300)
    reference = embedding_health(M, pop, HealthParams())
    for factor in (1e-200, 1e200):
        scaled = M * factor
        before = scaled.copy()
        health = embedding_health(scaled, pop, HealthParams())
        np.testing.assert_array_equal(scaled, before)
        for key in ("anisotropy", "effective_rank", "norm_popularity_spearman"):
            assert health[key] == pytest.approx(reference[key], rel=1e-9)


def test_effective_rank_of_a_zero_matrix_is_none():
    assert effective_rank(np.zeros((10, 4))) is None
    assert effective_rank(np.zeros((0, 4))) is None


def test_norm_popularity_spearman_equals_pearson_of_ranks():
    rng = np.random.default_rng(11)
    pop = rng.poisson(3.0, size=800)  # many ties, broken by average rank on both sides
    M = rng.standard_normal((800, 10)) * (1.0 + 0.2 * pop[:, None]) ** 0.5
    norms = np.linalg.norm(M, axis=1)
    expected = np.corrcoef(rankdata(norms), rankdata(pop))[0, 1]
    assert 0.2 < expected < 0.9
    assert norm_popularity_correlation(M, pop) == pytest.approx(expected, abs=1e-12)
    assert norm_popularity_correlation(M, pop) == pytest.approx(spearmanr(norms, pop).statistic, abs=1e-12)


def test_norm_popularity_spearman_is_plus_one_for_norms_monotone_in_popularity():
    rng = np.random.default_rng(12)
    pop = rng.permutation(500) + 1
    directions = rng.standard_normal((500, 8))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    assert norm_popularity_correlation(directions * np.log1p(pop)[:, None], pop) == pytest.approx(1.0, abs=1e-12)
    assert norm_popularity_correlation(directions / pop[:, None], pop) == pytest.approx(-1.0, abs=1e-12)


def test_zero_rows_and_constant_inputs_give_none_not_nan():
    params = HealthParams()
    zero = embedding_health(np.zeros((20, 4), dtype=np.float32), np.arange(20), params)
    assert zero == {"anisotropy": None, "effective_rank": None, "dims": 4, "norm_popularity_spearman": None, "zero_rows": 20}
    one_row = np.zeros((20, 4))
    one_row[5] = [1.0, 2.0, 0.0, 0.0]
    health = embedding_health(one_row, np.arange(20), params)
    assert health["anisotropy"] is None and health["zero_rows"] == 19  # a single direction: no pair
    assert health["effective_rank"] == pytest.approx(1.0)
    ranks = rankdata(np.linalg.norm(one_row, axis=1))  # zero rows take part, at norm 0
    assert health["norm_popularity_spearman"] == pytest.approx(np.corrcoef(ranks, np.arange(20))[0, 1], abs=1e-12)
    M = cone(50, 4, offset=0.5, noise=1.0, seed=13)
    assert embedding_health(M, np.full(50, 3), params)["norm_popularity_spearman"] is None  # constant popularity
    assert norm_popularity_correlation(-np.ones((50, 3)), np.arange(50)) is None  # constant norms
    empty = embedding_health(np.zeros((0, 3)), np.zeros(0), params)
    assert empty == {"anisotropy": None, "effective_rank": None, "dims": 3, "norm_popularity_spearman": None, "zero_rows": 0}


def test_health_is_json_with_plain_python_numbers():
    rng = np.random.default_rng(14)
    P, Q = rng.standard_normal((300, 6)).astype(np.float32), cone(200, 6, 0.5, 1.0, 15).astype(np.float32)
    P[:4] = 0.0  # users without interactions
    health = health_of_model(P, Q, rng.integers(0, 50, size=200), rng.integers(0, 9, size=300), HealthParams(pairs=2000))
    assert set(health) == {"items", "users"}
    for side in health.values():
        assert set(side) == {"anisotropy", "effective_rank", "dims", "norm_popularity_spearman", "zero_rows"}
        assert all(type(v) in (float, int) for v in side.values())  # not numpy scalars
    assert health["users"]["zero_rows"] == 4 and health["items"]["dims"] == 6
    assert json.loads(json.dumps(health, allow_nan=False)) == health


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: anisotropy(np.ones((5, 2)), 0, 0), "pairs"),
        (lambda: anisotropy(np.ones((5, 2)), 10, -1), "seed"),
        (lambda: anisotropy(np.ones(5), 10, 0), "M"),
        (lambda: embedding_health(np.ones((5, 2)), np.ones(4), HealthParams()), "popularity"),
        (lambda: embedding_health(np.array([[1.0, np.nan]]), np.ones(1), HealthParams()), "NaN"),
        (lambda: effective_rank(np.array([[1.0, np.inf]])), "infinite"),
        (lambda: health_of_model(np.ones((3, 2)), np.ones((4, 2)), np.ones(4), np.ones(2), HealthParams()), "user_activity"),
        (lambda: health_of_model(np.ones((3, 2)), np.ones((4, 3)), np.ones(4), np.ones(3), HealthParams()), "columns"),
    ],
)
def test_bad_input_raises_input_error_naming_it(call, word):
    with pytest.raises(InputError, match=word):
        call()
