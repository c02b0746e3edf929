"""Cosine in the original space, served exactly in k dimensions, and safe row normalisation.

Xhat = P B^T (n_users, n_items) has rank <= k, so for any W with W W^T = G:
  users: P W_B,  W_B W_B^T = B^T B  ->  (P W_B)(P W_B)^T = Xhat Xhat^T
  items: B W_P,  W_P W_P^T = P^T P  ->  (B W_P)(B W_P)^T = Xhat^T Xhat
"""

from __future__ import annotations

import numpy as np


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
    """Euclidean norm of each row of M (m, k) -> (m,)."""
    return np.linalg.norm(np.asarray(M, dtype=np.float64), axis=1)
