"""FAISS inner-product indexes: exact (flat) always, HNSW optionally with its measured recall."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

METRICS: tuple[str, ...] = ("dot", "cosine", "projected")


@dataclass(frozen=True)
class HnswParams:
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    recall_queries: int = 1000


def flat_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product index over vectors (m, k), stored as float32."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


def hnsw_index(vectors: np.ndarray, params: HnswParams) -> faiss.IndexHNSWFlat:
    """Approximate HNSW inner-product index over vectors (m, k)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexHNSWFlat(x.shape[1], params.M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    index.add(x)
    return index


def recall_at_10(exact: faiss.Index, approx: faiss.Index, vectors: np.ndarray, n_queries: int, seed: int = 0) -> float:
    """Mean |top10(approx) & top10(exact)| / 10 over a seeded sample of the rows of vectors (m, k)."""
    m = vectors.shape[0]
    kk = min(10, m)
    rows = np.random.default_rng(seed).choice(m, size=min(n_queries, m), replace=False)
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    _, truth = exact.search(q, kk)
    _, found = approx.search(q, kk)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return hits / (kk * len(rows))


def exact_neighbours(index: faiss.IndexFlatIP, vectors: np.ndarray, n: int, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Every row's exact top n by inner product, itself excluded: (ids (m, w) int32, scores (m, w) float32), w = min(n, m - 1).

    Row i lists the j != i with the largest <x_i, x_j>, best first, for the m stored rows x of `index`
    (`vectors` (m, d) are those rows). Searches w + 1 per row, all rows at once in blocks (FAISS's
    batched path is a BLAS product), and drops row i itself; when i is not among the w + 1 (ties, a
    zero row) the last one is dropped instead, exactly as the API's per-query search does.
    """
    m = int(index.ntotal)
    width = max(0, min(n, m - 1))
    ids = np.empty((m, width), dtype=np.int32)
    scores = np.empty((m, width), dtype=np.float32)
    if width == 0:
        return ids, scores
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    for start in range(0, m, block):
        stop = min(start + block, m)
        found_scores, found = index.search(x[start:stop], width + 1)
        drop = found == np.arange(start, stop)[:, None]
        drop[~drop.any(axis=1), -1] = True  # exactly one dropped per row: FAISS never repeats a row
        ids[start:stop] = found[~drop].reshape(stop - start, width)
        scores[start:stop] = found_scores[~drop].reshape(stop - start, width)
    return ids, scores


def write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read_index(path: Path, mmap: bool = True) -> faiss.Index:
    """Read an index; flat and HNSW storage is memory-mapped so processes share one page-cache copy."""
    flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
    return faiss.read_index(str(path), flags)
