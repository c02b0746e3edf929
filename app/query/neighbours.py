"""Neighbour queries over a loaded Version: rows in, (rows, scores) out. No HTTP here.

Scores are inner products in the index of the requested model and metric:
    dot        <e_q, e_j> of the raw embeddings (items: rows of B; users: rows of P = X A)
    cosine     the same on L2-normalised embeddings
    projected  cosine in the original space (rows / columns of Xhat = X A B^T, via k-dim isometries)
/recommend scores user u against item i: dot <P_u, B_i> = Xhat[u, i]; cosine cos(P_u, B_i);
projected Xhat[u, i] / (||Xhat_u|| ||Xhat_:,i||). Zero vectors score 0, never NaN.

Every function returns (rows (m,) int64, scores (m,) float32), best first, m <= k; the `_many` ones a list of
them, one per query, from one search for all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.query.item_filter import ItemFilter
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
    if _lists_cover(index, k):
        assert lists is not None
        return lists.ids[row, :k].astype(np.int64), np.array(lists.scores[row, :k])
    rows, scores = top_neighbours(index.vectors, np.array([row]), k, index.searcher)
    return rows[0], scores[0]


def neighbours_of_rows(index: VectorIndex, rows: Sequence[int], ks: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """neighbours_of_row for each of rows (q,) with its own k, in one pass: the queries the stored lists answer
    are read from them (one gather), the others are one search (top_neighbours) with their largest k, each
    answer its first k_i entries.

    On an exact index each answer is neighbours_of_row's: the tie rule makes the top k_i a prefix of the top K.
    On HNSW the shared search looks at least as far as each query's own would (ef_search grows with K).
    """
    lists = index.neighbours
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.float32))] * len(rows)
    covered = [_lists_cover(index, k) for k in ks]
    listed = [i for i, c in enumerate(covered) if c]
    searched = [i for i, c in enumerate(covered) if not c]
    if listed:
        assert lists is not None
        width = min(max(ks[i] for i in listed), lists.n)
        at = np.array([rows[i] for i in listed], dtype=np.int64)
        ids, scores = lists.ids[at, :width].astype(np.int64), np.array(lists.scores[at, :width])
        for j, i in enumerate(listed):
            out[i] = ids[j, : ks[i]], scores[j, : ks[i]]
    if searched:
        width = max(ks[i] for i in searched)
        ids, scores = top_neighbours(index.vectors, np.array([rows[i] for i in searched]), width, index.searcher)
        for j, i in enumerate(searched):
            out[i] = ids[j, : ks[i]], scores[j, : ks[i]]
    return out


def _lists_cover(index: VectorIndex, k: int) -> bool:
    """The build stored the index's exact lists and they answer k (long enough, or every row's complete list)."""
    lists = index.neighbours
    return lists is not None and (k <= lists.n or lists.complete)


def similar(
    version: Version, side: Side, external_id: str, model: str, metric: str, k: int, only: ItemFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Similar items (side="items") or users (side="users") of an external id; UnknownId / Unavailable if absent.

    `only` (items): the answer holds only the rows it passes, and min(k, rows passing) of them.
    """
    index = version.index(side, model, metric)
    row = version.row(side, external_id)
    if only is None:
        return neighbours_of_row(index, row, k)
    return filtered_neighbours_of_row(index, row, k, only)


def filtered_neighbours_of_row(index: VectorIndex, row: int, k: int, only: ItemFilter) -> tuple[np.ndarray, np.ndarray]:
    """neighbours_of_row among the rows `only` passes: min(k, rows passing) of them, from the stored exact list when
    enough of it passes, else from filtered_top."""
    keep = only.mask(index.rows)
    keep[row] = False
    lists = index.neighbours
    if lists is not None:  # the stored exact list, filtered, is the filtered answer when enough of it passes
        ids = lists.ids[row].astype(np.int64)
        passing = keep[ids]
        if lists.complete or int(passing.sum()) >= min(k, int(keep.sum())):
            return ids[passing][:k], np.array(lists.scores[row][passing][:k])
    return filtered_top(index, index.vectors[row : row + 1], keep, k)


