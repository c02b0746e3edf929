"""The served artifact version: load and verify it, hold it, swap it atomically, poll CURRENT.

- `load_version(dir)` verifies every checksum (models.artifacts.verify_version) and returns an
  immutable `Version`: id -> row maps, prebuilt item metadata, the interactions, and every index
  file memory-mapped once (several manifest keys may share a file).
- `VersionHolder.current` is the live version. A request reads it once and keeps that object, so a
  swap (one reference assignment) never changes the version under a request already running.
- `Reloader.check()` compares CURRENT with the live version and loads a new one; a version that
  fails verification or loading is refused with a reason and the live one stays.

Everything here is free of HTTP: the routers and /compare-metrics reuse it as a library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import faiss
import numpy as np
import scipy.sparse as sp

from models.artifacts import ArtifactError, ArtifactStore, verify_version
from models.indexes import read_index

log = logging.getLogger("app.store")

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
    """The build's exact top-n lists of an index (models.indexes.exact_neighbours), memory-mapped.

    ids (rows, n) int32 and scores (rows, n) float32: row i's n best other rows by inner product,
    best first. complete: n = rows - 1, so every k is answered.
    """

    ids: np.ndarray
    scores: np.ndarray
    complete: bool

    @property
    def n(self) -> int:
        return int(self.ids.shape[1])


@dataclass(frozen=True, eq=False)
class VectorIndex:
    """One index file: the searcher that serves requests and the exact flat search over the same vectors.

    vectors: (rows, dim) float32, a read-only view of the memory-mapped stored vectors (the query
    vector of a catalogue row is its stored row, with no copy).
    """

    file: str
    kind: Literal["flat", "hnsw"]
    recall_at_10: float | None
    ef_search: int | None
    searcher: faiss.Index
    exact: faiss.Index
    vectors: np.ndarray
    neighbours: NeighbourLists | None = None  # when the build stored them (items indexes)

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, queries: np.ndarray, n: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, n) float32, rows (q, n) int64) of the n largest inner products per query (q, dim).

        Rows are -1 (and scores -FLT_MAX) where fewer than n exist or, for HNSW, were found.
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
    item_meta: tuple[Mapping[str, Any], ...]  # per row: {"item_id", "title"?, "categories"?}
    item_popularity: np.ndarray  # (n_items,) int64
    interactions: sp.csr_matrix  # (n_users, n_items), for exclude_seen
    indexes: Mapping[str, VectorIndex]  # "{side}/{model}/{metric}"
    recommend_pairs: Mapping[tuple[str, str], RecommendPair]  # (model, metric)
    models: tuple[str, ...]
    metrics: tuple[str, ...]

    def index(self, side: Side, model: str, metric: str) -> VectorIndex:
        try:
            return self.indexes[f"{side}/{model}/{metric}"]
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
        with np.load(self.path / "svd.npz") as z:
            return z["s"], z["V"]


@dataclass(frozen=True)
class LoadOptions:
    """Which index of a manifest entry to serve; see Settings.search_mode and friends."""

    search_mode: Literal["auto", "exact"] = "auto"
    min_hnsw_recall: float = 0.95
    hnsw_ef_search: int | None = None


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
    unlisted = _referenced_files(manifest) - set(manifest["files"])
    if unlisted:  # verify_version only checks the files listed: serve nothing it did not check
        raise ArtifactError(f"{name}: {', '.join(sorted(unlisted))} is not among the manifest's checksummed files")
    counts = manifest["counts"]
    user_ids = tuple(json.loads((version_dir / "users.json").read_text(encoding="utf-8")))
    items = json.loads((version_dir / "items.json").read_text(encoding="utf-8"))
    item_ids = tuple(str(it["id"]) for it in items)
    if len(user_ids) != counts["users"] or len(item_ids) != counts["items"]:
        raise ArtifactError(f"{name}: {len(user_ids)} users / {len(item_ids)} items in the id files, manifest counts {counts}")
    item_meta = tuple(MappingProxyType(_item_meta(it)) for it in items)
    interactions = sp.load_npz(version_dir / "interactions.npz").tocsr()
    if interactions.shape != (len(user_ids), len(item_ids)):
        raise ArtifactError(f"{name}: interactions.npz is {interactions.shape}, expected {(len(user_ids), len(item_ids))}")
    popularity = np.load(version_dir / "item_popularity.npy")

    files: dict[str, VectorIndex] = {}  # one load per file: the denoising variants share projected indexes

    def index_of(entry: Mapping[str, Any], rows: int) -> VectorIndex:
        idx = _open_index(version_dir, entry, options, files)
        if idx.rows != rows or idx.dim != entry.get("dim", idx.dim):
            raise ArtifactError(f"{name}: {entry['file']} holds {idx.rows} x {idx.dim}, expected {rows} x {entry.get('dim')}")
        if entry.get("neighbours") and idx.neighbours is None:
            idx = files[idx.file] = replace(idx, neighbours=_open_neighbours(version_dir, entry["neighbours"], idx.rows))
        return idx

    side_rows = {"items": len(item_ids), "users": len(user_ids)}
    indexes = {key: index_of(entry, side_rows[key.split("/", 1)[0]]) for key, entry in manifest["indexes"].items()}
    pairs: dict[tuple[str, str], RecommendPair] = {}
    arrays: dict[str, np.ndarray] = {}
    for model, by_metric in manifest.get("recommend", {}).items():
        for metric, entry in by_metric.items():
            item_index = index_of(entry["items"], len(item_ids))
            if "query_index" in entry:
                queries = indexes[entry["query_index"]].vectors
            else:
                rel = entry["query_file"]
                if rel not in arrays:
                    arrays[rel] = np.load(version_dir / rel, mmap_mode="r")
                queries = arrays[rel]
            if queries.shape != (len(user_ids), item_index.dim) or queries.dtype != np.float32:
                raise ArtifactError(f"{name}: recommend {model}/{metric} queries are {queries.shape} {queries.dtype}")
            if "query_file" in entry and not _all_finite(queries):
                raise ArtifactError(f"{name}: {entry['query_file']} holds non-finite values")
            pairs[(model, metric)] = RecommendPair(queries=queries, items=item_index)
    models = tuple(manifest["models"])
    metrics = tuple(manifest.get("metrics", sorted({k.rsplit("/", 1)[1] for k in indexes})))
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
        models=models,
        metrics=metrics,
    )


def _referenced_files(manifest: Mapping[str, Any]) -> set[str]:
    """Every file `_load` opens (or Version.load_svd reads later), as paths relative to the version folder."""
    files = {"users.json", "items.json", "interactions.npz", "item_popularity.npy", "svd.npz"}
    entries = list(manifest["indexes"].values())
    for by_metric in manifest.get("recommend", {}).values():
        for entry in by_metric.values():
            entries.append(entry["items"])
            if "query_file" in entry:
                files.add(entry["query_file"])
    for entry in entries:
        files.add(entry["file"])
        if entry.get("hnsw"):
            files.add(entry["hnsw"]["file"])
        if entry.get("neighbours"):
            files.update((entry["neighbours"]["ids"], entry["neighbours"]["scores"]))
    return files


def _item_meta(item: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"item_id": str(item["id"])}
    if item.get("title") is not None:
        meta["title"] = item["title"]
    if item.get("categories") is not None:
        meta["categories"] = list(item["categories"])
    return meta


def _open_index(version_dir: Path, entry: Mapping[str, Any], options: LoadOptions, cache: dict[str, VectorIndex]) -> VectorIndex:
    """The HNSW twin when allowed and accurate enough, else the flat index; memory-mapped, loaded once per file."""
    hnsw = entry.get("hnsw")
    use_hnsw = (
        options.search_mode == "auto" and hnsw is not None and float(hnsw.get("recall_at_10", 0.0)) >= options.min_hnsw_recall
    )
    rel = hnsw["file"] if use_hnsw else entry["file"]
    if rel in cache:
        return cache[rel]
    index = read_index(version_dir / rel, mmap=True)
    if use_hnsw:
        if not isinstance(index, faiss.IndexHNSW):
            raise ArtifactError(f"{version_dir.name}: {rel} is a {type(index).__name__}, expected an HNSW index")
        ef = options.hnsw_ef_search or int(hnsw.get("ef_search", index.hnsw.efSearch))
        index.hnsw.efSearch = ef
        storage = faiss.downcast_index(index.storage)
    else:
        ef = None
        storage = index
    if not isinstance(storage, faiss.IndexFlat) or storage.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError(f"{version_dir.name}: {rel} is not an inner-product index over flat float32 vectors")
    raw = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * storage.d).reshape(storage.ntotal, storage.d)
    vectors = np.asarray(_Pinned(raw, index))
    if not _all_finite(vectors):  # checked once here, so no request can produce a NaN score
        raise ArtifactError(f"{version_dir.name}: {rel} holds non-finite values")
    loaded = VectorIndex(
        file=rel,
        kind="hnsw" if use_hnsw else "flat",
        recall_at_10=float(hnsw["recall_at_10"]) if use_hnsw else None,
        ef_search=ef,
        searcher=index,
        exact=_Owned(storage, index) if use_hnsw else index,
        vectors=vectors,
    )
    cache[rel] = loaded
    return loaded


def _open_neighbours(version_dir: Path, entry: Mapping[str, Any], rows: int) -> NeighbourLists:
    """Memory-map a pair of neighbour-list files, checked once here so a lookup can never go out of range."""
    ids = np.load(version_dir / entry["ids"], mmap_mode="r")
    scores = np.load(version_dir / entry["scores"], mmap_mode="r")
    n = int(entry["n"])
    if ids.shape != (rows, n) or scores.shape != (rows, n) or ids.dtype != np.int32 or scores.dtype != np.float32:
        raise ArtifactError(
            f"{version_dir.name}: {entry['ids']} / {entry['scores']} are {ids.shape} {ids.dtype} / {scores.shape} "
            f"{scores.dtype}, expected ({rows}, {n}) int32 / float32"
        )
    chunk = 1 << 14
    for i in range(0, rows, chunk):
        block = ids[i : i + chunk]
        if block.size and (block.min() < 0 or block.max() >= rows):
            raise ArtifactError(f"{version_dir.name}: {entry['ids']} holds row numbers outside 0..{rows - 1}")
    if not _all_finite(scores):
        raise ArtifactError(f"{version_dir.name}: {entry['scores']} holds non-finite values")
    return NeighbourLists(ids=ids, scores=scores, complete=bool(entry.get("complete", False)) and n == rows - 1)


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
    on their own (a bare rev_swig_ptr view would dangle once the index is freed).
    """

    def __init__(self, view: np.ndarray, owner: faiss.Index) -> None:
        interface = dict(view.__array_interface__)
        interface["data"] = (interface["data"][0], True)
        self.__array_interface__ = interface
        self._owner = owner


