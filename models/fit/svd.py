"""The one truncated SVD every model shares: X ~ U_k diag(s) V_k^T."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

DENSE_LIMIT = 60_000_000  # entries of X above which the exact path uses the Gram matrix
# nnz from which the randomised path runs in float32: there the sparse products dominate the build
# (~2x faster in float32) and the method's own error (the residual) dwarfs float32 rounding (~1e-7).
FLOAT32_MIN_NNZ = 1_000_000


@dataclass
class TruncatedSVD:
    """s (k,) descending, V (n_items, k) orthonormal columns; accuracy figures of the fit."""

    s: np.ndarray
    V: np.ndarray
    method: str
    relative_residual: float
    energy_captured: float

    @property
    def k(self) -> int:
        return int(self.s.size)


def truncated_svd(
    X: sp.spmatrix,
    k: int,
    seed: int = 0,
    n_iter: int = 6,
    n_oversamples: int = 20,
    float32_min_nnz: int = FLOAT32_MIN_NNZ,
) -> TruncatedSVD:
    """Top-k right singular pairs of X (n_users, n_items); k is capped at min(n_users, n_items).

    k < min(n, p): scikit-learn's randomised SVD (Halko et al.), `n_iter` power iterations, in
    float32 when X has at least `float32_min_nnz` non-zeros, else float64.
    Otherwise the exact SVD: dense LAPACK on X when it fits, else eigh of X^T X.
    Accuracy: relative residual ||X V - U S||_F / ||s||_2 (zero only when V spans exact right
    singular vectors; X^T U - V S is zero by construction of the randomised method, so it is not used),
    and energy captured sum(s^2) / ||X||_F^2.
    """
    n, p = X.shape
    k = min(k, n, p)
    # scipy-stubs: spmatrix is a bare mixin (not a _spbase), so no csr_matrix overload accepts it
    Xc = sp.csr_matrix(X)  # type: ignore[call-overload]
    total = float(np.square(Xc.data, dtype=np.float64).sum()) or 1.0
    if k < min(n, p):
        # Items in descending popularity: the hot rows of the dense factor stay in cache, so the
        # sparse products run ~1.4x faster. V is permuted back: the same subspace, another random start.
        dtype = np.float32 if Xc.nnz >= float32_min_nnz else np.float64
        order = np.argsort(-Xc.getnnz(axis=0), kind="stable")
        Xp = sp.csr_matrix(Xc[:, order], dtype=dtype)
        U, s, Vt = randomized_svd(
            Xp,
            n_components=k,
            n_oversamples=n_oversamples,
            n_iter=n_iter,
            random_state=seed,
            flip_sign=True,
        )
        method = f"randomized(n_iter={n_iter}, oversamples={n_oversamples}, {np.dtype(dtype).name})"
        residual = Xp @ Vt.T - U * s
        del Xp, U
        V = np.empty((p, k), dtype=np.float64)
        V[order] = Vt.T
        return _result(s, V, method, residual, total, rank_tol=max(n, p) * np.finfo(dtype).eps)
    Xc = sp.csr_matrix(Xc, dtype=np.float64)
    if n * p <= DENSE_LIMIT:
        U, s, Vt = scipy.linalg.svd(Xc.toarray(), full_matrices=False)
        U, s, V = U[:, :k], s[:k], Vt[:k].T
        method = "exact(dense lapack)"
        rank_tol = max(n, p) * np.finfo(np.float64).eps
    else:
        w, V = scipy.linalg.eigh((Xc.T @ Xc).toarray())
        order = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.clip(w[order], 0.0, None))
        V = V[:, order]
        U = (Xc @ V) / np.where(s > 0, s, 1.0)
        method = "exact(gram eigh)"
        rank_tol = np.sqrt(max(n, p) * np.finfo(np.float64).eps)  # eigenvalues of X^T X carry s_1^2 * eps noise
    return _result(s, V, method, Xc @ V - U * s, total, rank_tol)


def _result(
    s: np.ndarray, V: np.ndarray, method: str, residual: np.ndarray, total: float, rank_tol: float | np.floating
) -> TruncatedSVD:
    """Accuracy figures from the residual X V - U S (n_users, k) and total = ||X||_F^2.

    Singular values below rank_tol * s_1 are rounding noise of a rank-deficient X: they are set to 0,
    so that no model divides by them (sigma-matched's s^-1/2, weight decay's 1/s) or keeps their
    arbitrary directions (denoising with lambda = 0).
    """
    s = np.asarray(s, dtype=np.float64).copy()
    if s.size:
        s[s <= rank_tol * s[0]] = 0.0
    scale = float(np.linalg.norm(s)) or 1.0
    return TruncatedSVD(
        s=s,
        V=np.ascontiguousarray(V, dtype=np.float64),
        method=method,
        relative_residual=float(np.linalg.norm(residual) / scale),
        energy_captured=float(np.sum(s**2) / total),
    )
