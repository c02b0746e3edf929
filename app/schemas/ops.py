"""Response models of /models, /healthz, /readyz and /admin/reload.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import (
    DEFAULT_K,
    DEFAULT_METRIC,
    DEFAULT_MODEL,
    VERSION,
)
from models.artifact.manifest import METRICS


class IndexInfo(BaseModel):
    rows: int = Field(description="Vectors in the index.", examples=[1000])
    dim: int = Field(description="Vector dimension.", examples=[50])
    zero_rows: int = Field(description="All-zero vectors (their scores are 0).", examples=[0])
    served_by: Literal["flat", "hnsw", "ivf", "milvus"] = Field(
        description="flat: exact exhaustive search; hnsw: approximate graph search (opt-in at build time); ivf: "
        "approximate inverted-file search (the build's choice for large indexes, see `serving`); milvus: the "
        "version's Milvus collection (VECTOR_BACKEND=milvus; its recall@10 measured when it was published).",
        examples=["flat"],
    )
    backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="What answers this index's searches: FAISS in the worker, or Milvus.", examples=["faiss"]
    )
    collection: str | None = Field(
        None, description="milvus: the collection searched (one per version and index).", examples=[None]
    )
    recall_at_10: float | None = Field(
        None,
        description="Recall@10 of the approximate index against exact search, measured by the build (the lowest over "
        "its query sets for IVF).",
        examples=[None],
    )
    ef_search: int | None = Field(None, description="HNSW efSearch used.", examples=[None])
    nprobe: int | None = Field(None, description="IVF: inverted lists scanned per query.", examples=[None])
    serving: str | None = Field(
        None,
        description="Why the build chose the serving structure it did (row count, measured recall); null for "
        "versions built before the choice existed or with --exact-only.",
        examples=["exact: 1000 rows <= exact_max_rows 10000"],
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")  # each source adds its own parameters (implicit's, an import's path)
    source: Literal["closed-form", "implicit", "trained", "imported"] = Field(
        "closed-form",
        description="closed-form: the paper's objectives solved from the SVD (of X, or of a pre-learning transform of X "
        "for the `ips-*` and `standardized-*` models, whose `preprocess` says how); implicit: ALS or BPR trained by the "
        "job with implicit; trained: `cosine-mf`, embeddings normalised inside the objective, fitted by the job with "
        "scipy's L-BFGS (its loss and iterations in the model's entry); imported: factors trained elsewhere "
        "(--import-factors).",
        examples=["closed-form"],
    )
    users: str = Field(
        "P = X A",
        description="Where the user vectors come from: the model's user factors, or P = X Q (a user is the sum of the item "
        "vectors it consumed) for closed forms and imports without user factors.",
        examples=["P = X A"],
    )
    k: int | None = Field(None, description="Embedding dimension.", examples=[50])
    objective: Literal["denoising", "weight-decay"] | None = Field(
        None, description="Closed forms: which of the paper's two objectives.", examples=["denoising"]
    )
    d_variant: str | None = Field(
        None, description="The diagonal rescaling of the denoising solution (null otherwise).", examples=["symmetric"]
    )
    lambda_: float | None = Field(
        None, alias="lambda", description="Closed forms: regularisation strength of the objective.", examples=[10000.0]
    )
    surviving_dims: int | None = Field(None, description="Closed forms: dimensions not shrunk to zero.", examples=[50])
    algorithm: str | None = Field(None, description="implicit: als or bpr.", examples=[None])
    gauge: str | None = Field(
        None, description="URL of the model's gauge probe, when the build ran it.", examples=["/models/als/gauge"]
    )
    zero_items: int = Field(description="Items with an all-zero embedding.", examples=[0])
    zero_users: int = Field(description="Users with an all-zero embedding.", examples=[0])
    indexes: dict[str, IndexInfo] = Field(description='Per "{side}/{metric}" (side items|users), and "recommend/{metric}".')


class ModelsResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    artifact_version: str = VERSION
    created_at: str = Field(description="When the offline job built this version (UTC).", examples=["2025-01-01T12:00:00Z"])
    loaded_at: float = Field(description="When this worker loaded it (unix time).", examples=[1735732800.0])
    defaults: dict[str, Any] = Field(
        description="Defaults of the query parameters.",
        examples=[{"model": DEFAULT_MODEL, "metric": DEFAULT_METRIC, "k": DEFAULT_K}],
    )
    metrics: list[str] = Field(description="Metrics served.", examples=[list(METRICS)])
    models: dict[str, ModelInfo] = Field(
        description="Every model of the version with its source, parameters and indexes: the names the `model` parameter "
        "of every endpoint accepts for this version."
    )
    evaluation: str | None = Field(
        None, description="URL of the held-out evaluation, when the build ran it.", examples=["/evaluation"]
    )
    counts: dict[str, int] = Field(
        description="users, items, interactions, k.", examples=[{"users": 20000, "items": 1000, "interactions": 123456, "k": 50}]
    )
    params: dict[str, Any] = Field(description="Build parameters (k, lambdas, seed, SVD and HNSW settings).")
    svd: dict[str, Any] = Field(description="SVD method and accuracy (relative residual, energy captured).")
    dataset: dict[str, Any] = Field(description="Where the data came from, and its fingerprint.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = Field(description="Always ok: the process answers.", examples=["ok"])
    artifact_version: str | None = Field(
        description="Version this worker serves (null before the first load).", examples=["20250101T120000Z-1a2b3c4d"]
    )
    pid: int = Field(description="Worker process id.", examples=[4242])


class RefusalInfo(BaseModel):
    version: str | None = Field(description="The refused version.", examples=["20250102T120000Z-5e6f7a8b"])
    reason: str = Field(
        description="Why it was refused.", examples=["20250102T120000Z-5e6f7a8b: file indexes/x.faiss fails its sha256 checksum"]
    )
    at: float = Field(description="When (unix time).", examples=[1735819200.0])
    trigger: str = Field(description="startup, poll or admin.", examples=["poll"])


class FallbackInfo(BaseModel):
    served: str = Field(description="The older version this worker serves instead.", examples=["20250101T120000Z-1a2b3c4d"])
    current: str = Field(description="The version CURRENT names, refused.", examples=["20250102T120000Z-5e6f7a8b"])
    reason: str = Field(
        description="Why CURRENT's version was refused.",
        examples=["20250102T120000Z-5e6f7a8b: file indexes/x.faiss fails its sha256 checksum"],
    )
    at: float = Field(description="When this worker fell back (unix time).", examples=[1735819200.0])


class VectorBackendInfo(BaseModel):
    name: Literal["faiss", "milvus"] = Field(description="VECTOR_BACKEND.", examples=["faiss"])
    uri: str | None = Field(None, description="milvus: MILVUS_URI.", examples=[None])
    reachable: bool | None = Field(None, description="milvus: it answered a call within MILVUS_TIMEOUT.", examples=[None])
    problem: str | None = Field(None, description="milvus: why it did not.", examples=[None])


class ReadyResponse(BaseModel):
    status: Literal["ready"] = Field(description="A verified version is loaded and served.", examples=["ready"])
    artifact_version: str = VERSION
    loaded_at: float = Field(description="When this worker loaded it (unix time).", examples=[1735732800.0])
    last_refusal: RefusalInfo | None = Field(
        description="The most recent version this worker refused, if any (the served one stayed)."
    )
    fallback: FallbackInfo | None = Field(
        None,
        description="Set while this worker serves an older version because the one CURRENT names was refused when it "
        "started: the newest older version that verifies (what workers that loaded before CURRENT went bad still serve).",
    )
    pid: int = Field(description="Worker process id.", examples=[4242])
    vector_backend: VectorBackendInfo | None = Field(
        None, description="What serves the searches (faiss, or milvus and whether it answers)."
    )


class WorkerReload(BaseModel):
    pid: int = Field(description="Worker process id.", examples=[4242])
    artifact_version: str | None = Field(
        description="The version this worker serves after the reload.", examples=["20250102T120000Z-5e6f7a8b"]
    )
    reloaded: bool = Field(
        description="Whether this worker had checked CURRENT for this call when it returned (false: not within "
        "RELOAD_WAIT_TIMEOUT; it still will, at once when it can).",
        examples=[True],
    )
    refused_version: str | None = Field(description="The most recent version this worker refused, if any.", examples=[None])
    refusal: str | None = Field(description="Why it was refused.", examples=[None])
    fallback: str | None = Field(
        description="The older version this worker serves because the one CURRENT names was refused when it started.",
        examples=[None],
    )


class ReloadResponse(BaseModel):
    artifact_version: str | None = Field(description="Version served after the reload.", examples=["20250102T120000Z-5e6f7a8b"])
    previous_version: str | None = Field(description="Version served before.", examples=["20250101T120000Z-1a2b3c4d"])
    changed: bool = Field(description="Whether a new version was swapped in.", examples=[True])
    pid: int = Field(
        description="The worker that answered (its own reload is previous_version -> artifact_version).", examples=[4242]
    )
    workers: list[WorkerReload] = Field(
        description="Every live worker of the server (the answering one included), by pid, after the reload."
    )
    all_workers_reloaded: bool = Field(
        description="Whether every live worker had checked CURRENT before the call returned.", examples=[True]
    )
    workers_expected: int = Field(
        description="The WORKERS setting: how many workers the server runs (one being restarted may be missing from "
        "`workers`; it loads CURRENT when it starts).",
        examples=[2],
    )
