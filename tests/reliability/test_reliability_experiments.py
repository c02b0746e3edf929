"""A bad experiments file is refused like a corrupt artifact version, on `python -m app` with 2 workers under
load: every worker keeps the definitions it had and keeps serving them, says why in /readyz, /metrics and its
log, does not re-read the refused file at every poll, and takes the next good file; a server that starts with a
bad file is ready (the neighbour endpoints serve, without experiments) and says why. And a factor file given to
`--import-factors` that cannot be read is refused by the job like bad input: nothing published, the API serves
on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.artifacts import copy_artifacts
from support.load import LoadGenerator, neighbour_queries
from support.problems import assert_problem
from support.prometheus import metric
from support.servers import ApiServer, each_worker, metrics_text, start_api_server, wait_for, wait_serving

from models.artifact.store import ArtifactStore, verify_version

WORKERS = 2
EXPERIMENTS = """
[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "rel"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]
"""
QUERIES = [
    ("/similar-items", {"item_id": f"i{j % 300}", "experiment": "item-metric", "unit_id": f"u{j}", "k": 5}) for j in range(200)
]


def _write(path: Path, content: str | bytes) -> None:
    """Replace the file the way an editor or a deploy does: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content if isinstance(content, bytes) else content.encode())
    tmp.replace(path)


