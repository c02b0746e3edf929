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
    # Scale by the largest entry first: squaring tiny entries would underflow and skew the norm.
    peak = np.max(np.abs(M), axis=1, keepdims=True) if M.shape[1] else np.zeros((M.shape[0], 1))
    S = np.divide(M, peak, out=np.zeros_like(M), where=peak > 0)
    norms = np.linalg.norm(S, axis=1, keepdims=True)
    return np.divide(S, norms, out=np.zeros_like(S), where=norms > 0)


def row_norms(M: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of M (m, k) -> (m,)."""
    return np.linalg.norm(np.asarray(M, dtype=np.float64), axis=1)
