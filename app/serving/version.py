"""The served artifact version in memory: immutable, shared freely between requests. No I/O but load_svd.

A `Version` holds id -> row maps, prebuilt item metadata, the interactions, and every index
(`VectorIndex`: the searcher, exact search, the memory-mapped vectors and optional neighbour lists)
by its IndexKey; `RecommendPair` is the user -> item search of one model and metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

import faiss
import numpy as np
import scipy.sparse as sp

from models.artifact.manifest import SVD, IndexKey

Side = Literal["items", "users"]


class NotLoaded(RuntimeError):
    """No version is being served (none published yet, or every one so far was refused)."""


class UnknownId(LookupError):
    """An item or user id that is not in the served version."""

    def __init__(self, side: Side, external_id: str, version: str) -> None:
        self.side, self.external_id, self.version = side, external_id, version
        kind = "item" if side == "items" else "user"
        super().__init__(f"{kind} {external_id!r} is not in artifact version {version}")


class Unavailable(LookupError):
    """A valid model/metric pair that the served version has no index for."""


@dataclass(frozen=True, eq=False)
class NeighbourLists:
    """The build's exact top-n lists of an index (models.indexes.neighbour_lists.exact_neighbours), memory-mapped.

    ids (rows, n) int32 and scores (rows, n) float32: row i's n best other rows by inner product,
    best first. complete: n = rows - 1, so every k is answered.
    """

    ids: np.ndarray
    scores: np.ndarray
    complete: bool

    @property
    def n(self) -> int:
        return int(self.ids.shape[1])


class Searcher(Protocol):
    """A FAISS index's search, or loader._Owned (an HNSW index's flat storage), or models.indexes.ivf.IvfSearcher."""

    def search(self, queries: np.ndarray, n: int, /) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, eq=False)
class VectorIndex:
    """One index file: the searcher that serves requests and the exact flat search over the same vectors.

    vectors: (rows, dim) float32, a read-only view of the memory-mapped stored vectors (the query
    vector of a catalogue row is its stored row, with no copy).
    """

    file: str
    kind: Literal["flat", "hnsw", "ivf", "milvus"]
    recall_at_10: float | None
    ef_search: int | None
    searcher: faiss.Index | Searcher
    exact: Searcher
    vectors: np.ndarray
    neighbours: NeighbourLists | None = None  # when the build stored them (items indexes)
    nprobe: int | None = None  # IVF: inverted lists scanned per query
    collection: str | None = None  # milvus: the Milvus collection that serves the searches

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, queries: np.ndarray, n: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, n) float32, rows (q, n) int64) of the n largest inner products per query (q, dim).

        Rows are -1 (and scores -FLT_MAX) where fewer than n exist or, for HNSW and IVF, were found.
        """
        index = self.exact if exact else self.searcher
        return index.search(queries, n)


@dataclass(frozen=True, eq=False)
class RecommendPair:
    """user -> item search of one model and metric: score(u, i) = <queries[u], items.vectors[i]>.

    queries: (n_users, dim) float32; dot/cosine: the users index's own vectors; projected:
    P_u / ||Xhat_u|| from the build's .npy (memory-mapped), against items B_i / ||Xhat_:,i||.
    """

    queries: np.ndarray
    items: VectorIndex


@dataclass(frozen=True, eq=False)
class Version:
    """One loaded, verified artifact version. Immutable: share it freely between requests."""

    name: str
    path: Path
    manifest: Mapping[str, Any]
    loaded_at: float
    user_ids: tuple[str, ...]
    user_rows: Mapping[str, int]
    item_ids: tuple[str, ...]
    item_rows: Mapping[str, int]
    item_meta: tuple[MappingProxyType[str, Any], ...]  # per row: {"item_id", "title"?, "categories"?}
    item_popularity: np.ndarray  # (n_items,) int64
    interactions: sp.csr_matrix  # (n_users, n_items), for exclude_seen
    indexes: Mapping[IndexKey, VectorIndex]
    recommend_pairs: Mapping[tuple[str, str], RecommendPair]  # (model, metric)
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    category_rows: Mapping[str, np.ndarray]  # category -> sorted item rows (int64) that have it

    def index(self, side: Side, model: str, metric: str) -> VectorIndex:
        try:
            return self.indexes[IndexKey(side, model, metric)]
        except KeyError:
            raise Unavailable(
                f"artifact version {self.name} has no {side} index for model {model!r}, metric {metric!r}"
            ) from None

    def recommend_pair(self, model: str, metric: str) -> RecommendPair:
        try:
            return self.recommend_pairs[(model, metric)]
        except KeyError:
            raise Unavailable(
                f"artifact version {self.name} has no recommend index for model {model!r}, metric {metric!r}"
            ) from None

    def row(self, side: Side, external_id: str) -> int:
        """The row of an external id; UnknownId if absent."""
        rows = self.item_rows if side == "items" else self.user_rows
        row = rows.get(external_id)
        if row is None:
            raise UnknownId(side, external_id, self.name)
        return row

    def seen_items(self, user_row: int) -> np.ndarray:
        """Item rows (sorted, int32) the user interacted with."""
        X = self.interactions
        return X.indices[X.indptr[user_row] : X.indptr[user_row + 1]]

    def item_entry(self, row: int, score: float) -> dict[str, Any]:
        """A neighbour entry: {"item_id", "title"?, "categories"?, "score"}."""
        entry = self.item_meta[row].copy()  # mappingproxy.copy() is the underlying dict's C-level copy
        entry["score"] = score
        return entry

    def user_entry(self, row: int, score: float) -> dict[str, Any]:
        return {"user_id": self.user_ids[row], "score": score}

    def load_svd(self) -> tuple[np.ndarray, np.ndarray]:
        """(s (k,), V (n_items, k)) of the build's truncated SVD, read on demand (not kept in memory)."""
        with np.load(self.path / SVD) as z:
            return z["s"], z["V"]
