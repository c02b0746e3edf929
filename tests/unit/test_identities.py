"""PAPER.md's identities, each checked against an independent dense computation or optimiser."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from models.fit.closed_forms import (
    DENOISING_VARIANTS,
    denoising_factors,
    denoising_objective,
    weight_decay_factors,
    weight_decay_objective,
)
from models.fit.projection import normalize_rows, projected_vectors
from models.fit.svd import truncated_svd


def random_binary(n: int, p: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    X = (rng.random((n, p)) < density).astype(np.float64)
    X[np.arange(n), rng.integers(0, p, n)] = 1.0  # no empty users
    return sp.csr_matrix(X)


def dense_cosine(M: np.ndarray) -> np.ndarray:
    """Row-row cosine of a dense matrix, straight from the definition."""
    norms = np.sqrt((M * M).sum(axis=1))
    G = M @ M.T
    return G / np.outer(norms, norms)


@pytest.fixture(scope="module")
def X() -> sp.csr_matrix:
    return random_binary(80, 12, 0.3, seed=1)


@pytest.fixture(scope="module")
def full(X: sp.csr_matrix):
    return truncated_svd(X, k=X.shape[1])


def test_svd_matches_numpy(X, full):
    s_ref = np.linalg.svd(X.toarray(), compute_uv=False)
    np.testing.assert_allclose(full.s, s_ref, rtol=1e-10)
    low = truncated_svd(X, k=5, seed=3)
    np.testing.assert_allclose(low.s, s_ref[:5], rtol=1e-6)
    assert low.relative_residual < 1e-6
    # the top-5 subspace agrees with numpy's: projector difference is ~0
    _, _, Vt = np.linalg.svd(X.toarray())
    np.testing.assert_allclose(low.V @ low.V.T, Vt[:5].T @ Vt[:5], atol=1e-6)


@pytest.mark.parametrize("variant", DENOISING_VARIANTS)
def test_identity1_full_rank_denoising_is_ridge(X, full, variant):
    lam = 7.5
    A, B = denoising_factors(full.V, full.s, lam, variant)
    Xd = X.toarray()
    G = Xd.T @ Xd
    ridge = np.linalg.solve(G + lam * np.eye(G.shape[0]), G)
    np.testing.assert_allclose(A @ B.T, ridge, atol=1e-10)


def test_identity2_denoising_objective_same_for_every_variant(X):
    svd = truncated_svd(X, k=6, seed=0)
    values = [denoising_objective(X, *denoising_factors(svd.V, svd.s, 3.0, v), 3.0) for v in DENOISING_VARIANTS]
    np.testing.assert_allclose(values, values[0], rtol=1e-10)
    # and any other diagonal rescaling leaves it unchanged too
    A, B = denoising_factors(svd.V, svd.s, 3.0, "denoising-symmetric")
    d = np.random.default_rng(0).uniform(0.2, 5.0, size=6)
    assert denoising_objective(X, A * d, B / d, 3.0) == pytest.approx(values[0], rel=1e-10)


def test_identity2_weight_decay_objective_rises_under_rescaling(X):
    svd = truncated_svd(X, k=6, seed=0)
    lam = 1.0
    A, B, surviving = weight_decay_factors(svd.V, svd.s, lam)
    assert surviving == 6
    base = weight_decay_objective(X, A, B, lam)
    rng = np.random.default_rng(5)
    for _ in range(5):
        d = rng.uniform(0.5, 2.0, size=6)
        assert weight_decay_objective(X, A * d, B / d, lam) > base + 1e-9


def _optimise(X: np.ndarray, k: int, objective, seed: int) -> float:
    p = X.shape[1]
    rng = np.random.default_rng(seed)

    def f(theta: np.ndarray) -> float:
        A, B = theta[: p * k].reshape(p, k), theta[p * k :].reshape(p, k)
        return objective(X, A, B)

    res = scipy.optimize.minimize(f, rng.normal(scale=0.3, size=2 * p * k), method="L-BFGS-B", options={"maxiter": 5000})
    return float(res.fun)


@pytest.mark.parametrize("k", [2, 3])
def test_identity3_closed_forms_no_worse_than_optimiser(k):
    X = random_binary(25, 6, 0.35, seed=2)
    Xd = X.toarray()
    svd = truncated_svd(X, k=k, seed=0)
    lam1, lam2 = 2.0, 0.8
    closed1 = denoising_objective(X, *denoising_factors(svd.V, svd.s, lam1, "denoising-symmetric"), lam1)
    A2, B2, _ = weight_decay_factors(svd.V, svd.s, lam2)
    closed2 = weight_decay_objective(X, A2, B2, lam2)
    for seed in range(3):
        opt1 = _optimise(Xd, k, lambda X_, A, B: denoising_objective(X_, A, B, lam1), seed)
        opt2 = _optimise(Xd, k, lambda X_, A, B: weight_decay_objective(X_, A, B, lam2), seed)
        assert closed1 <= opt1 + 1e-6 * max(1.0, opt1)
        assert closed2 <= opt2 + 1e-6 * max(1.0, opt2)
    # the optimiser does get close: the closed form is the optimum, not merely a bound
    assert _optimise(Xd, k, lambda X_, A, B: denoising_objective(X_, A, B, lam1), 0) == pytest.approx(closed1, rel=1e-3)


def test_identity4_item_orthonormal_full_rank_item_cosine_is_identity(X, full):
    _, B = denoising_factors(full.V, full.s, 5.0, "denoising-item-orthonormal")
    C = dense_cosine(B)
    np.testing.assert_allclose(C, np.eye(B.shape[0]), atol=1e-10)


def test_identity5_item_orthonormal_full_rank_user_item_cosine_ranks_like_dot(X, full):
    A, B = denoising_factors(full.V, full.s, 5.0, "denoising-item-orthonormal")
    P = X.toarray() @ A
    dot = P @ B.T
    cos = dot / np.outer(np.linalg.norm(P, axis=1), np.linalg.norm(B, axis=1))
    for u in range(P.shape[0]):
        assert np.array_equal(np.argsort(-dot[u], kind="stable"), np.argsort(-cos[u], kind="stable"))


def test_identity6_user_orthonormal_full_rank_user_cosine_is_raw(X, full):
    A, _ = denoising_factors(full.V, full.s, 5.0, "denoising-user-orthonormal")
    Xd = X.toarray()
    P = Xd @ A
    np.testing.assert_allclose(dense_cosine(P), dense_cosine(Xd), atol=1e-10)


def test_identity7_weight_decay_singular_values_soft_thresholded(X):
    lam = 2.5
    svd = truncated_svd(X, k=8, seed=0)
    A, B, surviving = weight_decay_factors(svd.V, svd.s, lam)
    Xd = X.toarray()
    got = np.linalg.svd(Xd @ A @ B.T, compute_uv=False)[:8]
    s_true = np.linalg.svd(Xd, compute_uv=False)[:8]
    np.testing.assert_allclose(got, np.clip(s_true - lam, 0, None), atol=1e-8)
    assert surviving == int(np.sum(s_true > lam))


@pytest.mark.parametrize("k", [4, 12])
def test_identity8_projected_cosine_equals_dense_xhat_cosine(X, k):
    svd = truncated_svd(X, k=k, seed=0)
    Xd = X.toarray()
    ref_users = ref_items = None
    for variant in DENOISING_VARIANTS:
        A, B = denoising_factors(svd.V, svd.s, 4.0, variant)
        P = Xd @ A
        Xhat = P @ B.T  # dense (n, p): only the test materialises it
        users, items = projected_vectors(P, B)
        assert users.shape == (X.shape[0], svd.k) and items.shape == (X.shape[1], svd.k)
        cu = normalize_rows(users) @ normalize_rows(users).T
        ci = normalize_rows(items) @ normalize_rows(items).T
        np.testing.assert_allclose(cu, dense_cosine(Xhat), atol=1e-9)
        np.testing.assert_allclose(ci, dense_cosine(Xhat.T), atol=1e-9)
        if ref_users is None:
            ref_users, ref_items = cu, ci
        np.testing.assert_allclose(cu, ref_users, atol=1e-9)
        np.testing.assert_allclose(ci, ref_items, atol=1e-9)


def test_raw_cosine_does_depend_on_d(X):
    """The paper's point, as a guard that identity 8's invariance is not vacuous."""
    svd = truncated_svd(X, k=6, seed=0)
    cosines = [dense_cosine(denoising_factors(svd.V, svd.s, 4.0, v)[1]) for v in DENOISING_VARIANTS]
    assert max(np.abs(c - cosines[0]).max() for c in cosines[1:]) > 0.05


def test_weight_decay_projected_equals_dense(X):
    svd = truncated_svd(X, k=6, seed=0)
    A, B, _ = weight_decay_factors(svd.V, svd.s, 1.5)
    P = X.toarray() @ A
    users, items = projected_vectors(P, B)
    Xhat = P @ B.T
    np.testing.assert_allclose(normalize_rows(items) @ normalize_rows(items).T, dense_cosine(Xhat.T), atol=1e-9)
    np.testing.assert_allclose(normalize_rows(users) @ normalize_rows(users).T, dense_cosine(Xhat), atol=1e-9)


def test_degenerate_inputs_give_no_nan():
    """Empty rows and columns, k above the rank, lambda above every singular value."""
    X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=float))
    svd = truncated_svd(X, k=10)
    assert svd.k == 4 and np.all(np.isfinite(svd.V))
    for v in DENOISING_VARIANTS:
        A, B = denoising_factors(svd.V, svd.s, 1.0, v)
        assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
        users, items = projected_vectors(X @ A, B)
        assert np.all(np.isfinite(normalize_rows(users))) and np.all(np.isfinite(normalize_rows(items)))
        assert np.all(normalize_rows(items)[2:] == 0)  # never-consumed items are zero vectors, not NaN
    A, B, surviving = weight_decay_factors(svd.V, svd.s, lam=1e6)
    assert surviving == 0 and not A.any() and not B.any()
    assert np.all(normalize_rows(B) == 0)
