"""How much two neighbour lists (or two score vectors) agree, and what a neighbour list looks like.

Every function takes arrays and returns a float (or an array of floats for the `_rows` forms, one per
query). A neighbour list is a 1-D integer array of row ids, best first, without duplicates; a score
vector is a 1-D float array over the whole catalogue (one score per row).

Undefined values are NaN, never an exception: a weighted tau of a constant score vector, the
category share of a query without categories, a popularity ratio when the catalogue median is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import weightedtau

RBO_P = 0.9  # RBO persistence: the top 10 ranks carry 1 - p^10 = 65% of the weight (Webber et al. eq. 21)


def jaccard(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """|A & B| / |A | B| of the sets of two lists; 1.0 when both are empty."""
    sa, sb = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    union = len(sa | sb)
    return 1.0 if union == 0 else len(sa & sb) / union


def overlap_at_k(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, k: int) -> float:
    """Overlap@k as Jaccard of the top-k prefixes: |A_k & B_k| / |A_k | B_k|."""
    return jaccard(np.asarray(a)[:k], np.asarray(b)[:k])


def jaccard_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Jaccard (b,) of each row pair of two id arrays A, B (b, k), rows without duplicates."""
    A, B = np.asarray(A), np.asarray(B)
    inter = (A[:, :, None] == B[:, None, :]).any(axis=2).sum(axis=1)
    union = A.shape[1] + B.shape[1] - inter
    return np.divide(inter, union, out=np.ones(A.shape[0]), where=union > 0)


def rbo(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, p: float = RBO_P) -> float:
    """Extrapolated rank-biased overlap RBO_ext of two lists, equal or uneven lengths.

    Webber, Moffat, Zobel (2010), "A similarity measure for indefinite rankings", eq. 32. With S the
    shorter list (length s), L the longer (length l), X_d = |S_:d & L_:d| (for d > s, S whole):

        RBO_ext = (1-p)/p * [ sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d ]
                  + [ (X_l - X_s)/l + X_s/s ] p^l

    For s = l this is (1-p)/p sum_d X_d/d p^d + X_k/k p^k (eq. 30). Identical lists give 1, disjoint
    lists 0; a list that is a prefix of the other gives 1 (the unseen part is extrapolated to agree
    as the seen part does). Lists must not contain duplicates; 0 < p < 1. Both empty: 1.0; one: 0.0.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"rbo: p must be in (0, 1), got {p}")
    la, lb = list(np.asarray(a).tolist()), list(np.asarray(b).tolist())
    if len(set(la)) != len(la) or len(set(lb)) != len(lb):
        raise ValueError("rbo: lists must not contain duplicates")
    S, L = (la, lb) if len(la) <= len(lb) else (lb, la)
    s, n_l = len(S), len(L)
    if s == 0:
        return 1.0 if n_l == 0 else 0.0
    seen_s: set[int] = set()
    seen_l: set[int] = set()
    x = 0  # X_d, updated incrementally
    total = 0.0
    x_s = 0
    for d in range(1, n_l + 1):
        item_l = L[d - 1]
        if d <= s:
            item_s = S[d - 1]
            x += (item_s in seen_l) + (item_l in seen_s) + (item_s == item_l)
            seen_s.add(item_s)
        else:
            x += item_l in seen_s
        seen_l.add(item_l)
        if d == s:
            x_s = x
        total += x / d * p**d
        if d > s:
            total += x_s * (d - s) / (s * d) * p**d
    return (1 - p) / p * total + ((x - x_s) / n_l + x_s / s) * p**n_l


def rbo_rows(A: np.ndarray, B: np.ndarray, p: float = RBO_P) -> np.ndarray:
    """rbo() (b,) of each row pair of A, B (b, k): equal-length lists, vectorised (eq. 30).

    X_d = sum_{i<d, j<d} [A_i = B_j], read off the 2-D cumulative sum of the match matrix.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"rbo: p must be in (0, 1), got {p}")
    A, B = np.asarray(A), np.asarray(B)
    if A.shape != B.shape:
        raise ValueError(f"rbo_rows: shapes differ: {A.shape} vs {B.shape}")
    k = A.shape[1]
    if k == 0:
        return np.ones(A.shape[0])
    match = (A[:, :, None] == B[:, None, :]).astype(np.float64)
    cum = match.cumsum(axis=1).cumsum(axis=2)
    d = np.arange(1, k + 1)
    X = cum[:, d - 1, d - 1]  # (b, k): X_d
    w = p ** d.astype(np.float64)
    return (1 - p) / p * (X / d * w).sum(axis=1) + X[:, -1] / k * p**k


