"""Response models of GET /models/{model}/gauge and GET /evaluation (documentation only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import QUERY_CONFIG, VERSION, VERSION_EXAMPLE


class GaugeFigures(BaseModel):
    jaccard_mean: float | None = Field(description="Mean Jaccard@10 of served vs rescaled lists.", examples=[0.41])
    jaccard_p05: float | None = Field(description="5th percentile of that Jaccard over queries x transforms.", examples=[0.05])
    rbo_mean: float | None = Field(description="Mean rank-biased overlap of the same lists.", examples=[0.52])


class GaugeResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "als",
                    "artifact_version": VERSION_EXAMPLE,
                    "transforms": 4,
                    "shared_transforms": 1,
                    "shared_from": "als",
                    "range": [0.1, 10.0],
                    "k": 10,
                    "seed": 0,
                    "queries": {"items": 500, "users": 500},
                    "sides": {
                        "items": {
                            "dot": {"jaccard_mean": 0.38, "jaccard_p05": 0.05, "rbo_mean": 0.47},
                            "cosine": {"jaccard_mean": 0.45, "jaccard_p05": 0.11, "rbo_mean": 0.55},
                            "projected": {"jaccard_mean": 1.0, "jaccard_p05": 1.0, "rbo_mean": 1.0},
                        }
                    },
                }
            ]
        }
    )
    model: str = Field(description="The model probed.", examples=["als"])
    artifact_version: str = VERSION
    transforms: int = Field(description="Random diagonal rescalings D tried (P D, Q D^-1: identical predictions).", examples=[4])
    shared_transforms: int | None = Field(
        None,
        description="Of those, how many the shared metrics (projected, projected-centered, whitened), invariant by "
        "construction, were checked under (absent in builds that checked them under all).",
        examples=[1],
    )
    shared_from: str | None = Field(
        None,
        description="The model whose probe the shared metrics' figures are: the first model of this model's group, "
        "from whose factors the group's one shared index per side and metric is built (absent in older builds, "
        "which probed every model's own).",
        examples=["als"],
    )
    users_sampled: int | None = Field(
        None,
        description="Builds whose user embeddings stay on Dask workers (--engine dask) probe a seeded sample of this "
        "many users, ranked among themselves (absent: every user).",
        examples=[20000],
    )
    users_total: int | None = Field(
        None, description="The users the sample was drawn from (with users_sampled).", examples=[100000000]
    )
    range: list[float] = Field(description="Each diagonal entry of D is log-uniform in this range.", examples=[[0.1, 10.0]])
    k: int = Field(description="Length of the compared lists.", examples=[10])
    seed: int = Field(description="Seed of the transforms and of the query sample.", examples=[0])
    queries: dict[str, int] = Field(description="Query items and users (a seeded sample).", examples=[{"items": 500}])
    sides: dict[str, dict[str, GaugeFigures]] = Field(
        description="Per side (items, users) and metric (dot, cosine, projected): how much the top-10 lists stay put "
        "under the rescalings. 1.0: the metric does not depend on the arbitrary D; projected is 1.0 by construction."
    )


class EvaluationQuery(BaseModel):
    model_config = QUERY_CONFIG
    format: Literal["json", "markdown"] = Field(
        "json", description="json (default): the stored evaluation.json; markdown: its results as a table.", examples=["markdown"]
    )


class EvaluationRow(BaseModel):
    model: str = Field(description="Model name, or a baseline: random, popular.", examples=["als"])
    metric: str | None = Field(description="dot, cosine or projected; null for a baseline.", examples=["projected"])
    source: str = Field(description="closed-form, implicit, imported or baseline.", examples=["implicit"])
    refitted: bool = Field(description="Fitted again on the training part (false: imported factors, evaluated as given).")
    recall_at_20: float | None = Field(description="user -> item Recall@20, training items excluded.", examples=[0.31])
    ndcg_at_100: float | None = Field(description="user -> item nDCG@100.", examples=[0.29])
    category_precision_at_10: float | None = Field(
        description="item -> item: share of neighbours sharing a category with the query (null without categories).",
        examples=[0.62],
    )
    popularity_ratio: float | None = Field(
        description="item -> item: median neighbour popularity / catalogue median.", examples=[3.1]
    )
    coverage_at_10: float | None = Field(description="item -> item: share of the catalogue in some top-10 list.", examples=[0.8])
    spearman_truth: float | None = Field(
        None, description="Simulation only: Spearman of the item-item similarities with the ground truth.", examples=[0.7]
    )


class EvaluationResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    artifact_version: str = VERSION
    split: dict[str, Any] = Field(description="How the held-out split was made (method, fraction, seed, users, sizes).")
    params: dict[str, Any] = Field(description="Cut-offs and the parameters the models were refitted with.")
    definitions: dict[str, str] = Field(description="What each measure is.")
    results: list[EvaluationRow] = Field(description="One row per model x metric, then the baselines.")
