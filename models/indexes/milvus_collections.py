"""A version's indexes as Milvus collections, verified, then made live by one alias per index.

Publishing with --milvus-uri: every index file of the staged version becomes a collection
(models.artifact.manifest.milvus_collection: one per version and index) of (row INT64 primary key, vec
FLOAT_VECTOR) with metric IP, as the FAISS index; up to `exact_max_rows` rows a FLAT index (exact), above an HNSW
index whose recall@10 against the FAISS exact search is measured on the index's own rows (ef doubled until it
reaches the target, FLAT if it never does). A collection is verified (row count, vectors read back, recall) before
the version may be published; aliases (milvus_alias: one per index) are switched only after CURRENT, so that a
direct pymilvus client of an alias never sees a version the API would not serve; retention drops the collections
of the versions it removes (and only those: several artifact roots may share one Milvus).

Who moves the rows is a RowLoader: LocalRows inserts them from this process (the index file memory-mapped, a
batch at a time) and finds the exact top 10 of the recall queries with the FAISS index itself; the Dask engine's
loader (models.distributed.milvus_rows) has each worker insert and search a range of rows, so a large user
index goes to Milvus from the machines that wrote it. Either way only the sampled rows are read here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from models.artifact.manifest import (
    MILVUS_PREFIX,
    MilvusEntry,
    milvus_alias,
    milvus_collection,
    milvus_version_of,
)
from models.indexes.faiss_index import flat_vectors, read_flat, read_index

ROW, VEC = "row", "vec"
MAX_TOPK = 16_384  # Milvus's largest limit per search


@dataclass(frozen=True)
class MilvusParams:
    uri: str
    exact_max_rows: int = 10_000
    target_recall: float = 0.95
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ef_start: int = 64
    ef_max: int = 1024
    recall_queries: int = 200
    insert_batch: int = 10_000
    timeout: float = 60.0
    seed: int = 0


class MilvusFailed(RuntimeError):
    """Milvus refused, failed or answered wrongly while a version was loaded into it; the message says where."""


class AliasesNotSwitched(MilvusFailed):
    """The version is published (CURRENT switched) but Milvus failed while its aliases were switched."""


class RowLoader(Protocol):
    """Moves an index file's rows (rows, dim) float32 into a collection and searches them exactly."""

    def insert(self, name: str, path: Path, rows: int, params: MilvusParams) -> None:
        """Insert every row r of the flat index file at `path` as (ROW r, VEC its vector) into collection `name`."""
        ...

    def exact_top(self, path: Path, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k), row ids (q, k)) of the exact inner-product top k of queries (q, dim) over the file's rows."""
        ...


