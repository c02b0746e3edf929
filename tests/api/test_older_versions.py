"""A version built before projected-centered and whitened existed keeps serving: its three metrics, and a 422
naming what it serves for the others (never a 500 or a 404 for a valid metric name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.artifacts import api_build_in_process
from support.in_process import in_process_server

from models.artifact.manifest import MANIFEST, SHARED_METRICS

OLD_METRICS = ["dot", "cosine", "projected"]


def as_older_version(vdir: Path) -> None:
    """Rewrite a version's manifest as a build with only dot, cosine and projected wrote it: their indexes and
    /recommend pairs, their files (the others stay on disk, unlisted and unread)."""
    manifest = json.loads((vdir / MANIFEST).read_text())
    new = [m for m in SHARED_METRICS if m not in OLD_METRICS]
    dropped = {key: e for key, e in manifest["indexes"].items() if key.rsplit("/", 1)[1] in new}
    manifest["indexes"] = {key: e for key, e in manifest["indexes"].items() if key not in dropped}
    for by_metric in manifest["recommend"].values():
        for metric in new:
            entry = by_metric.pop(metric, None)
            if entry is not None:
                dropped[f"recommend/{metric}"] = entry
    unlisted = {e["file"] for e in dropped.values() if "file" in e} | {
        f for e in dropped.values() for f in (e.get("query_file"), (e.get("items") or {}).get("file")) if f
    }
    manifest["files"] = {rel: meta for rel, meta in manifest["files"].items() if rel not in unlisted}
    manifest["metrics"] = OLD_METRICS
    (vdir / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def older(tmp_path_factory):
    root = tmp_path_factory.mktemp("older")
    version = api_build_in_process(root)
    as_older_version(root / "versions" / version)
    with in_process_server(root) as server:
        yield server


def test_an_older_version_serves_its_three_metrics(older):
    assert older.client.get("/models").json()["metrics"] == OLD_METRICS
    for metric in OLD_METRICS:
        for path, params in (
            ("/similar-items", {"item_id": "i3"}),
            ("/similar-users", {"user_id": "u3"}),
            ("/recommend", {"user_id": "u3"}),
        ):
            r = older.client.get(path, params={**params, "metric": metric, "k": 3})
            assert r.status_code == 200 and len(r.json()["neighbors"]) == 3, (path, metric, r.text)
    lists = older.client.get("/compare-metrics", params={"item_id": "i3"}).json()["lists"]
    assert [entry["metric"] for entry in lists] == OLD_METRICS


@pytest.mark.parametrize("metric", ["projected-centered", "whitened"])
def test_a_metric_the_version_lacks_is_a_422_naming_what_it_serves(older, metric):
    for path, params in (("/similar-items", {"item_id": "i3"}), ("/recommend", {"user_id": "u3"})):
        r = older.client.get(path, params={**params, "metric": metric})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        (error,) = r.json()["errors"]
        assert error["param"] == "metric" and "does not serve metric" in error["message"]
        assert "dot, cosine, projected" in error["message"]
    r = older.client.get(
        "/compare-metrics", params={"item_id": "i3", "models": ["weight-decay", "denoising-symmetric"], "metric": metric}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["param"] == "metric"
