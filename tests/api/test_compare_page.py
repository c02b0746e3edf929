"""The page at / in a real headless Chromium (Debian's `chromium`, driven by Playwright; never `playwright install`).

Against `python -m app` on the session's diag_artifact (tests/conftest.py; with summary and heatmaps):
the page loads without errors, a search shows the same suggestions as /items/search, picking one shows
a column per metric with the titles /compare-metrics returns and its agreement figures, the
across-models view shows projected lists identical for the four D-variants, a user can be compared by
id, and the summary tab shows the summary tables and the heatmap images. Screenshots go to the test's
tmp folder (the path is printed; SCREENSHOT_DIR overrides it). Skips, saying why, only when no Chromium
can be found or launched. Marked slow: a browser end to end, which an in-process test cannot stand in for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from models.fit.closed_forms import DENOISING_VARIANTS, MODELS

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium; .ci/run does it as root)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True, timeout=60_000)
        except PlaywrightError as e:
            pytest.skip(f"Chromium at {CHROMIUM} cannot be launched: {str(e).splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the errors it reports (console errors, uncaught exceptions, CSP violations, failed requests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
    try:
        yield pg, errors
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(pg: Page, path: Path) -> None:
    pg.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000, path
    print(f"screenshot: {path}")


def column_titles(pg: Page) -> dict[str, list[str]]:
    return pg.eval_on_selector_all(
        "#columns .col",
        "cols => Object.fromEntries(cols.map(c => [c.dataset.list, "
        "[...c.querySelectorAll('li[data-id]')].map(li => li.dataset.id)]))",
    )


def test_search_select_compare_and_summary(diag_server, diag_artifact, page, shots):
    pg, errors = page
    client = diag_server.client
    items = json.loads((diag_artifact.version_dir / "items.json").read_text())
    pg.goto(diag_server.base_url + "/")
    pg.wait_for_function(f"() => document.getElementById('version').textContent.includes({diag_artifact.version!r})")
    assert pg.title().startswith("simserve")
    assert pg.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == list(MODELS)

    # search: the suggestions are /items/search's answer, best first
    query = "item 1"
    pg.fill("#search", query)
    pg.wait_for_selector("#suggestions li[data-id]")
    shown = pg.eval_on_selector_all("#suggestions li[data-id]", "lis => lis.map(li => li.dataset.id)")
    expected = [it["item_id"] for it in client.get("/items/search", params={"q": query, "limit": 12}).json()["items"]]
    assert shown == expected and len(shown) == 12
    pick = shown[3]
    pg.click(f"#suggestions li[data-id='{pick}']")

    # selection: one column per metric, with the lists and figures of /compare-metrics
    pg.wait_for_selector("#columns .col")
    pg.wait_for_function(f"() => new URLSearchParams(location.search).get('item_id') === {pick!r}")
    body = client.get("/compare-metrics", params={"item_id": pick, "model": "denoising-symmetric", "k": 10}).json()
    cols = column_titles(pg)
    assert cols == {lst["name"]: [n["item_id"] for n in lst["neighbors"]] for lst in body["lists"]}
    title = next(it["title"] for it in items if it["id"] == pick)
    assert pg.inner_text("#query h2") == title
    first = body["lists"][0]["neighbors"][0]
    assert pg.inner_text("#columns .col[data-list='dot'] li[data-id] .title") == first["title"]
    rows = pg.eval_on_selector_all("#pairs tr[data-pair]", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    assert [r[0] for r in rows] == [f"{p['a']} ~ {p['b']}" for p in body["pairs"]]
    assert [r[1] for r in rows] == [f"{p['jaccard']:.3f}" for p in body["pairs"]]
    assert [r[2] for r in rows] == [f"{p['rbo']:.3f}" for p in body["pairs"]]
    assert [r[3] for r in rows] == [f"{p['weighted_tau']:.3f}" for p in body["pairs"]]
    screenshot(pg, shots / "compare-metrics.png")

    # another model from the select: the columns follow
    pg.select_option("#model", "weight-decay")
    wd = client.get("/compare-metrics", params={"item_id": pick, "model": "weight-decay"}).json()
    wanted = {lst["name"]: [n["item_id"] for n in lst["neighbors"]] for lst in wd["lists"]}
    pg.wait_for_function(
        "w => JSON.stringify(Object.fromEntries([...document.querySelectorAll('#columns .col')].map(c => "
        "[c.dataset.list, [...c.querySelectorAll('li[data-id]')].map(li => li.dataset.id)]))) === JSON.stringify(w)",
        arg=wanted,
    )

    # one metric across models: projected cosine gives one list for the four denoising D-variants
    pg.click("#mode button[data-mode='models']")
    pg.select_option("#metric", "projected")
    pg.wait_for_function(
        "() => document.querySelectorAll('#columns .col').length === 5 && "
        "new URLSearchParams(location.search).get('metric') === 'projected'"
    )
    pg.wait_for_function(
        "() => [...document.querySelectorAll('#columns .col h3')].every(h => h.textContent) && "
        "document.querySelector('#query .meta + .meta').textContent.includes('projected')"
    )
    cols = column_titles(pg)
    assert list(cols) == list(MODELS)
    assert len({tuple(cols[m]) for m in DENOISING_VARIANTS}) == 1
    assert len(pg.query_selector_all("#pairs tr[data-pair]")) == 10
    screenshot(pg, shots / "compare-models.png")

    # a user, by id
    user = json.loads((diag_artifact.version_dir / "users.json").read_text())[5]
    pg.click("#mode button[data-mode='metrics']")
    pg.click("#side button[data-side='users']")
    pg.fill("#search", user)
    pg.press("#search", "Enter")
    pg.wait_for_function(f"() => new URLSearchParams(location.search).get('user_id') === {user!r}")
    pg.wait_for_selector("#columns .col li[data-id]")
    ub = client.get("/compare-metrics", params={"user_id": user, "model": "weight-decay"}).json()
    assert column_titles(pg) == {lst["name"]: [n["user_id"] for n in lst["neighbors"]] for lst in ub["lists"]}

    # the summary tab: tables of the build's summary and the heatmaps
    pg.click("#tab-summary")
    pg.wait_for_selector("#summary table.summary-quality")
    pg.wait_for_function(
        "() => { const i = document.getElementById('heatmap-grid'); return i && i.complete && i.naturalWidth > 0; }"
    )
    summary = client.get("/compare-metrics/summary").json()["summary"]
    assert pg.eval_on_selector_all("#summary .card", "cs => cs.map(c => c.dataset.side)") == list(summary["sides"])
    first_rows = pg.eval_on_selector_all(
        "#summary .card[data-side='items'] table.summary-quality tr",
        "trs => trs.slice(2).map(tr => [...tr.cells].map(td => td.textContent))",
    )
    items_side = summary["sides"]["items"]["models"]
    assert [r[0] for r in first_rows] == list(items_side)
    assert [r[1] for r in first_rows] == [f"{m['metrics']['dot']['category_precision']:.3f}" for m in items_side.values()]
    assert pg.get_attribute("#heatmap-grid", "src") == "/figures/heatmaps.png"
    figures = client.get("/figures").json()["figures"]
    assert len(pg.query_selector_all("#gallery img")) == sum(f["kind"] == "panel" for f in figures)
    screenshot(pg, shots / "summary.png")
    assert errors == []


def test_bad_query_is_shown_not_thrown(diag_server, page):
    """An unknown id in the URL: the page says so (the API's problem detail) instead of breaking."""
    pg, errors = page
    pg.goto(diag_server.base_url + "/?item_id=no-such-item")
    pg.wait_for_function("() => document.getElementById('status').textContent.includes('no-such-item')")
    assert pg.get_attribute("#status", "class") == "error"
    assert pg.is_hidden("#result")
    assert [e for e in errors if "404" not in e] == []  # the 404 of /compare-metrics itself is logged by the browser
