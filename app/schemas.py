"""Query-parameter models and response models: the API contract as OpenAPI shows it.

Query models are validated on every request (app.routing.QueryModelRoute); response models are
documentation only (endpoints build their JSON directly, without a per-response validation pass).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.settings import K_LIMIT
from models.factorization import MODELS
from models.indexes import METRICS

ModelName = Literal[MODELS]  # type: ignore[valid-type]
MetricName = Literal[METRICS]  # type: ignore[valid-type]
DEFAULT_MODEL = "denoising-symmetric"
DEFAULT_METRIC = "projected"
DEFAULT_K = 10

MODEL_DESCRIPTION = (
    "Embedding model. `denoising-*`: objective 1 (product-regularised) under four diagonal rescalings D of the "
    "same solution (symmetric, item-orthonormal, user-orthonormal, sigma-matched); `weight-decay`: objective 2 "
    "(factor-regularised MF). Default `denoising-symmetric`."
)
METRIC_DESCRIPTION = (
    "Similarity. `dot`: inner product of the raw embeddings; `cosine`: cosine of the raw embeddings (depends on D); "
    "`projected`: cosine in the original item/user space (rows/columns of X A B^T), identical for every denoising "
    "variant. Default `projected`."
)
K_DESCRIPTION = f"Number of neighbours to return, 1..{K_LIMIT} (fewer when the catalogue is smaller). Default 10."

_QUERY_CONFIG = ConfigDict(extra="ignore", frozen=True)


class SimilarItemsQuery(BaseModel):
    model_config = _QUERY_CONFIG
    item_id: str = Field(description="External id of the query item (as in the input data).", examples=["i42"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=METRIC_DESCRIPTION, examples=["cosine"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])


class SimilarUsersQuery(BaseModel):
    model_config = _QUERY_CONFIG
    user_id: str = Field(description="External id of the query user (as in the input data).", examples=["u7"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=METRIC_DESCRIPTION, examples=["cosine"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])


class RecommendQuery(BaseModel):
    model_config = _QUERY_CONFIG
    user_id: str = Field(description="External id of the user to recommend items to.", examples=["u7"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(
        DEFAULT_METRIC,
        examples=["dot"],
        description="User -> item score. `dot`: the model's prediction <P_u, B_i> = Xhat[u, i]; `cosine`: cos(P_u, B_i); "
        "`projected`: Xhat[u, i] / (||Xhat_u|| ||Xhat_:,i||), the prediction normalised in the original space. "
        "Default `projected`.",
    )
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])
    exclude_seen: bool = Field(
        True, description="Leave out the items the user already interacted with. Default true.", examples=[True]
    )


class ItemNeighbor(BaseModel):
    item_id: str = Field(description="External item id.", examples=["i17"])
    score: float = Field(description="Similarity under the requested model and metric (0 for zero vectors).", examples=[0.9731])
    title: str | None = Field(None, description="Item title, when the dataset has one.", examples=["item 17 (cluster 2)"])
    categories: list[str] | None = Field(
        None, description="Item categories, when the dataset has them.", examples=[["cluster-2"]]
    )


class UserNeighbor(BaseModel):
    user_id: str = Field(description="External user id.", examples=["u1234"])
    score: float = Field(description="Similarity under the requested model and metric (0 for zero vectors).", examples=[0.9412])


_VERSION = Field(description="The artifact version that answered this request.", examples=["20250101T120000Z-1a2b3c4d"])
_MODEL = Field(description="The model used.", examples=[DEFAULT_MODEL])
_METRIC = Field(description="The metric used.", examples=[DEFAULT_METRIC])
_K = Field(description="The k requested (neighbors has min(k, available) entries).", examples=[DEFAULT_K])

_ITEM_EXAMPLE = {"item_id": "i17", "score": 0.9731, "title": "item 17 (cluster 2)", "categories": ["cluster-2"]}


class SimilarItemsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": "i42",
                    "model": DEFAULT_MODEL,
                    "metric": DEFAULT_METRIC,
                    "k": 1,
                    "artifact_version": "20250101T120000Z-1a2b3c4d",
                    "neighbors": [_ITEM_EXAMPLE],
                }
            ]
        }
    )
    item_id: str = Field(description="The query item.", examples=["i42"])
    model: str = _MODEL
    metric: str = _METRIC
    k: int = _K
    artifact_version: str = _VERSION
    neighbors: list[ItemNeighbor] = Field(description="Most similar items, best first; the query item itself is excluded.")


class SimilarUsersResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u7",
                    "model": DEFAULT_MODEL,
                    "metric": DEFAULT_METRIC,
                    "k": 1,
                    "artifact_version": "20250101T120000Z-1a2b3c4d",
                    "neighbors": [{"user_id": "u1234", "score": 0.9412}],
                }
            ]
        }
    )
    user_id: str = Field(description="The query user.", examples=["u7"])
    model: str = _MODEL
    metric: str = _METRIC
    k: int = _K
    artifact_version: str = _VERSION
    neighbors: list[UserNeighbor] = Field(description="Most similar users, best first; the query user itself is excluded.")


class RecommendResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u7",
                    "model": DEFAULT_MODEL,
                    "metric": DEFAULT_METRIC,
                    "k": 1,
                    "exclude_seen": True,
                    "artifact_version": "20250101T120000Z-1a2b3c4d",
                    "neighbors": [_ITEM_EXAMPLE],
                }
            ]
        }
    )
    user_id: str = Field(description="The user.", examples=["u7"])
    model: str = _MODEL
    metric: str = _METRIC
    k: int = _K
    exclude_seen: bool = Field(description="Whether the user's own items were left out.", examples=[True])
    artifact_version: str = _VERSION
    neighbors: list[ItemNeighbor] = Field(description="Recommended items, best score first.")


class IndexInfo(BaseModel):
    rows: int = Field(description="Vectors in the index.", examples=[1000])
    dim: int = Field(description="Vector dimension.", examples=[50])
    zero_rows: int = Field(description="All-zero vectors (their scores are 0).", examples=[0])
    served_by: Literal["flat", "hnsw"] = Field(
        description="flat: exact exhaustive search; hnsw: approximate graph search.", examples=["flat"]
    )
    recall_at_10: float | None = Field(
        None, description="Measured recall@10 of the HNSW index against exact search.", examples=[None]
    )
    ef_search: int | None = Field(None, description="HNSW efSearch used.", examples=[None])


class ModelInfo(BaseModel):
    objective: Literal["denoising", "weight-decay"] = Field(
        description="Which of the paper's two objectives.", examples=["denoising"]
    )
    d_variant: str | None = Field(
        description="The diagonal rescaling of the denoising solution (null for weight-decay).", examples=["symmetric"]
    )
    lambda_: float = Field(alias="lambda", description="Regularisation strength of the objective.", examples=[10000.0])
    surviving_dims: int = Field(description="Embedding dimensions not shrunk to zero.", examples=[50])
    zero_items: int = Field(description="Items with an all-zero embedding.", examples=[0])
    zero_users: int = Field(description="Users with an all-zero embedding.", examples=[0])
    indexes: dict[str, IndexInfo] = Field(description='Per "{side}/{metric}" (side items|users), and "recommend/{metric}".')


class ModelsResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    artifact_version: str = _VERSION
    created_at: str = Field(description="When the offline job built this version (UTC).", examples=["2025-01-01T12:00:00Z"])
    loaded_at: float = Field(description="When this worker loaded it (unix time).", examples=[1735732800.0])
    defaults: dict[str, Any] = Field(
        description="Defaults of the query parameters.",
        examples=[{"model": DEFAULT_MODEL, "metric": DEFAULT_METRIC, "k": DEFAULT_K}],
    )
    metrics: list[str] = Field(description="Metrics served.", examples=[list(METRICS)])
    models: dict[str, ModelInfo] = Field(description="Every model of the version with its parameters and indexes.")
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


class ReadyResponse(BaseModel):
    status: Literal["ready"] = Field(description="A verified version is loaded and served.", examples=["ready"])
    artifact_version: str = _VERSION
    loaded_at: float = Field(description="When this worker loaded it (unix time).", examples=[1735732800.0])
    last_refusal: RefusalInfo | None = Field(
        description="The most recent version this worker refused, if any (the served one stayed)."
    )
    pid: int = Field(description="Worker process id.", examples=[4242])


class ReloadResponse(BaseModel):
    artifact_version: str | None = Field(description="Version served after the reload.", examples=["20250102T120000Z-5e6f7a8b"])
    previous_version: str | None = Field(description="Version served before.", examples=["20250101T120000Z-1a2b3c4d"])
    changed: bool = Field(description="Whether a new version was swapped in.", examples=[True])
    pid: int = Field(description="The worker that reloaded; other workers follow at their next poll of CURRENT.", examples=[4242])


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/unknown-item",
                    "title": "Unknown item",
                    "status": 404,
                    "detail": "item 'nope' is not in artifact version 20250101T120000Z-1a2b3c4d",
                    "instance": "/similar-items",
                    "artifact_version": "20250101T120000Z-1a2b3c4d",
                    "item_id": "nope",
                }
            ]
        },
    )
    type: str = Field(
        description="Problem type URI reference (/problems/... or about:blank).", examples=["/problems/unknown-item"]
    )
    title: str = Field(description="Short summary of the problem type.", examples=["Unknown item"])
    status: int = Field(description="HTTP status code.", examples=[404])
    detail: str = Field(
        description="What went wrong in this request.",
        examples=["item 'nope' is not in artifact version 20250101T120000Z-1a2b3c4d"],
    )
    instance: str = Field(description="The request path.", examples=["/similar-items"])
    artifact_version: str | None = Field(
        description="Version served when the error happened (null if none).", examples=["20250101T120000Z-1a2b3c4d"]
    )


class ParamError(BaseModel):
    param: str = Field(description="Query parameter name.", examples=["metric"])
    in_: str = Field(alias="in", description="Where the parameter is.", examples=["query"])
    message: str = Field(description="What is wrong.", examples=["Input should be 'dot', 'cosine' or 'projected'"])
    type: str = Field(description="pydantic error type.", examples=["literal_error"])
    input: Any | None = Field(None, description="The value received (absent when missing).", examples=["euclid"])
    allowed: list[Any] | None = Field(None, description="Allowed values of an enumerated parameter.", examples=[list(METRICS)])


class ValidationProblem(Problem):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/invalid-parameters",
                    "title": "Invalid request parameters",
                    "status": 422,
                    "detail": "metric: Input should be 'dot', 'cosine' or 'projected' (allowed: dot, cosine, projected)",
                    "instance": "/similar-items",
                    "artifact_version": "20250101T120000Z-1a2b3c4d",
                    "errors": [
                        {
                            "param": "metric",
                            "in": "query",
                            "message": "Input should be 'dot', 'cosine' or 'projected'",
                            "type": "literal_error",
                            "input": "euclid",
                            "allowed": list(METRICS),
                        }
                    ],
                }
            ]
        },
    )
    errors: list[ParamError] = Field(description="One entry per invalid or missing parameter.")