@dataclass(frozen=True)
class Refusal:
    """A version that was not served, and why."""

    version: str | None
    reason: str
    at: float
    trigger: str


@dataclass
class ReloadResult:
    previous: str | None
    current: str | None
    changed: bool
    refusal: Refusal | None = None


@dataclass
class VersionHolder:
    """The live version, replaced by one reference assignment (atomic under the GIL).

    Read `holder.current` (or `require()`) once per request and use that object throughout: a
    concurrent swap does not affect it, and the old version is freed when its last request ends.
    """

    _current: Version | None = None
    last_refusal: Refusal | None = None
    not_loaded_reason: str = "starting: no version loaded yet"
    reloads: int = 0
    refused: int = 0

    @property
    def current(self) -> Version | None:
        return self._current

    def require(self) -> Version:
        v = self._current
        if v is None:
            raise NotLoaded(self.not_loaded_reason)
        return v

    def swap(self, version: Version) -> Version | None:
        previous, self._current = self._current, version
        self.reloads += 1
        return previous


@dataclass
class ReloadEvents:
    """Hooks the metrics module attaches to (kept out of this module so it stays free of Prometheus)."""

    loaded: Callable[[Version, Version | None, str], None] = lambda new, old, trigger: None
    refused: Callable[[Refusal], None] = lambda refusal: None


