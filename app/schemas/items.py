"""Query and response models of /items/search and /items/popular.

Query models are validated on every request (app.plumbing.query_route.QueryModelRoute); response
models are documentation only (endpoints build their JSON directly).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import (
    QUERY_CONFIG,
    VERSION,
    VERSION_EXAMPLE,
)

SEARCH_LIMIT_MAX = 50


class ItemSearchQuery(BaseModel):
    model_config = QUERY_CONFIG
    q: str = Field(
        min_length=1,
        max_length=200,
        description="Text to find in item ids and titles (case-insensitive). Ranking: exact id or title, title prefix "
        "(a whole word first), id prefix, a word of the title starting with it, anywhere; then by popularity.",
        examples=["harry"],
    )
    limit: int = Field(
        10, ge=1, le=SEARCH_LIMIT_MAX, description=f"Most items to return, 1..{SEARCH_LIMIT_MAX}. Default 10.", examples=[10]
    )


class FoundItem(BaseModel):
    item_id: str = Field(description="External item id.", examples=["i17"])
    title: str | None = Field(None, description="Title, when the dataset has one.", examples=["item 17 (cluster 2)"])
    categories: list[str] | None = Field(None, description="Categories, when the dataset has them.", examples=[["cluster-2"]])
    popularity: int = Field(description="Users who interacted with the item.", examples=[40])


class ItemSearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "q": "item 17",
                    "limit": 10,
                    "artifact_version": VERSION_EXAMPLE,
                    "items": [{"item_id": "i17", "title": "item 17 (cluster 2)", "categories": ["cluster-2"], "popularity": 40}],
                }
            ]
        }
    )
    q: str = Field(description="The text searched.", examples=["item 17"])
    limit: int = Field(description="The limit requested.", examples=[10])
    artifact_version: str = VERSION
    items: list[FoundItem] = Field(description="Matching items, best first.")


class PopularItemsQuery(BaseModel):
    model_config = QUERY_CONFIG
    limit: int = Field(
        10, ge=1, le=SEARCH_LIMIT_MAX, description=f"Most items to return, 1..{SEARCH_LIMIT_MAX}. Default 10.", examples=[10]
    )


class PopularItemsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "limit": 1,
                    "artifact_version": VERSION_EXAMPLE,
                    "items": [{"item_id": "i17", "title": "item 17 (cluster 2)", "categories": ["cluster-2"], "popularity": 40}],
                }
            ]
        }
    )
    limit: int = Field(description="The limit requested.", examples=[10])
    artifact_version: str = VERSION
    items: list[FoundItem] = Field(description="The most popular items of the served version, most popular first.")
