"""Normalising before learning: the closed forms fitted on a transformed matrix X_t (METHODS.md).

ips:          X_w = c X diag(pop^-beta), pop_i = users with a non-zero in column i (pop 0 columns stay zero).
standardized: X_s = c (X - 1 mu^T) diag(1/sigma), mu_i and sigma_i the column mean and population
              standard deviation (sigma_i = 0: the column is zero in X_s).
Both rescale by c = ||X||_F / ||X_t / c||_F, so ||X_t||_F = ||X||_F and the lambdas keep their meaning.
X_s is dense: beyond the exact SVD of a small X it is never formed, but applied as X's sparse products plus a rank-one term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from models.errors import InputError
from models.fit.svd import DENSE_LIMIT, FLOAT32_MIN_NNZ, TruncatedSVD, _result, truncated_svd

TRANSFORMS: tuple[str, ...] = ("ips", "standardized")
IPS, STANDARDIZED = TRANSFORMS


@dataclass(frozen=True)
class PreprocessParams:
    """Which transforms to fit the closed forms on (besides X itself), and the IPS exponent beta."""

    transforms: tuple[str, ...] = ()
    ips_beta: float = 0.75

    def validate(self) -> None:
        """InputError naming the flag: unknown or repeated transform names, a bad beta."""
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise InputError(
                f"--preprocess: unknown transform(s) {', '.join(unknown)}; "
                f"expected a comma-separated subset of {','.join(TRANSFORMS)}"
            )
        if len(set(self.transforms)) != len(self.transforms):
            raise InputError(f"--preprocess: a transform is named twice in {','.join(self.transforms)}")
        if not np.isfinite(self.ips_beta) or self.ips_beta < 0:
            raise InputError(f"--ips-beta must be a finite number >= 0, got {self.ips_beta}")


@dataclass(frozen=True, eq=False)
class TransformedMatrix:
    """X_t (n_users, n_items) of one transform; `info` is JSON-able (transform, c, frobenius_norm, ...)."""

    name: str
    shape: tuple[int, int]
    info: dict[str, Any]

    def times(self, A: np.ndarray) -> np.ndarray:
        """X_t A (n_users, k) for A (n_items, k), without densifying X_t."""
        raise NotImplementedError

    def svd(self, k: int, seed: int = 0, n_iter: int = 6, n_oversamples: int = 20) -> TruncatedSVD:
        """Top-k right singular pairs of X_t; the contract of models.fit.svd.truncated_svd."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class IpsMatrix(TransformedMatrix):
    """X_w = c X diag(pop^-beta), held explicitly: it has X's sparsity pattern."""

    matrix: sp.csr_matrix

    def times(self, A: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix @ A, dtype=np.float64)

    def svd(self, k: int, seed: int = 0, n_iter: int = 6, n_oversamples: int = 20) -> TruncatedSVD:
        return truncated_svd(self.matrix, k, seed=seed, n_iter=n_iter, n_oversamples=n_oversamples)


