"""The artifact contract between the offline job (writer) and the API (reader), written once.

A version folder `versions/<version>/` holds `manifest.json` and the files it lists with their
sha256 and size. Every file name, the index key format and the manifest's typed entries are defined
here; neither side spells them anywhere else.

    manifest.json            MANIFEST: this document (schema SCHEMA_VERSION)
    users.json               USERS: external user ids in row order
    items.json               ITEMS: [{"id", "title"?, "categories"?}] in row order
    item_popularity.npy      ITEM_POPULARITY: (n_items,) int64, users with a positive entry per item
    interactions.npz         INTERACTIONS: X (n_users, n_items) CSR, for exclude_seen
    svd.npz                  SVD: s (k,), V (n_items, k) of the truncated SVD
    summary.json             SUMMARY: metric agreement over the catalogue (diagnostics)
    gauge.json               GAUGE: {model: gauge probe} (models.diagnostics.gauge), when "gauge" names it
    evaluation.json          EVALUATION: held-out evaluation per model x metric, when "evaluation" names it
    figures/*.png            FIGURES_DIR: the paper's heatmaps (diagnostics, simulation only), HEATMAP_GRID
    indexes/<stem>.faiss     index_file(stem): an exact inner-product index
    indexes/<stem>.hnsw.faiss                       hnsw_file(stem): its HNSW twin (opt-in)
    indexes/<stem>.ivf.faiss                        ivf_file(stem): its IVF-Flat twin (large indexes)
    indexes/<stem>.neighbours-{ids,scores}.npy      neighbour_files(stem): its exact top-N lists
    indexes/recommend-<group>-<metric>-users.npy    recommend_query_file(group, metric)

Manifest keys read by the API: "version", "files", "counts", "models" ({name: info}, in serving
order; info["source"] is "closed-form", "implicit", "trained" or "imported"), "metrics", "indexes"
({str(IndexKey): IndexEntry}), "recommend" ({model: {metric: RecommendEntry}}), "diagnostics",
"gauge" (GAUGE or null), "evaluation" (EVALUATION or null) and "milvus" ({index file: MilvusEntry}, when the
version was also loaded into Milvus). Versions written before "gauge", "evaluation" and "milvus" existed lack
those keys and load as before.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
USERS = "users.json"
ITEMS = "items.json"
ITEM_POPULARITY = "item_popularity.npy"
INTERACTIONS = "interactions.npz"
SVD = "svd.npz"
SUMMARY = "summary.json"
GAUGE = "gauge.json"
EVALUATION = "evaluation.json"
FIGURES_DIR = "figures"
HEATMAP_GRID = f"{FIGURES_DIR}/heatmaps.png"
INDEXES_DIR = "indexes"

# Under the artifacts root (models.artifact.store.ArtifactStore).
CURRENT = "CURRENT"
VERSIONS_DIR = "versions"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"
CURRENT_TMP_PREFIX = ".CURRENT."

VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}(-[0-9]+)?$")

SIDES: tuple[str, ...] = ("items", "users")
METRICS: tuple[str, ...] = ("dot", "cosine", "projected", "projected-centered", "whitened")
# Metrics that depend on a model only through Xhat = P Q^T (gauge-invariant, models.fit.metric_vectors): their
# files are written once per projected group and shared by its models.
SHARED_METRICS: tuple[str, ...] = ("projected", "projected-centered", "whitened")
# Metrics with a user -> item score (/recommend); whitened has none (models.fit.metric_vectors).
RECOMMEND_METRICS: tuple[str, ...] = ("dot", "cosine", "projected", "projected-centered")
DENOISING_GROUP = "denoising"  # shared-metric vectors are identical for every denoising D-variant
REQUIRED_KEYS = ("version", "files", "indexes", "models", "counts")


@dataclass(frozen=True, order=True)
class IndexKey:
    """Which index serves a side, model and metric; "items/denoising-symmetric/cosine" in the manifest."""

    side: str
    model: str
    metric: str

    def __str__(self) -> str:
        return f"{self.side}/{self.model}/{self.metric}"

    @classmethod
    def parse(cls, key: str) -> IndexKey:
        """The key of "side/model/metric"; ValueError names a key of any other shape."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] not in SIDES or not all(parts):
            raise ValueError(f"index key {key!r} is not side/model/metric with side one of {', '.join(SIDES)}")
        return cls(*parts)


def index_file(stem: str) -> str:
    return f"{INDEXES_DIR}/{stem}.faiss"


def hnsw_file(stem: str) -> str:
    return f"{INDEXES_DIR}/{stem}.hnsw.faiss"


def ivf_file(stem: str) -> str:
    return f"{INDEXES_DIR}/{stem}.ivf.faiss"


def neighbour_files(stem: str) -> tuple[str, str]:
    """(ids, scores) files of an index's exact top-N lists."""
    return f"{INDEXES_DIR}/{stem}.neighbours-ids.npy", f"{INDEXES_DIR}/{stem}.neighbours-scores.npy"


