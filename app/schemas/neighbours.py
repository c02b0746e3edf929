"""Query and response models of /similar-items, /similar-users and /recommend.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.schemas.common import (
    DEFAULT_K,
    DEFAULT_METRIC,
    DEFAULT_MODEL,
    K_DESCRIPTION,
    METRIC_DESCRIPTION,
    MODEL_DESCRIPTION,
    QUERY_CONFIG,
    VERSION,
    ItemNeighbor,
    MetricName,
    ModelName,
    UserNeighbor,
)
from app.settings import K_LIMIT

_EXPERIMENT_PARAM = Field(
    None,
    description="Serve this request under an experiment of EXPERIMENTS_FILE (GET /experiments): its arm, chosen by "
    "`unit_id`, decides model and metric (giving model or metric too is a 422), and the response is logged as an "
    "exposure.",
    examples=[None],
)


MAX_EXCLUDE = 1000

_EXCLUDE_PARAM = Field(
    None,
    max_length=MAX_EXCLUDE,
    description=f"Item ids never to return; repeat the parameter for several (`exclude=i1&exclude=i2`, up to "
    f"{MAX_EXCLUDE}). Ids the served version does not have are ignored. The answer still holds k items when the "
    "catalogue has k that pass.",
    examples=[None],
)

_CATEGORY_PARAM = Field(
    None,
    min_length=1,
    description="Return only items that have this category (the `categories` of the item entries). An unknown "
    "category is a 422 that lists the served version's categories. The answer still holds k items when the "
    "category has k (less the excluded ones).",
    examples=[None],
)

_UNIT_ID = Field(
    None,
    min_length=1,
    max_length=256,
    description="The unit (user, session) the experiment assigns to an arm; required with `experiment`.",
    examples=[None],
)


class SimilarItemsQuery(BaseModel):
    model_config = QUERY_CONFIG
    item_id: str = Field(description="External id of the query item (as in the input data).", examples=["i42"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=METRIC_DESCRIPTION, examples=["cosine"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])
    exclude: list[str] | None = _EXCLUDE_PARAM
    category: str | None = _CATEGORY_PARAM
    experiment: str | None = _EXPERIMENT_PARAM
    unit_id: str | None = _UNIT_ID


class SimilarUsersQuery(BaseModel):
    model_config = QUERY_CONFIG
    user_id: str = Field(description="External id of the query user (as in the input data).", examples=["u7"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=METRIC_DESCRIPTION, examples=["cosine"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])
    experiment: str | None = _EXPERIMENT_PARAM
    unit_id: str | None = _UNIT_ID


class RecommendQuery(BaseModel):
    model_config = QUERY_CONFIG
    user_id: str = Field(description="External id of the user to recommend items to.", examples=["u7"])
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(
        DEFAULT_METRIC,
        examples=["dot"],
        description="User -> item score. `dot`: the model's prediction <P_u, B_i> = Xhat[u, i]; `cosine`: cos(P_u, B_i); "
        "`projected`: Xhat[u, i] / (||Xhat_u|| ||Xhat_:,i||), the prediction normalised in the original space; "
        "`projected-centered`: the same for Xhat with each item's mean over users removed (items the user is "
        "predicted to like more than the average user, in units of the item's spread). `whitened` has no "
        "user -> item score (each side is whitened by its own covariance): 422. Default `projected`.",
    )
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])
    exclude_seen: bool = Field(
        True, description="Leave out the items the user already interacted with. Default true.", examples=[True]
    )
    exclude: list[str] | None = _EXCLUDE_PARAM
    category: str | None = _CATEGORY_PARAM
    experiment: str | None = _EXPERIMENT_PARAM
    unit_id: str | None = _UNIT_ID


class ExperimentExposure(BaseModel):
    name: str = Field(description="The experiment.", examples=["item-metric"])
    arm: str | None = Field(description="The unit's arm (null in interleave mode: see teams).", examples=["projected"])
    exposure_id: str = Field(description="Id of this exposure, for POST /feedback.", examples=["3f2c9a0d4b5e4d8f9a1b2c3d"])
    teams: list[str] | None = Field(
        None, description="Interleave mode: the arm whose list contributed each position (team-draft).", examples=[None]
    )


_EXPERIMENT = Field(
    None,
    description="Present when the request named an experiment: the arm that served it and the exposure id. In "
    "interleave mode `model` and `metric` are the two arms' values (joined by `|` when they differ).",
)


_MODEL = Field(description="The model used.", examples=[DEFAULT_MODEL])


_METRIC = Field(description="The metric used.", examples=[DEFAULT_METRIC])


_K = Field(description="The k requested (neighbors has min(k, available) entries).", examples=[DEFAULT_K])


_EXCLUDE = Field(None, description="The `exclude` ids of the request, when it gave some.", examples=[None])


_CATEGORY = Field(None, description="The `category` of the request, when it gave one.", examples=[None])


_ITEM_EXAMPLE: JsonDict = {"item_id": "i17", "score": 0.9731, "title": "item 17 (cluster 2)", "categories": ["cluster-2"]}


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
    artifact_version: str = VERSION
    exclude: list[str] | None = _EXCLUDE
    category: str | None = _CATEGORY
    neighbors: list[ItemNeighbor] = Field(description="Most similar items, best first; the query item itself is excluded.")
    experiment: ExperimentExposure | None = _EXPERIMENT


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
    artifact_version: str = VERSION
    neighbors: list[UserNeighbor] = Field(description="Most similar users, best first; the query user itself is excluded.")
    experiment: ExperimentExposure | None = _EXPERIMENT


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
    exclude: list[str] | None = _EXCLUDE
    category: str | None = _CATEGORY
    artifact_version: str = VERSION
    neighbors: list[ItemNeighbor] = Field(description="Recommended items, best score first.")
    experiment: ExperimentExposure | None = _EXPERIMENT
