"""GET /compare-metrics over a loaded Version: the lists each (model, metric) index serves for one query,
and their agreement figures from models.diagnostics.comparison (the same code as the build's summary).

No HTTP here: `compare(version, side, row, targets, ...)` returns the JSON-ready body (the router
adds the request's echo). The lists are exactly what /similar-items (/similar-users) serves
(app.query.neighbours.neighbours_of_row: the same index, flat or HNSW, the same tie rule). The
weighted tau runs on at most `tau_rows` catalogue rows: every row when the catalogue has at most
that many, else models.diagnostics.sampling.sample_rows(m, tau_rows, seed=0) (a fixed seeded
uniform sample, the same for every query and list), minus the query row.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.query.neighbours import neighbours_of_row
from app.serving.version import Side, VectorIndex, Version
from models.diagnostics.agreement import category_matrix
from models.diagnostics.comparison import compare_lists
from models.diagnostics.sampling import sample_rows
from models.inputs.dataset import user_activity

TAU_SEED = 0
TAU_METHOD = "scipy.stats.weightedtau (hyperbolic additive weights, mean of ranks by either vector) on the full score vectors"
POPULARITY = {"items": "users per item", "users": "items per user"}


@dataclass(frozen=True)
class Target:
    """One list to compare: its name in the response (a metric or a model name) and the index serving it."""

    name: str
    model: str
    metric: str


@dataclass(frozen=True)
class VersionStats:
    """Per-version data the comparisons need, computed once per loaded version (see `stats`).

    popularity: side -> (m,) float64; median: side -> catalogue median; categories: (n_items, c) bool
    or None when no item has a category.
    """

    popularity: dict[str, np.ndarray]
    median: dict[str, float]
    categories: np.ndarray | None


_stats: weakref.WeakKeyDictionary[Version, VersionStats] = weakref.WeakKeyDictionary()
_stats_lock = threading.Lock()


def stats(version: Version) -> VersionStats:
    """The VersionStats of a version, cached while the version lives (a swapped-out version frees its entry)."""
    cached = _stats.get(version)
    if cached is not None:
        return cached
    with _stats_lock:
        cached = _stats.get(version)
        if cached is None:
            X = version.interactions
            items = np.asarray(version.item_popularity, dtype=np.float64)
            users = user_activity(X).astype(np.float64)
            cats = [meta.get("categories") or [] for meta in version.item_meta]
            C = category_matrix(cats)[0] if any(cats) else None
            cached = VersionStats(
                popularity={"items": items, "users": users},
                median={"items": float(np.median(items)), "users": float(np.median(users))},
                categories=C,
            )
            _stats[version] = cached
    return cached


def tau_rows_of(m: int, query: int, tau_rows: int) -> np.ndarray:
    """Catalogue rows (sorted) the weighted tau runs on: sample_rows(m, tau_rows, TAU_SEED) without the query."""
    if tau_rows <= 0:
        return np.empty(0, dtype=np.int64)
    rows = sample_rows(m, tau_rows, TAU_SEED)
    return rows[rows != query]


def compare(
    version: Version,
    side: Side,
    row: int,
    targets: Sequence[Target],
    k: int,
    rbo_p: float,
    tau_rows: int,
) -> dict[str, Any]:
    """{"lists": [...], "pairs": [...], "weighted_tau": {...}, "popularity": {...}} for query `row` of `side`.

    targets: >= 2 lists (Unavailable if the version lacks an index). Lists: {"name", "model", "metric",
    "served_by", "neighbors", "popularity_ratio", "category_share"}; pairs, in the order of `targets`:
    {"a", "b", "jaccard", "rbo", "weighted_tau"}. Undefined values (a constant score vector, a query
    without category, a zero catalogue median) are None.
    """
    st = stats(version)
    indexes = [version.index(side, t.model, t.metric) for t in targets]
    m = indexes[0].rows
    pop, median = st.popularity[side], st.median[side]
    cats = st.categories if side == "items" else None
    entry = version.item_entry if side == "items" else version.user_entry
    tau_at = tau_rows_of(m, row, tau_rows)
    found = {t.name: neighbours_of_row(index, row, k) for t, index in zip(targets, indexes, strict=True)}
    tau_scores = (
        {t.name: _scores(index, row, tau_at)[None, :] for t, index in zip(targets, indexes, strict=True)} if tau_at.size else None
    )
    figures = compare_lists(
        np.array([row]),
        {name: rows[None, :] for name, (rows, _) in found.items()},
        pop,
        cats,
        rbo_p,
        tau_scores,
        popularity_median=median,
    )
    lists = []
    for t, index in zip(targets, indexes, strict=True):
        rows, scores = found[t.name]
        fig = figures.lists[t.name]
        lists.append(
            {
                "name": t.name,
                "model": t.model,
                "metric": t.metric,
                "served_by": index.kind,
                "neighbors": [entry(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)],
                "popularity_ratio": _num(fig.popularity_ratio[0]),
                "category_share": _num(fig.category_share[0]) if fig.category_share is not None else None,
            }
        )
    pairs = [
        {
            "a": p.a,
            "b": p.b,
            "jaccard": float(p.jaccard[0]),
            "rbo": float(p.rbo[0]),
            "weighted_tau": _num(p.weighted_tau[0]) if p.weighted_tau.size else None,
        }
        for p in figures.pairs
    ]
    return {
        "lists": lists,
        "pairs": pairs,
        "weighted_tau": {
            "rows": int(tau_at.size),
            "catalogue_rows": m,
            "sampled": bool(0 < tau_rows < m),
            "seed": TAU_SEED,
            "method": TAU_METHOD if tau_at.size else "skipped (tau_rows=0)",
        },
        "popularity": {"definition": POPULARITY[side], "catalogue_median": median, "query": float(pop[row])},
    }


def _scores(index: VectorIndex, row: int, at: np.ndarray) -> np.ndarray:
    """<v_row, v_j> for j in `at` (float32), the inner products the index serves."""
    V = index.vectors
    return V[at] @ V[row]


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
