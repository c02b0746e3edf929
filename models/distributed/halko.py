"""The truncated SVD of a BlockedMatrix: Halko, Martinsson and Tropp's randomised range finder on Dask.

    Y = X Omega                       Omega (n_items, l) Gaussian, l = k + oversamples; per row block
    Q = tsqr(Y)                       dask.array.linalg.tsqr: the tall-and-skinny QR, a tree of small QRs
    repeat n_iter times:              subspace (power) iteration, re-orthonormalised on both sides
        Z = tsqr(X^T Q)               X^T Q (n_items, l) a sum over the blocks, its QR a tsqr over row chunks
        Q = tsqr(X Z)
    B^T = X^T Q  (n_items, l)         B = Q^T X, so X ~ Q B
    B^T = V_hat diag(s) W^T           the small SVD on the client; V = V_hat[:, :k], U = Q W[:, :k]

What travels to the client: B^T = X^T Q (n_items x l float64) once, at the end, and two scalars for the
accuracy figures. Y, Q (n_users x l), each iteration's X^T Q and Z (n_items x l) stay on the workers as dask
arrays (Z moves between workers, to every block's X Z), and tsqr's R factors (l x l per chunk) inside dask.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.linalg
from dask.distributed import wait

from models.build.progress import Progress
from models.distributed.blocked_matrix import BlockedMatrix
from models.fit.svd import TruncatedSVD, _result


def blocked_truncated_svd(
    X: BlockedMatrix, k: int, seed: int = 0, n_iter: int = 6, n_oversamples: int = 20, progress: Progress | None = None
) -> TruncatedSVD:
    """Top-k right singular pairs of X (n_users, n_items); k is capped at min(n_users, n_items).

    With l = min(k + n_oversamples, n_users, n_items) = min(n_users, n_items) the range of Y is all of X's row
    space and the result is exact up to rounding. Accuracy figures as models.fit.svd.truncated_svd's: relative
    residual ||X V - U S||_F / ||s||_2 and energy captured sum(s^2) / ||X||_F^2.
    """
    progress = progress or Progress(quiet=True)
    n, p = X.shape
    k = min(k, n, p)
    width = min(k + n_oversamples, n, p)
    omega = np.random.default_rng(seed).standard_normal((p, width))
    Q = _orthonormal(X.times_lazy(omega))
    for i in range(n_iter):
        with progress.step(f"  power iteration {i + 1}/{n_iter} (X^T Q, X Z and tsqr over {len(X.blocks)} blocks)"):
            Z = _orthonormal(_row_chunks(X.transpose_times_lazy(Q), len(X.blocks)))
            Q = _orthonormal(X.times_lazy(Z))
    Bt = X.transpose_times(Q)  # (p, width) = (Q^T X)^T
    V_hat, s, Wt = scipy.linalg.svd(Bt, full_matrices=False)
    V, s = V_hat[:, :k], s[:k]
    # X V - U S with U = Q W[:, :k]: one more pass over the blocks, reduced to a scalar on the workers
    residual = X.times_lazy(V) - Q @ da.from_array(Wt.T[:, :k] * s)
    residual_norm = float(da.sqrt((residual**2).sum()).compute())
    method = f"dask randomized(n_iter={n_iter}, oversamples={width - k}, tsqr, float64)"
    return _result(
        s, V, method, np.array([residual_norm]), X.squared_norm() or 1.0, rank_tol=max(n, p) * np.finfo(np.float64).eps
    )


def _row_chunks(M: da.Array, chunks: int) -> da.Array:
    """M (rows, l) in about `chunks` row chunks of at least l rows each (a tsqr needs tall chunks)."""
    rows, width = (int(s) for s in M.shape)
    size = max(width, -(-rows // max(1, chunks)))
    return M.rechunk({0: size, 1: -1})


def _orthonormal(Y: da.Array) -> da.Array:
    """Q of Y's tall-and-skinny QR (dask.array.linalg.tsqr), persisted on the workers, chunked like Y, and waited
    for: each power iteration's progress line times its own work."""
    Q, _ = da.linalg.tsqr(Y)
    Q = Q.persist()
    wait(Q)
    return Q
