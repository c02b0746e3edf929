"""How much the neighbour lists of several vector sets agree, for a batch of queries.

One implementation for both users of the figures: GET /compare-metrics (one query, the lists the
API serves) and the build's summary.json (the mean over sampled queries of the same figures). The
lists themselves come from models.indexes.neighbour_lists (one tie rule). Per list:
- popularity_ratio = median(popularity of the neighbours) / catalogue median, popularity = users per
  item (items) or items per user (users) (models.diagnostics.agreement.popularity_ratio_rows);
- category_share = share of neighbours sharing >= 1 category with the query (items with categories).
Per pair of lists (a, b), in the order of combinations(names, 2):
- jaccard = |A & B| / |A | B| of the two top-k lists;
- rbo = extrapolated rank-biased overlap with persistence p (Webber et al. 2010);
- weighted_tau = weighted Kendall tau (scipy.stats.weightedtau, hyperbolic weights) of the two score
  vectors of a query over the same catalogue rows, so lists that share nothing still get a value.
Undefined values (a constant score vector, a query without category, a zero median) are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from models.diagnostics.agreement import (
    RBO_P,
    category_share_rows,
    jaccard_rows,
    popularity_ratio_rows,
    rbo_rows,
    weighted_tau,
)


@dataclass(frozen=True)
class PairFigures:
    """Agreement of lists a and b: jaccard (q,), rbo (q,), weighted_tau (q_tau,)."""

    a: str
    b: str
    jaccard: np.ndarray
    rbo: np.ndarray
    weighted_tau: np.ndarray


@dataclass(frozen=True)
class ListFigures:
    """What one list looks like: popularity_ratio (q,), category_share (q,) or None without categories."""

    popularity_ratio: np.ndarray
    category_share: np.ndarray | None


@dataclass(frozen=True)
class Comparison:
    lists: dict[str, ListFigures]
    pairs: list[PairFigures]


def compare_lists(
    queries: np.ndarray,
    lists: Mapping[str, np.ndarray],
    popularity: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    rbo_p: float = RBO_P,
    tau_scores: Mapping[str, np.ndarray] | None = None,
    popularity_median: float | None = None,
) -> Comparison:
    """Figures of the named lists (name -> ids (q, kk), one row per query row of queries (q,)).

    popularity (m,) per catalogue row (None: popularity_ratio is NaN), popularity_median its median
    (computed when not given; callers that compare often pass the cached one); categories (m, c) bool or
    None; tau_scores: name -> (q_tau, r) score vectors of the first q_tau queries over r shared
    catalogue rows (None: no weighted tau, q_tau = 0).
    """
    queries = np.asarray(queries, dtype=np.int64)
    names = list(lists)
    median = popularity_median
    if median is None:
        median = float(np.median(popularity)) if popularity is not None else 0.0
    out_lists = {}
    for name in names:
        ids = lists[name]
        ratio = popularity_ratio_rows(ids, popularity, median) if popularity is not None else np.full(len(queries), np.nan)
        share = category_share_rows(queries, ids, categories) if categories is not None else None
        out_lists[name] = ListFigures(popularity_ratio=ratio, category_share=share)
    pairs = []
    for a, b in combinations(names, 2):
        if tau_scores is not None:
            fa, fb = tau_scores[a], tau_scores[b]
            taus = np.array([weighted_tau(fa[j], fb[j]) for j in range(fa.shape[0])], dtype=np.float64)
        else:
            taus = np.empty(0)
        pairs.append(
            PairFigures(
                a=a, b=b, jaccard=jaccard_rows(lists[a], lists[b]), rbo=rbo_rows(lists[a], lists[b], rbo_p), weighted_tau=taus
            )
        )
    return Comparison(lists=out_lists, pairs=pairs)