class LocalRows:
    """A RowLoader in this process: the file memory-mapped, inserted a batch at a time, searched with FAISS."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def insert(self, name: str, path: Path, rows: int, params: MilvusParams) -> None:
        index = read_flat(path)  # kept alive: flat_vectors is a view of its memory-mapped rows
        insert_rows(self.client, name, flat_vectors(index), 0, rows, params)

    def exact_top(self, path: Path, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = read_index(path).search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids


def insert_rows(client: Any, name: str, vectors: np.ndarray, a: int, b: int, params: MilvusParams) -> None:
    """Rows a:b of vectors (rows, dim) into collection `name`, params.insert_batch rows a call."""
    for s in range(a, b, params.insert_batch):
        block = np.asarray(vectors[s : min(b, s + params.insert_batch)], dtype=np.float32)
        client.insert(name, [{ROW: s + j, VEC: v} for j, v in enumerate(block.tolist())], timeout=params.timeout)


# pymilvus pings every 10 s, idle or not; a server with gRPC's default ping policy (milvus-lite's) allows one
# ping per 5 minutes and closes the connection after two early ones (GOAWAY "too_many_pings"), failing the calls
# in flight. Pings are kept rarer than that; a dead server is caught by every call's deadline instead.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 330_000, "grpc.keepalive_permit_without_calls": False}


def milvus_client(uri: str, timeout: float) -> Any:
    """A pymilvus MilvusClient of `uri` with `timeout` seconds per call and the keepalive of GRPC_OPTIONS."""
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, timeout=timeout, grpc_options=GRPC_OPTIONS)


def connect(uri: str, timeout: float = 10.0) -> Any:
    """A milvus_client of `uri`; MilvusFailed when it cannot be reached within `timeout` seconds."""
    try:
        client = milvus_client(uri, timeout)
        client.list_collections(timeout=timeout)
    except Exception as e:
        raise MilvusFailed(f"--milvus-uri {uri}: cannot connect: {type(e).__name__}: {e}") from e
    return client


def load_version(
    client: Any,
    version_dir: Path,
    version: str,
    files: Iterable[str],
    params: MilvusParams,
    say: Callable[[str], None],
    rows: RowLoader | None = None,
) -> dict[str, MilvusEntry]:
    """{index file: its MilvusEntry} for every file, each collection created, filled (by `rows`, LocalRows by
    default), indexed, loaded and verified.

    On any failure the version's collections made so far are dropped and MilvusFailed raised: nothing of a
    version that is not published stays in Milvus.
    """
    loader = rows or LocalRows(client)
    made: list[str] = []
    entries: dict[str, MilvusEntry] = {}
    try:
        for file in dict.fromkeys(files):
            name = milvus_collection(version, file)
            made.append(name)
            index = read_index(version_dir / file)
            if not isinstance(index, faiss.IndexFlat):
                raise MilvusFailed(f"milvus: {file} is a {type(index).__name__}, not a flat index")
            path = version_dir / file
            entries[file] = _load_collection(client, name, milvus_alias(file), path, flat_vectors(index), params, loader)
            e = entries[file]
            say(f"  milvus {name}: {e.rows} x {e.dim}, {e.index_type} {dict(e.search_params)}, recall@10 {e.recall_at_10:.3f}")
    except BaseException as e:
        for name in made:
            _drop_quietly(client, name)
        if isinstance(e, MilvusFailed) or not isinstance(e, Exception):
            raise
        raise MilvusFailed(f"milvus: loading {made[-1] if made else version}: {type(e).__name__}: {e}") from e
    return entries


def switch_aliases(client: Any, entries: dict[str, MilvusEntry], timeout: float = 60.0) -> None:
    """Point each entry's alias at its collection (created on first use, altered after): one alias per index."""
    existing = set(client.list_aliases(timeout=timeout).get("aliases", []))
    for e in entries.values():
        if e.alias in existing:
            client.alter_alias(e.collection, e.alias, timeout=timeout)
        else:
            client.create_alias(e.collection, e.alias, timeout=timeout)


def drop_versions(client: Any, versions: Iterable[str], timeout: float = 60.0) -> list[str]:
    """Drop the collections of these versions (those retention removed, or one never published); the names dropped.

    Only versions named: other artifact roots may publish into the same Milvus, and their collections are theirs.
    """
    doomed = set(versions)
    dropped = []
    for name in client.list_collections(timeout=timeout):
        version = milvus_version_of(name) if name.startswith(f"{MILVUS_PREFIX}_") else None
        if version is not None and version in doomed:
            client.drop_collection(name, timeout=timeout)
            dropped.append(name)
    return dropped


