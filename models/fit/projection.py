"""Cosine in the original space, served exactly in k dimensions, and safe row normalisation.

Xhat = P B^T (n_users, n_items) has rank <= k, so for any W with W W^T = G:
  users: P W_B,  W_B W_B^T = B^T B  ->  (P W_B)(P W_B)^T = Xhat Xhat^T
  items: B W_P,  W_P W_P^T = P^T P  ->  (B W_P)(B W_P)^T = Xhat^T Xhat

A factor may be a dask array (rows held by Dask workers, the Dask engine's user embeddings): the row-wise
operations here then map over its row blocks where they lie, and gram / mean_row reduce them to (k, k) and
(k,) pieces, the only ones that come to this process.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

if TYPE_CHECKING:
    import dask.array as da


def is_lazy(M: Any) -> TypeGuard[da.Array]:
    """Whether M is a dask array (rows on Dask workers); dask is only imported by the engine that makes one."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(M, da.Array)


def as_float64(M: Any) -> Any:
    """M as float64: a dask array stays one (its rows where they are), anything else becomes an ndarray."""
    return M.astype(np.float64) if is_lazy(M) else np.asarray(M, dtype=np.float64)


def gram(M: Any) -> np.ndarray:
    """M^T M (k, k) float64 of M (m, k): for a dask array a sum over its row blocks, computed."""
    if is_lazy(M):
        return np.asarray((M.T @ M).compute(), dtype=np.float64)
    M64 = np.asarray(M, dtype=np.float64)
    return M64.T @ M64


def gram_and_mean(M: Any) -> tuple[np.ndarray, np.ndarray]:
    """(M^T M (k, k), the mean row (k,)) float64 of M (m, k), in one pass over a dask array's blocks."""
    if is_lazy(M):
        import dask

        G, total = dask.compute(M.T @ M, M.sum(axis=0))
        m = max(int(M.shape[0]), 1)
        return np.asarray(G, dtype=np.float64), np.asarray(total, dtype=np.float64) / m
    M64 = np.asarray(M, dtype=np.float64)
    return M64.T @ M64, (M64.mean(axis=0) if M64.shape[0] else np.zeros(M64.shape[1]))


def gram_root(G: np.ndarray) -> np.ndarray:
    """W (k, k) with W W^T = G for a symmetric PSD G (k, k): the eigen-root, negative eigenvalues clipped."""
    G = (G + G.T) / 2.0
    w, Q = np.linalg.eigh(G)
    return Q * np.sqrt(np.clip(w, 0.0, None))


def projected_vectors(P: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(users (n_users, k), items (n_items, k)) isometric to the rows / columns of Xhat = P B^T."""
    P64 = np.asarray(P, dtype=np.float64)
    B64 = np.asarray(B, dtype=np.float64)
    users = P64 @ gram_root(B64.T @ B64)
    items = B64 @ gram_root(P64.T @ P64)
    return users, items


def normalize_rows(M: np.ndarray) -> np.ndarray:
    """Rows of M (m, k) scaled to unit length; zero rows stay zero (their cosine is 0, not NaN)."""
    if is_lazy(M):
        return M.rechunk({1: -1}).map_blocks(normalize_rows, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    if M.size == 0:
        return np.zeros_like(M)
    norms = np.sqrt(np.einsum("ij,ij->i", M, M))
    # With every norm in this range no square overflows, and a square that underflows (< 1e-308) is below
    # 1e-28 of its row's norm^2 (> 1e-280): the direct norms are exact to rounding.
    if (norms > 1e-140).all() and (norms < 1e140).all():
        return M / norms[:, None]
    # Otherwise scale by the largest entry first: squaring tiny entries would underflow and skew the norm.
    peak = np.abs(M).max(axis=1)
    live = peak > 0
    if live.all():
        S = M / peak[:, None]
    else:
        S = np.zeros_like(M)
        S[live] = M[live] / peak[live, None]
    norms = np.sqrt(np.einsum("ij,ij->i", S, S))  # >= 1 on live rows (their largest entry is 1), 0 on the others
    norms[~live] = 1.0
    S /= norms[:, None]
    return S


def row_norms(M: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of M (m, k) -> (m,) (a dask array for a dask array)."""
    if is_lazy(M):
        return M.rechunk({1: -1}).map_blocks(row_norms, drop_axis=1, dtype=np.float64)
    return np.linalg.norm(np.asarray(M, dtype=np.float64), axis=1)
