"""Which model x metric ranks held-out items best: user -> item rankings and item -> item lists per metric.

For one model (P (n_users, k), Q (n_items, k), prediction Xhat_ui = <P_u, Q_i>) and a metric, the user -> item
score is <U_u, V_i> with (U, V) = models.fit.metric_vectors.recommend_vectors (metrics without one, whitened,
get no ranking measures) and item -> item similarity the inner product of its item_vectors, every metric of
models.artifact.manifest.METRICS. Every list follows the tie rule of models.indexes.neighbour_lists.top_k_rows:
score descending, equal scores by the lower item id; item lists never contain the query item, user
rankings never contain the user's training items. Work is batched over users / items, so memory stays
O(batch x n_items).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.artifact.manifest import METRICS, RECOMMEND_METRICS
from models.diagnostics.agreement import category_share_rows, popularity_ratio_rows
from models.errors import InputError
from models.evaluation.measures import coverage, ndcg_at, recall_at, similarity_spearman
from models.fit.metric_vectors import item_vectors as metric_item_vectors
from models.fit.metric_vectors import recommend_vectors
from models.indexes.neighbour_lists import top_k_rows

SPEARMAN_MAX_ITEMS = 3000  # a dense item-item matrix and the ranks of its m (m - 1) / 2 pairs: a few hundred MB at most

Sparse = sp.csr_matrix | sp.csr_array


@dataclass(frozen=True)
class EvalParams:
    """Split, cut-offs and sampling of the held-out evaluation; max_users None: every user with held-out items."""

    fraction: float = 0.2
    min_interactions: int = 5
    seed: int = 0
    recall_at: int = 20
    ndcg_at: int = 100
    list_k: int = 10
    # seeded samples bound the cost on large catalogues: ranking is O(users x n_items k), item lists O(items x n_items k)
    max_users: int | None = 10_000
    max_items: int | None = 20_000
    batch: int = 1024


def score_factors(P: np.ndarray, Q: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(U (n_users, k), V (n_items, k)) float64 with the metric's user -> item score(u, i) = <U_u, V_i>
    (models.fit.metric_vectors.recommend_vectors; InputError for a metric without one)."""
    P64, Q64 = _factors(P, Q)
    return recommend_vectors(P64, Q64, metric)


def user_scores(P: np.ndarray, Q: np.ndarray, metric: str, users: np.ndarray) -> np.ndarray:
    """(u, n_items): the metric's score of each of users (u,) for every item (no exclusion)."""
    U, V = score_factors(P, Q, metric)
    return U[np.asarray(users, dtype=np.int64)] @ V.T


def rank_users(
    P: np.ndarray, Q: np.ndarray, metric: str, users: np.ndarray, exclude: Sparse, R: int, batch: int = 1024
) -> np.ndarray:
    """(u, R) item ids: the top-R items of each of users (u,) by the metric, the stored entries of the user's row
    of exclude (n_users, n_items) (training items) left out, ties by lower id; -1 past a user's last unseen item."""
    U, V = score_factors(P, Q, metric)
    return _rank(_inner(U, V), users, _csr(exclude, "exclude", (U.shape[0], V.shape[0])), R, batch)


def item_vectors(P: np.ndarray, Q: np.ndarray, metric: str) -> np.ndarray:
    """(n_items, k): item vectors whose inner products are the metric's item -> item similarity."""
    P64, Q64 = _factors(P, Q)
    return metric_item_vectors(P64, Q64, metric)


def item_lists(vectors: np.ndarray, k: int = 10, batch: int = 1024, queries: np.ndarray | None = None) -> np.ndarray:
    """(q, min(k, n_items - 1)): the top-k other items of each query item (default: every item) by inner product of
    vectors (n_items, d).

    Exact (a dense product per batch of query items), tie rule of top_k_rows, the query never listed.
    """
    V = np.asarray(vectors, dtype=np.float64)
    return _lists(_inner(V, V), V.shape[0], k, batch, queries)


def eval_items(n_items: int, params: EvalParams) -> np.ndarray:
    """(q,) sorted query items of the item -> item measures: every item, or a seeded sample of params.max_items."""
    if params.max_items is None or n_items <= params.max_items:
        return np.arange(n_items)
    return np.sort(np.random.default_rng([params.seed, 3]).choice(n_items, params.max_items, replace=False))


def eval_users(test: Sparse, params: EvalParams) -> np.ndarray:
    """(u,) sorted user ids with held-out items; a seeded sample of params.max_users of them when there are more."""
    A = sp.csr_matrix(test, copy=True)
    A.eliminate_zeros()
    users = np.flatnonzero(np.diff(A.indptr) > 0)
    if params.max_users is not None and users.size > params.max_users:
        users = np.sort(np.random.default_rng(params.seed).choice(users, params.max_users, replace=False))
    return users