def weighted_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Weighted Kendall tau (Vigna 2015) of two score vectors x, y (m,), via scipy.stats.weightedtau.

    Hyperbolic additive weights: a pair (i, j) weighs 1/(r_i+1) + 1/(r_j+1), r = rank by decreasing
    score, so disagreements near the top count most; computed once with ranks from x and once from y
    and averaged (scipy's rank=True). tau = (sum_{i<j} w_ij sgn(x_i-x_j) sgn(y_i-y_j)) /
    sqrt(sum_{x_i != x_j} w_ij * sum_{y_i != y_j} w_ij). In [-1, 1]; NaN when x or y is constant.
    Cost: O(m log m), about 3 microseconds per element on this machine.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"weighted_tau: need two 1-D vectors of one length, got {x.shape} and {y.shape}")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(weightedtau(x, y).statistic)


def popularity_ratio(neighbours: np.ndarray, popularity: np.ndarray, catalogue_median: float | None = None) -> float:
    """median(popularity[neighbours]) / median(popularity) over the catalogue.

    popularity (m,): interactions per row (users per item, or items per user). > 1: the list leans to
    popular rows. NaN for an empty list or a zero catalogue median.
    """
    popularity = np.asarray(popularity, dtype=np.float64)
    med = float(np.median(popularity)) if catalogue_median is None else float(catalogue_median)
    neighbours = np.asarray(neighbours, dtype=np.int64)
    if neighbours.size == 0 or med <= 0:
        return float("nan")
    return float(np.median(popularity[neighbours])) / med


def popularity_ratio_rows(lists: np.ndarray, popularity: np.ndarray, catalogue_median: float) -> np.ndarray:
    """popularity_ratio() (b,) of each row of lists (b, k)."""
    if catalogue_median <= 0 or lists.shape[1] == 0:
        return np.full(lists.shape[0], np.nan)
    return np.median(np.asarray(popularity, dtype=np.float64)[lists], axis=1) / catalogue_median


def category_matrix(item_categories: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """(C (m, c) bool, names (c,)): C[i, j] when item i carries category names[j]; names sorted."""
    names = sorted({c for cats in item_categories for c in cats})
    col = {c: j for j, c in enumerate(names)}
    C = np.zeros((len(item_categories), len(names)), dtype=bool)
    for i, cats in enumerate(item_categories):
        C[i, [col[c] for c in cats]] = True
    return C, names


def category_share(query: int, neighbours: np.ndarray, categories: np.ndarray) -> float:
    """Share of neighbours sharing >= 1 category with the query: mean_n [C_q . C_n > 0].

    categories (m, c) bool (category_matrix). A neighbour without categories counts as not sharing.
    NaN when the query has no category or the list is empty.
    """
    return float(category_share_rows(np.array([query]), np.asarray(neighbours)[None, :], categories)[0])


def category_share_rows(queries: np.ndarray, lists: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """category_share() (b,) for queries (b,) and their lists (b, k)."""
    C = np.asarray(categories, dtype=bool)
    q = C[np.asarray(queries)]  # (b, c)
    if lists.shape[1] == 0:
        return np.full(len(queries), np.nan)
    shared = (C[lists] & q[:, None, :]).any(axis=2)  # (b, k)
    out = shared.mean(axis=1)
    out[~q.any(axis=1)] = np.nan
    return out