def recommend_query_file(group: str, metric: str = "projected") -> str:
    return f"{INDEXES_DIR}/recommend-{group}-{metric}-users.npy"


def index_stem(side: str, model_or_group: str, metric: str) -> str:
    return f"{side}-{model_or_group}-{metric}"


@dataclass(frozen=True)
class HnswEntry:
    """An exact index's HNSW twin and the recall@10 measured against it at build time."""

    file: str
    M: int
    ef_construction: int
    ef_search: int
    recall_at_10: float

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "recall_at_10": self.recall_at_10,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HnswEntry:
        return cls(
            file=str(d["file"]),
            M=int(d.get("M", 0)),
            ef_construction=int(d.get("ef_construction", 0)),
            ef_search=int(d["ef_search"]) if d.get("ef_search") is not None else 0,
            recall_at_10=float(d.get("recall_at_10", 0.0)),
        )


@dataclass(frozen=True)
class IvfEntry:
    """An exact index's IVF-Flat twin (models.indexes.ivf): its probe count and the recall@10 measured at it.

    augmented: the twin stores [x_i, sqrt(R^2 - |x_i|^2)] (dim + 1 columns), so queries get a 0 appended.
    recall_at_10: the lowest of recall_by_queries (the catalogue's own rows; /recommend's users for an items
    index that also answers /recommend), the figure the API's MIN_HNSW_RECALL gate compares.
    """

    file: str
    nlist: int
    nprobe: int
    augmented: bool
    recall_at_10: float
    recall_by_queries: Mapping[str, float]
    scanned: float

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "augmented": self.augmented,
            "recall_at_10": self.recall_at_10,
            "recall_by_queries": dict(self.recall_by_queries),
            "scanned": self.scanned,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IvfEntry:
        return cls(
            file=str(d["file"]),
            nlist=int(d["nlist"]),
            nprobe=int(d["nprobe"]),
            augmented=bool(d["augmented"]),
            recall_at_10=float(d["recall_at_10"]),
            recall_by_queries={str(k): float(v) for k, v in d.get("recall_by_queries", {}).items()},
            scanned=float(d.get("scanned", 0.0)),
        )


@dataclass(frozen=True)
class NeighbourEntry:
    """Exact top-n lists of an index: ids (rows, n) int32, scores (rows, n) float32; complete: n = rows - 1."""

    ids: str
    scores: str
    n: int
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return {"ids": self.ids, "scores": self.scores, "n": self.n, "complete": self.complete}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NeighbourEntry:
        return cls(ids=str(d["ids"]), scores=str(d["scores"]), n=int(d["n"]), complete=bool(d.get("complete", False)))


@dataclass(frozen=True)
class IndexEntry:
    """One exact inner-product index file over (rows, dim) float32 vectors, with its optional companions.

    serving: why the build chose what serves it (exact, or the IVF twin), in words; None in versions built
    before the choice existed.
    """

    file: str
    rows: int
    dim: int
    zero_rows: int
    type: str = "flat-ip"
    neighbours: NeighbourEntry | None = None
    hnsw: HnswEntry | None = None
    ivf: IvfEntry | None = None
    serving: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "type": self.type,
            "rows": self.rows,
            "dim": self.dim,
            "zero_rows": self.zero_rows,
        }
        if self.neighbours is not None:
            out["neighbours"] = self.neighbours.to_json()
        if self.hnsw is not None:
            out["hnsw"] = self.hnsw.to_json()
        if self.ivf is not None:
            out["ivf"] = self.ivf.to_json()
        if self.serving is not None:
            out["serving"] = self.serving
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IndexEntry:
        return cls(
            file=str(d["file"]),
            type=str(d.get("type", "flat-ip")),
            rows=int(d.get("rows", -1)),
            dim=int(d.get("dim", -1)),
            zero_rows=int(d.get("zero_rows", 0)),
            neighbours=NeighbourEntry.from_json(d["neighbours"]) if d.get("neighbours") else None,
            hnsw=HnswEntry.from_json(d["hnsw"]) if d.get("hnsw") else None,
            ivf=IvfEntry.from_json(d["ivf"]) if d.get("ivf") else None,
            serving=str(d["serving"]) if d.get("serving") is not None else None,
        )

    def files(self) -> set[str]:
        out = {self.file}
        if self.hnsw is not None:
            out.add(self.hnsw.file)
        if self.ivf is not None:
            out.add(self.ivf.file)
        if self.neighbours is not None:
            out.update((self.neighbours.ids, self.neighbours.scores))
        return out


MILVUS_PREFIX = "simserve"


def _milvus_name(text: str) -> str:
    """Milvus names hold letters, digits and underscores only."""
    return re.sub(r"[^0-9A-Za-z_]", "_", text)


def _milvus_stem(file: str) -> str:
    """ "indexes/items-m-cosine.faiss" -> "items-m-cosine"."""
    return file.removeprefix(f"{INDEXES_DIR}/").removesuffix(".faiss")