# damage -> a phrase the refusal reason must contain
BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "not-toml": (lambda p: _write(p, EXPERIMENTS.replace("[[experiment]]", "[[experiment]")), "line 2"),
    "truncated": (lambda p: _write(p, EXPERIMENTS[: len(EXPERIMENTS) // 2]), "invalid TOML"),
    "binary": (lambda p: _write(p, np.random.default_rng(1).bytes(300)), "experiments"),
    "unknown-metric": (lambda p: _write(p, EXPERIMENTS.replace('metric = "projected"', 'metric = "euclid"')), "euclid"),
    "unknown-model": (
        lambda p: _write(
            p, EXPERIMENTS.replace('model = "denoising-symmetric", metric = "cosine"', 'model = "nope", metric = "cosine"')
        ),
        "nope",
    ),
    "zero-weight": (lambda p: _write(p, EXPERIMENTS.replace("weight = 1 }", "weight = 0 }", 1)), "weight"),
    "deleted": (lambda p: p.unlink(), "No such file"),
}


def _experiment_status(server: ApiServer) -> list[dict]:
    return [b["experiments"] for b in each_worker(server, "/readyz", WORKERS).values()]


@pytest.fixture(scope="module")
def served(api_artifact, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiments-rel")
    art = copy_artifacts(api_artifact, tmp / "art")
    path = tmp / "experiments.toml"
    path.write_text(EXPERIMENTS)
    env = {"RELOAD_INTERVAL": "0.2", "EXPERIMENTS_FILE": str(path), "EVENTS_DIR": str(tmp / "events")}
    with start_api_server(art.root, tmp, workers=WORKERS, **env) as server:
        wait_serving(server, art.version, WORKERS)
        yield server, path


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_experiments_file_is_refused_and_every_worker_serves_on(served, case):
    server, path = served
    damage, reason = BAD_FILES[case]
    refused_before = metric(metrics_text(server), "simserve_experiments_refused_total")
    logged_before = server.logs().count("experiments file refused")
    try:
        with LoadGenerator(server.base_url, QUERIES, threads=2, max_seconds=60, pause=0.005) as load:
            time.sleep(0.5)
            damage(path)
            wait_for(
                lambda: metric(metrics_text(server), "simserve_experiments_refused_total") - refused_before == WORKERS,
                what="every worker refusing the file",
            )
            time.sleep(1.0)  # several polls: the refused file is not read again
            result = load.stop()
        assert result.failures == [], result.failures[:5]  # every experiment request served on the old definitions
        assert metric(metrics_text(server), "simserve_experiments_refused_total") - refused_before == WORKERS
        for status in _experiment_status(server):
            assert status["experiments"] == ["item-metric"], status
            assert reason in status["last_refusal"]["reason"] and str(path) in status["last_refusal"]["reason"], status
        lines = server.logs().splitlines()
        refusals = [line for line in lines if "experiments file refused" in line][logged_before:]
        assert len(refusals) == WORKERS and all(reason in line for line in refusals), refusals
    finally:
        _write(path, EXPERIMENTS)
    wait_for(lambda: all(s["last_refusal"] is None for s in _experiment_status(server)), what="the good file taken back")


@pytest.mark.slow
def test_a_server_started_with_a_bad_experiments_file_is_ready_and_says_why(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    path = tmp_path / "experiments.toml"
    _write(path, EXPERIMENTS.replace('metric = "projected"', 'metric = "euclid"'))
    env = {"RELOAD_INTERVAL": "0.2", "EXPERIMENTS_FILE": str(path), "EVENTS_DIR": str(tmp_path / "events")}
    with start_api_server(art.root, tmp_path, workers=WORKERS, **env) as server:
        for status in _experiment_status(server):
            assert status["experiments"] == [] and "euclid" in status["last_refusal"]["reason"], status
        r = httpx.get(server.base_url + "/similar-items", params={"item_id": "i1"})
        assert r.status_code == 200  # the service itself is unaffected
        body = assert_problem(httpx.get(server.base_url + "/similar-items", params=QUERIES[0][1]), 422)
        assert "unknown experiment 'item-metric'; this server runs none" in str(body["errors"]), body
        _write(path, EXPERIMENTS)
        wait_for(lambda: all(s["experiments"] == ["item-metric"] for s in _experiment_status(server)), what="the good file")
        assert httpx.get(server.base_url + "/similar-items", params=QUERIES[0][1]).status_code == 200


# --------------------------------------------------------------------------- imported factor files


def _factor_folder(root: Path, version_dir: Path, damage: str) -> Path:
    """A folder of imported item factors (item_factors.npy + item_ids.txt) for the version's items, damaged."""
    import json

    items = [it["id"] for it in json.loads((version_dir / "items.json").read_text(encoding="utf-8"))]
    folder = root / f"factors-{damage}"
    folder.mkdir()
    vectors = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
    if damage == "nan":
        vectors[17, 3] = np.nan
    np.save(folder / "item_factors.npy", vectors)
    if damage == "truncated":
        data = (folder / "item_factors.npy").read_bytes()
        (folder / "item_factors.npy").write_bytes(data[: len(data) // 2])
    ids = items if damage != "short-ids" else items[:-3]
    (folder / "item_ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("damage,phrase", [("nan", "row 17"), ("truncated", "item_factors.npy"), ("short-ids", "item_ids.txt")])
def test_a_bad_imported_factor_file_publishes_nothing_and_the_api_serves_on(api_artifact, tmp_path, damage, phrase):
    import subprocess
    import sys

    from support.artifacts import API_BUILD, ROOT, build_args

    art = copy_artifacts(api_artifact, tmp_path / "art")
    store = ArtifactStore(art.root)
    before = store.list_versions()
    folder = _factor_folder(tmp_path, art.version_dir, damage)
    queries = neighbour_queries(art.version_dir, ["denoising-symmetric"], ["projected"], ids=3)
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
        wait_serving(server, art.version, WORKERS)
        with LoadGenerator(server.base_url, queries, threads=2, max_seconds=120, pause=0.01) as load:
            done = subprocess.run(
                [sys.executable, "-m", "models.build", "--dataset", "simulation", "--out", str(art.root),
                 "--no-diagnostics", "--import-factors", f"mine={folder}", *build_args(API_BUILD)],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            result = load.stop()
        assert done.returncode == 2, done.stderr[-2000:]
        error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
        assert phrase in error and "Traceback" not in done.stderr, error
        assert "nothing was published; the previous version is untouched" in done.stderr
        assert store.current_version() == art.version and store.list_versions() == before
        verify_version(art.version_dir)
        assert result.failures == [] and result.requests > 20, result.failures[:5]
        for body in each_worker(server, "/readyz", WORKERS).values():
            assert body["artifact_version"] == art.version and body["last_refusal"] is None
