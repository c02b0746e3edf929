"""Request and response models of POST /similar-items/batch and POST /recommend/batch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import (
    DEFAULT_K,
    DEFAULT_METRIC,
    DEFAULT_MODEL,
    K_DESCRIPTION,
    METRIC_DESCRIPTION,
    MODEL_DESCRIPTION,
    VERSION,
    MetricName,
    ModelName,
    Problem,
)
from app.schemas.neighbours import MAX_EXCLUDE, RecommendQuery, RecommendResponse, SimilarItemsResponse
from app.settings import K_LIMIT

MAX_BATCH = 1000  # queries per call
MAX_ID_LENGTH = 1024
# a body of MAX_BATCH queries whose ids are MAX_ID_LENGTH characters, each written as a 6-byte \u escape, fits
MAX_BATCH_BYTES = 8 << 20
# Strict: JSON types as the schema says them (no "5" for k, no "true" for exclude_seen), as POST /feedback.
_BODY = ConfigDict(extra="forbid", frozen=True, strict=True)
_QUERIES = f"The queries, 1..{MAX_BATCH}, each answered at the same position of `results`."
_EXCLUDE = Field(
    None,
    max_length=MAX_EXCLUDE,
    description=f"Item ids never to return in any result (up to {MAX_EXCLUDE}; ids the version does not have are "
    "ignored), as GET's `exclude`.",
    examples=[None],
)
_CATEGORY = Field(
    None,
    min_length=1,
    description="Every result holds only items of this category, as GET's `category` (an unknown one is a 422).",
    examples=[None],
)
_RESULT = (
    "One entry per query, in order: the GET endpoint's body for that query, or its problem (an unknown id fails "
    "its entry, not the call)."
)


class ItemQuery(BaseModel):
    model_config = _BODY
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="External id of the query item.", examples=["i42"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])


class UserQuery(BaseModel):
    model_config = _BODY
    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="External id of the user.", examples=["u7"])
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=K_DESCRIPTION, examples=[10])


class SimilarItemsBatch(BaseModel):
    model_config = _BODY
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=METRIC_DESCRIPTION, examples=["cosine"])
    exclude: list[str] | None = _EXCLUDE
    category: str | None = _CATEGORY
    queries: list[ItemQuery] = Field(min_length=1, max_length=MAX_BATCH, description=_QUERIES)


class RecommendBatch(BaseModel):
    model_config = _BODY
    model: ModelName = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION, examples=["weight-decay"])
    metric: MetricName = Field(DEFAULT_METRIC, description=RecommendQuery.model_fields["metric"].description, examples=["dot"])
    exclude_seen: bool = Field(True, description="Leave out each user's own items. Default true.", examples=[True])
    exclude: list[str] | None = _EXCLUDE
    category: str | None = _CATEGORY
    queries: list[UserQuery] = Field(min_length=1, max_length=MAX_BATCH, description=_QUERIES)


class SimilarItemsBatchResponse(BaseModel):
    model: str = Field(description="The model used.", examples=[DEFAULT_MODEL])
    metric: str = Field(description="The metric used.", examples=[DEFAULT_METRIC])
    artifact_version: str = VERSION
    results: list[SimilarItemsResponse | Problem] = Field(description=_RESULT)


class RecommendBatchResponse(BaseModel):
    model: str = Field(description="The model used.", examples=[DEFAULT_MODEL])
    metric: str = Field(description="The metric used.", examples=[DEFAULT_METRIC])
    exclude_seen: bool = Field(description="Whether each user's own items were left out.", examples=[True])
    artifact_version: str = VERSION
    results: list[RecommendResponse | Problem] = Field(description=_RESULT)
