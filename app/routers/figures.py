"""GET /figures and /figures/{name}: the heatmaps the build drew (the paper's figure), from the served version."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.plumbing.metrics import VERSION_HEADER
from app.plumbing.problems import ProblemError
from app.plumbing.query_route import json_response
from app.routers.neighbours import current_version
from app.schemas.common import NOT_READY, Problem
from app.schemas.figures import FiguresResponse
from app.serving.version import Version

router = APIRouter(tags=["diagnostics"])


def figures_of(version: Version) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(listing, name -> path relative to the version) of the PNGs the manifest lists; nothing else is served."""
    heatmaps = (version.manifest.get("diagnostics") or {}).get("heatmaps") or {}
    files = version.manifest.get("files", {})
    listing: list[dict[str, Any]] = []
    paths: dict[str, str] = {}

    def add(rel: str, kind: str, title: str, **extra: Any) -> None:
        name = rel.rsplit("/", 1)[-1]
        if rel in files and name not in paths:  # checksummed with the version, never a path from the request
            paths[name] = rel
            listing.append(
                {
                    "name": name,
                    "url": f"/figures/{name}",
                    "kind": kind,
                    "title": title,
                    "model": None,
                    "metric": None,
                    "k": None,
                    "bytes": files[rel].get("bytes"),
                    **extra,
                }
            )

    if heatmaps.get("grid"):
        add(heatmaps["grid"], "grid", "all panels: ground truth, cosine and projected cosine of every model, at two ranks")
    for p in heatmaps.get("panels", []):
        add(p["file"], "panel", p.get("title", ""), model=p.get("model"), metric=p.get("metric"), k=p.get("k"))
    if heatmaps.get("served_grid"):
        add(
            heatmaps["served_grid"],
            "grid",
            "the served item indexes: cosine, projected, projected-centered and whitened "
            "of one model per family (transforms, cosine-mf, trained and imported models included), at the build's k",
        )
    for p in heatmaps.get("served_panels", []):
        add(p["file"], "panel", p.get("title", ""), model=p.get("model"), metric=p.get("metric"), k=p.get("k"))
    return listing, paths


@router.get(
    "/figures",
    response_model=FiguresResponse,
    responses=NOT_READY,
    summary="Heatmaps of the served version",
    description="The item-item similarity heatmaps the build drew (the paper's figure; simulation datasets only): the "
    "grid and every panel with its model, metric and rank. Empty, with the reason, when the version has none.",
)
async def list_figures(request: Request) -> Response:
    version = current_version(request)
    listing, _ = figures_of(version)
    entry = version.manifest.get("diagnostics") or {}
    heatmaps = entry.get("heatmaps")
    if heatmaps:
        skipped = None
    elif entry:
        skipped = entry.get("heatmaps_skipped") or "not drawn"
    else:
        skipped = "built with --no-diagnostics"
    listed = ("grid", "panels", "served_grid", "served_panels")
    meta = {k: v for k, v in heatmaps.items() if k not in listed} if heatmaps else None
    body = {"artifact_version": version.name, "figures": listing, "skipped": skipped, "heatmaps": meta}
    return json_response(body, version.name)


@router.get(
    "/figures/{name}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "The PNG."},
        404: {"model": Problem, "description": "No figure of that name in the served version (see GET /figures)."},
        **NOT_READY,
    },
    summary="One heatmap PNG",
    description="A PNG listed by GET /figures (looked up by name in the version's manifest). ETag = its sha256; "
    "If-None-Match answers 304.",
)
async def get_figure(
    name: Annotated[str, Path(description="A name from GET /figures.", examples=["heatmaps.png"])], request: Request
) -> Response:
    version = current_version(request)
    rel = figures_of(version)[1].get(name)
    if rel is None:
        raise ProblemError(
            404,
            "Unknown figure",
            f"artifact version {version.name} has no figure {name!r} (see /figures)",
            "/problems/unknown-figure",
            figure=name,
        )
    etag = f'"{version.manifest["files"][rel]["sha256"]}"'
    headers = {VERSION_HEADER: version.name, "ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        data = await asyncio.to_thread((version.path / rel).read_bytes)
    except OSError as e:
        raise ProblemError(503, "Figure unreadable", f"{rel} of {version.name}: {e}", "/problems/figure-unreadable") from e
    return Response(data, media_type="image/png", headers=headers)
