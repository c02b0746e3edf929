"""Shared pieces of the API contract: model and metric names, defaults, neighbour entries, problem bodies.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.settings import K_LIMIT
from models.artifact.manifest import METRICS
from models.fit.closed_forms import MODELS

# Models are data: each version serves the models its manifest lists (GET /models), so the name is
# checked against the served version on every request (plumbing.query_route.require_model), not here.
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


MetricName = Literal[METRICS]  # type: ignore[valid-type]


DEFAULT_MODEL = "denoising-symmetric"


DEFAULT_METRIC = "projected"


DEFAULT_K = 10


MODEL_DESCRIPTION = (
    "Embedding model: one of the models the served artifact version lists at GET /models (a 422 lists them "
    f"otherwise). Every version has the paper's closed forms: {', '.join(f'`{m}`' for m in MODELS[:-1])} "
    "(objective 1, product-regularised, under four diagonal rescalings D of the same solution) and "
    f"`{MODELS[-1]}` (objective 2, factor-regularised); a build may add `als` and `bpr` (trained with implicit) "
    "and imported factor models under their own names. Default `denoising-symmetric`."
)


METRIC_DESCRIPTION = (
    "Similarity. `dot`: inner product of the raw embeddings; `cosine`: cosine of the raw embeddings (depends on D); "
    "`projected`: cosine in the original item/user space (rows/columns of Xhat = X A B^T), identical for every "
    "denoising variant; `projected-centered`: the Pearson correlation of those rows/columns (each one's mean "
    "removed first); `whitened`: cosine after whitening each side's embeddings (centred, unit variance in every "
    "latent direction). The last three are D-invariant. A version built before a metric existed does not serve "
    "it (422, GET /models lists the metrics). Default `projected`."
)


K_DESCRIPTION = f"Number of neighbours to return, 1..{K_LIMIT} (fewer when the catalogue is smaller). Default 10."


QUERY_CONFIG = ConfigDict(extra="ignore", frozen=True)


VERSION_EXAMPLE = "20250101T120000Z-1a2b3c4d"


VERSION = Field(description="The artifact version that answered this request.", examples=[VERSION_EXAMPLE])


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


# The 503 every endpoint that needs a loaded version documents (OpenAPI `responses=`).
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "No artifact version is loaded yet (see /readyz)."}
}