def _load_collection(
    client: Any, name: str, alias: str, path: Path, vectors: np.ndarray, params: MilvusParams, loader: RowLoader
) -> MilvusEntry:
    """The collection `name` of the index file at `path`, whose rows (rows, dim) `vectors` memory-maps: only the
    sampled rows are read here; the loader inserts them all and finds the exact answers of the sample."""
    from pymilvus import DataType

    rows, dim = vectors.shape
    t = params.timeout
    if client.has_collection(name, timeout=t):  # a leftover of an interrupted publish of the same version
        client.drop_collection(name, timeout=t)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ROW, DataType.INT64, is_primary=True)
    schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema, timeout=t)
    loader.insert(name, path, rows, params)
    client.flush(name, timeout=t)
    exact = rows <= params.exact_max_rows
    index_type = "FLAT" if exact else "HNSW"
    index_params: dict[str, Any] = {} if exact else {"M": params.hnsw_m, "efConstruction": params.hnsw_ef_construction}
    _index(client, name, index_type, index_params, t)
    client.load_collection(name, timeout=t)
    count = int(client.query(name, output_fields=["count(*)"], timeout=t)[0]["count(*)"])
    if count != rows:
        raise MilvusFailed(f"milvus {name}: holds {count} rows after loading, expected {rows}")
    rng = np.random.default_rng(params.seed)
    sample = np.sort(rng.choice(rows, size=min(params.recall_queries, rows), replace=False))
    queries = np.array(vectors[sample], dtype=np.float32)
    back = client.get(name, ids=[int(r) for r in sample[:20]], output_fields=[VEC], timeout=t)
    stored = np.array([b[VEC] for b in sorted(back, key=lambda b: b[ROW])], dtype=np.float32)
    if stored.shape != (min(20, sample.size), dim) or not np.allclose(stored, queries[:20], atol=1e-6):
        raise MilvusFailed(f"milvus {name}: the vectors read back differ from the index file's")
    truth = loader.exact_top(path, queries, min(10, rows))
    search: dict[str, Any] = {}
    recall = recall_at_10(client, name, queries, truth, search, t)
    ef = params.ef_start
    while not exact and recall < params.target_recall and ef <= params.ef_max:
        search = {"ef": ef}
        recall = recall_at_10(client, name, queries, truth, search, t)
        ef *= 2
    if recall < params.target_recall and not exact:  # HNSW cannot reach the target here: serve it exactly
        client.release_collection(name, timeout=t)
        client.drop_index(name, VEC, timeout=t)
        index_type, index_params, search = "FLAT", {}, {}
        _index(client, name, index_type, index_params, t)
        client.load_collection(name, timeout=t)
        recall = recall_at_10(client, name, queries, truth, search, t)
    return MilvusEntry(
        collection=name,
        alias=alias,
        rows=rows,
        dim=dim,
        index_type=index_type,
        params=index_params,
        search_params=search,
        recall_at_10=round(recall, 4),
    )


def _index(client: Any, name: str, index_type: str, params: dict[str, Any], timeout: float) -> None:
    index = client.prepare_index_params()
    index.add_index(field_name=VEC, index_type=index_type, metric_type="IP", params=params)
    client.create_index(name, index, timeout=timeout)


def recall_at_10(
    client: Any,
    name: str,
    queries: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray],
    search_params: dict[str, Any],
    timeout: float,
) -> float:
    """Mean over queries (q, dim) of |Milvus top k ∩ exact top k| / k, truth = (scores, ids) (q, k) the exact top k
    (k = min(10, rows)), a hit scored within 1e-5 of the exact k-th score counted as found (a tie broken the
    other way is not a miss)."""
    scores, ids = truth
    k = int(ids.shape[1])
    hits = client.search(
        name,
        data=queries.tolist(),
        limit=k,
        anns_field=VEC,
        search_params={"metric_type": "IP", "params": search_params},
        output_fields=[ROW],
        timeout=timeout,
    )
    found = 0
    for r, hit in enumerate(hits):
        want = set(ids[r].tolist())
        tol = 1e-5 * max(1.0, abs(float(scores[r, 0])))
        found += sum(1 for h in hit if h[ROW] in want or h["distance"] >= scores[r, -1] - tol)
    return found / (k * len(queries))


def _drop_quietly(client: Any, name: str) -> None:
    with contextlib.suppress(Exception):  # best effort on the way out of a failure that is already being reported
        if client.has_collection(name, timeout=10):
            client.drop_collection(name, timeout=10)
