"""GET /: the comparison page (static HTML + light JS calling this API; no build step, nothing from other hosts).

The page is app/static/index.html with page.css and page.js inlined, assembled once at import. Its
Content-Security-Policy allows only this server (connect, images) and exactly the inlined script and
style (by sha256), so the page cannot load anything from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["page"])


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def build_page(static: Path = STATIC) -> tuple[str, str]:
    """(html, content security policy) of the page from the files in `static`."""
    css = (static / "page.css").read_text(encoding="utf-8")
    js = (static / "page.js").read_text(encoding="utf-8")
    html = (static / "index.html").read_text(encoding="utf-8")
    html = html.replace("/*PAGE_CSS*/", css).replace("/*PAGE_JS*/", js)
    csp = (
        f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


PAGE, CSP = build_page()


@router.get(
    "/",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {"example": "<!doctype html>..."}}, "description": "The page."}},
    summary="The comparison page",
    description="Find an item by title or id (or a user by id), pick a model, and see its neighbours under dot, cosine "
    "and projected cosine side by side with titles, categories and agreement figures; or one metric across "
    "models. Other tabs show the models' gauge probe and health, the evaluation, the build's summary tables and "
    "heatmaps, and each online experiment's report with its intervals drawn. Query parameters `item_id`/`user_id`, "
    "`model`, `metric` and `k` open a comparison directly.",
)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})
