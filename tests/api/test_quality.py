"""GET /models/{model}/gauge, GET /evaluation, and models as data, on a real server process.

diag_server serves a version with an implicit ALS model, the gauge probe and the evaluation;
api_server one without them (built with the defaults of the fixture: no --evaluate, no --train).
"""

from __future__ import annotations

import json

from support.problems import assert_problem as problem

from models.artifact.manifest import METRICS


def _manifest(artifact) -> dict:
    return json.loads((artifact.version_dir / "manifest.json").read_text())


def test_models_come_from_the_manifest(diag_server, diag_artifact):
    body = diag_server.client.get("/models").json()
    manifest = _manifest(diag_artifact)
    assert list(body["models"]) == list(manifest["models"]) and "als" in body["models"]
    assert body["models"]["als"]["source"] == "implicit" and body["models"]["denoising-symmetric"]["source"] == "closed-form"
    assert body["models"]["als"]["gauge"] == "/models/als/gauge" and body["evaluation"] == "/evaluation"
    item = json.loads((diag_artifact.version_dir / "items.json").read_text())[0]["id"]
    for metric in METRICS:
        r = diag_server.client.get("/similar-items", params={"item_id": item, "model": "als", "metric": metric, "k": 5})
        assert r.status_code == 200 and r.json()["model"] == "als" and len(r.json()["neighbors"]) == 5


def test_unknown_model_is_422_listing_the_served_ones(diag_server, diag_artifact):
    models = list(_manifest(diag_artifact)["models"])
    item = json.loads((diag_artifact.version_dir / "items.json").read_text())[0]["id"]
    for path, params in (
        ("/similar-items", {"item_id": item}),
        ("/recommend", {"user_id": "u0"}),
        ("/compare-metrics", {"item_id": item}),
    ):
        body = problem(diag_server.client.get(path, params={**params, "model": "svd++"}), 422)
        errors = {e["param"]: e for e in body["errors"]}
        assert errors["model"]["allowed"] == models and errors["model"]["input"] == "svd++", path
        assert "als" in body["detail"]
    body = problem(diag_server.client.get("/models/svd++/gauge"), 422)
    assert body["errors"][0]["in"] == "path" and body["errors"][0]["allowed"] == models


def test_unknown_model_with_another_bad_parameter_lists_both(diag_server):
    body = problem(diag_server.client.get("/similar-items", params={"item_id": "x", "model": "nope", "metric": "euclid"}), 422)
    assert {e["param"] for e in body["errors"]} == {"model", "metric"}


def test_gauge_is_the_builds_probe(diag_server, diag_artifact):
    manifest = _manifest(diag_artifact)
    probes = json.loads((diag_artifact.version_dir / manifest["gauge"]).read_text())
    for model in manifest["models"]:
        r = diag_server.client.get(f"/models/{model}/gauge")
        assert r.status_code == 200
        body = r.json()
        assert body["model"] == model and body["artifact_version"] == diag_artifact.version
        assert body["sides"] == probes[model]["sides"] and body["transforms"] == 4
        assert set(body["queries"]) == {"items", "users"}
        for side in ("items", "users"):
            assert body["sides"][side]["projected"]["jaccard_mean"] == 1.0


def test_evaluation_json_and_markdown(diag_server, diag_artifact):
    manifest = _manifest(diag_artifact)
    stored = json.loads((diag_artifact.version_dir / manifest["evaluation"]).read_text())
    r = diag_server.client.get("/evaluation")
    assert r.status_code == 200
    body = r.json()
    assert body["results"] == stored["results"] and body["split"] == stored["split"]
    pairs = {(row["model"], row["metric"]) for row in body["results"]}
    assert {(m, x) for m in manifest["models"] for x in METRICS} | {("random", None), ("popular", None)} == pairs
    for row in body["results"]:
        assert {"recall_at_20", "ndcg_at_100", "category_precision_at_10", "popularity_ratio", "coverage_at_10"} <= set(row)
    md = diag_server.client.get("/evaluation", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    table = [line for line in md.text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert len(table) == len(body["results"])
    als_dot = next(row for row in body["results"] if row["model"] == "als" and row["metric"] == "dot")
    assert f"| als | dot | {als_dot['recall_at_20']:.3f} |" in md.text
    bad = problem(diag_server.client.get("/evaluation", params={"format": "pdf"}), 422)
    assert bad["errors"][0]["allowed"] == ["json", "markdown"]


def test_version_without_gauge_or_evaluation_says_so(api_server):
    # the session's api_artifact is built by the CLI, so it has the gauge probe but no evaluation
    body = problem(api_server.client.get("/evaluation"), 404)
    assert body["type"] == "/problems/evaluation-unavailable" and "--evaluate" in body["detail"]
    assert api_server.client.get("/models").json()["evaluation"] is None
