"""The page at / in a real headless Chromium (Debian's `chromium`, driven by Playwright; never `playwright install`).

Against `python -m app` on the session's diag_artifact (tests/conftest.py; with summary, heatmaps, an ALS
model, the gauge probe and the held-out evaluation): the page loads without errors, a search shows the
same suggestions as /items/search, picking one shows a column per metric the version serves (all five) with
the titles /compare-metrics returns and its agreement figures, the across-models view shows the lists of
every D-invariant metric identical for the four D-variants, a user can be compared by id, and the summary
tab shows the summary tables and the heatmap images. Opened with no query it shows the comparison of the
catalogue's most popular item, and every change of the view is in the URL: a reload (or Back) restores the
same model, mode, metric, k, tab and lists. The Models tab lists every model of /models with its source and
the figures of /models/{model}/gauge, and its embedding-health table shows summary.json's "embeddings"
(the item side also recomputed here from the served vectors); the Evaluation tab shows the table (best of
each column marked) and a chart per measure with the values of /evaluation: dashes and no bars, never NaN,
where the whitened rows have no ranking. A tiny version built here without gauge probe, evaluation or
summary says "no probe", how to get an evaluation and that it has no embedding health; so does a summary
without "embeddings" (an older build's, served here through a rewritten response).
Screenshots go to the test's tmp folder (the path is printed; SCREENSHOT_DIR overrides it). Skips,
saying why, only when no Chromium can be found or launched. Marked slow: a browser end to end, which an
in-process test cannot stand in for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from playwright.sync_api import Page, Route
from scipy.stats import rankdata
from support.artifacts import api_build
from support.servers import ApiServer, start_api_server

from models.artifact.manifest import SHARED_METRICS
from models.diagnostics.embedding_health import HealthParams
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS

pytestmark = pytest.mark.slow


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


MEASURES = ["recall_at_20", "ndcg_at_100", "category_precision_at_10", "popularity_ratio", "coverage_at_10", "spearman_truth"]


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`python -m app` on a tiny version with neither gauge probe (--gauge-transforms 0) nor evaluation (no --evaluate)."""
    root = tmp_path_factory.mktemp("bare-artifacts")
    api_build(root, gauge_transforms=0, sim_users=300, sim_items=60, k=6, lambda_denoising=30.0, lambda_weight_decay=2.0)
    with start_api_server(root, tmp_path_factory.mktemp("bare-server")) as server:
        yield server


