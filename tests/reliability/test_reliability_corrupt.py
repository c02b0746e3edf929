"""Fault 3: corrupt artifacts published as CURRENT by hand (a good version folder copied, damaged, and
switched to with ArtifactStore.switch_current). Every worker refuses the version, keeps serving the
previous one and says so in /readyz, /metrics and the log; a server that starts with only a corrupt
version stays not-ready (503) with the reason, and recovers when CURRENT names a good version.

Starting a server on a corrupt version is slow (a server per case); its fast twin starts the API in this
process (create_app + TestClient) on every damage, on a version built in this process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import httpx
import numpy as np
import pytest
from support.artifacts import ApiArtifact, api_build_in_process, copy_artifacts
from support.in_process import in_process_server
from support.problems import assert_problem
from support.prometheus import metric
from support.servers import ApiServer, each_worker, metrics_text, start_api_server, wait_for, wait_serving
from support.versions import copy_version, publish_by_hand

from models.artifact.store import MANIFEST, sha256_file

WORKERS = 2
INDEX = "indexes/items-denoising-symmetric-cosine.faiss"


def _manifest(v: Path) -> dict:
    return json.loads((v / MANIFEST).read_text(encoding="utf-8"))


def _write_manifest(v: Path, manifest: dict) -> None:
    (v / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def _relist(v: Path, rel: str) -> None:
    """Make the manifest's size and checksum of `rel` match its (damaged) content: only loading can tell."""
    manifest = _manifest(v)
    manifest["files"][rel] = {"sha256": sha256_file(v / rel), "bytes": (v / rel).stat().st_size}
    _write_manifest(v, manifest)


def truncate_index(v: Path) -> None:
    p = v / INDEX
    os.truncate(p, p.stat().st_size // 2)


def flip_byte(v: Path) -> None:
    p = v / "indexes" / "recommend-denoising-projected-users.npy"
    data = bytearray(p.read_bytes())
    data[len(data) - 7] ^= 0x01  # one bit of one float: same size, only the checksum can tell
    p.write_bytes(data)


def delete_file(v: Path) -> None:
    (v / "indexes" / "users-weight-decay-dot.faiss").unlink()


def manifest_not_json(v: Path) -> None:
    p = v / MANIFEST
    p.write_bytes(p.read_bytes()[:200])


def manifest_without_files(v: Path) -> None:
    manifest = _manifest(v)
    del manifest["files"]
    _write_manifest(v, manifest)


def manifest_of_another_version(v: Path) -> None:
    manifest = _manifest(v)
    manifest["version"] = "20000101T000000Z-00000000"
    _write_manifest(v, manifest)


def manifest_lists_a_path_outside(v: Path) -> None:
    manifest = _manifest(v)
    manifest["files"]["../../CURRENT"] = {"sha256": "0" * 64, "bytes": 27}
    _write_manifest(v, manifest)


def index_replaced_by_garbage(v: Path) -> None:
    p = v / INDEX
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))
    _relist(v, INDEX)


def index_of_the_wrong_shape(v: Path) -> None:
    index = faiss.IndexFlatIP(16)
    index.add(np.ones((7, 16), dtype=np.float32))
    faiss.write_index(index, str(v / INDEX))
    _relist(v, INDEX)


def index_pointing_to_an_unlisted_file(v: Path) -> None:
    # An entry naming a file no checksum covers (here: another copy of a good index) must not be served.
    (v / "indexes" / "extra.faiss").write_bytes((v / INDEX).read_bytes())
    manifest = _manifest(v)
    manifest["indexes"]["items/denoising-symmetric/cosine"]["file"] = "indexes/extra.faiss"
    _write_manifest(v, manifest)


