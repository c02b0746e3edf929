"""Closed-form solutions of the paper's two objectives, and the objectives themselves.

Objective 1 (denoising):    ||X - X A B^T||^2 + lam ||A B^T||^2
    A B^T = V_k diag(f) V_k^T,  f_i = s_i^2 / (s_i^2 + lam) = 1 / (1 + lam / s_i^2).
Objective 2 (weight decay): ||X - X A B^T||^2 + lam (||X A||^2 + ||B||^2)
    A = V_k diag(sqrt((1/s_i)(1 - lam/s_i)_+)),  B = V_k diag(sqrt(s_i (1 - lam/s_i)_+)).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DENOISING_VARIANTS: tuple[str, ...] = (
    "denoising-symmetric",
    "denoising-item-orthonormal",
    "denoising-user-orthonormal",
    "denoising-sigma-matched",
)
WEIGHT_DECAY = "weight-decay"
MODELS: tuple[str, ...] = (*DENOISING_VARIANTS, WEIGHT_DECAY)


def shrinkage(s: np.ndarray, lam: float) -> np.ndarray:
    """f (k,) with f_i = s_i^2 / (s_i^2 + lam); a zero singular value gives 0, never NaN."""
    s2 = np.asarray(s, dtype=np.float64) ** 2
    den = s2 + lam
    return np.divide(s2, den, out=np.zeros_like(s2), where=den > 0)


def denoising_factors(V: np.ndarray, s: np.ndarray, lam: float, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(A, B), each (n_items, k), for one D-variant; every variant has A B^T = V diag(f) V^T.

    symmetric: A = B = V f^1/2; item-orthonormal: A = V f, B = V;
    user-orthonormal: A = V, B = V f; sigma-matched: A = V (f/s)^1/2, B = V (f s)^1/2.
    """
    f = shrinkage(s, lam)
    if variant == "denoising-symmetric":
        a, b = np.sqrt(f), np.sqrt(f)
    elif variant == "denoising-item-orthonormal":
        a, b = f, np.ones_like(f)
    elif variant == "denoising-user-orthonormal":
        a, b = np.ones_like(f), f
    elif variant == "denoising-sigma-matched":
        # D = diag(s)^1/2 moves scale from A to B, mimicking objective 2's diagonal.
        safe = np.where(s > 0, s, 1.0)
        a = np.where(s > 0, np.sqrt(f / safe), 0.0)
        b = np.where(s > 0, np.sqrt(f * safe), 0.0)
    else:
        raise ValueError(f"unknown denoising variant {variant!r}; expected one of {DENOISING_VARIANTS}")
    return V * a, V * b


def weight_decay_factors(V: np.ndarray, s: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(A, B, surviving): A, B (n_items, k); dimensions with s_i <= lam are zero columns."""
    s = np.asarray(s, dtype=np.float64)
    keep = np.where(s > 0, np.clip(1.0 - lam / np.where(s > 0, s, 1.0), 0.0, None), 0.0)
    safe = np.where(s > 0, s, 1.0)
    a = np.sqrt(keep / safe)
    b = np.sqrt(keep * safe)
    return V * a, V * b, int(np.count_nonzero(keep > 0))


def model_factors(
    V: np.ndarray, s: np.ndarray, model: str, lam_denoising: float, lam_weight_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) (n_items, k) of any model name in MODELS."""
    if model == WEIGHT_DECAY:
        A, B, _ = weight_decay_factors(V, s, lam_weight_decay)
        return A, B
    return denoising_factors(V, s, lam_denoising, model)


def denoising_objective(X: sp.spmatrix | np.ndarray, A: np.ndarray, B: np.ndarray, lam: float) -> float:
    """||X - X A B^T||_F^2 + lam ||A B^T||_F^2 (dense; for tests and small problems)."""
    Xd = _dense(X)
    M = A @ B.T
    return float(np.sum((Xd - Xd @ M) ** 2) + lam * np.sum(M**2))


def weight_decay_objective(X: sp.spmatrix | np.ndarray, A: np.ndarray, B: np.ndarray, lam: float) -> float:
    """||X - X A B^T||_F^2 + lam (||X A||_F^2 + ||B||_F^2) (dense; for tests and small problems)."""
    Xd = _dense(X)
    P = Xd @ A
    return float(np.sum((Xd - P @ B.T) ** 2) + lam * (np.sum(P**2) + np.sum(B**2)))


def _dense(X: sp.spmatrix | np.ndarray) -> np.ndarray:
    # scipy-stubs: issparse narrows to SparseABC intersections, and the spmatrix mixin declares no toarray
    return X.toarray().astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)  # type: ignore[union-attr]
