"""FAISS inner-product indexes: exact (flat) always, HNSW optionally with its measured recall."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from models.errors import naming_the_file


@dataclass(frozen=True)
class HnswParams:
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    recall_queries: int = 1000


@contextmanager
def blas_searches(min_queries: int = 20) -> Iterator[None]:
    """Flat searches of >= min_queries queries at once go through BLAS (one matrix product) while inside.

    FAISS's default threshold (faiss.cvar.distance_compute_blas_threshold, 128,000 queries in 1.15) keeps
    batches on its per-query loop, which streams the whole catalogue from memory once per query: 500 queries
    over 100,000 x 64 vectors take 0.43 s that way and 0.06 s as one product. The threshold is process-wide, so
    this is for the offline job (one thread), never around a server's searches; scores then differ from the
    per-query loop's in the float32 rounding only.
    """
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = min_queries
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def flat_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product index over vectors (m, k), stored as float32."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


def flat_vectors(index: faiss.IndexFlat) -> np.ndarray:
    """The stored vectors (ntotal, d) float32 of a flat (IndexFlat) index as a view, no copy: valid while `index` lives."""
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


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


def write_index(index: faiss.Index, path: Path) -> None:
    """faiss.write_index through a Python file, so a failed write fails like Python's own: an OSError with the
    errno and the file, also for the last buffered bytes (FAISS's own writer ignores an error at fclose, which
    would leave a truncated index behind a matching checksum)."""
    with naming_the_file(path), open(path, "wb") as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))  # type: ignore[attr-defined]  # not in the stubs


def read_flat(path: Path) -> faiss.IndexFlat:
    """read_index of a file that must hold a flat index (its rows memory-mapped); ValueError naming it otherwise."""
    index = read_index(path)
    if not isinstance(index, faiss.IndexFlat):
        raise ValueError(f"{path}: a {type(index).__name__}, not a flat index")
    return index


def read_index(path: Path, mmap: bool = True) -> faiss.Index:
    """Read an index; flat and HNSW storage is memory-mapped so processes share one page-cache copy."""
    flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
    return faiss.read_index(str(path), flags)
