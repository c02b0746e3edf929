"""The gauge probe: how far the served top-k lists move when a factorisation is rescaled without changing it.

For Xhat = P Q^T (P (n_users, k), Q (n_items, k)) every invertible diagonal D gives P D, Q D^-1 with the same
predictions. The probe draws R seeded diagonals, D_jj = exp(U(log low, log high)) (log-uniform in [low, high]),
and for each metric and side compares the lists of (P, Q) with those of (P D, Q D^-1), made from the vectors
of models.fit.metric_vectors (dot, cosine, projected, projected-centered, whitened). A list is the k best
other rows by inner product of those vectors, equal scores by the lower row id (the rule of
models.indexes.neighbour_lists), found by exact dense search in float64. Agreement per query and transform:
Jaccard@k and RBO (models.diagnostics.agreement); the document reports the mean and 5th percentile of
Jaccard and the mean of RBO over all queries x transforms.

Numerics. The vectors of the shared metrics (projected, projected-centered, whitened) under D are an orthogonal
rotation of the unrescaled ones, so their lists are mathematically identical, but the Gram roots are computed in
floating point and their scores differ at the 1e-12 level. Before ranking, each query's scores s (m,) are
therefore rounded to a grid of 10 significant digits relative to the row's largest |score| (query column
included): rows are ranked by rint(s / (1e-10 max_j |s_j|)), so differences far below the grid cannot reorder a
list, and scores within one grid step of each other count as tied (lower row id first). An all-zero row (a user
without interactions: P_u = 0, kept zero by normalize_rows) ranks every row at score 0, by id, in every gauge.
The shared metrics then report exactly 1.0; a list could still move only if a rounding error straddled a grid
boundary while a competing top score sat in the next grid cell, i.e. for two of a query's top scores equal to
~1e-10 of the row's scale but not exactly.

Cost. The shared metrics are invariant by construction, so their lists are checked under the first
`shared_transforms` diagonals only (1 by default): that confirms the identity numerically at a fraction of the
cost, while dot and cosine, whose lists do move, get every transform. Their figures are means over queries x
those transforms.

Queries: models.diagnostics.sampling.sample_rows(m, n, seed), the summary's convention, with n = item_queries
or user_queries, at most score_budget // m (every list costs m scores per query, so a large side gets fewer
queries) and never fewer than MIN_QUERIES because of the budget.
Diagonals: numpy default_rng of the first child of SeedSequence(seed), independent of the queries.
A side with fewer than 2 rows (no neighbour to list) or 0 queries requested keeps its place in the document
with null figures and a query count of 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.artifact.manifest import METRICS, SHARED_METRICS, SIDES
from models.diagnostics.agreement import RBO_P, jaccard_rows, rbo_rows
from models.diagnostics.sampling import sample_rows
from models.errors import InputError
from models.fit.metric_vectors import side_vectors

GRID = 1e-10  # rounding step relative to a row's largest |score|: 10 significant digits
BLOCK_ELEMENTS = 1 << 22  # scores per query block (32 MB of float64)
CHUNK = 16  # columns per chunk of the candidate bound in _block_lists
MIN_QUERIES = 100  # the score budget never leaves a side fewer query rows than this


@dataclass(frozen=True)
class GaugeParams:
    transforms: int = 8  # R random diagonals
    shared_transforms: int = 1  # of those, the ones the invariant shared metrics are checked under (<= transforms)
    item_queries: int = 500  # sampled query items; every item when there are fewer; 0: no items side
    user_queries: int = 500  # sampled query users; every user when there are fewer; 0: no users side
    score_budget: int = 25_000_000  # queries x rows per list, per side: caps the queries of a large side
    k: int = 10  # list length
    seed: int = 0
    low: float = 0.1  # diagonal entries are log-uniform in [low, high]
    high: float = 10.0


def random_diagonals(k: int, params: GaugeParams) -> np.ndarray:
    """Diagonals (transforms, k) of the probe's D: entries exp(U(log low, log high)), seeded by params.seed."""
    _check_params(params)
    if k < 1:
        raise InputError(f"gauge probe: parameter k (factor dimension) must be >= 1, got {k}")
    rng = np.random.default_rng(np.random.SeedSequence(params.seed, spawn_key=(0,)))
    return np.exp(rng.uniform(np.log(params.low), np.log(params.high), size=(params.transforms, k)))


def metric_vectors(
    P: np.ndarray, Q: np.ndarray, sides: Sequence[str] = SIDES, metrics: Sequence[str] = METRICS
) -> dict[tuple[str, str], np.ndarray]:
    """{(side, metric): vectors (n_items or n_users, k) float64} whose inner products are the metric's scores,
    for every metric in `metrics` (models.fit.metric_vectors.side_vectors)."""
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    return {(side, metric): side_vectors(P64, Q64, side, metric) for side in sides for metric in metrics}