def evaluate_model(
    P: np.ndarray,
    Q: np.ndarray,
    train: Sparse,
    test: Sparse,
    popularity: np.ndarray,
    categories: np.ndarray | None,
    truth: np.ndarray | None,
    params: EvalParams,
) -> list[dict[str, Any]]:
    """One JSON-able row per metric (METRICS order) for the model (P (n_users, k), Q (n_items, k)) fitted on train.

    Keys: metric; recall_at_{R}, ndcg_at_{R} (mean over eval_users of the rankings with training items
    excluded); category_precision_at_{k} (mean over items with a category of category_share_rows of their
    item lists; None without categories (n_items, c)); popularity_ratio (mean over items of
    popularity_ratio_rows, popularity (n_items,) over its catalogue median); coverage_at_{k} (share of the
    catalogue in the item lists); spearman_truth (Spearman of the item-item similarity matrix against
    truth (n_items, n_items); None without truth or above SPEARMAN_MAX_ITEMS items). Undefined values: None.
    """
    P64, Q64 = _factors(P, Q)
    n_users, n_items = P64.shape[0], Q64.shape[0]
    train_csr, test_csr = _csr(train, "train", (n_users, n_items)), _csr(test, "test", (n_users, n_items))
    pop, cats = _item_inputs(popularity, categories, n_items)
    if truth is not None and np.shape(truth) != (n_items, n_items):
        raise InputError(f"evaluate_model: parameter truth must be ({n_items}, {n_items}), got {np.shape(truth)}")
    users = eval_users(test_csr, params)
    queries = eval_items(n_items, params)
    rows = []
    for metric in METRICS:
        ranked = None
        if metric in RECOMMEND_METRICS:
            U, V = score_factors(P64, Q64, metric)
            ranked = _rank(_inner(U, V), users, train_csr, _depth(params), params.batch)
            del U, V
        vectors = item_vectors(P64, Q64, metric)
        lists = item_lists(vectors, params.list_k, params.batch, queries)
        spearman = None
        if truth is not None and n_items <= SPEARMAN_MAX_ITEMS:
            spearman = _num(similarity_spearman(vectors @ vectors.T, np.asarray(truth, dtype=np.float64)))
        row: dict[str, Any] = {"metric": metric}
        row.update(_measures(ranked, test_csr[users], lists, queries, pop, cats, params))
        row["spearman_truth"] = spearman
        rows.append(row)
    return rows


def baselines(
    train: Sparse, test: Sparse, popularity: np.ndarray, categories: np.ndarray | None, params: EvalParams
) -> list[dict[str, Any]]:
    """Rows (evaluate_model's keys, metric None) for model "random" and model "popular".

    random: each user's unseen items in a seeded random order; item lists: k seeded random other items.
    popular: unseen items by popularity (n_items,) (the training popularity, users per item in train),
    ties by lower id; item lists: the k most popular other items.
    """
    train_csr = _csr(train, "train", None)
    n_users, n_items = train_csr.shape
    test_csr = _csr(test, "test", (n_users, n_items))
    pop, cats = _item_inputs(popularity, categories, n_items)
    users = eval_users(test_csr, params)
    queries = eval_items(n_items, params)
    heldout = test_csr[users]
    depth = _depth(params)

    rank_rng, list_rng = (np.random.default_rng([params.seed, stream]) for stream in (1, 2))
    random_ranked = _rank(lambda r: rank_rng.random((r.size, n_items)), users, train_csr, depth, params.batch)
    random_lists = _lists(lambda r: list_rng.random((r.size, n_items)), n_items, params.list_k, params.batch, queries)

    # A unique score per item (minus its place in the popularity order) states the tie rule once, so the
    # ranking never meets a tie.
    order = np.lexsort((np.arange(n_items), -pop))
    place = np.empty(n_items, dtype=np.float32)  # exact integers up to 2^24 items
    place[order] = np.arange(n_items, dtype=np.float32)
    popular_ranked = _rank(lambda r: np.broadcast_to(-place, (r.size, n_items)), users, train_csr, depth, params.batch)
    popular_lists = _lists(lambda r: np.broadcast_to(-place, (r.size, n_items)), n_items, params.list_k, params.batch, queries)

    rows = []
    for model, ranked, lists in (("random", random_ranked, random_lists), ("popular", popular_ranked, popular_lists)):
        row: dict[str, Any] = {"metric": None, "model": model}
        row.update(_measures(ranked, heldout, lists, queries, pop, cats, params))
        row["spearman_truth"] = None
        rows.append(row)
    return rows


