"""GET /compare-metrics/summary, /figures and /figures/{name} over HTTP against `python -m app`.

On the session's `diag_artifact` (tests/conftest.py: a small simulation built WITH diagnostics): the
summary served is the build's summary.json, and its item-side figures equal the means, over every item,
of what /compare-metrics answers per query (two independent paths: the build's batch computation over
the index files vs the API's per-query one); figures are exactly the manifest's PNGs, and nothing else
is served. On the shared `api_artifact` (built with --no-diagnostics): 404 problems, an empty listing.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from support.problems import PROBLEM

from models.artifact.manifest import METRICS
from models.fit.closed_forms import DENOISING_VARIANTS


@pytest.fixture(scope="module")
def diag(diag_artifact) -> dict:
    d = diag_artifact.version_dir
    return {
        "manifest": json.loads((d / "manifest.json").read_text()),
        "summary": json.loads((d / "summary.json").read_text()),
        "items": json.loads((d / "items.json").read_text()),
    }


def test_summary_is_the_builds_summary_json(diag_server, diag_artifact, diag):
    r = diag_server.client.get("/compare-metrics/summary")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["artifact_version"] == diag_artifact.version == r.headers["artifact-version"]
    assert body["summary"] == diag["summary"]
    assert body["dataset"] == diag["manifest"]["dataset"]


@pytest.mark.parametrize(("fmt", "media"), [("markdown", "text/markdown"), ("text", "text/plain")])
def test_summary_as_tables(diag_server, diag_artifact, diag, fmt, media):
    r = diag_server.client.get("/compare-metrics/summary", params={"format": fmt})
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    assert r.headers["artifact-version"] == diag_artifact.version and diag_artifact.version in r.text
    items = diag["summary"]["sides"]["items"]["models"]
    for model, mo in items.items():
        # every model's category precision for dot appears, as printed with 3 decimals
        assert model in r.text and f"{mo['metrics']['dot']['category_precision']:.3f}" in r.text
    assert ("| --- |" in r.text) == (fmt == "markdown")


def test_summary_item_figures_equal_the_mean_of_per_query_comparisons(diag_server, diag):
    """Mean Jaccard / RBO per metric pair, category precision and popularity bias over all items, from /compare-metrics."""
    summary = diag["summary"]
    side = summary["sides"]["items"]
    assert not side["sampled"] and side["queries"] == side["rows"] == len(diag["items"])
    model = "denoising-sigma-matched"
    per_pair: dict[str, list[tuple[float, float]]] = {}
    per_metric: dict[str, list[tuple[float, float]]] = {m: [] for m in METRICS}
    for it in diag["items"]:
        params = {"item_id": it["id"], "model": model, "k": summary["k"], "tau_rows": 0}
        r = diag_server.client.get("/compare-metrics", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        for p in body["pairs"]:
            per_pair.setdefault(f"{p['a']}~{p['b']}", []).append((p["jaccard"], p["rbo"]))
        for lst in body["lists"]:
            per_metric[lst["name"]].append((lst["category_share"], lst["popularity_ratio"]))
    expected = side["models"][model]
    for pair, values in per_pair.items():
        jac, rbo = np.mean(values, axis=0)
        assert expected["pairs"][pair]["jaccard"] == pytest.approx(jac, abs=1e-9), pair
        assert expected["pairs"][pair]["rbo"] == pytest.approx(rbo, abs=1e-9), pair
    for metric, values in per_metric.items():
        cat, pop = np.mean(np.array(values, dtype=float), axis=0)
        assert expected["metrics"][metric]["category_precision"] == pytest.approx(cat, abs=1e-9), metric
        assert expected["metrics"][metric]["popularity_bias"] == pytest.approx(pop, abs=1e-9), metric
    # the D-sensitivity of projected cosine is 1 (one index for the four D-variants); cosine's is below 1
    assert side["d_sensitivity"]["projected"]["jaccard"] == 1.0
    assert side["d_sensitivity"]["cosine"]["jaccard"] < 1.0
    assert set(side["d_sensitivity"]["cosine"]["pairs"]) == {
        f"{a.removeprefix('denoising-')}~{b.removeprefix('denoising-')}"
        for i, a in enumerate(DENOISING_VARIANTS)
        for b in DENOISING_VARIANTS[i + 1 :]
    }


def test_figures_are_exactly_the_manifests_pngs(diag_server, diag_artifact, diag):
    r = diag_server.client.get("/figures")
    assert r.status_code == 200 and r.headers["artifact-version"] == diag_artifact.version
    body = r.json()
    heatmaps = diag["manifest"]["diagnostics"]["heatmaps"]
    listed = {f["name"]: f for f in body["figures"]}
    panels = [*heatmaps["panels"], *heatmaps["served_panels"]]
    files = [heatmaps["grid"], heatmaps["served_grid"], *(p["file"] for p in panels)]
    assert sorted(listed) == sorted(f.rsplit("/", 1)[1] for f in files)
    assert body["skipped"] is None and body["heatmaps"]["order"] == heatmaps["order"]
    assert [f["kind"] for f in body["figures"]].count("grid") == 2  # the paper's figure and the served indexes
    for panel in panels:
        f = listed[panel["file"].rsplit("/", 1)[1]]
        assert (f["model"], f["metric"], f["k"], f["kind"]) == (panel["model"], panel["metric"], panel["k"], "panel")
    for rel in files:
        name = rel.rsplit("/", 1)[1]
        png = diag_server.client.get(listed[name]["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == (diag_artifact.version_dir / rel).read_bytes()
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        sha = diag["manifest"]["files"][rel]["sha256"]
        assert hashlib.sha256(png.content).hexdigest() == sha and png.headers["etag"] == f'"{sha}"'
    etag = f'"{diag["manifest"]["files"][heatmaps["grid"]]["sha256"]}"'
    again = diag_server.client.get("/figures/heatmaps.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "name",
    [
        "summary.json",
        "manifest.json",
        "items.json",
        "heatmaps",
        "HEATMAPS.PNG",
        "..%2Fmanifest.json",
        "%2E%2E%2Fsummary.json",
        "figures%2Fheatmaps.png",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_only_listed_figures_are_served(diag_server, name):
    r = diag_server.client.get(f"/figures/{name}")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), r.text
    assert b"PNG" not in r.content[:8]


def test_a_version_without_diagnostics(api_server, api_artifact):
    r = api_server.client.get("/compare-metrics/summary")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"] == "/problems/summary-unavailable" and body["artifact_version"] == api_artifact.version
    assert "--no-diagnostics" in body["detail"]
    listing = api_server.client.get("/figures").json()
    assert listing["figures"] == [] and listing["heatmaps"] is None and "no-diagnostics" in listing["skipped"]
    assert api_server.client.get("/figures/heatmaps.png").status_code == 404
    bad = api_server.client.get("/compare-metrics/summary", params={"format": "html"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["allowed"] == ["json", "markdown", "text"]
