"""Load a published version from disk: verify every checksum, open every index, check every shape.

`load_version(dir, options)` returns an immutable serving.version.Version or raises ArtifactError
with the reason; what it opens is exactly models.artifact.manifest.referenced_files(manifest), all
of it checksummed by verify_version first. Index files are memory-mapped once each (several
manifest keys may share a file) unless LoadOptions.mmap is off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import faiss
import numpy as np
import scipy.sparse as sp

from app.serving.milvus_search import BackendUnavailable, MilvusBackend, MilvusSearcher
from app.serving.version import NeighbourLists, RecommendPair, VectorIndex, Version
from models.artifact.manifest import (
    INTERACTIONS,
    ITEM_POPULARITY,
    ITEMS,
    USERS,
    IndexEntry,
    MilvusEntry,
    NeighbourEntry,
    index_entries,
    manifest_metrics,
    milvus_entries,
    recommend_entries,
    referenced_files,
)
from models.artifact.store import ArtifactError, verify_version
from models.indexes.faiss_index import flat_vectors, read_index
from models.indexes.ivf import IvfSearcher


@dataclass(frozen=True)
class LoadOptions:
    """Which index of a manifest entry to serve; see Settings.search_mode and friends (min_hnsw_recall gates
    every approximate twin, HNSW and IVF)."""

    search_mode: Literal["auto", "exact"] = "auto"
    min_hnsw_recall: float = 0.95
    hnsw_ef_search: int | None = None
    # Memory-map index files and query arrays (one page-cache copy shared by every worker); False reads
    # them into the process's own memory (the memory benchmark's reference).
    mmap: bool = True
    # VECTOR_BACKEND=milvus: every search goes to the version's Milvus collections (its manifest's "milvus"); the
    # vectors of query rows and the exact fallback stay the memory-mapped index files
    milvus: MilvusBackend | None = None


def load_version(version_dir: Path, options: LoadOptions = LoadOptions()) -> Version:
    """Verify every checksum of a version folder, then load it. ArtifactError says why it cannot be served."""
    manifest = verify_version(version_dir)
    try:
        return _load(version_dir, manifest, options)
    except ArtifactError:
        raise
    except Exception as e:  # a verified but malformed version (bad shapes, unreadable index): refuse, never crash
        raise ArtifactError(f"{version_dir.name}: cannot load: {type(e).__name__}: {e}") from e


def _load(version_dir: Path, manifest: dict[str, Any], options: LoadOptions) -> Version:
    name = version_dir.name
    unlisted = referenced_files(manifest) - set(manifest["files"])
    if unlisted:  # verify_version only checks the files listed: serve nothing it did not check
        raise ArtifactError(f"{name}: {', '.join(sorted(unlisted))} is not among the manifest's checksummed files")
    mmap_mode: Literal["r"] | None = "r" if options.mmap else None
    counts = manifest["counts"]
    user_ids = tuple(json.loads((version_dir / USERS).read_text(encoding="utf-8")))
    items = json.loads((version_dir / ITEMS).read_text(encoding="utf-8"))
    item_ids = tuple(str(it["id"]) for it in items)
    if len(user_ids) != counts["users"] or len(item_ids) != counts["items"]:
        raise ArtifactError(f"{name}: {len(user_ids)} users / {len(item_ids)} items in the id files, manifest counts {counts}")
    item_meta = tuple(MappingProxyType(_item_meta(it)) for it in items)
    # load_npz is typed as any sparse container; the build saves a csr_matrix (ds.X.tocsr())
    interactions = cast(sp.csr_matrix, sp.load_npz(version_dir / INTERACTIONS)).tocsr()
    if interactions.shape != (len(user_ids), len(item_ids)):
        raise ArtifactError(f"{name}: {INTERACTIONS} is {interactions.shape}, expected {(len(user_ids), len(item_ids))}")
    popularity = np.load(version_dir / ITEM_POPULARITY)

    files: dict[str, VectorIndex] = {}  # one load per file: the denoising variants share projected indexes
    collections = _milvus_collections(name, manifest, options.milvus) if options.milvus is not None else None

    def index_of(entry: IndexEntry, rows: int) -> VectorIndex:
        idx = _open_index(version_dir, entry, options, files)
        if idx.rows != rows or (entry.dim >= 0 and idx.dim != entry.dim):
            raise ArtifactError(f"{name}: {entry.file} holds {idx.rows} x {idx.dim}, expected {rows} x {entry.dim}")
        if collections is not None:  # every search of it is Milvus's, none a stored list
            if idx.kind != "milvus":
                idx = files[idx.file] = _on_milvus(name, idx, entry, collections, options)
            return idx
        if entry.neighbours is not None and idx.neighbours is None:
            lists = _open_neighbours(version_dir, entry.neighbours, idx.rows, mmap_mode)
            idx = files[idx.file] = replace(idx, neighbours=lists)
        return idx

    side_rows = {"items": len(item_ids), "users": len(user_ids)}
    indexes = {key: index_of(entry, side_rows[key.side]) for key, entry in index_entries(manifest).items()}
    pairs: dict[tuple[str, str], RecommendPair] = {}
    arrays: dict[str, np.ndarray] = {}
    for (model, metric), rec in recommend_entries(manifest).items():
        item_index = index_of(rec.items, len(item_ids))
        if rec.query_index is not None:
            queries = indexes[rec.query_index].vectors
        else:
            rel = str(rec.query_file)
            if rel not in arrays:
                arrays[rel] = np.load(version_dir / rel, mmap_mode=mmap_mode)
            queries = arrays[rel]
        if queries.shape != (len(user_ids), item_index.dim) or queries.dtype != np.float32:
            raise ArtifactError(f"{name}: recommend {model}/{metric} queries are {queries.shape} {queries.dtype}")
        if rec.query_file is not None and not _all_finite(queries):
            raise ArtifactError(f"{name}: {rec.query_file} holds non-finite values")
        pairs[(model, metric)] = RecommendPair(queries=queries, items=item_index)
    return Version(
        name=name,
        path=version_dir,
        manifest=manifest,
        loaded_at=time.time(),
        user_ids=user_ids,
        user_rows=MappingProxyType({u: r for r, u in enumerate(user_ids)}),
        item_ids=item_ids,
        item_rows=MappingProxyType({i: r for r, i in enumerate(item_ids)}),
        item_meta=item_meta,
        item_popularity=popularity,
        interactions=interactions,
        indexes=MappingProxyType(indexes),
        recommend_pairs=MappingProxyType(pairs),
        models=tuple(manifest["models"]),
        metrics=manifest_metrics(manifest),
        category_rows=MappingProxyType(_category_rows(item_meta)),
    )


def _milvus_collections(name: str, manifest: dict[str, Any], backend: MilvusBackend) -> dict[str, MilvusEntry]:
    """The version's Milvus entries by index file, each collection checked to exist; ArtifactError otherwise (a
    version not loaded into Milvus, or whose collections were dropped, is refused like a corrupt one)."""
    entries = milvus_entries(manifest)
    if not entries:
        raise ArtifactError(
            f"{name}: not loaded into Milvus (built without --milvus-uri); VECTOR_BACKEND=milvus serves only versions that were"
        )
    try:
        present = backend.collections()
    except BackendUnavailable as e:
        raise ArtifactError(f"{name}: {e}") from e
    missing = sorted(e.collection for e in entries.values() if e.collection not in present)
    if missing:
        raise ArtifactError(f"{name}: {len(missing)} of its Milvus collections are missing ({missing[0]}, ...)")
    return entries


def _on_milvus(
    name: str, index: VectorIndex, entry: IndexEntry, collections: dict[str, MilvusEntry], options: LoadOptions
) -> VectorIndex:
    """The index with Milvus's search of its collection; its exact search stays the flat file's."""
    assert options.milvus is not None
    m = collections.get(entry.file)
    if m is None:
        raise ArtifactError(f"{name}: {entry.file} has no Milvus collection in the manifest")
    if (m.rows, m.dim) != (index.rows, index.dim):
        raise ArtifactError(
            f"{name}: Milvus collection {m.collection} is {m.rows} x {m.dim}, the index {index.rows} x {index.dim}"
        )
    return replace(
        index,
        file=entry.file,
        kind="milvus",
        recall_at_10=m.recall_at_10,
        ef_search=None,
        nprobe=None,
        searcher=MilvusSearcher(options.milvus, m),
        neighbours=None,
        collection=m.collection,
    )


def _category_rows(item_meta: tuple[Mapping[str, Any], ...]) -> dict[str, np.ndarray]:
    """category -> the rows (sorted, int64) of the items that have it, categories in order of first appearance."""
    rows: dict[str, list[int]] = {}
    for r, meta in enumerate(item_meta):
        for c in meta.get("categories") or ():
            rows.setdefault(c, []).append(r)
    return {c: np.asarray(sorted(set(r)), dtype=np.int64) for c, r in rows.items()}


def _item_meta(item: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"item_id": str(item["id"])}
    if item.get("title") is not None:
        meta["title"] = item["title"]
    if item.get("categories") is not None:
        meta["categories"] = list(item["categories"])
    return meta


def _open_index(version_dir: Path, entry: IndexEntry, options: LoadOptions, cache: dict[str, VectorIndex]) -> VectorIndex:
    """The approximate twin when allowed and accurate enough (the opt-in HNSW one first, else the IVF one), else the
    flat index; memory-mapped, loaded once per file. The vectors and the exact search are always the flat index's."""
    allowed = options.search_mode == "auto" and options.milvus is None  # Milvus serves instead of any twin
    hnsw = entry.hnsw if allowed and entry.hnsw is not None and entry.hnsw.recall_at_10 >= options.min_hnsw_recall else None
    ivf = (
        entry.ivf
        if allowed and hnsw is None and entry.ivf is not None and entry.ivf.recall_at_10 >= options.min_hnsw_recall
        else None
    )
    rel = hnsw.file if hnsw is not None else ivf.file if ivf is not None else entry.file
    if rel in cache:
        return cache[rel]
    name = version_dir.name
    ef: int | None = None
    owner: faiss.Index
    if hnsw is not None:
        index = read_index(version_dir / rel, mmap=options.mmap)
        if not isinstance(index, faiss.IndexHNSW):
            raise ArtifactError(f"{name}: {rel} is a {type(index).__name__}, expected an HNSW index")
        ef = options.hnsw_ef_search or hnsw.ef_search or int(index.hnsw.efSearch)
        index.hnsw.efSearch = ef
        storage, owner = faiss.downcast_index(index.storage), index
    else:
        storage = owner = read_index(version_dir / entry.file, mmap=options.mmap)
    flat = rel if hnsw is not None else entry.file
    if not isinstance(storage, faiss.IndexFlat) or storage.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError(f"{name}: {flat} is not an inner-product index over flat float32 vectors")
    vectors = np.asarray(_Pinned(flat_vectors(storage), owner))
    if not _all_finite(vectors):  # checked once here, so no request can produce a NaN score
        raise ArtifactError(f"{name}: {flat} holds non-finite values")
    searcher: faiss.Index | IvfSearcher = owner
    if ivf is not None:
        twin = read_index(version_dir / ivf.file, mmap=options.mmap)
        dim = storage.d + (1 if ivf.augmented else 0)
        if not isinstance(twin, faiss.IndexIVFFlat) or twin.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ArtifactError(f"{name}: {ivf.file} is a {type(twin).__name__}, expected an inner-product IVF-Flat index")
        if twin.d != dim or twin.ntotal != storage.ntotal or not 1 <= ivf.nprobe <= twin.nlist:
            raise ArtifactError(
                f"{name}: {ivf.file} holds {twin.ntotal} x {twin.d} in {twin.nlist} lists, expected {storage.ntotal} x "
                f"{dim} and nprobe {ivf.nprobe} within them"
            )
        searcher = IvfSearcher(twin, ivf.augmented, ivf.nprobe)
    kind: Literal["flat", "hnsw", "ivf"] = "hnsw" if hnsw is not None else "ivf" if ivf is not None else "flat"
    twin_entry = hnsw or ivf
    loaded = VectorIndex(
        file=rel,
        kind=kind,
        recall_at_10=twin_entry.recall_at_10 if twin_entry is not None else None,
        ef_search=ef,
        searcher=searcher,
        exact=_Owned(storage, owner) if hnsw is not None else storage,
        vectors=vectors,
        nprobe=ivf.nprobe if ivf is not None else None,
    )
    cache[rel] = loaded
    return loaded


