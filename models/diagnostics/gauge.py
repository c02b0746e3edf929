"""The gauge probe: how far the served top-k lists move when a factorisation is rescaled without changing it.

For Xhat = P Q^T (P (n_users, k), Q (n_items, k)) every invertible diagonal D gives P D, Q D^-1 with the same
predictions. The probe draws R seeded diagonals, D_jj = exp(U(log low, log high)) (log-uniform in [low, high]),
and for each metric and side compares the lists of (P, Q) with those of (P D, Q D^-1), made from the vectors
of models.fit.metric_vectors (dot, cosine, projected, projected-centered, whitened). A list is the k best
other rows by inner product of those vectors, equal scores by the lower row id (the rule of
models.indexes.neighbour_lists), found by exact search in float64 (a float32 product picks the candidates, all
of them rescored in float64: neighbour_ids). Agreement per query and transform:
Jaccard@k and RBO (models.diagnostics.agreement); the document reports the mean and 5th percentile of
Jaccard and the mean of RBO over all queries x transforms.

Numerics. The vectors of the shared metrics (projected, projected-centered, whitened) under D are an orthogonal
rotation of the unrescaled ones, so their lists are mathematically identical, but the Gram roots are computed in
floating point and their scores differ at the 1e-12 level. Before ranking, each query's scores s (m,) are
therefore rounded to a grid of 10 significant digits relative to the row's largest score (query column
included, so it is >= |v_row|^2 > 0): rows are ranked by rint(s / (1e-10 max_j s_j)), so differences far
below the grid cannot reorder a list, and scores within one grid step of each other count as tied (lower row
id first). An all-zero row (a user without interactions: P_u = 0, kept zero by normalize_rows) ranks every row
at score 0, by id, in every gauge.
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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.artifact.manifest import METRICS, SHARED_METRICS, SIDES
from models.diagnostics.agreement import RBO_P, jaccard_rows, rbo_rows
from models.diagnostics.sampling import budgeted_count, sample_rows
from models.errors import InputError
from models.fit.metric_vectors import side_vectors

GRID = 1e-10  # rounding step relative to a row's largest score: 10 significant digits
BLOCK_ELEMENTS = 1 << 24  # scores per query block (64 MB of float32): the product is slow for fewer rows
CHUNK = 16  # columns per chunk of the candidate bound in _block_lists
MIN_QUERIES = 50  # the score budget never leaves a side fewer query rows than this


@dataclass(frozen=True)
class GaugeParams:
    transforms: int = 4  # R random diagonals
    shared_transforms: int = 1  # of those, the ones the invariant shared metrics are checked under (<= transforms)
    item_queries: int = 500  # sampled query items; every item when there are fewer; 0: no items side
    user_queries: int = 500  # sampled query users; every user when there are fewer; 0: no users side
    score_budget: int = 4_000_000  # queries x rows per list, per side: caps the queries of a large side
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


def neighbour_ids(
    vectors: np.ndarray,
    rows: np.ndarray,
    k: int,
    workspace: list[np.ndarray] | None = None,
    scales: tuple[np.ndarray | None, np.ndarray] | None = None,
) -> np.ndarray:
    """Ids (q, kk) int64 of the k best other rows of each query row (q,) of vectors (m, d), kk = min(k, m - 1).

    Scores <v_row, v_j> in float64, rounded to the module's relative grid, ranked descending, ties by the lower
    row id, the query never listed; v = vectors, or with scales = (row (m,) or None, col (d,)) the rows of
    diag(row) vectors diag(col) (a rescaled and perhaps normalised factor matrix, never formed in float64).
    Queries are searched in blocks of BLOCK_ELEMENTS scores, by a float32 product that only picks candidates
    (_block_lists: its rounding error is bounded, and every row that can make a list is rescored in float64).
    `workspace`: a list the caller keeps between calls, where the float32 buffers stay (fresh buffers of this
    size cost more in page faults than the product).
    """
    V = np.asarray(vectors, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    m, d = V.shape
    kk = max(0, min(k, m - 1))
    out = np.empty((rows.size, kk), dtype=np.int64)
    if kk == 0 or rows.size == 0:
        return out
    row, col = scales if scales is not None else (None, None)
    top = float(np.abs(V).max()) * (1.0 if col is None else float(col.max())) * (1.0 if row is None else float(row.max()))
    if not 2.0**-64 < top < 2.0**64 and top > 0:
        # Far from float32's range (1e+-38) a power of two scales exactly and moves the largest entry near 1, so
        # float32 neither overflows nor loses the bulk of the entries to underflow; lists are scale-free (the
        # grid is relative).
        V = _effective(V, row, col) * 2.0 ** -np.frexp(top)[1]
        row, col = None, None
    V32 = _buffer(workspace, 1, V.size)[: V.size].reshape(V.shape)
    if col is None:
        np.copyto(V32, V, casting="same_kind")
    else:
        np.multiply(V, col, out=V32, casting="same_kind")
    if row is not None:
        V32 *= row.astype(np.float32)[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", V32, V32, dtype=np.float64)) * (1.0 + 4.0 * d * 2.0**-24)  # >= exact
    # |fl32(<a, b>) - <a, b>| <= ((d + 4) u + O(u^2)) sum_i |a_i b_i| + d 2^-148 <= rel |a| |b| + d 2^-148 for any
    # summation order (u = 2^-24: up to two roundings of each of a and b to float32, then d products and sums;
    # 2^-149 the spacing of float32 subnormals, for entries and products that underflow); 1.05 covers O(u^2).
    rel = 1.05 * (d + 4) * 2.0**-24
    width = max(1, min(CHUNK, m // (kk + 1)))  # at least kk + 1 chunks: see _block_lists
    block = max(1, min(rows.size, BLOCK_ELEMENTS // m))
    buffer = _buffer(workspace, 0, block * m)[: block * m].reshape(block, m)
    for start in range(0, rows.size, block):
        r = rows[start : start + block]
        S = np.matmul(V32[r], V32.T, out=buffer[: r.size])
        bound = rel * norms[r] * norms.max() + d * 2.0**-148  # (b,): the float32 error of every score of a row
        out[start : start + r.size] = _block_lists(S, bound, lambda i: _effective(V[i], _at(row, i), col), r, kk, width)
    return out


def _effective(V: np.ndarray, row: np.ndarray | None, col: np.ndarray | None) -> np.ndarray:
    """diag(row) V diag(col) in float64 (a factor left out is 1)."""
    out = V if col is None else V * col
    return out if row is None else out * row[:, None]


def _at(row: np.ndarray | None, i: np.ndarray) -> np.ndarray | None:
    return None if row is None else row[i]


def _buffer(workspace: list[np.ndarray] | None, slot: int, size: int) -> np.ndarray:
    """A float32 array of at least `size` entries: workspace[slot], grown there if needed, or a new one."""
    if workspace is None:
        return np.empty(size, dtype=np.float32)
    workspace.extend(np.empty(0, dtype=np.float32) for _ in range(slot + 1 - len(workspace)))
    if workspace[slot].size < size:
        workspace[slot] = np.empty(size, dtype=np.float32)
    return workspace[slot]


def _block_lists(
    S: np.ndarray, bound: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, kk: int, width: int
) -> np.ndarray:
    """Lists (b, kk) of query rows (b,), from their float32 scores S (b, m), each within bound (b,) of the
    float64 inner product of the rows' vectors (vectors_of(ids) -> (len(ids), d) float64), without sorting
    whole rows.

    Columns j, j + C, ..., j + (width - 1) C form chunk j (C = m // width >= kk + 1; the last m - width C
    columns are always candidates). The (kk + 1)-th largest chunk maximum t0 is at most the kk-th best float32
    score of the other rows (the kk + 1 chunk maxima are distinct entries, one of them perhaps the query's own),
    so the kk-th best exact score is >= t0 - bound. A row that can make the rounded list scores exactly
    >= t0 - bound - 2 step (one grid step for the rounding, one for the rounding of s / step), hence in float32
    >= t0 - 2 bound - 2 step =: floor, with step taken at its upper bound. Only chunks whose maximum reaches the
    floor are read again; their candidates are rescored in float64 and sorted by (rounded score desc, id).
    The grid step is GRID * max_j s_j in float64 (query column included: max_j s_j >= |v_row|^2 > 0), exact
    because the column of the maximum is a candidate (its float32 score is >= t0 - bound >= floor).
    An all-zero row (peak 0) ties everywhere: its candidates are its first kk + 1 columns.
    """
    b, m = S.shape
    C = m // width
    chunk_max = S[:, : width * C].reshape(b, width, C).max(axis=1)  # (b, C)
    tail = np.arange(width * C, m)
    row_max = chunk_max.max(axis=1) if tail.size == 0 else np.maximum(chunk_max.max(axis=1), S[:, tail].max(axis=1))
    t0 = np.partition(chunk_max, C - kk - 1, axis=1)[:, C - kk - 1].astype(np.float64)
    step_hi = np.abs(row_max.astype(np.float64) + bound) * GRID
    floor = t0 - 2.0 * bound - 2.0 * step_hi
    # An all-zero query vector scores exactly 0 against every row, in float32 too: its first kk + 1 ids hold
    # its list, no need to sort all m.
    zero_query = ~vectors_of(rows).any(axis=1)
    zero = np.flatnonzero(zero_query)
    live = np.flatnonzero(~zero_query)
    hit = chunk_max >= floor[:, None]
    hit[zero] = False
    hit_row, hit_chunk = np.nonzero(hit)
    cand_row = np.concatenate([np.repeat(hit_row, width), np.repeat(live, tail.size), np.repeat(zero, kk + 1)])
    cand_col = np.concatenate(
        [(hit_chunk[:, None] + C * np.arange(width)).ravel(), np.tile(tail, live.size), np.tile(np.arange(kk + 1), zero.size)]
    )
    keep = S[cand_row, cand_col] >= floor[cand_row]
    cand_row, cand_col = cand_row[keep], cand_col[keep]
    scores = np.einsum("ij,ij->i", vectors_of(rows[cand_row]), vectors_of(cand_col))
    peak = np.zeros(b)
    np.maximum.at(peak, cand_row, scores)  # the row's largest score is a candidate (docstring)
    step = np.maximum(peak * GRID, np.finfo(np.float64).tiny)  # > 0 even for an all-zero row (keys all 0)
    mine = cand_col != rows[cand_row]
    cand_row, cand_col, scores = cand_row[mine], cand_col[mine], scores[mine]
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
    shared_metrics: bool = True,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """{(side, metric): (base (q, kk), moved (R_m, q, kk))} for the sides in `rows` (side -> query rows (q,)).

    base: the lists of the query rows under (P, Q); moved[r]: under (P D_r, Q D_r^-1), D_r = diag(diagonals[r]),
    diagonals (R, k) positive. R_m = R, or for the shared metrics min(R, shared_transforms) when that is given
    (the first ones). kk = min(k, m - 1), m the number of rows on the side. shared_metrics=False: dot and
    cosine only.
    """
    P64, Q64 = _factors(P, Q)
    D = _diagonals(diagonals, P64.shape[1])
    sides = [side for side in SIDES if side in rows]
    n_shared = len(D) if shared_transforms is None else min(len(D), shared_transforms)
    shared_rounds = n_shared + 1 if shared_metrics else 0  # the base, then the first n_shared diagonals
    lists: dict[tuple[str, str], list[np.ndarray]] = {}
    workspace: list[np.ndarray] = []
    factors = {"items": Q64, "users": P64}
    squares = {side: factors[side] ** 2 for side in sides}
    for r, d in enumerate([None, *D]):
        if r < shared_rounds:
            Pd, Qd = (P64, Q64) if d is None else (P64 * d, Q64 / d)
            for side in sides:
                for metric in (m for m in METRICS if m in SHARED_METRICS):
                    # one side's vectors at a time: the freed block is reused for the next (fewer fresh pages)
                    V = side_vectors(Pd, Qd, side, metric)
                    lists.setdefault((side, metric), []).append(neighbour_ids(V, rows[side], k, workspace))
                    del V
            del Pd, Qd
        for side in sides:
            # dot: the rows of P D (users) or Q D^-1 (items); cosine: those rows over their norms (zero rows stay
            # zero, as in normalize_rows). Both are the factor rescaled, never formed in float64.
            col = np.ones(P64.shape[1]) if d is None else d if side == "users" else 1.0 / d
            norms = np.sqrt(squares[side] @ col**2)
            unit = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            for metric, row in (("dot", None), ("cosine", unit)):
                found = neighbour_ids(factors[side], rows[side], k, workspace, scales=(row, col))
                lists.setdefault((side, metric), []).append(found)
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


def gauge_probe(P: np.ndarray, Q: np.ndarray, params: GaugeParams = GaugeParams(), shared_metrics: bool = True) -> dict[str, Any]:
    """The probe's JSON-able document for factors P (n_users, k), Q (n_items, k) (the caller adds "model").

    {"transforms", "range": [low, high], "k", "seed", "queries": {"items", "users"},
     "sides": {side: {metric: {"jaccard_mean", "jaccard_p05", "rbo_mean"}}}}; figures are plain floats over
    all queries x transforms (p05: np.percentile(..., 5)), or None for a side without lists (module docstring)
    and, with shared_metrics=False, for the shared metrics (the caller probes them elsewhere).
    """
    _check_params(params)
    P64, Q64 = _factors(P, Q)
    D = random_diagonals(P64.shape[1], params)
    sizes = {"items": Q64.shape[0], "users": P64.shape[0]}
    wanted = {"items": params.item_queries, "users": params.user_queries}
    rows = {
        side: sample_rows(sizes[side], budgeted_count(wanted[side], sizes[side], params.score_budget, MIN_QUERIES), params.seed)
        for side in SIDES
        if sizes[side] >= 2 and wanted[side] > 0
    }
    lists = probe_lists(P64, Q64, D, rows, params.k, params.shared_transforms, shared_metrics)
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
