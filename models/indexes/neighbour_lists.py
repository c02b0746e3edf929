"""Neighbour lists: the k best other rows of a query row by inner product, under one tie rule.

The tie rule, everywhere a list is made (the API's per-request search, the build's stored top-N
lists, the build-time summary, GET /compare-metrics): rows by descending inner product with the
query row, equal scores by the lower row id, the query row itself never listed. A catalogue of m
rows gives min(k, m - 1) neighbours.

`top_neighbours` asks a FAISS index for k + 2 candidates per query and orders them by the rule.
With an exact (flat) index, a query whose k-th and (k + 1)-th candidates tie (the index may have
kept any of the tied rows) is answered again from its scores against every row, by `top_k_rows`
(one matrix product, where a search widened until the tie is past would scan every row once per
widening). An approximate (IVF, HNSW) index orders the candidates it found; only a query for which
it found too few is answered again that way. A query row that is all zeros scores 0 against every row: every row
ties, so its answer is the lowest row ids, without a search (a search would widen to every row).
`top_k_rows` states the same rule over a dense score matrix.
"""

from __future__ import annotations

from typing import Protocol

import faiss
import numpy as np

from models.indexes.faiss_index import flat_index


class Searcher(Protocol):
    """What top_neighbours needs of an index: FAISS's search(queries (q, d) float32, n) -> (scores, ids)."""

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def top_neighbours(
    vectors: np.ndarray,
    rows: np.ndarray,
    k: int,
    index: faiss.Index | Searcher | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids (q, kk) int64, scores (q, kk) float32) of query rows (q,) of vectors (m, d), kk = min(k, m - 1).

    index: a FAISS inner-product index over exactly `vectors` (row i of the index is vectors[i]),
    flat or approximate; None: a flat one is built. Scores are <vectors[row], vectors[j]> in float32, as
    FAISS computes them; for the queries answered again (a tie at the k-th candidate of an exact index, or
    too few candidates from an approximate one), as one float32 matrix product over every row computes them.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    m = int(vectors.shape[0])
    kk = max(0, min(k, m - 1))
    ids = np.empty((rows.size, kk), dtype=np.int64)
    scores = np.empty((rows.size, kk), dtype=np.float32)
    if kk == 0 or rows.size == 0:
        return ids, scores
    zero = ~np.any(np.asarray(vectors[rows]) != 0, axis=1)
    if zero.any():  # every row ties at 0 with these: the rule alone answers them
        at = np.flatnonzero(zero)
        ids[at], scores[at] = _lowest_other_rows(rows[at], kk), 0.0
        if zero.all():
            return ids, scores
        rest = np.flatnonzero(~zero)
        rest_ids, rest_scores = top_neighbours(vectors, rows[rest], k, index)
        ids[rest], scores[rest] = rest_ids, rest_scores
        return ids, scores
    if index is None:
        index = flat_index(vectors)
    is_exact = isinstance(index, faiss.IndexFlat)
    if rows.size == 1:
        redo = _one_query(index, vectors, int(rows[0]), kk, is_exact, ids[0], scores[0])
    else:
        redo = _candidates(index, vectors, rows, kk, min(kk + 2, m), is_exact, ids, scores)
    if redo.size:
        ids[redo], scores[redo] = _by_rule_over_every_row(vectors, rows[redo], kk)
    return ids, scores


def _lowest_other_rows(rows: np.ndarray, kk: int) -> np.ndarray:
    """(q, kk) int64: for each query row (q,), the kk lowest row ids other than itself."""
    first = np.broadcast_to(np.arange(kk + 1, dtype=np.int64), (rows.size, kk + 1))
    keep = first != rows[:, None]
    keep[keep.all(axis=1), -1] = False  # the row is not among the first kk + 1: drop the last one
    return first[keep].reshape(rows.size, kk)


def _by_rule_over_every_row(vectors: np.ndarray, rows: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (q, kk) int64, scores (q, kk) float32) of query rows (q,) by the rule, from their scores against every
    row of vectors (m, d): one pass over the vectors per block of queries, where a search widened until the tie
    is past would scan them once per widening (tied groups of identical rows can be thousands long)."""
    m = int(vectors.shape[0])
    ids = np.empty((rows.size, kk), dtype=np.int64)
    scores = np.empty((rows.size, kk), dtype=np.float32)
    block = max(1, (1 << 24) // max(m, 1))  # at most ~64 MB of scores at a time
    for start in range(0, rows.size, block):
        at = rows[start : start + block]
        dense = np.asarray(vectors[at], dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
        found = top_k_rows(dense, kk, exclude=at)
        ids[start : start + block] = found
        scores[start : start + block] = np.take_along_axis(dense, found, axis=1)
    return ids, scores


def _candidates(
    index: faiss.Index | Searcher,
    vectors: np.ndarray,
    rows: np.ndarray,
    kk: int,
    n: int,
    is_exact: bool,
    ids: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """Search n candidates for each query row, order them by the rule and write the first kk into
    ids, scores. Returns the positions
    within `rows` still unresolved: too few found, or (exact index, n < m) the last candidate ties
    the kk-th."""
    m = int(vectors.shape[0])
    found_scores, found = index.search(np.ascontiguousarray(vectors[rows], dtype=np.float32), n)
    drop = found == rows[:, None]
    drop[~drop.any(axis=1), -1] = True  # one dropped per row: FAISS never repeats a row
    found = found[~drop].reshape(rows.size, n - 1)
    found_scores = found_scores[~drop].reshape(rows.size, n - 1)
    short = (found[:, :kk] < 0).any(axis=1)
    # every row is a candidate once n = m: nothing can be missing
    tied = found_scores[:, -1] >= found_scores[:, kk - 1] if is_exact and n < m else np.zeros(rows.size, dtype=bool)
    unresolved = short | tied
    order = np.lexsort((found, -found_scores), axis=1)[:, :kk]
    done = np.flatnonzero(~unresolved)
    ids[done] = np.take_along_axis(found, order, axis=1)[done]
    scores[done] = np.take_along_axis(found_scores, order, axis=1)[done]
    return np.flatnonzero(unresolved)


def _one_query(
    index: faiss.Index | Searcher, vectors: np.ndarray, row: int, kk: int, is_exact: bool, ids: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """_candidates for the one query of an API request (every /similar-* search), with a few small-array
    operations instead of the batch's masks and sorts. Fills ids (kk,) and scores (kk,); returns [0]
    when the query must be searched again exactly, else []."""
    m = int(vectors.shape[0])
    n = min(kk + 2, m)
    found_scores, found = index.search(np.ascontiguousarray(vectors[row : row + 1], dtype=np.float32), n)
    s, i = found_scores[0], found[0]
    keep = i != row
    if keep.all():
        keep[-1] = False
    s, i = s[keep], i[keep]
    if i[kk - 1] < 0 or (is_exact and n < m and s[-1] >= s[kk - 1]):
        return np.zeros(1, dtype=np.int64)  # FAISS puts missing results (-1) last; the tie as in _candidates
    order: np.ndarray | slice
    if n - 1 > kk and s[kk] == s[kk - 1]:
        order = np.lexsort((i, -s))[:kk]  # an approximate index's tied candidates: ordered by the rule
    elif kk > 1 and (s[1:kk] == s[: kk - 1]).any():
        order = np.lexsort((i[:kk], -s[:kk]))  # equal scores inside the list: order them by id
    else:
        order = slice(0, kk)
    ids[:] = i[order]
    scores[:] = s[order]
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
