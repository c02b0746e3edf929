"""Normalising before learning (models.fit.preprocess) against dense numpy recomputations of each transform."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

import models.fit.preprocess as preprocess
from models.errors import InputError
from models.fit.closed_forms import DENOISING_VARIANTS, denoising_factors, weight_decay_factors
from models.fit.preprocess import TRANSFORMS, PreprocessParams, StandardizedMatrix, TransformedMatrix, transform


def dense_ips(D: np.ndarray, beta: float) -> np.ndarray:
    """c D diag(pop^-beta) straight from the definition; pop counts users with a non-zero."""
    pop = (D != 0).sum(axis=0).astype(float)
    w = np.array([q**-beta if q > 0 else 0.0 for q in pop])
    W = D * w
    return W * (np.linalg.norm(D) / np.linalg.norm(W))


def dense_standardized(D: np.ndarray, constant: list[int]) -> np.ndarray:
    """Columns to mean 0, population variance 1, then scaled to ||D||_F; `constant` columns (known) are zero."""
    Z = np.zeros_like(D)
    for j in range(D.shape[1]):
        if j not in constant:
            col = D[:, j]
            Z[:, j] = (col - col.mean()) / np.sqrt(np.mean((col - col.mean()) ** 2))
    return Z * (np.linalg.norm(D) / np.linalg.norm(Z))


def decaying(n: int, p: int, seed: int) -> sp.csr_matrix:
    """Non-negative X (n, p), about half zeros, with a geometrically decaying spectrum."""
    rng = np.random.default_rng(seed)
    r = 12
    M = (rng.normal(size=(n, r)) * 0.6 ** np.arange(r)) @ rng.normal(size=(r, p)) + 1e-3 * rng.normal(size=(n, p))
    return sp.csr_matrix(np.maximum(M, 0.0))


@pytest.fixture(scope="module")
def X() -> sp.csr_matrix:
    """Counts (90, 14): all-zero column 3, all-ones column 5, constant 0.1 column 8, column 11 one 2 and a stored 0."""
    rng = np.random.default_rng(7)
    D = rng.poisson(0.4, size=(90, 14)).astype(float) * (rng.random((90, 14)) < 0.5)
    D[:, 3] = 0.0
    D[:, 5] = 1.0
    D[:, 8] = 0.1
    D[:, 11] = 0.0
    D[0, 11] = 2.0
    coo = sp.coo_matrix(D)
    # an explicitly stored zero at (1, 11): it is no interaction, so it must not count towards pop
    rows, cols, data = np.append(coo.row, 1), np.append(coo.col, 11), np.append(coo.data, 0.0)
    X = sp.csr_matrix((data, (rows, cols)), shape=D.shape)
    return X


def test_fixture_has_an_explicit_zero(X: sp.csr_matrix) -> None:
    assert np.count_nonzero(X.data == 0) == 1 and X.indices[X.data == 0][0] == 11


# ---------------------------------------------------------------- ips


@pytest.mark.parametrize("beta", [0.75, 0.3, 1.0])
def test_ips_equals_dense_definition(X: sp.csr_matrix, beta: float) -> None:
    D = X.toarray()
    expected = dense_ips(D, beta)
    T = transform(X, "ips", PreprocessParams(transforms=("ips",), ips_beta=beta))
    assert T.name == "ips" and T.shape == (90, 14)
    np.testing.assert_allclose(T.times(np.eye(14)), expected, rtol=1e-13, atol=1e-13)
    assert isinstance(T, preprocess.IpsMatrix) and sp.issparse(T.matrix)
    np.testing.assert_allclose(T.matrix.toarray(), expected, rtol=1e-13, atol=1e-13)
    assert np.linalg.norm(T.matrix.toarray()) == pytest.approx(np.linalg.norm(D), rel=1e-13)
    assert T.info["frobenius_norm"] == pytest.approx(np.linalg.norm(D), rel=1e-13)
    assert np.all(T.matrix.toarray()[:, 3] == 0.0)
    # column 11 has one real interaction (the explicit zero is none): weight 1^-beta = 1, times c only
    assert T.matrix.toarray()[0, 11] == pytest.approx(2.0 * T.info["c"], rel=1e-14)
    assert T.info["beta"] == beta and T.info["transform"] == "ips" and T.info["zero_popularity_columns"] == 1


def test_ips_with_beta_zero_is_x(X: sp.csr_matrix) -> None:
    T = transform(X, "ips", PreprocessParams(ips_beta=0.0))
    np.testing.assert_allclose(T.times(np.eye(14)), X.toarray(), rtol=1e-15, atol=0.0)
    assert T.info["c"] == pytest.approx(1.0, rel=1e-15)


def test_ips_svd_is_the_svd_of_the_weighted_matrix(X: sp.csr_matrix) -> None:
    Xw = dense_ips(X.toarray(), 0.75)
    s_ref = np.linalg.svd(Xw, compute_uv=False)
    fit = transform(X, "ips", PreprocessParams()).svd(k=20, seed=0, n_iter=6, n_oversamples=20)
    assert fit.k == 14 and fit.method.startswith("exact")
    np.testing.assert_allclose(fit.s, s_ref[:14], rtol=1e-10, atol=1e-10 * s_ref[0])


# ---------------------------------------------------------------- standardized


def test_standardized_equals_dense_definition(X: sp.csr_matrix) -> None:
    D = X.toarray()
    expected = dense_standardized(D, constant=[3, 5, 8])
    # the dense reference really is standardised, then carries X's Frobenius norm
    varying = [j for j in range(14) if j not in (3, 5, 8)]
    np.testing.assert_allclose(expected[:, varying].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(expected[:, varying].std(axis=0), expected[:, varying].std(axis=0)[0], rtol=1e-12)
    T = transform(X, "standardized", PreprocessParams())
    got = T.times(np.eye(14))
    assert not np.any(np.isnan(got))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.all(got[:, [3, 5, 8]] == 0.0)
    assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(D), rel=1e-12)
    assert T.info["frobenius_norm"] == pytest.approx(np.linalg.norm(D), rel=1e-12)
    assert T.info["zero_variance_columns"] == 3 and T.info["transform"] == "standardized"
    # the closed-form norm sqrt(n * varying columns) with population variance
    assert T.info["c"] == pytest.approx(np.linalg.norm(D) / np.sqrt(90 * 11), rel=1e-12)


def test_standardized_operator_products_match_dense(X: sp.csr_matrix) -> None:
    Z = dense_standardized(X.toarray(), constant=[3, 5, 8])
    T = transform(X, "standardized", PreprocessParams())
    assert isinstance(T, StandardizedMatrix)
    op = T.operator
    rng = np.random.default_rng(0)
    v, u = rng.normal(size=14), rng.normal(size=90)
    V, U = rng.normal(size=(14, 5)), rng.normal(size=(90, 5))
    assert op.shape == (90, 14)
    np.testing.assert_allclose(op.matvec(v), Z @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(u), Z.T @ u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.matmat(V), Z @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatmat(U), Z.T @ U, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.H @ U, Z.T @ U, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(T.times(V), Z @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(T.rtimes(U), Z.T @ U, rtol=1e-12, atol=1e-12)


def test_standardized_never_densifies(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n, p = 200_000, 50
    X = sp.csr_matrix((rng.random((n, p)) < 0.02).astype(np.float64))
    A = rng.normal(size=(p, 4))
    D = X.toarray()  # the test's own reference (80 MB); the transform must not do this
    Z = dense_standardized(D, constant=[])
    expected_XA, expected_XtU = Z @ A, Z.T @ (Z @ A)
    del D, Z

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("densified the sparse matrix")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    start = time.perf_counter()
    T = transform(X, "standardized", PreprocessParams())
    assert isinstance(T, StandardizedMatrix)
    XA = T.times(A)
    np.testing.assert_allclose(XA, expected_XA, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(T.rtimes(XA), expected_XtU, rtol=1e-10, atol=1e-8)
    fit = T.svd(k=5, seed=0, n_iter=2, n_oversamples=5)
    assert fit.method.startswith("randomized-operator") and fit.V.shape == (p, 5)
    assert time.perf_counter() - start < 10.0


# ---------------------------------------------------------------- SVD of the standardized operator


def _principal_cosines(V1: np.ndarray, V2: np.ndarray) -> np.ndarray:
    return np.asarray(scipy.linalg.svdvals(V1.T @ V2))


@pytest.mark.parametrize("shape", [(500, 120), (120, 500)])
def test_standardized_randomized_svd_matches_dense(shape: tuple[int, int]) -> None:
    n, p = shape
    X = decaying(n, p, seed=3)
    T = transform(X, "standardized", PreprocessParams())
    Z = T.times(np.eye(p))
    _, s_ref, Vt = np.linalg.svd(Z, full_matrices=False)
    k = 2 + int(np.argmax(s_ref[1:8] / s_ref[2:9]))  # the widest gap: a well-defined top-k subspace
    assert s_ref[k - 1] > 1.2 * s_ref[k]
    fit = T.svd(k=k, seed=4, n_iter=20, n_oversamples=5)
    assert fit.method == "randomized-operator(n_iter=20, oversamples=5, float64)"
    assert fit.V.shape == (p, k) and fit.V.dtype == np.float64
    np.testing.assert_allclose(fit.s, s_ref[:k], rtol=1e-6)
    np.testing.assert_allclose(_principal_cosines(fit.V, Vt[:k].T), 1.0, atol=1e-6)
    np.testing.assert_allclose(fit.V.T @ fit.V, np.eye(k), atol=1e-10)
    assert fit.relative_residual < 1e-5
    assert fit.energy_captured == pytest.approx(np.sum(s_ref[:k] ** 2) / np.sum(s_ref**2), rel=1e-6)


def test_standardized_float32_products_match_float64() -> None:
    X = decaying(500, 120, seed=5)
    T = transform(X, "standardized", PreprocessParams())
    assert isinstance(T, StandardizedMatrix)
    s_ref = np.linalg.svd(T.times(np.eye(120)), compute_uv=False)
    fit = T.svd(k=4, seed=0, n_iter=20, n_oversamples=5, float32_min_nnz=0)
    assert "float32" in fit.method
    np.testing.assert_allclose(fit.s, s_ref[:4], rtol=1e-5)


@pytest.mark.parametrize("path", ["dense", "gram"])
@pytest.mark.parametrize("shape", [(90, 14), (14, 40)])
def test_standardized_exact_svd_matches_dense(
    X: sp.csr_matrix, path: str, shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "gram":
        monkeypatch.setattr(preprocess, "DENSE_LIMIT", 0)
    M = X if shape == (90, 14) else decaying(*shape, seed=8)
    constant = [3, 5, 8] if shape == (90, 14) else []
    Z = dense_standardized(M.toarray(), constant=constant)
    _, s_ref, Vt = np.linalg.svd(Z, full_matrices=False)
    T = transform(M, "standardized", PreprocessParams())
    r = min(shape)
    fit = T.svd(k=r + 5, seed=0, n_iter=6, n_oversamples=20)
    assert fit.k == r and fit.method == ("exact(dense lapack)" if path == "dense" else "exact(gram eigh)")
    # the zero-variance columns (and, wide, the centring) leave singular values that are rounding noise: set to 0
    rank = int(np.sum(s_ref > 1e-6 * s_ref[0]))
    np.testing.assert_allclose(fit.s[:rank], s_ref[:rank], rtol=1e-9)
    assert np.all(fit.s[rank:] == 0.0)
    top = int(np.argmax(s_ref[: rank - 1] / s_ref[1:rank])) + 1  # a subspace with a gap after it
    np.testing.assert_allclose(_principal_cosines(fit.V[:, :top], Vt[:top].T), 1.0, atol=1e-7)
    assert fit.energy_captured == pytest.approx(1.0, rel=1e-10)
    assert fit.relative_residual < 1e-7


# ---------------------------------------------------------------- closed forms on the transformed matrix


def _dense_transformed(X: sp.csr_matrix, name: str) -> np.ndarray:
    D = X.toarray()
    return dense_ips(D, 0.75) if name == "ips" else dense_standardized(D, constant=[3, 5, 8])


@pytest.mark.parametrize("name", TRANSFORMS)
def test_closed_forms_on_the_transform_match_dense(X: sp.csr_matrix, name: str) -> None:
    Z = _dense_transformed(X, name)
    T: TransformedMatrix = transform(X, name, PreprocessParams())
    fit = T.svd(k=14, seed=0, n_iter=6, n_oversamples=20)
    G = Z.T @ Z
    lam = 0.3 * float(np.median(np.linalg.eigvalsh(G)[G.shape[0] // 2 :]))
    objective_1 = np.linalg.solve(G + lam * np.eye(14), G)  # argmin ||Z - Z M||^2 + lam ||M||^2
    for variant in DENOISING_VARIANTS:
        A, B = denoising_factors(fit.V, fit.s, lam, variant)
        np.testing.assert_allclose(A @ B.T, objective_1, atol=1e-10)
        np.testing.assert_allclose(T.times(A), Z @ A, rtol=1e-12, atol=1e-12)
    # objective 2 at its closed form: the dense gradient vanishes, and the kept dims are those with s > lam
    s_dense = np.linalg.svd(Z, compute_uv=False)
    lam2 = float(s_dense[1] + s_dense[2]) / 2  # between singular values: keeps the top 2
    A, B, surviving = weight_decay_factors(fit.V, fit.s, lam2)
    P = T.times(A)
    np.testing.assert_allclose(P, Z @ A, rtol=1e-12, atol=1e-12)
    R = Z - P @ B.T
    grad_A = -2 * Z.T @ R @ B + 2 * lam2 * Z.T @ P
    grad_B = -2 * R.T @ P + 2 * lam2 * B
    assert np.abs(grad_A).max() < 1e-9 * np.abs(G).max() and np.abs(grad_B).max() < 1e-9 * np.abs(G).max()
    assert surviving == int(np.sum(s_dense > lam2)) == 2


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        (PreprocessParams(transforms=("ips", "pca")), "--preprocess"),
        (PreprocessParams(transforms=("ips", "ips")), "--preprocess"),
        (PreprocessParams(ips_beta=-0.1), "--ips-beta"),
        (PreprocessParams(ips_beta=float("nan")), "--ips-beta"),
        (PreprocessParams(ips_beta=float("inf")), "--ips-beta"),
    ],
)
def test_bad_parameters_name_the_flag(params: PreprocessParams, flag: str, X: sp.csr_matrix) -> None:
    with pytest.raises(InputError, match=flag):
        params.validate()
    with pytest.raises(InputError, match=flag):
        transform(X, "ips", params)


def test_unknown_transform_lists_the_valid_ones(X: sp.csr_matrix) -> None:
    with pytest.raises(InputError, match="--preprocess") as err:
        PreprocessParams(transforms=("standardised",)).validate()
    assert "ips,standardized" in str(err.value)
    with pytest.raises(InputError, match=r"--preprocess.*ips,standardized"):
        transform(X, "zscore", PreprocessParams())
    PreprocessParams(transforms=TRANSFORMS, ips_beta=0.0).validate()