@dataclass(frozen=True, eq=False)
class StandardizedMatrix(TransformedMatrix):
    """X_s = X diag(d) - 1 m^T with d = c/sigma (0 where sigma = 0) and m = d * mu, (n_items,) each.

    X_s A = X (d A) - 1 (m^T A);  X_s^T U = d (X^T U) - m (1^T U): two sparse products and a rank-one term.
    """

    X: sp.csr_matrix
    d: np.ndarray
    m: np.ndarray
    mu: np.ndarray

    @property
    def operator(self) -> spla.LinearOperator:
        """X_s as a scipy LinearOperator (matvec, rmatvec, matmat, rmatmat), float64."""
        return _operator(self.X, self.d, self.m)

    def times(self, A: np.ndarray) -> np.ndarray:
        return _forward(self.X, self.d, self.m, np.asarray(A, dtype=np.float64))

    def rtimes(self, U: np.ndarray) -> np.ndarray:
        """X_s^T U (n_items, k) for U (n_users, k)."""
        return _adjoint(self.X, self.d, self.m, np.asarray(U, dtype=np.float64))

    def svd(
        self,
        k: int,
        seed: int = 0,
        n_iter: int = 6,
        n_oversamples: int = 20,
        float32_min_nnz: int = FLOAT32_MIN_NNZ,
    ) -> TruncatedSVD:
        """Top-k right singular pairs of X_s, k capped at min(n_users, n_items).

        k < min(n, p): Halko et al.'s randomised range finder on the operator's block products (scikit-learn's
        semantics: Gaussian start from RandomState(seed), `n_iter` LU-normalised power iterations, QR, then the SVD
        of the small projection), with X's sparse products in float32 from `float32_min_nnz` non-zeros.
        Otherwise exact: dense LAPACK on X_s when n p <= DENSE_LIMIT, else eigh of the Gram
        X_s^T X_s = diag(d) (X^T X - n mu mu^T) diag(d), formed from the sparse X^T X.
        """
        n, p = self.shape
        k = min(k, n, p)
        total = float(self.info["frobenius_norm"]) ** 2 or 1.0
        if k < min(n, p):
            return self._randomized(k, seed, n_iter, n_oversamples, float32_min_nnz, total)
        if n * p <= DENSE_LIMIT:
            Xs = self.X.toarray() * self.d - self.m
            U, s, Vt = scipy.linalg.svd(Xs, full_matrices=False)
            U, s, V = U[:, :k], s[:k], Vt[:k].T
            return _result(s, V, "exact(dense lapack)", Xs @ V - U * s, total, max(n, p) * np.finfo(np.float64).eps)
        XtX = np.asarray((self.X.T @ self.X).toarray(), dtype=np.float64)
        G = self.d[:, None] * (XtX - n * np.outer(self.mu, self.mu)) * self.d[None, :]
        del XtX
        w, V = scipy.linalg.eigh(G)
        del G
        order = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.clip(w[order], 0.0, None))
        V = V[:, order]
        XsV = self.times(V)
        U = XsV / np.where(s > 0, s, 1.0)
        # eigenvalues of the Gram carry s_1^2 * eps noise, as in truncated_svd
        return _result(s, V, "exact(gram eigh)", XsV - U * s, total, np.sqrt(max(n, p) * np.finfo(np.float64).eps))

    def _randomized(self, k: int, seed: int, n_iter: int, n_oversamples: int, float32_min_nnz: int, total: float) -> TruncatedSVD:
        n, p = self.shape
        dtype = np.float32 if self.X.nnz >= float32_min_nnz else np.float64
        # Items in descending popularity, as in truncated_svd: the hot rows of the dense block stay in cache.
        order = np.argsort(-self.X.getnnz(axis=0), kind="stable")
        Xp = sp.csr_matrix(self.X[:, order], dtype=dtype)
        d, m = self.d[order], self.m[order]
        U, s, Vp = _randomized_svd(
            lambda A: _forward(Xp, d, m, A), lambda B: _adjoint(Xp, d, m, B), (n, p), k, seed, n_iter, n_oversamples, dtype
        )
        residual = _forward(Xp, d, m, Vp) - U * s
        V = np.empty((p, k), dtype=np.float64)
        V[order] = Vp
        method = f"randomized-operator(n_iter={n_iter}, oversamples={n_oversamples}, {np.dtype(dtype).name})"
        return _result(s, V, method, residual, total, max(n, p) * np.finfo(dtype).eps)


def transform(X: sp.csr_matrix, name: str, params: PreprocessParams) -> TransformedMatrix:
    """X_t of transform `name` (one of TRANSFORMS) for X (n_users, n_items)."""
    params.validate()
    if name not in TRANSFORMS:
        raise InputError(f"--preprocess: unknown transform {name!r}; expected one of {','.join(TRANSFORMS)}")
    Xc = sp.csr_matrix(X, dtype=np.float64)  # shares X's arrays when X is float64 CSR: never modified in place
    if not Xc.has_canonical_format:
        Xc = Xc.copy()
        Xc.sum_duplicates()
    norm = float(np.sqrt(np.square(Xc.data).sum()))
    return _ips(Xc, params.ips_beta, norm) if name == IPS else _standardized(Xc, norm)


def _ips(X: sp.csr_matrix, beta: float, norm: float) -> IpsMatrix:
    n, p = X.shape
    pop = np.bincount(X.indices[X.data != 0], minlength=p).astype(np.float64)
    w = np.zeros(p)
    np.power(pop, -beta, out=w, where=pop > 0)
    Xw = X.copy()
    Xw.data *= w[Xw.indices]
    weighted = float(np.sqrt(np.square(Xw.data).sum()))
    c = norm / weighted if weighted > 0 else 1.0
    Xw.data *= c
    info = {
        "transform": IPS,
        "beta": float(beta),
        "c": c,
        "zero_popularity_columns": int(np.count_nonzero(pop == 0)),
        "frobenius_norm": float(np.sqrt(np.square(Xw.data).sum())),
    }
    return IpsMatrix(name=IPS, shape=(n, p), info=info, matrix=Xw)


