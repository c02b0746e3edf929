"""GET /items/search: find items by id or title (the page's search box); GET /items/popular: where to start."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.plumbing.query_route import QueryModelRoute, json_response
from app.query.item_lookup import find_items, popular_items
from app.routers.neighbours import current_version
from app.schemas.common import NOT_READY, ValidationProblem
from app.schemas.items import ItemSearchQuery, ItemSearchResponse, PopularItemsQuery, PopularItemsResponse

router = APIRouter(route_class=QueryModelRoute, tags=["items"])


@router.get(
    "/items/search",
    response_model=ItemSearchResponse,
    responses={
        422: {"model": ValidationProblem, "description": "q missing, empty or longer than 200 characters; limit outside 1..50."},
        **NOT_READY,
    },
    summary="Find items by id or title",
    description="Items whose id or title contains `q` (case-insensitive), best matches first: exact id, title prefix, "
    "id prefix, a title word starting with q, anywhere; ties by popularity. For the page's search box.",
)
async def search_items(q: Annotated[ItemSearchQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    rows = find_items(version, q.q, q.limit)
    pop = version.item_popularity
    items = [{**version.item_meta[r], "popularity": int(pop[r])} for r in rows]
    return json_response({"q": q.q, "limit": q.limit, "artifact_version": version.name, "items": items}, version.name)


@router.get(
    "/items/popular",
    response_model=PopularItemsResponse,
    responses={422: {"model": ValidationProblem, "description": "limit outside 1..50."}, **NOT_READY},
    summary="The most popular items",
    description="The items with the most users in the served version, most popular first (ties by catalogue order): "
    "a meaningful item to start exploring from (the page opens on the first).",
)
async def most_popular(q: Annotated[PopularItemsQuery, Query()], request: Request) -> Response:
    version = current_version(request)
    pop = version.item_popularity
    items = [{**version.item_meta[r], "popularity": int(pop[r])} for r in popular_items(version, q.limit)]
    return json_response({"limit": q.limit, "artifact_version": version.name, "items": items}, version.name)
