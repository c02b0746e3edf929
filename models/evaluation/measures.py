"""Ranking measures over arrays: Recall@R, nDCG@R (binary relevance), catalogue coverage, Spearman of similarities.

A ranking is an int array (u, >= R) of item ids, best first, one row per user; -1 marks an empty
position (fewer candidates than R) and never counts as a hit. Held-out items are the stored
non-zeros of a csr matrix (u, n_items) whose row j belongs to ranking row j. A user without
held-out items gets NaN (callers average over the users that have some).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import spearmanr

from models.errors import InputError


def recall_at(ranked: np.ndarray, heldout: sp.csr_matrix | sp.csr_array, R: int) -> np.ndarray:
    """(u,): |top-R & held-out| / min(R, |held-out|) per user (Liang et al. 2018); NaN without held-out items."""
    hits, n_held = _hits(ranked, heldout, R)
    denom = np.minimum(R, n_held).astype(np.float64)
    return np.divide(hits.sum(axis=1), denom, out=np.full(hits.shape[0], np.nan), where=denom > 0)


def ndcg_at(ranked: np.ndarray, heldout: sp.csr_matrix | sp.csr_array, R: int) -> np.ndarray:
    """(u,): DCG@R / IDCG@R, DCG = sum_{r<=R} rel_r / log2(r + 1), IDCG = sum_{r<=min(R, |held-out|)} 1 / log2(r + 1).

    Binary relevance (Liang et al. 2018); NaN without held-out items.
    """
    hits, n_held = _hits(ranked, heldout, R)
    discount = 1.0 / np.log2(np.arange(2, R + 2, dtype=np.float64))  # rank r = 1..R
    dcg = hits @ discount[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(R, n_held)]
    return np.divide(dcg, ideal, out=np.full(hits.shape[0], np.nan), where=ideal > 0)


def coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the catalogue (n_items) appearing in at least one row of lists (q, k); -1 entries ignored."""
    if n_items <= 0:
        raise InputError(f"coverage: parameter n_items must be positive, got {n_items}")
    ids = np.asarray(lists, dtype=np.int64).ravel()
    ids = ids[ids >= 0]
    if ids.size and ids.max() >= n_items:
        raise InputError(f"coverage: list entry {int(ids.max())} outside the catalogue of {n_items} items")
    return float(np.unique(ids).size / n_items)


def similarity_spearman(S: np.ndarray, T: np.ndarray) -> float:
    """Spearman rank correlation of the off-diagonal upper-triangle entries of S and T (m, m); NaN when either is constant."""
    S, T = np.asarray(S), np.asarray(T)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape != T.shape:
        raise InputError(f"similarity_spearman: need two square matrices of one shape, got {S.shape} and {T.shape}")
    iu = np.triu_indices(S.shape[0], k=1)
    s, t = S[iu], T[iu]
    if s.size < 2 or np.all(s == s[0]) or np.all(t == t[0]):
        return float("nan")
    return float(spearmanr(s, t).statistic)


def _hits(ranked: np.ndarray, heldout: sp.csr_matrix | sp.csr_array, R: int) -> tuple[np.ndarray, np.ndarray]:
    """(hits (u, min(R, width)) float 0/1, n_held (u,) int): which top-R entries are held out, and how many items are."""
    ranked = np.asarray(ranked, dtype=np.int64)
    if R < 1:
        raise InputError(f"measures: parameter R must be >= 1, got {R}")
    if ranked.ndim != 2 or ranked.shape[0] != heldout.shape[0]:
        raise InputError(f"measures: ranked {ranked.shape} must be 2-D with one row per held-out row ({heldout.shape[0]})")
    H = sp.csr_matrix(heldout, copy=True)
    H.sum_duplicates()
    H.eliminate_zeros()
    n_items = H.shape[1]
    top = ranked[:, :R]
    # (row, item) pairs as one sorted key per held-out entry (canonical csr: rows, then columns, ascending),
    # so membership of every ranked entry is one searchsorted.
    held_keys = np.repeat(np.arange(H.shape[0], dtype=np.int64), np.diff(H.indptr)) * n_items + H.indices
    valid = (top >= 0) & (top < n_items)
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + np.where(valid, top, 0)
    pos = np.searchsorted(held_keys, keys)
    found = held_keys[np.minimum(pos, max(held_keys.size - 1, 0))] == keys if held_keys.size else np.zeros(keys.shape, bool)
    return (found & valid).astype(np.float64), np.diff(H.indptr).astype(np.int64)