def _standardized(X: sp.csr_matrix, norm: float) -> StandardizedMatrix:
    n, p = X.shape
    rows = max(n, 1)
    mu = np.bincount(X.indices, weights=X.data, minlength=p) / rows
    # Two-pass variance over the stored entries plus the implicit zeros (each contributes mu^2): no
    # cancellation, unlike E[x^2] - mu^2, so a constant column comes out (near) zero, never negative.
    stored = X.getnnz(axis=0)
    var = (np.bincount(X.indices, weights=(X.data - mu[X.indices]) ** 2, minlength=p) + (n - stored) * mu**2) / rows
    mean_square = np.bincount(X.indices, weights=X.data**2, minlength=p) / rows
    # A spread below the rounding of the mean is noise: dividing by it would blow rounding up to a full column.
    varies = var > (16.0 * np.sqrt(rows) * np.finfo(np.float64).eps) ** 2 * mean_square
    sigma = np.where(varies, np.sqrt(np.where(varies, var, 1.0)), 0.0)
    # Each column with sigma > 0 has squared norm n var / var = n in (X - 1 mu^T) diag(1/sigma).
    varying = int(np.count_nonzero(varies))
    unscaled = np.sqrt(n * varying)
    c = norm / unscaled if unscaled > 0 else 1.0
    d = np.zeros(p)
    np.divide(c, sigma, out=d, where=varies)
    info = {
        "transform": STANDARDIZED,
        "c": float(c),
        "zero_variance_columns": int(p - varying),
        "frobenius_norm": float(c * unscaled),
    }
    return StandardizedMatrix(name=STANDARDIZED, shape=(n, p), info=info, X=X, d=d, m=d * mu, mu=mu)


def _forward(X: sp.csr_matrix, d: np.ndarray, m: np.ndarray, A: np.ndarray) -> np.ndarray:
    """X_s A = X (d A) - 1 (m^T A), (n_users, k) for A (n_items, k), in X's dtype (float32 X: the fast path)."""
    dtype = X.dtype
    out = np.asarray(X @ (d[:, None] * A).astype(dtype, copy=False))
    out -= (m @ A).astype(dtype)  # the rounding of a float32 X A already exceeds float32's for this subtraction
    return out


def _adjoint(X: sp.csr_matrix, d: np.ndarray, m: np.ndarray, U: np.ndarray) -> np.ndarray:
    """X_s^T U = d (X^T U) - m (1^T U), (n_items, k) for U (n_users, k), in X's dtype."""
    dtype = X.dtype
    XtU = np.asarray(X.T @ U.astype(dtype, copy=False))
    XtU *= d[:, None].astype(dtype)
    XtU -= np.outer(m, U.sum(axis=0, dtype=np.float64)).astype(dtype)
    return XtU


def _operator(X: sp.csr_matrix, d: np.ndarray, m: np.ndarray) -> spla.LinearOperator:
    """X_s = X diag(d) - 1 m^T as a LinearOperator; vectors go through the block products as one column."""

    def matvec(v: np.ndarray) -> np.ndarray:
        return _forward(X, d, m, np.asarray(v, dtype=np.float64).reshape(-1, 1)).ravel()

    def rmatvec(u: np.ndarray) -> np.ndarray:
        return _adjoint(X, d, m, np.asarray(u, dtype=np.float64).reshape(-1, 1)).ravel()

    def matmat(A: np.ndarray) -> np.ndarray:
        return _forward(X, d, m, np.asarray(A, dtype=np.float64))

    def rmatmat(U: np.ndarray) -> np.ndarray:
        return _adjoint(X, d, m, np.asarray(U, dtype=np.float64))

    return spla.LinearOperator(
        shape=X.shape, matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=np.dtype(np.float64)
    )


def _randomized_svd(
    forward: Callable[[np.ndarray], np.ndarray],
    adjoint: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, int],
    k: int,
    seed: int,
    n_iter: int,
    n_oversamples: int,
    dtype: type[np.floating[Any]] = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U (n, k), s (k,), V (p, k)) of the operator A with forward(B) = A B and adjoint(C) = A^T C.

    Halko, Martinsson, Tropp (2011), Algorithm 4.4 as scikit-learn's randomized_svd runs it: Q from
    n_iter power iterations on a Gaussian (p, k + n_oversamples) start (LU between products, QR last),
    then the SVD of the small Q^T A (float64). Q is kept in `dtype`, as scikit-learn keeps it in the input's
    dtype: in float32 the LU and QR of the tall Q run ~2-3x faster. A wide A is handled as A^T.
    Signs: each column of U has its largest-magnitude entry positive (scikit-learn's svd_flip).
    """
    n, p = shape
    transpose = n < p
    if transpose:
        forward, adjoint, n, p = adjoint, forward, p, n
    size = min(k + n_oversamples, n, p)
    Q = np.random.RandomState(seed).normal(size=(p, size)).astype(dtype)
    for _ in range(n_iter):
        Q = scipy.linalg.lu(forward(Q).astype(dtype, copy=False), permute_l=True, check_finite=False)[0]
        Q = scipy.linalg.lu(adjoint(Q).astype(dtype, copy=False), permute_l=True, check_finite=False)[0]
    Q = scipy.linalg.qr(forward(Q).astype(dtype, copy=False), mode="economic", check_finite=False)[0]
    Uhat, s, Vt = scipy.linalg.svd(adjoint(Q).T.astype(np.float64), full_matrices=False, check_finite=False)
    U, V = Q @ Uhat[:, :k], Vt[:k].T
    s = s[:k]
    if transpose:
        U, V = V, U
    signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    return U * signs, s, V * signs
