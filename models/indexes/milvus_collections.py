"""A version's indexes as Milvus collections, verified, then made live by one alias per index.

Publishing with --milvus-uri: every index file of the staged version becomes a collection
(models.artifact.manifest.milvus_collection: one per version and index) of (row INT64 primary key, vec
FLOAT_VECTOR) with metric IP, as the FAISS index; up to `exact_max_rows` rows a FLAT index (exact), above an HNSW
index whose recall@10 against the FAISS exact search is measured on the index's own rows (ef doubled until it
reaches the target, FLAT if it never does). A collection is verified (row count, vectors read back, recall) before
the version may be published; aliases (milvus_alias: one per index) are switched only after CURRENT, so that a
direct pymilvus client of an alias never sees a version the API would not serve; retention drops the collections
of the versions it removes (and only those: several artifact roots may share one Milvus).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from models.artifact.manifest import (
    MILVUS_PREFIX,
    MilvusEntry,
    milvus_alias,
    milvus_collection,
    milvus_version_of,
)
from models.indexes.faiss_index import flat_index, flat_vectors, read_index

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
    client: Any, version_dir: Path, version: str, files: Iterable[str], params: MilvusParams, say: Callable[[str], None]
) -> dict[str, MilvusEntry]:
    """{index file: its MilvusEntry} for every file, each collection created, filled, indexed, loaded and verified.

    On any failure the version's collections made so far are dropped and MilvusFailed raised: nothing of a
    version that is not published stays in Milvus.
    """
    made: list[str] = []
    entries: dict[str, MilvusEntry] = {}
    try:
        for file in dict.fromkeys(files):
            name = milvus_collection(version, file)
            made.append(name)
            index = read_index(version_dir / file)
            if not isinstance(index, faiss.IndexFlat):
                raise MilvusFailed(f"milvus: {file} is a {type(index).__name__}, not a flat index")
            vectors = np.ascontiguousarray(flat_vectors(index), dtype=np.float32)
            entries[file] = _load_collection(client, name, milvus_alias(file), vectors, params)
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


def _load_collection(client: Any, name: str, alias: str, vectors: np.ndarray, params: MilvusParams) -> MilvusEntry:
    from pymilvus import DataType

    rows, dim = vectors.shape
    t = params.timeout
    if client.has_collection(name, timeout=t):  # a leftover of an interrupted publish of the same version
        client.drop_collection(name, timeout=t)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ROW, DataType.INT64, is_primary=True)
    schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema, timeout=t)
    for a in range(0, rows, params.insert_batch):
        block = vectors[a : a + params.insert_batch]
        client.insert(name, [{ROW: a + j, VEC: v} for j, v in enumerate(block.tolist())], timeout=t)
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
    back = client.get(name, ids=[int(r) for r in sample[:20]], output_fields=[VEC], timeout=t)
    stored = np.array([b[VEC] for b in sorted(back, key=lambda b: b[ROW])], dtype=np.float32)
    if stored.shape != (min(20, sample.size), dim) or not np.allclose(stored, vectors[sample[:20]], atol=1e-6):
        raise MilvusFailed(f"milvus {name}: the vectors read back differ from the index file's")
    search: dict[str, Any] = {}
    recall = recall_at_10(client, name, vectors, sample, search, t)
    ef = params.ef_start
    while not exact and recall < params.target_recall and ef <= params.ef_max:
        search = {"ef": ef}
        recall = recall_at_10(client, name, vectors, sample, search, t)
        ef *= 2
    if recall < params.target_recall and not exact:  # HNSW cannot reach the target here: serve it exactly
        client.release_collection(name, timeout=t)
        client.drop_index(name, VEC, timeout=t)
        index_type, index_params, search = "FLAT", {}, {}
        _index(client, name, index_type, index_params, t)
        client.load_collection(name, timeout=t)
        recall = recall_at_10(client, name, vectors, sample, search, t)
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
    client: Any, name: str, vectors: np.ndarray, sample: np.ndarray, search_params: dict[str, Any], timeout: float
) -> float:
    """Mean over the sampled rows of |Milvus top 10 ∩ exact top 10| / 10, a hit scored within 1e-5 of the exact
    10th score counted as found (a tie broken the other way is not a miss)."""
    k = min(10, vectors.shape[0])
    exact = flat_index(vectors)
    scores, ids = exact.search(vectors[sample], k)
    hits = client.search(
        name,
        data=vectors[sample].tolist(),
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
    return found / (k * len(sample))


def _drop_quietly(client: Any, name: str) -> None:
    with contextlib.suppress(Exception):  # best effort on the way out of a failure that is already being reported
        if client.has_collection(name, timeout=10):
            client.drop_collection(name, timeout=10)