def neighbour_ids(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Ids (q, kk) int64 of the k best other rows of each query row (q,) of vectors (m, d), kk = min(k, m - 1).

    Scores <vectors[row], vectors[j]> in float64, rounded to the module's relative grid, ranked descending,
    ties by the lower row id, the query never listed. Queries are searched in blocks of BLOCK_ELEMENTS scores.
    """
    V = np.asarray(vectors, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    m = int(V.shape[0])
    kk = max(0, min(k, m - 1))
    out = np.empty((rows.size, kk), dtype=np.int64)
    if kk == 0 or rows.size == 0:
        return out
    width = max(1, min(CHUNK, m // (kk + 1)))  # at least kk + 1 chunks: see _block_lists
    block = max(1, BLOCK_ELEMENTS // m)
    for start in range(0, rows.size, block):
        r = rows[start : start + block]
        out[start : start + r.size] = _block_lists(V[r] @ V.T, r, kk, width)
    return out


def _block_lists(S: np.ndarray, rows: np.ndarray, kk: int, width: int) -> np.ndarray:
    """Lists (b, kk) from the scores S (b, m) of query rows (b,), without sorting whole rows.

    Columns j, j + C, ..., j + (width - 1) C form chunk j (C = m // width >= kk + 1; the last m - width C
    columns are always candidates). The (kk + 1)-th largest chunk maximum t0 is at most the kk-th best score
    of the other rows (the kk + 1 chunk maxima are distinct entries, one of them perhaps the query's own), and
    rounding is monotone, so every row that can make the rounded list scores >= t0 - step (floor: t0 - 2 step,
    a margin for the division s / step): only chunks whose maximum reaches the floor are read again, and their
    candidates are sorted by (rounded score desc, id).
    An all-zero row (peak 0) ties everywhere: its candidates are its first kk + 1 columns.
    """
    b, m = S.shape
    C = m // width
    chunk_max = S[:, : width * C].reshape(b, width, C).max(axis=1)  # (b, C)
    tail = np.arange(width * C, m)
    row_max = chunk_max.max(axis=1) if tail.size == 0 else np.maximum(chunk_max.max(axis=1), S[:, tail].max(axis=1))
    peak = np.maximum(np.abs(row_max), np.abs(S.min(axis=1)))
    step = np.maximum(peak * GRID, np.finfo(np.float64).tiny)  # > 0 even for an all-zero row (keys all 0)
    t0 = np.partition(chunk_max, C - kk - 1, axis=1)[:, C - kk - 1]
    floor = t0 - 2.0 * step  # one step for the rounding, one for the rounding of s / step itself
    # An all-zero row ties every column: its first kk + 1 ids hold its list, no need to sort all m.
    zero = np.flatnonzero(peak == 0)
    live = np.flatnonzero(peak > 0)
    hit = chunk_max >= floor[:, None]
    hit[zero] = False
    hit_row, hit_chunk = np.nonzero(hit)
    cand_row = np.concatenate([np.repeat(hit_row, width), np.repeat(live, tail.size), np.repeat(zero, kk + 1)])
    cand_col = np.concatenate(
        [(hit_chunk[:, None] + C * np.arange(width)).ravel(), np.tile(tail, live.size), np.tile(np.arange(kk + 1), zero.size)]
    )
    scores = S[cand_row, cand_col]
    keep = (scores >= floor[cand_row]) & (cand_col != rows[cand_row])
    cand_row, cand_col, scores = cand_row[keep], cand_col[keep], scores[keep]
    keys = np.rint(scores / step[cand_row])
    order = np.lexsort((cand_col, -keys, cand_row))
    cand_row, cand_col = cand_row[order], cand_col[order]
    starts = np.searchsorted(cand_row, np.arange(b))  # every row keeps >= kk candidates (docstring)
    return cand_col[starts[:, None] + np.arange(kk)]


def probe_lists(
    P: np.ndarray,
    Q: np.ndarray,
    diagonals: np.ndarray,
    rows: Mapping[str, np.ndarray],
    k: int,
    shared_transforms: int | None = None,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """{(side, metric): (base (q, kk), moved (R_m, q, kk))} for the sides in `rows` (side -> query rows (q,)).

    base: the lists of the query rows under (P, Q); moved[r]: under (P D_r, Q D_r^-1), D_r = diag(diagonals[r]),
    diagonals (R, k) positive. R_m = R, or for the shared metrics min(R, shared_transforms) when that is given
    (the first ones). kk = min(k, m - 1), m the number of rows on the side.
    """
    P64, Q64 = _factors(P, Q)
    D = _diagonals(diagonals, P64.shape[1])
    sides = [side for side in SIDES if side in rows]
    n_shared = len(D) if shared_transforms is None else min(len(D), shared_transforms)
    moving = [m for m in METRICS if m not in SHARED_METRICS]
    lists: dict[tuple[str, str], list[np.ndarray]] = {}
    for r, d in enumerate([None, *D]):
        metrics = METRICS if r <= n_shared else moving
        vectors = metric_vectors(P64, Q64, sides, metrics) if d is None else metric_vectors(P64 * d, Q64 / d, sides, metrics)
        for (side, metric), V in vectors.items():
            lists.setdefault((side, metric), []).append(neighbour_ids(V, rows[side], k))
    return {key: (found[0], np.stack(found[1:])) for key, found in lists.items()}


def list_agreement(base: np.ndarray, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(jaccard (R, q), rbo (R, q)) of each base list (q, kk) against its moved lists (R, q, kk).

    RBO with persistence RBO_P; identical lists count exactly 1.0 (eq. 30's float sum can give 1 - 1e-16).
    """
    R, q, kk = moved.shape
    A = np.broadcast_to(base, moved.shape).reshape(R * q, kk)
    B = moved.reshape(R * q, kk)
    jac = jaccard_rows(A, B)
    rbo = np.where((A == B).all(axis=1), 1.0, rbo_rows(A, B, RBO_P))
    return jac.reshape(R, q), rbo.reshape(R, q)


def gauge_probe(P: np.ndarray, Q: np.ndarray, params: GaugeParams = GaugeParams()) -> dict[str, Any]:
    """The probe's JSON-able document for factors P (n_users, k), Q (n_items, k) (the caller adds "model").

    {"transforms", "range": [low, high], "k", "seed", "queries": {"items", "users"},
     "sides": {side: {metric: {"jaccard_mean", "jaccard_p05", "rbo_mean"}}}}; figures are plain floats over
    all queries x transforms (p05: np.percentile(..., 5)), or None for a side without lists (module docstring).
    """
    _check_params(params)
    P64, Q64 = _factors(P, Q)
    D = random_diagonals(P64.shape[1], params)
    sizes = {"items": Q64.shape[0], "users": P64.shape[0]}
    wanted = {"items": params.item_queries, "users": params.user_queries}
    rows = {
        side: sample_rows(sizes[side], query_count(wanted[side], sizes[side], params.score_budget), params.seed)
        for side in SIDES
        if sizes[side] >= 2 and wanted[side] > 0
    }
    lists = probe_lists(P64, Q64, D, rows, params.k, params.shared_transforms)
    null: dict[str, float | None] = {"jaccard_mean": None, "jaccard_p05": None, "rbo_mean": None}
    sides: dict[str, dict[str, dict[str, float | None]]] = {side: {metric: dict(null) for metric in METRICS} for side in SIDES}
    for (side, metric), (base, moved) in lists.items():
        jac, rbo = list_agreement(base, moved)
        sides[side][metric] = {
            "jaccard_mean": float(jac.mean()),
            "jaccard_p05": float(np.percentile(jac, 5)),
            "rbo_mean": float(rbo.mean()),
        }
    queries = {side: int(rows[side].size) if side in rows else 0 for side in SIDES}
    return {
        "transforms": params.transforms,
        "shared_transforms": min(params.shared_transforms, params.transforms),
        "range": [float(params.low), float(params.high)],
        "k": params.k,
        "seed": params.seed,
        "queries": queries,
        "sides": sides,
    }


def query_count(wanted: int, rows: int, score_budget: int) -> int:
    """Query rows of a side of `rows` rows: `wanted`, at most score_budget // rows, at least MIN_QUERIES (or wanted)."""
    return min(wanted, max(MIN_QUERIES, score_budget // max(rows, 1)))


def _check_params(params: GaugeParams) -> None:
    for name in ("transforms", "k"):
        if getattr(params, name) < 1:
            raise InputError(f"gauge probe: parameter {name} must be >= 1, got {getattr(params, name)}")
    if params.shared_transforms < 1:
        raise InputError(f"gauge probe: parameter shared_transforms must be >= 1, got {params.shared_transforms}")
    for name in ("item_queries", "user_queries", "score_budget"):
        if getattr(params, name) < 0:
            raise InputError(f"gauge probe: parameter {name} must be >= 0, got {getattr(params, name)}")
    if not (np.isfinite(params.low) and np.isfinite(params.high) and 0 < params.low <= params.high):
        raise InputError(f"gauge probe: parameters low, high must satisfy 0 < low <= high, got {params.low}, {params.high}")


def _factors(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P (n_users, k), Q (n_items, k) as float64, checked: 2-D, one k >= 1, finite."""
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    if P64.ndim != 2 or Q64.ndim != 2:
        raise InputError(f"gauge probe: P and Q must be 2-D, got shapes {P64.shape} and {Q64.shape}")
    if P64.shape[1] != Q64.shape[1] or P64.shape[1] < 1:
        raise InputError(f"gauge probe: P and Q need one factor dimension k >= 1, got shapes {P64.shape} and {Q64.shape}")
    if not (np.isfinite(P64).all() and np.isfinite(Q64).all()):
        raise InputError("gauge probe: P and Q must be finite (NaN or inf found)")
    return P64, Q64


def _diagonals(diagonals: np.ndarray, k: int) -> np.ndarray:
    """diagonals (R, k) as float64, checked: finite and positive."""
    D = np.asarray(diagonals, dtype=np.float64)
    if D.ndim != 2 or D.shape[1] != k:
        raise InputError(f"gauge probe: diagonals must have shape (R, {k}), got {D.shape}")
    if not (np.isfinite(D).all() and (D > 0).all()):
        raise InputError("gauge probe: diagonal entries must be finite and positive")
    return D
