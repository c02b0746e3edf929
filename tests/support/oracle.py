"""The dense oracle: every score the API serves, recomputed in dense numpy from svd.npz and
interactions.npz with PAPER.md's closed forms (independent of models/ and of the indexes).

`dense_oracle(version_dir, lam_denoising, lam_weight_decay)` -> DenseOracle with items(model, metric)
(p, p), users(model, metric) (n, n) and recommend(model, metric) (n, p), computed on first use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp


def _cos_rows(M: np.ndarray) -> np.ndarray:
    """Row-row cosine of M (m, d) by the definition; rows of norm 0 give 0."""
    n = np.sqrt((M * M).sum(axis=1))
    G = M @ M.T
    den = np.outer(n, n)
    return np.divide(G, den, out=np.zeros_like(G), where=den > 0)


def _pearson_rows(M: np.ndarray) -> np.ndarray:
    """Row-row Pearson correlation of M (m, d): cosine after removing each row's mean (constant rows give 0)."""
    return _cos_rows(M - M.mean(axis=1, keepdims=True))


def _mahalanobis_cos(M: np.ndarray) -> np.ndarray:
    """Cosine of the rows of M (m, k) in the inner product of its inverse covariance (a pseudo-inverse with a
    relative cutoff): the whitened cosine, by its definition."""
    Mc = M - M.mean(axis=0)
    C = Mc.T @ Mc / (M.shape[0] - 1)
    G = Mc @ np.linalg.pinv(C, rcond=1e-10, hermitian=True) @ Mc.T
    d = np.sqrt(np.clip(np.diag(G), 0, None))
    den = np.outer(d, d)
    return np.divide(G, den, out=np.zeros_like(G), where=den > 1e-12 * max(float(den.max()), 1e-300))


def paper_factors(
    s: np.ndarray, V: np.ndarray, model: str, lam_denoising: float, lam_weight_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of PAPER.md's closed forms, written out here independently of models/."""
    if model == "weight-decay":
        keep = np.clip(1.0 - lam_weight_decay / s, 0.0, None)
        return V * np.sqrt(keep / s), V * np.sqrt(keep * s)
    f = s**2 / (s**2 + lam_denoising)
    a, b = {
        "denoising-symmetric": (np.sqrt(f), np.sqrt(f)),
        "denoising-item-orthonormal": (f, np.ones_like(f)),
        "denoising-user-orthonormal": (np.ones_like(f), f),
        "denoising-sigma-matched": (np.sqrt(f / s), np.sqrt(f * s)),
    }[model]
    return V * a, V * b


class DenseOracle:
    """Dense scores per (model, metric), computed on first use: items (p, p), users (n, n), recommend (n, p).

    items(model, metric)[q] are the scores of every item against item q; likewise for users and
    recommend (user u against every item).
    """

    def __init__(self, version_dir: Path, lam_denoising: float, lam_weight_decay: float) -> None:
        with np.load(version_dir / "svd.npz") as z:
            self.s, self.V = z["s"].astype(np.float64), z["V"].astype(np.float64)
        self.X = sp.load_npz(version_dir / "interactions.npz").toarray().astype(np.float64)
        self.lams = (lam_denoising, lam_weight_decay)
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}

    def _model(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P, B, Xhat) of a model: P = X A (n, k), B (p, k), Xhat = P B^T (n, p), the model's smoothed X."""
        A, B = paper_factors(self.s, self.V, model, *self.lams)
        P = self.X @ A
        return P, B, P @ B.T

    def _get(self, side: str, model: str, metric: str) -> np.ndarray:
        key = (side, model, metric)
        if key not in self._cache:
            P, B, Xhat = self._model(model)
            if side == "items":
                M = {
                    "dot": lambda: B @ B.T,
                    "cosine": lambda: _cos_rows(B),
                    "projected": lambda: _cos_rows(Xhat.T),
                    "projected-centered": lambda: _pearson_rows(Xhat.T),
                    "whitened": lambda: _mahalanobis_cos(B),
                }[metric]()
            elif side == "users":
                M = {
                    "dot": lambda: P @ P.T,
                    "cosine": lambda: _cos_rows(P),
                    "projected": lambda: _cos_rows(Xhat),
                    "projected-centered": lambda: _pearson_rows(Xhat),
                    "whitened": lambda: _mahalanobis_cos(P),
                }[metric]()
            else:
                if metric == "dot":
                    M = Xhat
                elif metric == "projected-centered":  # Xhat with each item's mean over users removed, normalised
                    Xc = Xhat - Xhat.mean(axis=0)
                    den = np.outer(np.sqrt((Xc * Xc).sum(1)), np.sqrt((Xc * Xc).sum(0)))
                    M = np.divide(Xc, den, out=np.zeros_like(Xc), where=den > 0)
                else:
                    a, b = (P, B) if metric == "cosine" else (Xhat, Xhat.T)
                    den = np.outer(np.sqrt((a * a).sum(1)), np.sqrt((b * b).sum(1)))
                    M = np.divide(Xhat, den, out=np.zeros_like(Xhat), where=den > 0)
            self._cache[key] = M
        return self._cache[key]

    def items(self, model: str, metric: str) -> np.ndarray:
        return self._get("items", model, metric)

    def users(self, model: str, metric: str) -> np.ndarray:
        return self._get("users", model, metric)

    def recommend(self, model: str, metric: str) -> np.ndarray:
        return self._get("recommend", model, metric)


def dense_oracle(version_dir: Path, lam_denoising: float, lam_weight_decay: float) -> DenseOracle:
    return DenseOracle(version_dir, lam_denoising, lam_weight_decay)
