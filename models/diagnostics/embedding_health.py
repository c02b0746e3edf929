"""Embedding health: three figures per model and side that say when cosine similarity is in trouble.

For an embedding matrix M (m, k) (items: Q (n_items, k), users: P (n_users, k)):

- anisotropy: the mean cosine similarity of distinct rows, E_{i != j} cos(M_i, M_j) (Ethayarajh 2019), over
  the nonzero rows (a zero row has no direction). Near 0: isotropic; near 1: the rows lie in a narrow cone
  and cosine hardly discriminates between them. Estimated from `pairs` ordered pairs (i, j), i != j, drawn
  uniformly with replacement; exact (the mean over every pair) when `pairs` >= n (n - 1) / 2 for n nonzero
  rows, by the identity sum_{i != j} u_i . u_j = |sum_i u_i|^2 - n for unit rows u_i. None for n < 2.
- effective rank: exp(H(p)), H(p) = -sum_i p_i log p_i, p_i = s_i / sum_j s_j over the singular values s of
  M itself, raw and uncentred (Roy & Vetterli 2007); between 1 and k. Uncentred on purpose: a common offset
  of the rows (the anisotropy cone) is a dominant singular direction and lowers the figure, so the two
  figures tell the same story from two sides. None for an all-zero matrix.
- norm-popularity Spearman: rank correlation of |M_i| with the row's popularity (items: users who interacted
  with it, models.inputs.dataset.item_popularity; users: items they interacted with, user_activity). Zero
  rows take part (norm 0). Positive: the norms carry popularity, which is why dot favours popular items
  and cosine, which drops the norms, ranks differently. None when either side is constant.

All three depend on the gauge: P Q^T = (P D)(Q D^-1)^T for every invertible diagonal D, yet the cosines,
the spectrum and the norms of Q D differ from those of Q. They describe the stored vectors, which cosine
uses, not the model's predictions.

Numerics: float64 throughout, rows processed in blocks, so float32 matrices of millions of rows need only
one block's float64 copy. Singular values come from the k x k Gram M^T M (eigvalsh, O(m k^2)); its
eigenvalues below k eps lambda_max are rounding noise and count as zero, so singular values under
~1.2e-7 s_max (k = 64) are dropped. Each adds at most -p log p ~ 2e-6 to H, which bounds the error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from models.errors import InputError

SIDE_STREAMS = {"items": 0, "users": 1}  # second word of the pair-sampling seed: items and users draw differently
BLOCK_ROWS = 1 << 16  # rows per float64 block (32 MB at k = 64)
BLOCK_PAIRS = 1 << 16  # sampled pairs per block of gathered rows


@dataclass(frozen=True)
class HealthParams:
    pairs: int = 10_000  # sampled row pairs for the anisotropy; the exact mean when >= all pairs
    seed: int = 0


def _check_matrix(M: np.ndarray, name: str = "M") -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2:
        raise InputError(f"embedding health: {name} must be a 2-D (rows, k) matrix, got shape {M.shape}")
    if not (np.issubdtype(M.dtype, np.floating) or np.issubdtype(M.dtype, np.integer)):
        raise InputError(f"embedding health: {name} must be a real numeric matrix, got dtype {M.dtype}")
    return M


def _check_params(pairs: int, seed: int) -> None:
    if isinstance(pairs, bool) or not isinstance(pairs, int | np.integer) or pairs < 1:
        raise InputError(f"embedding health: parameter pairs must be an integer >= 1, got {pairs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"embedding health: parameter seed must be an integer >= 0, got {seed!r}")


def _blocks(m: int) -> range:
    return range(0, m, BLOCK_ROWS)


def _narrow(M: np.ndarray) -> bool:
    """True when squares and sums of squares of M's entries (float32 or narrower, or integers) cannot underflow
    or overflow in float64: |x| < 2^64 < 1e20 and every nonzero |x| > 1e-46, against float64's 1e+-308."""
    return bool(np.issubdtype(M.dtype, np.integer) or M.dtype.itemsize <= 4)


