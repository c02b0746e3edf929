"""Neighbour lists: the k best other rows of a query row by inner product, under one tie rule.

The tie rule, everywhere a list is made (the API's per-request search, the build's stored top-N
lists, the build-time summary, GET /compare-metrics): rows by descending inner product with the
query row, equal scores by the lower row id, the query row itself never listed. A catalogue of m
rows gives min(k, m - 1) neighbours.

`top_neighbours` asks a FAISS index (flat, or HNSW) for k + 2 candidates per query and orders them
by the rule; a query whose k-th and (k + 1)-th candidates tie (the index may have picked either),
or for which an approximate index found too few, is redone exactly over every row (`top_k_rows`).
"""

from __future__ import annotations

import faiss
import numpy as np

SCORE_BLOCK = 1 << 23  # floats of one block of exact query x catalogue scores (32 MB)


def top_neighbours(
    vectors: np.ndarray, rows: np.ndarray, k: int, index: faiss.Index | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids (q, kk) int64, scores (q, kk) float32) of query rows (q,) of vectors (m, d), kk = min(k, m - 1).

    index: a FAISS inner-product index over exactly `vectors` (row i of the index is vectors[i]),
    flat or approximate; None: a flat one is built. Scores are <vectors[row], vectors[j]> in float32.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    m = int(vectors.shape[0])
    kk = max(0, min(k, m - 1))
    ids = np.empty((rows.size, kk), dtype=np.int64)
    scores = np.empty((rows.size, kk), dtype=np.float32)
    if kk == 0 or rows.size == 0:
        return ids, scores
    if kk + 2 > m:
        redo = np.arange(rows.size)
    elif rows.size == 1 and index is not None:
        redo = _one_query(index, vectors, int(rows[0]), kk, ids[0], scores[0])
    else:
        if index is None:
            index = faiss.IndexFlatIP(int(vectors.shape[1]))
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        found_scores, found = index.search(np.ascontiguousarray(vectors[rows], dtype=np.float32), kk + 2)
        drop = found == rows[:, None]
        drop[~drop.any(axis=1), -1] = True  # one dropped per row: FAISS never repeats a row
        found = found[~drop].reshape(rows.size, kk + 1)
        found_scores = found_scores[~drop].reshape(rows.size, kk + 1)
        redo = np.flatnonzero((found_scores[:, kk] == found_scores[:, kk - 1]) | (found < 0).any(axis=1))
        order = np.lexsort((found[:, :kk], -found_scores[:, :kk]), axis=1)
        ids[:] = np.take_along_axis(found[:, :kk], order, axis=1)
        scores[:] = np.take_along_axis(found_scores[:, :kk], order, axis=1)
    step = max(1, SCORE_BLOCK // m)
    for start in range(0, redo.size, step):
        r = redo[start : start + step]
        exact = np.asarray(vectors[rows[r]], dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
        best = top_k_rows(exact, kk, exclude=rows[r])
        ids[r] = best
        scores[r] = np.take_along_axis(exact, best, axis=1)
    return ids, scores


def _one_query(index: faiss.Index, vectors: np.ndarray, row: int, kk: int, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """top_neighbours' batch steps for the one query of an API request, with a few small-array operations
    instead of the batch's masks and sorts (this is every /similar-* request's path). Fills ids (kk,)
    and scores (kk,); returns [0] when the query must be redone exactly, else []."""
    found_scores, found = index.search(np.ascontiguousarray(vectors[row : row + 1], dtype=np.float32), kk + 2)
    s, i = found_scores[0], found[0]
    keep = i != row
    if keep.all():
        keep[-1] = False
    s, i = s[keep], i[keep]
    if s[kk] == s[kk - 1] or i[kk] < 0:  # FAISS marks missing results at the end, so i[kk] < 0 covers them all
        return np.zeros(1, dtype=np.int64)
    s, i = s[:kk], i[:kk]
    if kk > 1 and (s[1:] == s[:-1]).any():  # equal scores inside the list: order them by id
        order = np.lexsort((i, -s))
        s, i = s[order], i[order]
    ids[:] = i
    scores[:] = s
    return np.empty(0, dtype=np.int64)


def exact_neighbours(index: faiss.IndexFlatIP, vectors: np.ndarray, n: int, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Every row's exact top n, stored by the build: (ids (m, w) int32, scores (m, w) float32), w = min(n, m - 1).

    `top_neighbours` over all m rows of `vectors` in blocks of queries (FAISS's batched path is a
    BLAS product), so a stored list is exactly what a search would serve.
    """
    m = int(index.ntotal)
    width = max(0, min(n, m - 1))
    ids = np.empty((m, width), dtype=np.int32)
    scores = np.empty((m, width), dtype=np.float32)
    for start in range(0, m if width else 0, block):
        stop = min(start + block, m)
        found, found_scores = top_neighbours(vectors, np.arange(start, stop), width, index)
        ids[start:stop], scores[start:stop] = found, found_scores
    return ids, scores


def top_k(scores: np.ndarray, k: int, exclude: int | None = None) -> np.ndarray:
    """Ids (<= k,) of the k highest scores of a score vector (m,), best first.

    Ties are broken by the lower id, so the list is deterministic; `exclude` (the query itself) is
    never returned. Returns min(k, m - 1) ids when excluding, else min(k, m).
    """
    scores = np.asarray(scores)
    return top_k_rows(scores[None, :], k, None if exclude is None else np.array([exclude]))[0]


def top_k_rows(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Ids (b, kk) of the k highest scores of each row of scores (b, m), best first, ties by lower id.

    exclude (b,): one id per row never to return (the query). kk = min(k, m - 1) when excluding,
    else min(k, m). NaN scores rank last.
    """
    scores = np.asarray(scores)
    sc: np.ndarray = np.array(scores, dtype=np.float32 if scores.dtype == np.float32 else np.float64, copy=True)
    b, m = sc.shape
    exclude = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    sc[np.isnan(sc)] = -np.inf
    if exclude is not None:
        sc[np.arange(b), exclude] = -np.inf
    kk = min(k, m - (1 if exclude is not None else 0))
    if kk <= 0:
        return np.empty((b, 0), dtype=np.int64)
    part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (b, 1))
    part_scores = np.take_along_axis(sc, part, axis=1)
    kth = part_scores.min(axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    out = np.take_along_axis(part, order, axis=1).astype(np.int64)
    # Rows where the k-th score is tied with scores outside the partition need the tie broken by id:
    # take every candidate >= the k-th score, then sort by (-score, id).
    tied = np.flatnonzero(np.count_nonzero(sc >= kth[:, None], axis=1) > kk)
    for r in tied:
        cand = np.flatnonzero(sc[r] >= kth[r])
        if exclude is not None:
            cand = cand[cand != exclude[r]]
        out[r] = cand[np.lexsort((cand, -sc[r, cand]))[:kk]]
    return out