def shown(v: float | None, digits: int = 3) -> str:
    """A figure as the page prints it: JavaScript's toFixed(digits) (ties away from zero, on the exact double), "–" for null."""
    return "–" if v is None else str(Decimal(v).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def health_shown(h: dict[str, Any], figure: str) -> str:
    """An embedding-health figure as the Models tab prints it: effective rank with 2 decimals "of k", zero rows as a count."""
    v = h[figure]
    if figure == "effective_rank":
        return "–" if v is None else f"{shown(v, 2)} of {h['dims']}"
    if figure == "zero_rows":
        return "–" if v is None else f"{v:,}"
    return shown(v)


def item_health(Q: np.ndarray, popularity: np.ndarray) -> dict[str, float]:
    """The health of item vectors Q (n_items, k), dense: anisotropy the mean cosine over every ordered pair of distinct
    nonzero rows, effective rank exp(H(s / sum s)) over the singular values s of Q, and norm ~ popularity the Pearson
    correlation of the average ranks of the row norms and of the popularity (n_items,), i.e. Spearman's rho."""
    norms = np.linalg.norm(Q, axis=1)
    U = Q[norms > 0] / norms[norms > 0, None]
    C = U @ U.T
    m = U.shape[0]
    s = np.linalg.svd(Q, compute_uv=False)
    p = s[s > 0] / s.sum()
    return {
        "anisotropy": float((C.sum() - np.trace(C)) / (m * (m - 1))),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "norm_popularity_spearman": float(np.corrcoef(rankdata(norms), rankdata(popularity))[0, 1]),
    }


def bad_text(pg: Page, selector: str) -> list[str]:
    """Texts and attribute values in and under `selector` that show NaN, Infinity, undefined or null."""
    return pg.eval_on_selector_all(
        f"{selector}, {selector} *",
        "ns => ns.flatMap(n => [n.childElementCount ? '' : n.textContent, ...[...n.attributes].map(a => a.value)])"
        ".filter(t => /NaN|Infinity|undefined|null/.test(t))",
    )


def url_params(pg: Page) -> dict[str, str]:
    return pg.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")


def lists_of(body: dict[str, Any]) -> dict[str, list[str]]:
    key = "item_id" if body["side"] == "items" else "user_id"
    return {lst["name"]: [n[key] for n in lst["neighbors"]] for lst in body["lists"]}


def wait_lists(pg: Page, wanted: dict[str, list[str]]) -> None:
    pg.wait_for_function(
        "w => JSON.stringify(Object.fromEntries([...document.querySelectorAll('#columns .col')].map(c => "
        "[c.dataset.list, [...c.querySelectorAll('li[data-id]')].map(li => li.dataset.id)]))) === JSON.stringify(w)",
        arg=wanted,
    )


def test_search_select_compare_and_summary(diag_server, diag_artifact, page, shots):
    pg, errors = page
    client = diag_server.client
    items = json.loads((diag_artifact.version_dir / "items.json").read_text())
    pg.goto(diag_server.base_url + "/")
    pg.wait_for_function(f"() => document.getElementById('version').textContent.includes({diag_artifact.version!r})")
    assert pg.title().startswith("simserve")
    models = list(client.get("/models").json()["models"])
    assert set(MODELS) <= set(models)
    assert pg.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == models

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

    # one metric across models: each D-invariant metric gives one list for the four denoising D-variants
    pg.click("#mode button[data-mode='models']")
    for metric in SHARED_METRICS:
        pg.select_option("#metric", metric)
        across = client.get("/compare-metrics", params={"item_id": pick, "models": models, "metric": metric}).json()
        wait_lists(pg, lists_of(across))
        pg.wait_for_function(
            f"() => new URLSearchParams(location.search).get('metric') === {metric!r} && "
            f"document.querySelector('#query .meta + .meta').textContent.includes({metric + ' across'!r})"
        )
        cols = column_titles(pg)
        assert list(cols) == models
        assert len({tuple(cols[m]) for m in DENOISING_VARIANTS}) == 1, metric
        assert len(pg.query_selector_all("#pairs tr[data-pair]")) == len(models) * (len(models) - 1) // 2
        if metric == "projected":
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


def test_a_column_for_every_metric_the_version_serves(diag_server, diag_artifact, page):
    pg, errors = page
    client = diag_server.client
    metrics = client.get("/models").json()["metrics"]
    assert metrics == ["dot", "cosine", "projected", "projected-centered", "whitened"]  # the premise: five served metrics
    requested: list[str] = []
    pg.on("request", lambda r: requested.append(r.url))
    model = "weight-decay"
    item = client.get("/items/popular", params={"limit": 3}).json()["items"][2]["item_id"]
    user = json.loads((diag_artifact.version_dir / "users.json").read_text())[7]
    for side, key in (("items", "item_id"), ("users", "user_id")):
        query = item if side == "items" else user
        pg.goto(f"{diag_server.base_url}/?{key}={query}&model={model}&k=10")
        body = client.get("/compare-metrics", params={key: query, "model": model, "k": 10}).json()
        assert [lst["metric"] for lst in body["lists"]] == metrics
        wait_lists(pg, lists_of(body))
        cols = pg.eval_on_selector_all(
            "#columns .col", "cs => cs.map(c => [c.dataset.metric, c.querySelector('.what').textContent])"
        )
        assert [metric for metric, _ in cols] == metrics, side
        assert all(len(what) > 20 and "undefined" not in what for _, what in cols), cols  # every metric is explained
        assert pg.get_attribute("#columns", "class") == f"columns n{len(metrics)}"
        assert pg.inner_text("#query .meta + .meta") == (
            f"Top 10 neighbours under {', '.join(metrics[:-1])} and {metrics[-1]} of model {model}."
        )
        assert len(pg.query_selector_all("#pairs tr[data-pair]")) == len(metrics) * (len(metrics) - 1) // 2
    assert pg.inner_text("#mode button[data-mode='metrics']") == f"{len(metrics)} metrics of one model"
    # whitened has no user -> item score (/recommend answers 422): the page must not depend on it
    assert client.get("/recommend", params={"user_id": user, "model": model, "metric": "whitened"}).status_code == 422
    assert not [u for u in requested if "/recommend" in u]
    assert errors == []


def test_bad_query_is_shown_not_thrown(diag_server, page):
    """An unknown id in the URL: the page says so (the API's problem detail) instead of breaking."""
    pg, errors = page
    pg.goto(diag_server.base_url + "/?item_id=no-such-item")
    pg.wait_for_function("() => document.getElementById('status').textContent.includes('no-such-item')")
    assert pg.get_attribute("#status", "class") == "error"
    assert pg.is_hidden("#result")
    assert [e for e in errors if "404" not in e] == []  # the 404 of /compare-metrics itself is logged by the browser


def test_opens_on_the_most_popular_item_and_keeps_the_view_in_the_url(diag_server, diag_artifact, page, shots):
    pg, errors = page
    client = diag_server.client
    items = json.loads((diag_artifact.version_dir / "items.json").read_text())
    popularity = np.load(diag_artifact.version_dir / "item_popularity.npy")
    catalog = client.get("/models").json()
    defaults = catalog["defaults"]

    # no query: a comparison of a real item, the catalogue's most popular (GET /items/popular)
    pg.goto(diag_server.base_url + "/")
    pg.wait_for_selector("#columns .col li[data-id]")
    params = url_params(pg)
    opened = params["item_id"]
    row = [it["id"] for it in items].index(opened)
    assert popularity[row] == popularity.max()
    assert params == {"item_id": opened, "model": defaults["model"], "k": str(defaults["k"])}
    body = client.get("/compare-metrics", params={"item_id": opened, "model": defaults["model"], "k": defaults["k"]}).json()
    assert column_titles(pg) == lists_of(body)
    assert list(lists_of(body)) == catalog["metrics"]
    assert pg.inner_text("#query h2") == items[row]["title"]
    assert f"{int(popularity.max()):,} users" in pg.inner_text("#opened-note")
    screenshot(pg, shots / "page-default.png")

    # another model: the URL follows (same tick as the lists), and reloading that URL restores model and lists
    model = "denoising-item-orthonormal"
    pg.select_option("#model", model)
    pg.wait_for_function(f"() => new URLSearchParams(location.search).get('model') === {model!r}")
    wanted = lists_of(client.get("/compare-metrics", params={"item_id": opened, "model": model}).json())
    assert wanted != lists_of(body)  # the dot and cosine lists move with the D-variant: the check below can fail
    assert column_titles(pg) == wanted
    shared = pg.url
    pg.reload()
    pg.wait_for_selector("#columns .col li[data-id]")
    assert pg.url == shared
    assert pg.input_value("#model") == model
    assert column_titles(pg) == wanted

    # one metric across models, k = 5, then the Models tab: all in the link, all restored by it
    pg.click("#mode button[data-mode='models']")
    pg.select_option("#metric", "cosine")
    pg.select_option("#k", "5")
    pg.wait_for_function("() => new URLSearchParams(location.search).get('k') === '5'")
    across = client.get(
        "/compare-metrics", params={"item_id": opened, "models": list(catalog["models"]), "metric": "cosine", "k": 5}
    ).json()
    wait_lists(pg, lists_of(across))
    assert url_params(pg) == {"item_id": opened, "model": model, "compare": "models", "metric": "cosine", "k": "5"}
    pg.click("#tab-models")
    pg.wait_for_function("() => location.hash === '#models'")
    shared = pg.url
    pg.reload()
    pg.wait_for_selector("#models-list .model-card")
    assert pg.url == shared
    assert pg.is_visible("#view-models") and pg.is_hidden("#view-compare")
    pg.click("#tab-compare")
    wait_lists(pg, lists_of(across))
    assert pg.get_attribute("#mode button[data-mode='models']", "class") == "on"
    assert (pg.input_value("#metric"), pg.input_value("#k"), pg.input_value("#model")) == ("cosine", "5", model)

    # a picked item is a new history entry: Back returns to the previous item and its lists
    pg.click("#mode button[data-mode='metrics']")
    other = next(it["id"] for it in items if it["id"] != opened)
    pg.fill("#search", other)
    pg.wait_for_selector(f"#suggestions li[data-id='{other}']")
    pg.click(f"#suggestions li[data-id='{other}']")
    pg.wait_for_function(f"() => new URLSearchParams(location.search).get('item_id') === {other!r}")
    pg.go_back()
    pg.wait_for_function(f"() => new URLSearchParams(location.search).get('item_id') === {opened!r}")
    wait_lists(pg, lists_of(client.get("/compare-metrics", params={"item_id": opened, "model": model, "k": 5}).json()))
    assert errors == []


def test_models_and_evaluation(diag_server, diag_artifact, page, shots):
    pg, errors = page
    client = diag_server.client
    catalog = client.get("/models").json()
    models = catalog["models"]
    # the premises: diag_artifact is built with --train als (a second source) and --evaluate (tests/support/artifacts.py)
    assert {info["source"] for info in models.values()} == {"closed-form", "implicit"}
    assert catalog["evaluation"] == "/evaluation"

    # Models: every model of /models, in order, with its source, its users and the figures of its gauge endpoint
    pg.goto(diag_server.base_url + "/#models")
    pg.wait_for_function(f"() => document.querySelectorAll('#models-list .model-card table.gauge').length === {len(models)}")
    cards = pg.eval_on_selector_all(
        "#models-list .model-card",
        "cs => cs.map(c => ({model: c.dataset.model, source: c.querySelector('.source').textContent, "
        "users: c.querySelector('.users-origin').textContent, "
        "cells: Object.fromEntries([...c.querySelectorAll('td[data-figure]')].map(td => "
        "[`${td.dataset.side}/${td.closest('tr').dataset.metric}/${td.dataset.figure}`, td.textContent]))}))",
    )
    assert [c["model"] for c in cards] == list(models)
    for card in cards:
        info = models[card["model"]]
        assert (card["source"], card["users"]) == (info["source"], info["users"])
        gauge = client.get(f"/models/{card['model']}/gauge").json()
        assert card["cells"] == {
            f"{side}/{metric}/{fig}": shown(v)
            for side, by_metric in gauge["sides"].items()
            for metric, figs in by_metric.items()
            for fig, v in figs.items()
        }
        assert card["cells"]["items/projected/jaccard_mean"] == "1.000"  # projected cosine does not depend on D
    options = pg.eval_on_selector_all("#model option", "os => os.map(o => [o.value, o.textContent])")
    assert options == [[m, f"{m} · {info['source']}"] for m, info in models.items()]

    # Embedding health: a row per model (the catalogue's order) with summary.json's "embeddings" of both sides
    summary = client.get("/compare-metrics/summary").json()["summary"]
    health = summary["embeddings"]
    assert set(health) == set(models)
    pg.wait_for_selector("#health tr[data-model]")
    rows = pg.eval_on_selector_all(
        "#health tr[data-model]",
        "trs => trs.map(tr => [tr.dataset.model, Object.fromEntries([...tr.querySelectorAll('td[data-figure]')].map(td => "
        "[`${td.dataset.side}/${td.dataset.figure}`, td.textContent])), "
        "[...tr.querySelectorAll('td[data-figure=anisotropy] span.bar')].map(b => parseFloat(b.style.width))])",
    )
    assert [model for model, _, _ in rows] == list(models)
    figures = ["anisotropy", "effective_rank", "norm_popularity_spearman"]
    with_zero = {side: any(health[m][side]["zero_rows"] for m in health) for side in ("items", "users")}
    for model, cells, bars in rows:
        assert cells == {
            f"{side}/{figure}": health_shown(health[model][side], figure)
            for side in ("items", "users")
            for figure in figures + (["zero_rows"] if with_zero[side] else [])
        }, model
        widths = [50 * min(1, max(0, health[model][side]["anisotropy"])) for side in ("items", "users")]
        assert bars == pytest.approx(widths, abs=1e-3), model  # 50 px = anisotropy 1 (CSS keeps 6 significant digits)
    terms = pg.eval_on_selector_all("#health-definitions dd", "ds => ds.map(d => d.textContent)")
    assert terms == list(summary["embeddings_definitions"].values())
    # the item side, recomputed from the served item vectors Q: exact, since all 120 x 119 / 2 pairs fit in the sample
    manifest = json.loads((diag_artifact.version_dir / "manifest.json").read_text())
    popularity = np.load(diag_artifact.version_dir / "item_popularity.npy")
    assert popularity.size * (popularity.size - 1) // 2 <= HealthParams().pairs
    for model, cells, _ in rows:
        index = faiss.read_index(str(diag_artifact.version_dir / manifest["indexes"][f"items/{model}/dot"]["file"]))
        dense = item_health(index.reconstruct_n(0, index.ntotal).astype(np.float64), popularity)
        assert abs(float(cells["items/anisotropy"]) - dense["anisotropy"]) <= 5e-4 + 1e-9, model
        assert abs(float(cells["items/effective_rank"].split(" of ")[0]) - dense["effective_rank"]) <= 5e-3 + 1e-9, model
        assert abs(float(cells["items/norm_popularity_spearman"]) - dense["norm_popularity_spearman"]) <= 5e-4 + 1e-9, model
    # the figures describe the stored vectors: the D-variants, identical predictions, differ in them
    by_model = {model: cells for model, cells, _ in rows}
    assert len({by_model[m]["items/anisotropy"] for m in DENOISING_VARIANTS}) > 1
    assert pg.is_hidden("#health-status") and bad_text(pg, "#health-card") == []
    screenshot(pg, shots / "page-models.png")

    # Evaluation: one row per result with the values of /evaluation, the best of each column marked, a chart per measure
    pg.click("#tab-evaluation")
    pg.wait_for_selector("#eval-table tr[data-model]")
    results = client.get("/evaluation").json()["results"]
    whitened = [r for r in results if r["metric"] == "whitened"]  # the premise: whitened rows have no ranking
    assert len(whitened) == len(models) and all(r["recall_at_20"] is None and r["ndcg_at_100"] is None for r in whitened)
    rows = pg.eval_on_selector_all(
        "#eval-table tr[data-model]",
        "trs => trs.map(tr => ({model: tr.dataset.model, metric: tr.dataset.metric, "
        "cells: Object.fromEntries([...tr.querySelectorAll('td[data-measure]')].map(td => "
        "[td.dataset.measure, td.textContent])), "
        "best: [...tr.querySelectorAll('td.best')].map(td => td.dataset.measure)}))",
    )
    assert [(r["model"], r["metric"]) for r in rows] == [(r["model"], r["metric"] or "") for r in results]
    assert [r["cells"] for r in rows] == [{m: shown(r[m]) for m in MEASURES} for r in results]
    assert "–" in {r["cells"]["spearman_truth"] for r in rows}  # the baselines have no Spearman: null is shown as –
    for m in MEASURES:  # best of the models (baselines not ranked); popularity ratio: closest to 1
        ranked = {i: float(shown(r[m])) for i, r in enumerate(results) if r["metric"] is not None and r[m] is not None}
        target = min(ranked.values(), key=lambda v: abs(v - 1)) if m == "popularity_ratio" else max(ranked.values())
        assert {i for i, r in enumerate(rows) if m in r["best"]} == {i for i, v in ranked.items() if v == target}, m
    charts = pg.eval_on_selector_all(
        "#eval-charts .chart",
        "cs => cs.map(c => ({measure: c.dataset.measure, "
        "bars: [...c.querySelectorAll('rect.bar')].map(r => [r.dataset.model, r.dataset.metric, Number(r.dataset.value), "
        "Number(r.getAttribute('x')), Number(r.getAttribute('width'))]), "
        "refs: [...c.querySelectorAll('line.ref')].map(l => [l.dataset.model, Number(l.dataset.value)])}))",
    )
    assert [c["measure"] for c in charts] == MEASURES  # the simulation has categories and a ground truth: all six
    for chart in charts:
        m = chart["measure"]
        assert sorted((b[0], b[1], b[2]) for b in chart["bars"]) == sorted(
            (r["model"], r["metric"], r[m]) for r in results if r["metric"] is not None and r[m] is not None
        ), m
        assert chart["refs"] == [[r["model"], r[m]] for r in results if r["metric"] is None and r[m] is not None], m
        positive = [(v, x, w) for _, _, v, x, w in chart["bars"] if v > 0.05]
        assert len({round(x, 6) for _, x, _ in positive}) == 1, m  # every bar starts at the zero line
        scale = positive[0][2] / positive[0][0]
        assert all(w == pytest.approx(scale * v, rel=1e-6) for v, _, w in positive), m  # lengths proportional to values
    for chart in charts:  # no whitened bar where it has no value, and the chart says why
        if chart["measure"] in ("recall_at_20", "ndcg_at_100"):
            assert not [b for b in chart["bars"] if b[1] == "whitened"]
            note = f"#eval-charts .chart[data-measure='{chart['measure']}'] .chart-without"
            assert pg.inner_text(note) == "No bar for whitened: no user → item score."
        else:
            assert pg.query_selector(f"#eval-charts .chart[data-measure='{chart['measure']}'] .chart-without") is None
    assert all(r["cells"]["recall_at_20"] == r["cells"]["ndcg_at_100"] == "–" for r in rows if r["metric"] == "whitened")
    assert "whitened has no user → item score" in pg.inner_text("#eval-legend")
    assert bad_text(pg, "#view-evaluation") == []  # no NaN in any text, bar position or width
    screenshot(pg, shots / "page-evaluation.png")
    assert errors == []


def test_a_version_without_gauge_or_evaluation_says_so(bare_server, page, shots):
    pg, errors = page
    client = bare_server.client
    catalog = client.get("/models").json()
    # the premises: built with --gauge-transforms 0 and without --evaluate
    assert all(info["gauge"] is None for info in catalog["models"].values())
    assert catalog["evaluation"] is None and client.get("/evaluation").status_code == 404

    pg.goto(bare_server.base_url + "/#evaluation")
    pg.wait_for_selector("#evaluation-status.noeval")
    text = pg.inner_text("#evaluation-status")
    assert catalog["artifact_version"] in text and "without --evaluate" in text
    command = pg.inner_text("#evaluation-status code")
    assert command.startswith("python -m models.build --dataset simulation") and command.endswith(" --evaluate")
    assert pg.is_hidden("#evaluation")
    screenshot(pg, shots / "page-no-evaluation.png")

    pg.click("#tab-models")
    n = len(catalog["models"])
    pg.wait_for_function(f"() => document.querySelectorAll('#models-list .model-card .noprobe').length === {n}")
    assert pg.query_selector_all("#models-list table.gauge") == []
    assert all(t.startswith("no probe") for t in pg.eval_on_selector_all(".noprobe", "ps => ps.map(p => p.textContent)"))
    assert client.get("/compare-metrics/summary").status_code == 404  # built with --no-diagnostics
    pg.wait_for_selector("#health-status.nohealth")
    note = pg.inner_text("#health-status")
    assert catalog["artifact_version"] in note and "--no-diagnostics" in note
    assert pg.is_hidden("#health") and pg.query_selector_all("#health tr") == []
    pg.click("#tab-compare")
    pg.wait_for_selector("#columns .col li[data-id]")
    assert "under random D" not in pg.inner_text("#columns")  # no gauge figure in the columns either
    assert errors == []


def test_a_summary_without_embedding_health_says_so(diag_server, page):
    """An older build's summary.json has no "embeddings" (nor their definitions): the Models tab says so and the rest works.
    The served summary is rewritten on its way to the page; one with a null figure shows a dash instead."""
    pg, errors = page
    version = diag_server.client.get("/models").json()["artifact_version"]
    edit: dict[str, Any] = {"drop": True}

    def rewrite(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        if edit["drop"]:
            del body["summary"]["embeddings"], body["summary"]["embeddings_definitions"]
        else:
            body["summary"]["embeddings"]["weight-decay"]["users"] |= {"anisotropy": None, "effective_rank": None}
        route.fulfill(response=response, json=body)

    pg.route("**/compare-metrics/summary", rewrite)
    pg.goto(diag_server.base_url + "/#models")
    pg.wait_for_selector("#health-status.nohealth")
    note = pg.inner_text("#health-status")
    assert version in note and "predates" in note
    assert pg.is_hidden("#health") and pg.query_selector_all("#health tr") == []
    pg.wait_for_selector("#models-list .model-card table.gauge")
    pg.click("#tab-summary")  # the summary tab reads the same document and does not need the health
    pg.wait_for_selector("#summary table.summary-quality")
    pg.wait_for_function("() => { const i = document.getElementById('heatmap-grid'); return i && i.complete; }")

    edit["drop"] = False
    pg.goto(diag_server.base_url + "/#models")  # a new document (the page has put the opened item in its URL meanwhile)
    pg.wait_for_selector("#health tr[data-model='weight-decay']")
    cells = pg.eval_on_selector_all(
        "#health tr[data-model='weight-decay'] td[data-side='users']", "tds => tds.map(td => [td.dataset.figure, td.textContent])"
    )
    assert dict(cells)["anisotropy"] == "–" and dict(cells)["effective_rank"] == "–"
    assert pg.query_selector_all("#health tr[data-model='weight-decay'] td[data-side='users'] span.bar") == []
    assert bad_text(pg, "#health-card") == []
    assert errors == []