def milvus_collection(version: str, file: str) -> str:
    """The Milvus collection of one index file of one version: "simserve_<version>_<stem>"."""
    return _milvus_name(f"{MILVUS_PREFIX}_{version}_{_milvus_stem(file)}")


def milvus_alias(file: str) -> str:
    """The alias that names the live version's collection of an index file: "simserve_<stem>"."""
    return _milvus_name(f"{MILVUS_PREFIX}_{_milvus_stem(file)}")


def milvus_version_of(collection: str) -> str | None:
    """The version whose collection this is (a name made by milvus_collection), or None."""
    m = re.match(rf"^{MILVUS_PREFIX}_([0-9]{{8}}T[0-9]{{6}}Z_[0-9a-f]{{8}}(?:_[0-9]+)?)_", collection)
    return m.group(1).replace("_", "-") if m else None


@dataclass(frozen=True)
class MilvusEntry:
    """One index file's vectors as a Milvus collection (primary key "row", vector field "vec", metric IP).

    index_type: the Milvus index built on it (FLAT: exact; HNSW with its params), recall_at_10 measured against
    the exact FAISS search of the same vectors when the version was published.
    """

    collection: str
    alias: str
    rows: int
    dim: int
    index_type: str
    params: Mapping[str, Any]
    search_params: Mapping[str, Any]
    recall_at_10: float

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "alias": self.alias,
            "rows": self.rows,
            "dim": self.dim,
            "index_type": self.index_type,
            "params": dict(self.params),
            "search_params": dict(self.search_params),
            "recall_at_10": self.recall_at_10,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MilvusEntry:
        return cls(
            collection=str(d["collection"]),
            alias=str(d["alias"]),
            rows=int(d["rows"]),
            dim=int(d["dim"]),
            index_type=str(d["index_type"]),
            params=dict(d.get("params", {})),
            search_params=dict(d.get("search_params", {})),
            recall_at_10=float(d["recall_at_10"]),
        )


def milvus_entries(manifest: Mapping[str, Any]) -> dict[str, MilvusEntry]:
    """The manifest's "milvus" ({index file: entry}); {} for a version published without Milvus."""
    return {file: MilvusEntry.from_json(e) for file, e in (manifest.get("milvus") or {}).items()}


@dataclass(frozen=True)
class RecommendEntry:
    """user -> item search of one model and metric: queries are either a users index's vectors
    (`query_index`) or a stored (n_users, dim) float32 array (`query_file`), against `items`."""

    items: IndexEntry
    query_index: IndexKey | None = None
    query_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.query_index is not None:
            return {"query_index": str(self.query_index), "items": self.items.to_json()}
        return {"query_file": self.query_file, "items": self.items.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RecommendEntry:
        items = IndexEntry.from_json(d["items"])
        if "query_index" in d:
            return cls(items=items, query_index=IndexKey.parse(d["query_index"]))
        return cls(items=items, query_file=str(d["query_file"]))


def index_entries(manifest: Mapping[str, Any]) -> dict[IndexKey, IndexEntry]:
    """The manifest's "indexes" as typed entries, in manifest order."""
    return {IndexKey.parse(key): IndexEntry.from_json(entry) for key, entry in manifest["indexes"].items()}


def recommend_entries(manifest: Mapping[str, Any]) -> dict[tuple[str, str], RecommendEntry]:
    """The manifest's "recommend" as {(model, metric): RecommendEntry}."""
    return {
        (model, metric): RecommendEntry.from_json(entry)
        for model, by_metric in manifest.get("recommend", {}).items()
        for metric, entry in by_metric.items()
    }


def manifest_metrics(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics a version serves: its "metrics" list, or those its index keys name."""
    if "metrics" in manifest:
        return tuple(manifest["metrics"])
    return tuple(sorted({IndexKey.parse(k).metric for k in manifest["indexes"]}))


def referenced_files(manifest: Mapping[str, Any]) -> set[str]:
    """Every file the API opens for a version (at load or later), relative to the version folder."""
    files = {USERS, ITEMS, INTERACTIONS, ITEM_POPULARITY, SVD}
    files |= {str(manifest[key]) for key in ("gauge", "evaluation") if manifest.get(key)}
    for entry in index_entries(manifest).values():
        files |= entry.files()
    for rec in recommend_entries(manifest).values():
        files |= rec.items.files()
        if rec.query_file is not None:
            files.add(rec.query_file)
    return files


def version_name(fingerprint: str, params: Mapping[str, Any], taken: Iterable[str] = ()) -> str:
    """A new version's name: "<UTC time>-<8 hex of sha256(fingerprint + params)>", "-N" appended
    while the name is in `taken`. Names sort by build time (retention keeps the newest)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    digest = hashlib.sha256((fingerprint + json.dumps(params, sort_keys=True, default=str)).encode()).hexdigest()[:8]
    taken = set(taken)
    version, n = f"{stamp}-{digest}", 1
    while version in taken:
        version, n = f"{stamp}-{digest}-{n}", n + 1
    return version