@dataclass
class Reloader:
    """Checks CURRENT and swaps in a new version; one check at a time (poller and admin share a lock)."""

    holder: VersionHolder
    store: ArtifactStore
    options: LoadOptions = LoadOptions()
    events: ReloadEvents = field(default_factory=ReloadEvents)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def check(self, trigger: str, force: bool = False) -> ReloadResult:
        """Load the version CURRENT names if it differs from the live one (blocking: call from a thread).

        A version refused before is not retried by the poller (verifying costs a full read of the
        version); `force=True` (the admin endpoint) retries it.
        """
        live = self.holder.current
        live_name = live.name if live else None
        try:
            wanted = self.store.current_version()
        except OSError as e:
            return self._refuse(None, f"cannot read {self.store.current_file}: {e}", trigger, live_name)
        if wanted is None:
            if live is None:
                self.holder.not_loaded_reason = f"no version published: {self.store.current_file} is missing or empty"
            return ReloadResult(live_name, live_name, False)
        if wanted == live_name:
            return ReloadResult(live_name, live_name, False)
        last = self.holder.last_refusal
        if not force and last is not None and last.version == wanted:
            return ReloadResult(live_name, live_name, False, last)
        t0 = time.perf_counter()
        try:
            version = load_version(self.store.version_dir(wanted), self.options)
        except (ArtifactError, OSError) as e:  # OSError: e.g. retention removed the folder while we read it
            return self._refuse(wanted, str(e), trigger, live_name)
        previous = self.holder.swap(version)
        log.info(
            "serving artifact version %s (was %s; %s, loaded in %.2fs)", wanted, live_name, trigger, time.perf_counter() - t0
        )
        self.events.loaded(version, previous, trigger)
        return ReloadResult(live_name, wanted, True)

    def _refuse(self, version: str | None, reason: str, trigger: str, live_name: str | None) -> ReloadResult:
        refusal = Refusal(version=version, reason=reason, at=time.time(), trigger=trigger)
        self.holder.last_refusal = refusal
        self.holder.refused += 1
        if live_name is None:
            self.holder.not_loaded_reason = f"version {version} refused: {reason}"
        log.warning("refused artifact version %s (%s): %s; still serving %s", version, trigger, reason, live_name)
        self.events.refused(refusal)
        return ReloadResult(live_name, live_name, False, refusal)

    async def check_async(self, trigger: str, force: bool = False) -> ReloadResult:
        """`check` in a worker thread, so verifying a large version never blocks the event loop."""
        async with self._lock:
            return await asyncio.to_thread(self.check, trigger, force)

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_async("poll")
            except Exception:  # a poller that dies silently would stop reloads for good
                log.exception("reload check failed")