# damage -> a phrase the refusal reason must contain
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated-index": (truncate_index, f"file {INDEX} has"),
    "flipped-byte": (flip_byte, "recommend-denoising-projected-users.npy fails its sha256 checksum"),
    "missing-file": (delete_file, "file indexes/users-weight-decay-dot.faiss is missing"),
    "manifest-not-json": (manifest_not_json, "invalid JSON"),
    "manifest-without-files": (manifest_without_files, "missing key 'files'"),
    "manifest-of-another-version": (manifest_of_another_version, "names version '20000101T000000Z-00000000'"),
    "manifest-path-outside": (manifest_lists_a_path_outside, "file ../../CURRENT is missing"),
    "garbage-index-with-matching-checksum": (index_replaced_by_garbage, "cannot load"),
    "wrong-shape-index-with-matching-checksum": (index_of_the_wrong_shape, "holds 7 x 16, expected 300 x 16"),
    "index-file-not-checksummed": (index_pointing_to_an_unlisted_file, "indexes/extra.faiss is not"),
}


def publish_corrupt(root: Path, good: str, damage: Callable[[Path], None]) -> str:
    name, folder = copy_version(root, good)
    damage(folder)
    publish_by_hand(root, name)
    return name


def only_corrupt(root: Path, good: str, damage: Callable[[Path], None], aside: Path) -> str:
    """A corrupt copy of `good` published as CURRENT, with `good` itself moved out of versions/ to `aside`:
    no older version to fall back to."""
    bad = publish_corrupt(root, good, damage)
    (root / "versions" / good).rename(aside)
    return bad