def _open_neighbours(version_dir: Path, entry: NeighbourEntry, rows: int, mmap_mode: Literal["r"] | None) -> NeighbourLists:
    """Memory-map a pair of neighbour-list files, checked once here so a lookup can never go out of range."""
    ids = np.load(version_dir / entry.ids, mmap_mode=mmap_mode)
    scores = np.load(version_dir / entry.scores, mmap_mode=mmap_mode)
    n = entry.n
    if ids.shape != (rows, n) or scores.shape != (rows, n) or ids.dtype != np.int32 or scores.dtype != np.float32:
        raise ArtifactError(
            f"{version_dir.name}: {entry.ids} / {entry.scores} are {ids.shape} {ids.dtype} / {scores.shape} "
            f"{scores.dtype}, expected ({rows}, {n}) int32 / float32"
        )
    chunk = 1 << 14
    for i in range(0, rows, chunk):
        block = ids[i : i + chunk]
        if block.size and (block.min() < 0 or block.max() >= rows):
            raise ArtifactError(f"{version_dir.name}: {entry.ids} holds row numbers outside 0..{rows - 1}")
    if not _all_finite(scores):
        raise ArtifactError(f"{version_dir.name}: {entry.scores} holds non-finite values")
    return NeighbourLists(ids=ids, scores=scores, complete=entry.complete and n == rows - 1)


def _all_finite(a: np.ndarray, chunk: int = 1 << 16) -> bool:
    """np.isfinite(a).all() in row chunks (no full-size temporary for a large memory-mapped index)."""
    return all(np.isfinite(a[i : i + chunk]).all() for i in range(0, a.shape[0], chunk))


class _Owned:
    """An HNSW index's flat storage as a searcher, holding its owner (SWIG's storage proxy does not)."""

    def __init__(self, storage: faiss.Index, owner: faiss.Index) -> None:
        self._storage, self._owner = storage, owner

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._storage.search(queries, n)


class _Pinned:
    """Memory owned by a FAISS index as a read-only array interface that holds the index.

    np.asarray(_Pinned(...)) has this object as its base, so the vectors keep the mapping alive
    on their own (a bare flat_vectors view would dangle once the index is freed).
    """

    def __init__(self, view: np.ndarray, owner: faiss.Index) -> None:
        interface = dict(view.__array_interface__)
        interface["data"] = (interface["data"][0], True)
        self.__array_interface__ = interface
        self._owner = owner
