"""The randomised SVD's large-matrix path (float32, items reordered by popularity) against float64 LAPACK."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.fit.svd import truncated_svd


def power_law_binary(n: int, p: int, seed: int) -> sp.csr_matrix:
    """Binary X (n, p) whose item popularity falls off as rank^-1 in a shuffled column order."""
    rng = np.random.default_rng(seed)
    pop = (rng.permutation(p) + 1.0) ** -1.0
    probs = np.minimum(1.0, 8.0 * pop / pop.mean() / p)
    return sp.csr_matrix((rng.random((n, p)) < probs).astype(np.float32))


def test_float32_path_matches_float64_lapack():
    X = power_law_binary(600, 90, seed=4)
    _, s_ref, Vt = np.linalg.svd(X.toarray().astype(np.float64), full_matrices=False)
    # k at the widest spectral gap among 3..12: the top-k subspace is well defined, so both paths must find it
    k = 3 + int(np.argmax(s_ref[2:12] / s_ref[3:13]))
    assert s_ref[k - 1] > 1.05 * s_ref[k]
    fast = truncated_svd(X, k=k, seed=1, n_iter=30, float32_min_nnz=0)
    slow = truncated_svd(X, k=k, seed=1, n_iter=30, float32_min_nnz=X.nnz + 1)
    assert "float32" in fast.method and "float64" in slow.method
    assert fast.V.dtype == np.float64 and fast.V.shape == (90, k)
    np.testing.assert_allclose(fast.s, s_ref[:k], rtol=1e-5)
    np.testing.assert_allclose(slow.s, s_ref[:k], rtol=1e-9)
    ref_projector = Vt[:k].T @ Vt[:k]
    np.testing.assert_allclose(fast.V @ fast.V.T, ref_projector, atol=1e-4)
    np.testing.assert_allclose(fast.V.T @ fast.V, np.eye(k), atol=1e-5)
    # the item reordering is undone: V's rows are in X's column order
    np.testing.assert_allclose(np.abs(fast.V), np.abs(slow.V), atol=1e-4)
    assert fast.relative_residual < 1e-4 and slow.relative_residual < 1e-8
