"""Hot reload against a running server: new versions, corrupted versions, the admin endpoint, no version.

Each test starts its own `python -m app` and builds versions with subprocesses (slow); the fast twins
at the end check the same reload behaviour on the API in this process (create_app + TestClient) with
versions built in this process. Counts per worker, the log and the process itself are the slow tests'.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.artifacts import API_BUILD, ROOT, ApiArtifact, api_build, api_build_in_process, build_args, copy_artifacts
from support.in_process import in_process_server
from support.oracle import dense_oracle
from support.prometheus import metric
from support.servers import metrics_text, start_api_server, wait_for

from models.artifact.store import ArtifactStore


@pytest.fixture(scope="module")
def spares(tmp_path_factory) -> dict[str, Path]:
    """Two extra versions, built once (in parallel) with models.build into scratch roots: name -> version folder."""
    builds = {"lam250": {"lambda_denoising": 250.0}, "lam400": {"lambda_denoising": 400.0}}
    procs = {}
    for name, overrides in builds.items():
        out = tmp_path_factory.mktemp(f"spare-{name}")
        args = build_args({**API_BUILD, **overrides})
        cmd = [sys.executable, "-m", "models.build", "--out", str(out), "--quiet", "--no-diagnostics", *args]
        procs[name] = (out, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    found = {}
    for name, (out, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        found[name] = out / "versions" / (out / "CURRENT").read_text().strip()
    return found


def publish_copy(root: Path, version_dir: Path, corrupt: bool = False) -> str:
    """Copy a built version into root/versions and switch CURRENT to it (what publish does last).

    corrupt: flip one byte of an index file first (same size, so only the checksum can tell).
    """
    target = root / "versions" / version_dir.name
    shutil.copytree(version_dir, target)
    if corrupt:
        index = target / "indexes" / "items-denoising-projected.faiss"
        data = bytearray(index.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index.write_bytes(data)
    ArtifactStore(root).switch_current(version_dir.name)
    return version_dir.name


def check_corrupt_version_refused(server, art: ApiArtifact, spares: dict[str, Path]) -> str:
    """Publish a corrupted version: the poller refuses it with the reason and the served one stays; its name."""
    bad = publish_copy(art.root, spares["lam250"], corrupt=True)
    refusal = wait_for(lambda: server.client.get("/readyz").json()["last_refusal"], what="the refusal")
    ready = server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["artifact_version"] == art.version
    assert refusal["version"] == bad and refusal["trigger"] == "poll"
    assert "indexes/items-denoising-projected.faiss" in refusal["reason"] and "sha256" in refusal["reason"]
    r = server.client.get("/similar-items", params={"item_id": "i1"})
    assert r.status_code == 200 and r.json()["artifact_version"] == art.version
    return bad


def check_next_good_version_served(server, art: ApiArtifact, spares: dict[str, Path]) -> None:
    """A good version published after a refused one is served."""
    good = publish_copy(art.root, spares["lam400"])
    wait_for(lambda: server.client.get("/readyz").json()["artifact_version"] == good, what="the next good version")


def check_admin_reload(server, art: ApiArtifact, spares: dict[str, Path], refused_before: float) -> None:
    """POST /admin/reload with polling off: 401 without the token, a forced swap with it, 409 on a corrupt
    version (the served one stays); the admin refusal counter rises by exactly one from refused_before."""
    c = server.client
    new = publish_copy(art.root, spares["lam400"])
    time.sleep(0.5)
    assert c.get("/readyz").json()["artifact_version"] == art.version  # polling is off
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
        r = c.post("/admin/reload", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/admin/reload").status_code == 405
    auth = {"Authorization": "Bearer s3cret-token"}
    r = c.post("/admin/reload", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("artifact_version", "previous_version", "changed")} == {
        "artifact_version": new,
        "previous_version": art.version,
        "changed": True,
    }
    assert body["all_workers_reloaded"] is True and [w["pid"] for w in body["workers"]] == [body["pid"]]
    assert body["workers"][0]["artifact_version"] == new and body["workers"][0]["reloaded"] is True
    assert c.get("/similar-items", params={"item_id": "i1"}).json()["artifact_version"] == new
    assert c.post("/admin/reload", headers=auth).json()["changed"] is False
    bad = publish_copy(art.root, spares["lam250"], corrupt=True)
    r = c.post("/admin/reload", headers=auth)
    assert r.status_code == 409 and r.json()["refused_version"] == bad and "sha256" in r.json()["detail"]
    assert r.json()["artifact_version"] == new
    assert c.get("/similar-items", params={"item_id": "i1"}).json()["artifact_version"] == new
    assert metric(metrics_text(server), "simserve_reload_refused_total", trigger="admin") - refused_before == 1


@pytest.mark.slow
def test_new_version_is_picked_up_without_restart_and_requests_never_fail(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    oracles = {art.version: dense_oracle(art.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])}
    item_ids = [it["id"] for it in json.loads((art.version_dir / "items.json").read_text())]
    with start_api_server(art.root, tmp_path, workers=2, RELOAD_INTERVAL="0.3") as server:
        seen: list[tuple[int, str | None, int, list[dict]]] = []
        stop = threading.Event()

        def hammer() -> None:  # requests in flight while the version swaps
            with httpx.Client(base_url=server.base_url, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    q = (i * 37) % len(item_ids)
                    r = c.get("/similar-items", params={"item_id": item_ids[q], "k": 5})
                    body = r.json()
                    seen.append((r.status_code, body.get("artifact_version"), q, body.get("neighbors", [])))
                    i += 1

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            time.sleep(0.5)
            new = api_build(art.root, lambda_denoising=300.0)
            wait_for(
                lambda: metric(metrics_text(server), "simserve_artifact_version_info", version=new) == 2,
                what="both workers on the new version",
            )
            time.sleep(0.3)
        finally:
            stop.set()
            worker.join()
        assert server.client.get("/readyz").json()["artifact_version"] == new
        assert metric(metrics_text(server), "simserve_reloads_total", trigger="poll") == 2
        assert server.proc.poll() is None  # same process: no restart
    oracles[new] = dense_oracle(art.root / "versions" / new, 300.0, API_BUILD["lambda_weight_decay"])
    assert {status for status, *_ in seen} == {200}
    versions = [v for _, v, _, _ in seen]
    assert art.version in versions and new in versions and versions[-1] == new
    index = {x: i for i, x in enumerate(item_ids)}
    for _, version, q, neighbors in seen[:: max(1, len(seen) // 200)] + seen[-5:]:
        # each response is wholly from the version it names: its scores are that version's, not a mix
        truth = oracles[version].items("denoising-symmetric", "projected")[q]
        np.testing.assert_allclose(
            [n["score"] for n in neighbors], truth[[index[n["item_id"]] for n in neighbors]], rtol=2e-4, atol=2e-5
        )
    before = oracles[art.version].items("denoising-symmetric", "projected")
    after = oracles[new].items("denoising-symmetric", "projected")
    assert not np.allclose(before, after, atol=1e-3)  # the check above can tell the versions apart


@pytest.mark.slow
def test_corrupted_version_is_refused_and_the_old_one_keeps_serving(api_artifact, spares, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    with start_api_server(art.root, tmp_path, RELOAD_INTERVAL="0.3") as server:
        bad = check_corrupt_version_refused(server, art, spares)
        time.sleep(1.0)  # several polls: a refused version is not re-verified again and again
        assert metric(metrics_text(server), "simserve_reload_refused_total", trigger="poll") == 1
        assert metric(metrics_text(server), "simserve_last_refusal_info", version=bad) == 1
        assert metric(metrics_text(server), "simserve_artifact_version_info", version=art.version) == 1
        assert "refused artifact version" in server.logs() and bad in server.logs()
        check_next_good_version_served(server, art, spares)


@pytest.mark.slow
def test_admin_reload_forces_a_check_and_needs_the_token(api_artifact, spares, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    with start_api_server(art.root, tmp_path, RELOAD_INTERVAL="0", ADMIN_TOKEN="s3cret-token") as server:
        check_admin_reload(server, art, spares, refused_before=0)


@pytest.mark.slow
def test_no_version_then_a_bad_name_then_a_good_version(spares, tmp_path):
    root = tmp_path / "art"
    (root / "versions").mkdir(parents=True)
    with start_api_server(root, tmp_path, ready="/healthz", RELOAD_INTERVAL="0.2") as server:
        c = server.client
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["artifact_version"] is None
        assert "artifact-version" not in health.headers
        for path in ("/readyz", "/models", "/similar-items?item_id=i1", "/similar-users?user_id=u1", "/recommend?user_id=u1"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json"), path
            assert r.json()["artifact_version"] is None and "CURRENT" in r.json()["detail"]
        (root / "CURRENT").write_text("../../etc\n")  # CURRENT must name a version, never a path
        wait_for(lambda: (c.get("/readyz").json().get("last_refusal") or {}).get("version") == "../../etc", what="the refusal")
        r = c.get("/readyz")
        assert r.status_code == 503 and "not a version name" in r.json()["detail"]
        version = publish_copy(root, spares["lam400"])
        wait_for(lambda: c.get("/readyz").status_code == 200, what="readiness after the first good version")
        assert c.get("/similar-items", params={"item_id": "i1"}).json()["artifact_version"] == version


# --------------------------------------------------------------------------- in-process (fast)


@pytest.fixture(scope="module")
def spares_in_process(tmp_path_factory) -> dict[str, Path]:
    """`spares`, built in this process: name -> version folder."""
    found = {}
    for name, overrides in {"lam250": {"lambda_denoising": 250.0}, "lam400": {"lambda_denoising": 400.0}}.items():
        out = tmp_path_factory.mktemp(f"spare-{name}-here")
        found[name] = out / "versions" / api_build_in_process(out, **overrides)
    return found


@pytest.fixture(scope="module")
def artifact_in_process(tmp_path_factory) -> ApiArtifact:
    """An artifacts root with one version of the API build, built in this process (read-only: copy it)."""
    root = tmp_path_factory.mktemp("reload-here")
    return ApiArtifact(root, api_build_in_process(root))


def scores_match(client, oracles: dict, item_ids: list[str], queries=(0, 17, 123)) -> set[str]:
    """/similar-items answers equal the oracle of the version each names; the versions that answered."""
    index = {x: i for i, x in enumerate(item_ids)}
    versions = set()
    for q in queries:
        r = client.get("/similar-items", params={"item_id": item_ids[q], "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        truth = oracles[body["artifact_version"]].items("denoising-symmetric", "projected")[q]
        neighbors = body["neighbors"]
        np.testing.assert_allclose(
            [n["score"] for n in neighbors], truth[[index[n["item_id"]] for n in neighbors]], rtol=2e-4, atol=2e-5
        )
        versions.add(body["artifact_version"])
    return versions


def test_new_version_is_picked_up_without_restart_in_process(artifact_in_process, tmp_path):
    art = copy_artifacts(artifact_in_process, tmp_path / "art")
    oracles = {art.version: dense_oracle(art.version_dir, API_BUILD["lambda_denoising"], API_BUILD["lambda_weight_decay"])}
    item_ids = [it["id"] for it in json.loads((art.version_dir / "items.json").read_text())]
    with in_process_server(art.root, tmp_path, RELOAD_INTERVAL="0.1") as server:
        c = server.client
        assert scores_match(c, oracles, item_ids) == {art.version}
        new = api_build_in_process(art.root, lambda_denoising=300.0)
        oracles[new] = dense_oracle(art.root / "versions" / new, 300.0, API_BUILD["lambda_weight_decay"])
        wait_for(lambda: c.get("/readyz").json()["artifact_version"] == new, what="the new version")
        assert scores_match(c, oracles, item_ids) == {new}  # each answer wholly from the version it names
        assert c.get("/healthz").json()["artifact_version"] == new
    before = oracles[art.version].items("denoising-symmetric", "projected")
    after = oracles[new].items("denoising-symmetric", "projected")
    assert not np.allclose(before, after, atol=1e-3)  # the check above can tell the versions apart


def test_corrupted_version_is_refused_and_the_old_one_keeps_serving_in_process(artifact_in_process, spares_in_process, tmp_path):
    art = copy_artifacts(artifact_in_process, tmp_path / "art")
    with in_process_server(art.root, tmp_path, RELOAD_INTERVAL="0.1") as server:
        check_corrupt_version_refused(server, art, spares_in_process)
        check_next_good_version_served(server, art, spares_in_process)


def test_admin_reload_forces_a_check_and_needs_the_token_in_process(artifact_in_process, spares_in_process, tmp_path):
    art = copy_artifacts(artifact_in_process, tmp_path / "art")
    with in_process_server(art.root, tmp_path, RELOAD_INTERVAL="0", ADMIN_TOKEN="s3cret-token") as server:
        refused_before = metric(metrics_text(server), "simserve_reload_refused_total", trigger="admin")
        check_admin_reload(server, art, spares_in_process, refused_before)  # one process: counters are the process's


def test_no_version_then_a_bad_name_then_a_good_version_in_process(spares_in_process, tmp_path, monkeypatch):
    """The slow test's body, on the API in this process."""
    monkeypatch.setattr(sys.modules[__name__], "start_api_server", in_process_server)
    test_no_version_then_a_bad_name_then_a_good_version(spares_in_process, tmp_path)
