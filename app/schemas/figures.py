"""Response models of /figures.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import (
    VERSION,
    VERSION_EXAMPLE,
)


class Figure(BaseModel):
    name: str = Field(description="File name; GET /figures/{name} serves it.", examples=["heatmaps.png"])
    url: str = Field(description="Path of the PNG.", examples=["/figures/heatmaps.png"])
    kind: Literal["grid", "panel"] = Field(description="grid: all panels in one figure; panel: one heatmap.", examples=["grid"])
    title: str = Field(description="What it shows.", examples=["all panels"])
    model: str | None = Field(None, description="Model of a panel (ground-truth for the truth panel).", examples=["weight-decay"])
    metric: str | None = Field(None, description="cosine, projected or truth.", examples=["cosine"])
    k: int | None = Field(None, description="Embedding rank of a panel.", examples=[50])
    bytes: int | None = Field(None, description="File size.", examples=[402761])


class FiguresResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "artifact_version": VERSION_EXAMPLE,
                    "figures": [
                        {
                            "name": "heatmaps.png",
                            "url": "/figures/heatmaps.png",
                            "kind": "grid",
                            "title": "all panels",
                            "model": None,
                            "metric": None,
                            "k": None,
                            "bytes": 2400000,
                        }
                    ],
                    "skipped": None,
                    "heatmaps": {"order": "items sorted by true cluster, then true baseline popularity (descending)"},
                }
            ]
        }
    )
    artifact_version: str = VERSION
    figures: list[Figure] = Field(description="Heatmaps of the served version (empty when it has none).")
    skipped: str | None = Field(description="Why the version has no heatmaps (null when it has them).", examples=[None])
    heatmaps: dict[str, Any] | None = Field(
        description="How the heatmaps were made (item order, ground truth, lambdas, ranks, colour scale), from the manifest."
    )