def filtered_top(index: VectorIndex, query: np.ndarray, keep: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The min(k, keep.sum()) rows of `index` with the largest inner product with query (1, dim) among the rows
    `keep` (rows,) bool marks, best first, ties by the lower row.

    Over-fetches as many candidates as the share of rows passing suggests, and doubles the fetch until enough
    pass (every row once it reaches all of them): never fewer than k when k rows pass. An approximate search that
    comes back short is done again exactly; on an exact index a fetch whose last candidate ties the k-th passing
    score is widened too, so that the tie goes to the lower row as everywhere else.
    """
    m = index.rows
    available = int(keep.sum())
    kk = min(k, available)
    if kk == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    # Enough when the passing rows are spread evenly (with a margin), and never more than the worst case: every
    # row that fails ranked first.
    n = min(m, kk + (m - available), int(np.ceil(kk * m / available * 1.5)) + 8)
    exact = index.kind == "flat"
    while True:
        scores, found = index.search(query, n, exact=exact)
        s, f = scores[0], found[0]
        if not exact and (f < 0).any():  # HNSW's beam found fewer than n: from here on, exact search
            exact = True
            continue
        passing = keep[f]
        fp, sp = f[passing], s[passing]
        if fp.size >= kk or (exact and n >= m):  # enough, or every row seen: fp holds every passing row
            order = np.lexsort((fp, -sp))[:kk]
            if not (exact and n < m and s[-1] >= sp[order[-1]]):  # no unseen row can tie the last one kept
                return fp[order], sp[order]
        if n >= m:  # an approximate search of every row still came back without enough: search exactly
            exact = True
            continue
        n = min(2 * n, m)


def recommend_rows(
    version: Version, user_row: int, model: str, metric: str, k: int, exclude_seen: bool, only: ItemFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k items with the highest user -> item score; with exclude_seen the user's own items are skipped, with
    `only` the items it does not pass (filtered_top).

    Asks for k + |seen| candidates, so an exact search always has k unseen ones left when the
    catalogue has them.
    """
    pair = version.recommend_pair(model, metric)
    seen = version.seen_items(user_row) if exclude_seen else np.empty(0, dtype=np.int32)
    if only is not None:
        keep = only.mask(pair.items.rows)
        keep[seen] = False
        return filtered_top(pair.items, pair.queries[user_row : user_row + 1], keep, k)
    n = min(k + seen.size, pair.items.rows)
    rows, scores = _drop_seen(*_search(pair.items, pair.queries[user_row : user_row + 1], n), seen)
    return rows[:k], scores[:k]


def _drop_seen(rows: np.ndarray, scores: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) (m,) without the rows in `seen` (sorted item rows); rows hold no repeats."""
    if not seen.size:
        return rows, scores
    keep = ~np.isin(rows, seen, assume_unique=True)
    return rows[keep], scores[keep]


def recommend(
    version: Version, user_id: str, model: str, metric: str, k: int, exclude_seen: bool, only: ItemFilter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """recommend_rows for an external user id; UnknownId / Unavailable if absent."""
    return recommend_rows(version, version.row("users", user_id), model, metric, k, exclude_seen, only)


def recommend_many(
    version: Version, user_rows: Sequence[int], model: str, metric: str, ks: Sequence[int], exclude_seen: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """recommend_rows for each of user_rows (q,) with its own k, from one search per group of users: user i needs
    n_i = k_i + |seen_i| candidates, and the users whose n_i share a power of two are searched together for their
    largest n_i (so one user with thousands of seen items does not make every other user's search that deep).
    Each user's answer is its candidates, its seen items left out, first k_i; a user whose approximate search came
    back short of k_i unseen items is answered by recommend_rows (which searches again exactly). On an exact
    index each answer is recommend_rows'.
    """
    pair = version.recommend_pair(model, metric)
    empty = np.empty(0, dtype=np.int32)
    seen = [version.seen_items(u) if exclude_seen else empty for u in user_rows]
    needs = [min(k + s.size, pair.items.rows) for k, s in zip(ks, seen, strict=True)]
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(needs):
        groups.setdefault(n.bit_length(), []).append(i)
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.float32))] * len(user_rows)
    for members in groups.values():
        queries = np.ascontiguousarray(pair.queries[np.asarray([user_rows[i] for i in members])])
        scores, rows = pair.items.search(queries, max(needs[i] for i in members))
        for j, i in enumerate(members):
            k, s = ks[i], seen[i]
            found = rows[j] >= 0
            r, sc = _drop_seen(rows[j][found], scores[j][found], s)
            if r.size < min(k, pair.items.rows - s.size):  # HNSW's beam missed some: the single query's exact redo
                r, sc = recommend_rows(version, user_rows[i], model, metric, k, exclude_seen)
            out[i] = r[:k], sc[:k]
    return out


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