def _row_norms(M: np.ndarray, name: str = "M") -> np.ndarray:
    """Euclidean norms (m,) float64 of the rows of M (m, k); InputError on a NaN or infinite entry."""
    m = M.shape[0]
    norms = np.zeros(m)
    if M.shape[1] == 0:
        return norms
    for start in _blocks(m):
        B = np.asarray(M[start : start + BLOCK_ROWS], dtype=np.float64)
        if _narrow(M):
            norms[start : start + BLOCK_ROWS] = np.sqrt(np.einsum("ij,ij->i", B, B))
            continue
        # Scale by the row's largest entry first: squaring tiny (huge) float64 entries would underflow (overflow).
        peak = np.max(np.abs(B), axis=1)
        S = np.divide(B, peak[:, None], out=np.zeros_like(B), where=peak[:, None] > 0)
        norms[start : start + BLOCK_ROWS] = peak * np.sqrt(np.einsum("ij,ij->i", S, S))
    if not np.all(np.isfinite(norms)):
        raise InputError(f"embedding health: {name} has NaN or infinite entries")
    return norms


def _anisotropy(M: np.ndarray, norms: np.ndarray, pairs: int, rng: np.random.Generator) -> float | None:
    pool = np.flatnonzero(norms > 0)
    n = pool.size
    if n < 2:
        return None
    if pairs >= n * (n - 1) // 2:
        # Every pair is affordable: the exact mean, O(n k), from |sum u|^2 = n + sum_{i != j} u_i . u_j.
        total = np.zeros(M.shape[1])
        for start in range(0, n, BLOCK_ROWS):
            rows = pool[start : start + BLOCK_ROWS]
            total += (np.asarray(M[rows], dtype=np.float64) / norms[rows, None]).sum(axis=0)
        return float((total @ total - n) / (n * (n - 1)))
    i = rng.integers(0, n, size=pairs)
    # j uniform over the n - 1 rows other than i: a shift of 1..n-1 places round the pool.
    j = (i + rng.integers(1, n, size=pairs)) % n
    total_cos = 0.0
    for start in range(0, pairs, BLOCK_PAIRS):
        a, b = pool[i[start : start + BLOCK_PAIRS]], pool[j[start : start + BLOCK_PAIRS]]
        # Normalise before the product: a product of two tiny (huge) float64 norms would underflow (overflow).
        A = np.asarray(M[a], dtype=np.float64) / norms[a, None]
        B = np.asarray(M[b], dtype=np.float64) / norms[b, None]
        total_cos += float(np.sum(np.einsum("ij,ij->i", A, B)))
    return total_cos / pairs


def anisotropy(M: np.ndarray, pairs: int, seed: int, *, stream: int = 0) -> float | None:
    """Mean cosine similarity of distinct nonzero rows of M (m, k): E_{i != j} M_i . M_j / (|M_i| |M_j|).

    `pairs` ordered pairs (i, j), i != j, drawn uniformly with replacement from the nonzero rows by numpy
    default_rng([seed, stream]); the exact mean over all pairs when pairs >= n (n - 1) / 2 (n nonzero rows).
    None when fewer than 2 rows are nonzero.
    """
    _check_params(pairs, seed)
    M = _check_matrix(M)
    return _anisotropy(M, _row_norms(M), int(pairs), np.random.default_rng([int(seed), int(stream)]))


def effective_rank(M: np.ndarray, name: str = "M") -> float | None:
    """exp(-sum_i p_i log p_i), p_i = s_i / sum_j s_j, over the singular values s (k,) of M (m, k) raw
    (uncentred); s = sqrt(max(eig(M^T M), 0)) in float64. In [1, k]; None for an all-zero matrix."""
    M = _check_matrix(M, name)
    k = M.shape[1]
    if M.shape[0] == 0 or k == 0:
        return None
    # The figure is scale-free: for float64 input, dividing by the largest entry keeps the Gram clear of
    # overflow and underflow (narrower input cannot reach either in float64).
    scale = 1.0
    if not _narrow(M):
        scale = max(float(np.max(np.abs(M[start : start + BLOCK_ROWS]))) for start in _blocks(M.shape[0]))
        if not np.isfinite(scale):
            raise InputError(f"embedding health: {name} has NaN or infinite entries")
        if scale == 0.0:
            return None
    G = np.zeros((k, k))
    for start in _blocks(M.shape[0]):
        B = np.asarray(M[start : start + BLOCK_ROWS], dtype=np.float64) / scale  # a copy: M is not written to
        G += B.T @ B
    if not np.all(np.isfinite(G)):
        raise InputError(f"embedding health: {name} has NaN or infinite entries")
    if not np.any(G):
        return None
    eig = np.linalg.eigvalsh(G)
    # Below k eps lambda_max an eigenvalue of the computed Gram is rounding, not spectrum.
    eig[eig <= k * np.finfo(np.float64).eps * eig[-1]] = 0.0
    s = np.sqrt(eig)
    p = s[s > 0] / s.sum()
    # exp(H) is in [1, k] exactly; the clip only removes rounding at the ends (equal or single singular values).
    return float(np.clip(np.exp(-np.sum(p * np.log(p))), 1.0, k))