@pytest.fixture(scope="module")
def served(api_artifact, tmp_path_factory) -> tuple[ApiServer, Path, str]:
    tmp = tmp_path_factory.mktemp("corrupt")
    art = copy_artifacts(api_artifact, tmp / "art")
    with start_api_server(art.root, tmp, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
        wait_serving(server, art.version, WORKERS)
        yield server, art.root, art.version


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_version_is_refused_and_the_previous_one_keeps_serving(served, case):
    server, root, good = served
    damage, reason = CORRUPTIONS[case]
    refused_before = metric(metrics_text(server), "simserve_reload_refused_total")
    bad = publish_corrupt(root, good, damage)
    try:
        wait_for(
            lambda: metric(metrics_text(server), "simserve_last_refusal_info", version=bad) == WORKERS,
            what=f"every worker refusing {bad}",
        )
        # /readyz of every worker: still ready on the good version, naming the refused one and why
        for body in each_worker(server, "/readyz", WORKERS).values():
            assert body["artifact_version"] == good
            assert body["last_refusal"]["version"] == bad and body["last_refusal"]["trigger"] == "poll"
            assert reason in body["last_refusal"]["reason"], body["last_refusal"]
        for _ in range(4):
            r = httpx.get(server.base_url + "/similar-items", params={"item_id": "i3", "metric": "cosine"})
            assert r.status_code == 200 and r.json()["artifact_version"] == good
        time.sleep(0.6)  # a few more polls: the refused version is not re-verified on every poll
        text = metrics_text(server)
        assert metric(text, "simserve_reload_refused_total", trigger="poll") - refused_before == WORKERS
        assert metric(text, "simserve_artifact_version_info", version=good) == WORKERS
        assert metric(text, "simserve_artifact_version_info", version=bad) == 0
        refusal_lines = [line for line in text.splitlines() if line.startswith("simserve_last_refusal_info{") and bad in line]
        assert refusal_lines and all(reason in line and line.endswith(" 1.0") for line in refusal_lines), refusal_lines
        lines = [line for line in server.logs().splitlines() if f"refused artifact version {bad}" in line]
        assert len(lines) == WORKERS and all(reason in line and f"still serving {good}" in line for line in lines), lines
    finally:
        publish_by_hand(root, good)


def test_an_intact_copy_is_served(served):
    # Control: the copying and hand-publishing above make valid versions; only the damage is refused.
    server, root, good = served
    name, _ = copy_version(root, good)
    publish_by_hand(root, name)
    try:
        wait_serving(server, name, WORKERS)
        assert server.client.get("/similar-items", params={"item_id": "i3"}).json()["artifact_version"] == name
    finally:
        publish_by_hand(root, good)
        wait_serving(server, good, WORKERS)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated-index", "manifest-not-json", "garbage-index-with-matching-checksum"])
def test_starting_with_only_a_corrupt_version_stays_not_ready(api_artifact, tmp_path, case):
    damage, reason = CORRUPTIONS[case]
    art = copy_artifacts(api_artifact, tmp_path / "art")
    bad = only_corrupt(art.root, art.version, damage, tmp_path / "aside")
    with start_api_server(art.root, tmp_path, workers=WORKERS, ready="/healthz", RELOAD_INTERVAL="0.2") as server:
        wait_for(
            lambda: metric(metrics_text(server), "simserve_reload_refused_total", trigger="startup") == WORKERS,
            what="every worker's startup",
        )
        time.sleep(0.6)  # several polls
        for _ in range(6):  # fresh connections: both workers answer
            r = httpx.get(server.base_url + "/readyz")
            body = assert_problem(r, 503)
            assert body["type"] == "/problems/not-ready" and r.headers["retry-after"]
            assert body["detail"].startswith(f"version {bad} refused: ") and reason in body["detail"], body
            assert body["last_refusal"]["version"] == bad and body["artifact_version"] is None
            body = assert_problem(httpx.get(server.base_url + "/similar-items", params={"item_id": "i3"}), 503)
            assert reason in body["detail"]
        text = metrics_text(server)
        assert metric(text, "simserve_reload_refused_total", trigger="startup") == WORKERS
        assert metric(text, "simserve_reload_refused_total", trigger="poll") == 0  # not re-verified on every poll
        assert metric(text, "simserve_artifact_version_info") == 0
        assert server.logs().count(f"refused artifact version {bad}") == WORKERS
        # recovery without a restart: CURRENT names a good version again
        (tmp_path / "aside").rename(art.root / "versions" / art.version)
        publish_by_hand(art.root, art.version)
        wait_serving(server, art.version, WORKERS)  # ready again
        for body in each_worker(server, "/readyz", WORKERS).values():
            assert body["artifact_version"] == art.version and body["last_refusal"]["version"] == bad


# --------------------------------------------------------------------------- in-process (fast)


@pytest.fixture(scope="module")
def artifact_in_process(tmp_path_factory) -> ApiArtifact:
    """A version of the API build (300 items, k = 16: the shapes the reasons name), built in this process."""
    root = tmp_path_factory.mktemp("corrupt-here")
    return ApiArtifact(root, api_build_in_process(root))


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_starting_with_only_a_corrupt_version_stays_not_ready_in_process(artifact_in_process, tmp_path, case):
    damage, reason = CORRUPTIONS[case]
    art = copy_artifacts(artifact_in_process, tmp_path / "art")
    bad = only_corrupt(art.root, art.version, damage, tmp_path / "aside")
    with in_process_server(art.root, tmp_path, ready="/healthz", RELOAD_INTERVAL="0.1") as server:
        c = server.client
        polls = metric(metrics_text(server), "simserve_reload_refused_total", trigger="poll")  # this process's
        time.sleep(0.3)  # several polls: the refused version is not re-verified on every poll
        assert metric(metrics_text(server), "simserve_reload_refused_total", trigger="poll") == polls
        r = c.get("/readyz")
        body = assert_problem(r, 503)
        assert body["type"] == "/problems/not-ready" and r.headers["retry-after"]
        assert body["detail"].startswith(f"version {bad} refused: ") and reason in body["detail"], body
        assert body["last_refusal"]["version"] == bad and body["artifact_version"] is None
        assert body["last_refusal"]["trigger"] == "startup"
        body = assert_problem(c.get("/similar-items", params={"item_id": "i3"}), 503)
        assert reason in body["detail"]
        # recovery without a restart: CURRENT names a good version again
        (tmp_path / "aside").rename(art.root / "versions" / art.version)
        publish_by_hand(art.root, art.version)
        wait_for(lambda: c.get("/readyz").status_code == 200, what="readiness on the good version")
        body = c.get("/readyz").json()
        assert body["artifact_version"] == art.version and body["last_refusal"]["version"] == bad
        assert c.get("/similar-items", params={"item_id": "i3"}).json()["artifact_version"] == art.version