def _measures(
    ranked: np.ndarray | None,
    heldout: sp.csr_matrix,
    lists: np.ndarray,
    queries: np.ndarray,
    popularity: np.ndarray,
    categories: np.ndarray | None,
    params: EvalParams,
) -> dict[str, float | None]:
    """The ranking and list measures of one row (lists (q, k) of the query items (q,)), as plain floats (None where
    undefined; the ranking measures without a ranking: a metric with no user -> item score)."""
    n_items = popularity.shape[0]
    share = None
    if categories is not None:
        share = _mean(category_share_rows(queries, lists, categories))
    return {
        f"recall_at_{params.recall_at}": None if ranked is None else _mean(recall_at(ranked, heldout, params.recall_at)),
        f"ndcg_at_{params.ndcg_at}": None if ranked is None else _mean(ndcg_at(ranked, heldout, params.ndcg_at)),
        f"category_precision_at_{params.list_k}": share,
        "popularity_ratio": _mean(popularity_ratio_rows(lists, popularity, float(np.median(popularity)))),
        f"coverage_at_{params.list_k}": coverage(lists, n_items),
    }


def _rank(
    scores: Callable[[np.ndarray], np.ndarray], users: np.ndarray, exclude: sp.csr_matrix, R: int, batch: int
) -> np.ndarray:
    """(u, R) top-R item ids per user from scores(rows (b,)) -> (b, n_items), exclude's stored entries left out."""
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    n_items = exclude.shape[1]
    out = np.full((users.size, R), -1, dtype=np.int64)
    for start in range(0, users.size, batch):
        rows = users[start : start + batch]
        sc = np.require(scores(rows), requirements=["W"])  # the exclusion writes into it
        sub = exclude[rows]
        sc[np.repeat(np.arange(rows.size), np.diff(sub.indptr)), sub.indices] = -np.inf
        top = top_k_rows(sc, min(R, n_items))
        # Excluded items score -inf and so come last: cut them off where a user runs out of unseen items.
        unseen = np.count_nonzero(sc > -np.inf, axis=1)
        top[np.arange(top.shape[1])[None, :] >= unseen[:, None]] = -1
        out[start : start + rows.size, : top.shape[1]] = top
    return out


def _lists(
    scores: Callable[[np.ndarray], np.ndarray], n_items: int, k: int, batch: int, queries: np.ndarray | None = None
) -> np.ndarray:
    """(q, min(k, n_items - 1)) top-k other items per query item (default every item) from scores(rows (b,)) -> (b, n_items)."""
    queries = np.arange(n_items) if queries is None else np.asarray(queries, dtype=np.int64)
    out = np.empty((queries.size, max(0, min(k, n_items - 1))), dtype=np.int64)
    for start in range(0, queries.size, batch):
        rows = queries[start : start + batch]
        out[start : start + rows.size] = top_k_rows(scores(rows), k, exclude=rows)
    return out


def _inner(U: np.ndarray, V: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """scores(rows (b,)) -> (b, n) float64: <U_row, V_j> for every j.

    float64, not the served float32: a gauge-transformed model (P D, Q D^-1) must rank exactly as the
    original under the projected metric, and float32 rounding (~1e-7) would swap near-tied items.
    """
    return lambda rows: U[rows] @ V.T


def _depth(params: EvalParams) -> int:
    """Ranking depth: one ranking serves both cut-offs."""
    return max(params.recall_at, params.ndcg_at)


def _factors(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    if P64.ndim != 2 or Q64.ndim != 2 or P64.shape[1] != Q64.shape[1]:
        raise InputError(f"scoring: parameters P (n_users, k) and Q (n_items, k) disagree: {P64.shape} and {Q64.shape}")
    return P64, Q64


def _csr(A: Sparse, name: str, shape: tuple[int, int] | None) -> sp.csr_matrix:
    if not sp.issparse(A):
        raise InputError(f"scoring: parameter {name} must be a sparse matrix, got {type(A).__name__}")
    if shape is not None and A.shape != shape:
        raise InputError(f"scoring: parameter {name} must be {shape}, got {A.shape}")
    return sp.csr_matrix(A)


def _item_inputs(popularity: np.ndarray, categories: np.ndarray | None, n_items: int) -> tuple[np.ndarray, np.ndarray | None]:
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.shape != (n_items,):
        raise InputError(f"scoring: parameter popularity must be ({n_items},), got {pop.shape}")
    if categories is None:
        return pop, None
    cats = np.asarray(categories, dtype=bool)
    if cats.ndim != 2 or cats.shape[0] != n_items:
        raise InputError(f"scoring: parameter categories must be ({n_items}, c), got {cats.shape}")
    return pop, cats


def _mean(values: np.ndarray) -> float | None:
    """Mean of the finite values; None when there are none (JSON has no NaN)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
