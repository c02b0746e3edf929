"""Neighbour queries over a loaded Version: rows in, (rows, scores) out. No HTTP here.

Scores are inner products in the index of the requested model and metric:
    dot        <e_q, e_j> of the raw embeddings (items: rows of B; users: rows of P = X A)
    cosine     the same on L2-normalised embeddings
    projected  cosine in the original space (rows / columns of Xhat = X A B^T, via k-dim isometries)
/recommend scores user u against item i: dot <P_u, B_i> = Xhat[u, i]; cosine cos(P_u, B_i);
projected Xhat[u, i] / (||Xhat_u|| ||Xhat_:,i||). Zero vectors score 0, never NaN.

Every function returns (rows (m,) int64, scores (m,) float32), best first, m <= k.
"""

from __future__ import annotations

import numpy as np

from app.serving.version import Side, VectorIndex, Version
from models.indexes.neighbour_lists import top_neighbours


def neighbours_of_row(index: VectorIndex, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of `index` with the largest inner product with its own row `row`, that row excluded.

    The order is the one tie rule of models.indexes.neighbour_lists (scores descending, ties by the
    lower row id). When the build stored the index's exact lists (serving.version.NeighbourLists)
    and they are long enough, the answer is their first k entries: the same search done offline,
    so the same rows and scores with no search at all.
    """
    lists = index.neighbours
    if lists is not None and (k <= lists.n or lists.complete):
        return lists.ids[row, :k].astype(np.int64), np.array(lists.scores[row, :k])
    rows, scores = top_neighbours(index.vectors, np.array([row]), k, index.searcher, index.exact)
    return rows[0], scores[0]


def similar(version: Version, side: Side, external_id: str, model: str, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Similar items (side="items") or users (side="users") of an external id; UnknownId / Unavailable if absent."""
    index = version.index(side, model, metric)
    return neighbours_of_row(index, version.row(side, external_id), k)


def recommend_rows(
    version: Version, user_row: int, model: str, metric: str, k: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The k items with the highest user -> item score; with exclude_seen the user's own items are skipped.

    Asks for k + |seen| candidates, so an exact search always has k unseen ones left when the
    catalogue has them.
    """
    pair = version.recommend_pair(model, metric)
    seen = version.seen_items(user_row) if exclude_seen else np.empty(0, dtype=np.int32)
    n = min(k + seen.size, pair.items.rows)
    rows, scores = _search(pair.items, pair.queries[user_row : user_row + 1], n)
    if seen.size:
        keep = ~np.isin(rows, seen, assume_unique=True)
        rows, scores = rows[keep], scores[keep]
    return rows[:k], scores[:k]


def recommend(
    version: Version, user_id: str, model: str, metric: str, k: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """recommend_rows for an external user id; UnknownId / Unavailable if absent."""
    return recommend_rows(version, version.row("users", user_id), model, metric, k, exclude_seen)


def _search(index: VectorIndex, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (m,), scores (m,)) of one query (1, dim); an approximate search that comes back short is redone exactly.

    Scores are finite: load_version refuses indexes holding NaN or inf, and zero vectors score 0.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    scores, rows = index.search(query, n)
    if rows[0, -1] < 0:  # fewer than n found: HNSW's beam can miss; exact search over n <= rows cannot
        scores, rows = index.search(query, n, exact=True)
    return rows[0], scores[0]
