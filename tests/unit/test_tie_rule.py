"""The one tie rule of models.indexes.neighbour_lists on catalogues full of exact ties and zero rows.

Integer-valued vectors make every inner product exact in float32, so the rule (scores descending,
equal scores by the lower row id, the query never listed) can be recomputed here with plain Python
sorting. The API's one-query path and the batch path (stored lists, the summary) must give the
same lists, under a flat and an approximate (HNSW) index.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from models.indexes.neighbour_lists import exact_neighbours, top_neighbours


def catalogue(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m, d = int(rng.integers(3, 120)), int(rng.integers(1, 5))
    V = rng.integers(-2, 3, (m, d)).astype(np.float32)
    V[rng.integers(0, m, m // 4)] = 0  # zero rows: every score 0, all tied
    return V


def by_rule(V: np.ndarray, row: int, k: int) -> list[int]:
    scores = (V.astype(np.int64) @ V[row].astype(np.int64)).tolist()
    return sorted((j for j in range(len(V)) if j != row), key=lambda j: (-scores[j], j))[:k]


@pytest.mark.parametrize("seed", range(12))
def test_flat_lists_follow_the_rule_on_both_paths(seed):
    V = catalogue(seed)
    m = V.shape[0]
    flat = faiss.IndexFlatIP(V.shape[1])
    flat.add(V)
    for k in (1, 3, 10, m + 5):
        batch_ids, batch_scores = top_neighbours(V, np.arange(m), k, flat)
        for row in range(m):
            want = by_rule(V, row, k)
            ids, scores = top_neighbours(V, np.array([row]), k, flat)  # one query: the API's path
            assert ids[0].tolist() == want == batch_ids[row].tolist(), (seed, k, row)
            np.testing.assert_array_equal(scores[0], (V[want] @ V[row]).astype(np.float32))
            np.testing.assert_array_equal(scores[0], batch_scores[row])
    stored, _ = exact_neighbours(flat, V, 4)
    assert stored.tolist() == [by_rule(V, row, 4) for row in range(m)]


@pytest.mark.parametrize("seed", range(12))
def test_hnsw_one_query_equals_batch(seed):
    V = catalogue(seed)
    m = V.shape[0]
    hnsw = faiss.IndexHNSWFlat(V.shape[1], 4, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 4  # a narrow beam: short and approximate results happen
    hnsw.add(V)
    for k in (1, 3, 10):
        batch_ids, batch_scores = top_neighbours(V, np.arange(m), k, hnsw)
        for row in range(m):
            ids, scores = top_neighbours(V, np.array([row]), k, hnsw)
            assert ids[0].tolist() == batch_ids[row].tolist(), (seed, k, row)
            assert scores[0].tolist() == batch_scores[row].tolist()
            assert row not in ids[0] and len(set(ids[0].tolist())) == min(k, m - 1)


def test_zero_rows_get_the_rules_answer_under_an_approximate_index():
    """A zero query ties at 0 with every row: the answer is the lowest other row ids, with every index (here an IVF
    that probes one list, which on its own would return whichever rows that list holds)."""
    rng = np.random.default_rng(7)
    V = rng.integers(-2, 3, (400, 6)).astype(np.float32)
    zero_rows = [0, 3, 150, 399]
    V[zero_rows] = 0
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(6), 6, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(V)
    ivf.add(V)
    ivf.nprobe = 1
    rows = np.array([0, 5, 3, 150, 399])
    ids, scores = top_neighbours(V, rows, 10, ivf)
    for i, row in enumerate(rows.tolist()):
        if row in zero_rows:
            assert ids[i].tolist() == by_rule(V, row, 10)
            assert not scores[i].any()
        else:  # a non-zero query keeps the index's answer, scored exactly
            np.testing.assert_array_equal(scores[i], (V[ids[i]].astype(np.int64) @ V[row].astype(np.int64)).astype(np.float32))
    one_ids, _ = top_neighbours(V, np.array([150]), 10, ivf)  # the API's one-query path
    assert one_ids[0].tolist() == by_rule(V, 150, 10)