def _spearman(norms: np.ndarray, popularity: np.ndarray) -> float | None:
    if norms.size < 2 or np.ptp(norms) == 0 or np.ptp(popularity) == 0:
        return None
    rho = float(spearmanr(norms, popularity).statistic)
    return rho if np.isfinite(rho) else None


def _check_popularity(popularity: np.ndarray, m: int, name: str) -> np.ndarray:
    pop = np.asarray(popularity)
    if pop.shape != (m,):
        raise InputError(f"embedding health: {name} must have shape ({m},) (one entry per row), got {pop.shape}")
    if not (np.issubdtype(pop.dtype, np.floating) or np.issubdtype(pop.dtype, np.integer)):
        raise InputError(f"embedding health: {name} must be numeric, got dtype {pop.dtype}")
    pop = pop.astype(np.float64)
    if not np.all(np.isfinite(pop)):
        raise InputError(f"embedding health: {name} has NaN or infinite entries")
    return pop


def norm_popularity_correlation(M: np.ndarray, popularity: np.ndarray) -> float | None:
    """Spearman rank correlation of the row norms |M_i| of M (m, k) with popularity (m,) (scipy spearmanr,
    ties by average rank); None when either is constant (or m < 2)."""
    M = _check_matrix(M)
    return _spearman(_row_norms(M), _check_popularity(popularity, M.shape[0], "popularity"))


def embedding_health(
    M: np.ndarray,
    popularity: np.ndarray,
    params: HealthParams,
    *,
    stream: int = 0,
    names: tuple[str, str] = ("M", "popularity"),
) -> dict[str, float | int | None]:
    """The health of one embedding matrix M (m, k) with its rows' popularity (m,):
    {"anisotropy", "effective_rank", "dims" (k), "norm_popularity_spearman", "zero_rows"}, python floats,
    ints or None (JSON without NaN). `stream` picks the anisotropy's random stream; `names` name the matrix
    and the popularity array in error messages."""
    _check_params(params.pairs, params.seed)
    M = _check_matrix(M, names[0])
    pop = _check_popularity(popularity, M.shape[0], names[1])
    norms = _row_norms(M, names[0])
    rng = np.random.default_rng([int(params.seed), int(stream)])
    return {
        "anisotropy": _anisotropy(M, norms, int(params.pairs), rng),
        "effective_rank": effective_rank(M, names[0]),
        "dims": int(M.shape[1]),
        "norm_popularity_spearman": _spearman(norms, pop),
        "zero_rows": int(np.count_nonzero(norms == 0)),
    }


def health_of_model(
    P: np.ndarray, Q: np.ndarray, item_popularity: np.ndarray, user_activity: np.ndarray, params: HealthParams
) -> dict[str, dict[str, float | int | None]]:
    """{"items": embedding_health(Q (n_items, k), item_popularity (n_items,)), "users": embedding_health(P
    (n_users, k), user_activity (n_users,))}; the two sides sample their pairs from different streams."""
    P, Q = _check_matrix(P, "P"), _check_matrix(Q, "Q")
    if P.shape[1] != Q.shape[1]:
        raise InputError(f"embedding health: P {P.shape} and Q {Q.shape} must have the same number of columns k")
    return {
        "items": embedding_health(Q, item_popularity, params, stream=SIDE_STREAMS["items"], names=("Q", "item_popularity")),
        "users": embedding_health(P, user_activity, params, stream=SIDE_STREAMS["users"], names=("P", "user_activity")),
    }
