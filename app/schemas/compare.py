"""Query and response models of /compare-metrics and /compare-metrics/summary.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.schemas.common import (
    DEFAULT_K,
    DEFAULT_MODEL,
    QUERY_CONFIG,
    VERSION,
    VERSION_EXAMPLE,
    ItemNeighbor,
    MetricName,
    ModelName,
    UserNeighbor,
)
from app.settings import K_LIMIT
from models.diagnostics.agreement import RBO_P

DEFAULT_MODELS_METRIC = "cosine"  # the metric whose lists move with the denoising objective's free D


TAU_ROWS_DEFAULT = 2000


TAU_ROWS_MAX = 5000  # 10 pairs (5 models) x 5,000 rows stays well under a second


class CompareQuery(BaseModel):
    model_config = QUERY_CONFIG
    item_id: str | None = Field(
        None, description="Query item (external id). Give exactly one of `item_id` and `user_id`.", examples=["i42"]
    )
    user_id: str | None = Field(
        None,
        description="Query user (external id): compares /similar-users lists instead. Give exactly one of `item_id` "
        "and `user_id`.",
        examples=["u7"],
    )
    model: ModelName | None = Field(
        None,
        description="Compare the metrics (every one the version serves) of this model. Default "
        f"`{DEFAULT_MODEL}`. Not together with `models`.",
        examples=["denoising-item-orthonormal"],
    )
    models: list[ModelName] | None = Field(
        None,
        description="Repeat it (`models=a&models=b`, at least two different models) to compare one `metric` "
        "across models instead of the metrics of one model: the D-sensitivity. Cosine lists move between the "
        "denoising D-variants (same predictions, different D); projected lists cannot.",
        examples=[["denoising-symmetric", "denoising-item-orthonormal"]],
    )
    metric: MetricName | None = Field(
        None,
        description=f"With `models` only: the metric compared across the models. Default `{DEFAULT_MODELS_METRIC}`.",
        examples=["projected"],
    )
    k: int = Field(DEFAULT_K, ge=1, le=K_LIMIT, description=f"List length, 1..{K_LIMIT}. Default 10.", examples=[10])
    rbo_p: float = Field(
        RBO_P,
        gt=0,
        lt=1,
        description=f"Persistence p of rank-biased overlap, 0 < p < 1: the top d ranks carry 1 - p^d of the weight. "
        f"Default {RBO_P} (top 10: 65%).",
        examples=[RBO_P],
    )
    tau_rows: int = Field(
        TAU_ROWS_DEFAULT,
        ge=0,
        le=TAU_ROWS_MAX,
        description="Most catalogue rows the weighted Kendall tau runs on (it costs ~5-10 us per row and list pair). "
        "Every row when the catalogue has at most this many; else a fixed seeded uniform sample of this many rows "
        f"(numpy default_rng(0), the same for every query). 0 skips it. Default {TAU_ROWS_DEFAULT}, at most "
        f"{TAU_ROWS_MAX}, so a request on a 50,000-row catalogue stays well under a second.",
        examples=[TAU_ROWS_DEFAULT],
    )


class ComparedList(BaseModel):
    name: str = Field(description="The metric (comparing metrics) or the model (comparing models).", examples=["cosine"])
    model: str = Field(description="Model of this list.", examples=[DEFAULT_MODEL])
    metric: str = Field(description="Metric of this list.", examples=["cosine"])
    served_by: Literal["flat", "hnsw", "ivf"] = Field(description="The index serving it (as /similar-items).", examples=["flat"])
    neighbors: list[ItemNeighbor] | list[UserNeighbor] = Field(
        description="The list exactly as /similar-items (/similar-users) serves it: best first, query excluded."
    )
    popularity_ratio: float | None = Field(
        description="median(popularity of the neighbours) / median popularity of the catalogue (> 1: leans to popular "
        "rows). null for an empty list or a zero median.",
        examples=[1.27],
    )
    category_share: float | None = Field(
        description="Share of neighbours sharing at least one category with the query item; null for users, for "
        "datasets without categories and for a query item without one.",
        examples=[0.9],
    )


class ComparedPair(BaseModel):
    a: str = Field(description="Name of the first list.", examples=["dot"])
    b: str = Field(description="Name of the second list.", examples=["cosine"])
    jaccard: float = Field(description="Overlap@k: |A & B| / |A | B| of the two lists.", examples=[0.25])
    rbo: float = Field(
        description="Extrapolated rank-biased overlap (Webber et al. 2010) with the response's rbo_p.", examples=[0.31]
    )
    weighted_tau: float | None = Field(
        description="Weighted Kendall tau of the full score vectors over the rows in `weighted_tau` (null when skipped "
        "or a vector is constant, e.g. a zero embedding).",
        examples=[0.78],
    )


class TauInfo(BaseModel):
    rows: int = Field(description="Catalogue rows the weighted tau ran on (the query excluded); 0: skipped.", examples=[299])
    catalogue_rows: int = Field(description="Rows of the side's catalogue.", examples=[300])
    sampled: bool = Field(description="Whether the rows are a seeded sample (catalogue larger than tau_rows).", examples=[False])
    seed: int = Field(description="Seed of the sample (numpy default_rng).", examples=[0])
    method: str = Field(description="How it was computed.", examples=["scipy.stats.weightedtau ..."])


class PopularityInfo(BaseModel):
    definition: str = Field(description="What popularity counts on this side.", examples=["users per item"])
    catalogue_median: float = Field(description="Median popularity over the catalogue.", examples=[12.0])
    query: float = Field(description="Popularity of the query row.", examples=[40.0])


class QueryInfo(BaseModel):
    item_id: str | None = Field(None, description="The query item (item comparisons).", examples=["i42"])
    user_id: str | None = Field(None, description="The query user (user comparisons).", examples=["u7"])
    title: str | None = Field(None, description="Title of the query item, when the dataset has titles.", examples=["item 42"])
    categories: list[str] | None = Field(None, description="Categories of the query item.", examples=[["cluster-1"]])


_LIST_EXAMPLE: JsonDict = {
    "name": "cosine",
    "model": DEFAULT_MODEL,
    "metric": "cosine",
    "served_by": "flat",
    "neighbors": [{"item_id": "i17", "score": 0.9731, "title": "item 17 (cluster 2)", "categories": ["cluster-2"]}],
    "popularity_ratio": 1.27,
    "category_share": 1.0,
}


class CompareResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "side": "items",
                    "compare": "metrics",
                    "query": {"item_id": "i42", "title": "item 42 (cluster 2)", "categories": ["cluster-2"]},
                    "model": DEFAULT_MODEL,
                    "models": None,
                    "metric": None,
                    "k": 1,
                    "rbo_p": RBO_P,
                    "artifact_version": VERSION_EXAMPLE,
                    "lists": [_LIST_EXAMPLE, {**_LIST_EXAMPLE, "name": "projected", "metric": "projected"}],
                    "pairs": [{"a": "cosine", "b": "projected", "jaccard": 1.0, "rbo": 1.0, "weighted_tau": 0.91}],
                    "weighted_tau": {"rows": 299, "catalogue_rows": 300, "sampled": False, "seed": 0, "method": "..."},
                    "popularity": {"definition": "users per item", "catalogue_median": 12.0, "query": 40.0},
                }
            ]
        }
    )
    side: Literal["items", "users"] = Field(
        description="items (/similar-items lists) or users (/similar-users).", examples=["items"]
    )
    compare: Literal["metrics", "models"] = Field(
        description="metrics: dot, cosine, projected of one model; models: one metric across models.", examples=["metrics"]
    )
    query: QueryInfo = Field(description="The query item or user.")
    model: str | None = Field(description="The model (comparing metrics), else null.", examples=[DEFAULT_MODEL])
    models: list[str] | None = Field(description="The models (comparing models), else null.", examples=[None])
    metric: str | None = Field(description="The metric (comparing models), else null.", examples=[None])
    k: int = Field(description="The k requested.", examples=[DEFAULT_K])
    rbo_p: float = Field(description="Persistence p of the RBO figures.", examples=[RBO_P])
    artifact_version: str = VERSION
    lists: list[ComparedList] = Field(description="One list per metric (or model), in order.")
    pairs: list[ComparedPair] = Field(description="Agreement of every pair of lists.")
    weighted_tau: TauInfo = Field(description="Which rows the weighted tau ran on.")
    popularity: PopularityInfo = Field(description="Popularity definition and catalogue median of this side.")


class SummaryQuery(BaseModel):
    model_config = QUERY_CONFIG
    format: Literal["json", "markdown", "text"] = Field(
        "json",
        description="json (default): the stored summary.json; markdown: its tables as in the docs; text: as the build "
        "prints them.",
        examples=["markdown"],
    )


class SummaryResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "artifact_version": VERSION_EXAMPLE,
                    "dataset": {"kind": "simulation", "n_users": 20000, "n_items": 1000},
                    "summary": {"k": 10, "rbo_p": RBO_P, "sample": 2000, "sides": {"items": {"rows": 1000, "models": {}}}},
                }
            ]
        }
    )
    artifact_version: str = VERSION
    dataset: dict[str, Any] = Field(description="The manifest's dataset entry (where the data came from).")
    summary: dict[str, Any] = Field(
        description="summary.json as the build wrote it: per side (items, users) and model x metric category precision@k "
        "and popularity bias; per model the mean Jaccard@k, RBO and weighted tau of each metric pair; per metric the "
        "D-sensitivity (mean Jaccard@k between the denoising D-variants). See docs/offline-job.md#diagnostics."
    )
