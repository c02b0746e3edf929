"""The Dask engine's RowLoader (models.indexes.milvus_collections): every worker moves a range of an index file's
rows into Milvus and searches them, so that the rows go to Milvus from the machines that wrote them.

The file is the one the workers wrote in place (models.distributed.row_files), on the filesystem they share
with the client. Each task memory-maps it, inserts rows a:b with its own pymilvus client, or returns the exact
top k of the recall queries among rows a:b; the client merges the (q, k) pieces. What travels to the client:
the queries' (q, dim) rows it reads itself and q x k scores and ids per range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dask.distributed import Client

from models.indexes.faiss_index import flat_vectors, read_flat, read_index
from models.indexes.milvus_collections import MilvusParams, insert_rows, milvus_client

RANGE_ROWS = 1_000_000  # rows of one task at most: the rows one task reads stay < 1 GB at k <= 256


class WorkerRows:
    """Ranges of about rows / (worker threads) rows, at most RANGE_ROWS, each inserted or searched on a worker."""

    def __init__(self, client: Client, uri: str) -> None:
        self.client, self.uri = client, uri

    def insert(self, name: str, path: Path, rows: int, params: MilvusParams) -> None:
        tasks = [
            self.client.submit(_insert_range, self.uri, name, str(path), a, b, params, pure=False) for a, b in self._ranges(rows)
        ]
        self.client.gather(tasks)

    def exact_top(self, path: Path, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        shared = self.client.scatter(np.ascontiguousarray(queries, dtype=np.float32), broadcast=True)
        rows = int(read_index(path).ntotal)
        parts = self.client.gather(
            [self.client.submit(_top_in_range, str(path), a, b, shared, k, pure=False) for a, b in self._ranges(rows)]
        )
        return merge_tops(parts, k)

    def _ranges(self, rows: int) -> list[tuple[int, int]]:
        threads = max(1, sum(self.client.nthreads().values()))
        size = max(1, min(RANGE_ROWS, -(-rows // threads)))
        return [(a, min(rows, a + size)) for a in range(0, rows, size)]


def merge_tops(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k (scores (q, k), ids (q, k)) of per-range tops [(scores (q, k_r), ids (q, k_r))], best first."""
    scores = np.concatenate([s for s, _ in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _insert_range(uri: str, name: str, path: str, a: int, b: int, params: MilvusParams) -> int:
    index = read_flat(Path(path))  # kept alive: flat_vectors is a view of its memory-mapped rows
    client = milvus_client(uri, params.timeout)
    try:
        insert_rows(client, name, flat_vectors(index), a, b, params)
    finally:
        client.close()
    return b - a


def _top_in_range(path: str, a: int, b: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = read_flat(Path(path))  # kept alive: the rows are a view of its memory-mapped storage
    # the range searched in place: no copy of its rows into an index of its own
    scores, ids = faiss.knn(queries, flat_vectors(index)[a:b], min(k, b - a), metric=faiss.METRIC_INNER_PRODUCT)
    return scores, np.where(ids >= 0, ids + a, -1)
