"""Worker faults, on `python -m app` with 2 uvicorn workers:

- `POST /admin/reload` reaches every worker before it returns (polling off: nothing else could move them),
  and lists each worker's version; a refused version is refused by every worker;

- a worker SIGKILLed under load is replaced by uvicorn's supervisor; only requests in flight on it fail
  (counted), and the replacement serves the live version;
- /metrics sums every live worker's samples past the empty sample file a worker killed as it made it
  leaves behind;
- a worker that starts while CURRENT names a corrupt version falls back to the newest older version that
  verifies (what its siblings still serve), says so in /readyz, /metrics and the log, keeps refusing the
  corrupt one, and follows CURRENT again once it names a good version.

The fallback's fast twin (in this process) checks the choice among several older versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from support.artifacts import copy_artifacts
from support.in_process import in_process_server
from support.load import LoadGenerator, neighbour_queries
from support.prometheus import metric
from support.servers import ApiServer, each_worker, metrics_text, start_api_server, wait_for, wait_serving
from support.versions import copy_version, publish_by_hand
from test_reliability_corrupt import CORRUPTIONS, publish_corrupt

WORKERS = 2
THREADS = 4


def _worker_pids(server: ApiServer) -> set[int]:
    return set(each_worker(server, "/healthz", WORKERS))


def _replacement(server: ApiServer, gone: int, others: set[int]) -> int:
    """The pid of the worker the supervisor started for `gone` (once it answers /healthz)."""

    def new_pid() -> int | None:
        with_new = {httpx.get(server.base_url + "/healthz", timeout=5.0).json()["pid"] for _ in range(8)} - others - {gone}
        return next(iter(with_new), None)

    return wait_for(new_pid, timeout=60, what=f"a replacement for worker {gone}", every=0.2)


@pytest.mark.slow
def test_a_worker_killed_under_load_is_replaced_and_only_its_requests_in_flight_fail(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    queries = neighbour_queries(art.version_dir, ["denoising-symmetric", "weight-decay"], ["projected", "cosine", "dot"])
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.5") as server:
        wait_serving(server, art.version, WORKERS)
        pids = _worker_pids(server)
        victim = min(pids)
        with LoadGenerator(server.base_url, queries, threads=THREADS, max_seconds=120) as load:
            time.sleep(2.0)  # load on both workers (half of the threads open a connection per request)
            before = load.result.requests
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            new = _replacement(server, victim, pids - {victim})
            replaced_after = time.monotonic() - killed_at
            time.sleep(3.0)  # load on the replacement too
            result = load.stop()
        assert before > 100 and result.requests > before + 100, (before, result.requests)
        # Each client thread has at most one request in flight, so at most THREADS can have been on the victim;
        # they all failed at the kill (a transport error, never an HTTP error status), none afterwards.
        assert len(result.failures) <= THREADS, result.failures
        assert all(t - killed_at < 1.0 for t in result.failure_times), (result.failure_times, killed_at)
        assert all(": 200" not in f and "Error" in f for f in result.failures), result.failures
        print(
            f"\nSIGKILL of worker {victim}: {len(result.failures)} failed of {result.requests} requests; "
            f"replacement {new} answering after {replaced_after:.1f}s"
        )
        # the replacement serves the live version, ready, and is counted in /metrics
        body = wait_for(
            lambda: next((b for b in [httpx.get(server.base_url + "/readyz").json()] if b["pid"] == new), None),
            what="the replacement's /readyz",
        )
        assert body["status"] == "ready" and body["artifact_version"] == art.version and body["fallback"] is None
        assert _worker_pids(server) == (pids - {victim}) | {new}
        wait_serving(server, art.version, WORKERS)  # liveall gauges: the dead worker's sample is gone
        assert f"Child process [{victim}] died" in server.logs()


def test_metrics_answer_past_the_empty_sample_file_of_a_worker_killed_as_it_made_it(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    folder = tmp_path / "prometheus"
    with start_api_server(art.root, tmp_path, workers=WORKERS, PROMETHEUS_MULTIPROC_DIR=str(folder)) as server:
        wait_serving(server, art.version, WORKERS)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        # prometheus_client creates a worker's file and sizes it after: a kill in between leaves 0 bytes
        (folder / f"histogram_{dead.pid}.db").write_bytes(b"")
        for _ in range(3):
            assert httpx.get(server.base_url + "/similar-items", params={"item_id": "i3"}).status_code == 200
        text = metrics_text(server)
        assert metric(text, "simserve_artifact_version_info", version=art.version) == WORKERS
        assert metric(text, "simserve_request_duration_seconds_count", endpoint="/similar-items") >= 3


@pytest.mark.slow
def test_a_worker_restarted_while_current_is_corrupt_falls_back_to_the_previous_version(api_artifact, tmp_path):
    damage, reason = CORRUPTIONS["flipped-byte"]
    art = copy_artifacts(api_artifact, tmp_path / "art")
    good = art.version
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
        wait_serving(server, good, WORKERS)
        bad = publish_corrupt(art.root, good, damage)
        wait_for(
            lambda: metric(metrics_text(server), "simserve_last_refusal_info", version=bad) == WORKERS,
            what=f"every worker refusing {bad}",
        )
        pids = _worker_pids(server)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        new = _replacement(server, victim, pids - {victim})
        # the replacement is ready, on the version its sibling serves, and says why
        answers = each_worker(server, "/readyz", WORKERS)
        assert set(answers) == (pids - {victim}) | {new}
        assert all(b["artifact_version"] == good for b in answers.values()), answers
        fallback = answers[new]["fallback"]
        assert fallback is not None and fallback["served"] == good and fallback["current"] == bad, answers[new]
        assert reason in fallback["reason"] and answers[new]["last_refusal"]["version"] == bad
        sibling = answers[next(iter(pids - {victim}))]
        assert sibling["fallback"] is None  # it kept the version it had: no fallback, just a refusal
        for _ in range(6):
            r = httpx.get(server.base_url + "/similar-items", params={"item_id": "i3", "metric": "cosine"})
            assert r.status_code == 200 and r.json()["artifact_version"] == good
        text = metrics_text(server)
        assert metric(text, "simserve_fallback_info", served=good, current=bad) == 1
        assert metric(text, "simserve_reloads_total", trigger="fallback") == 1
        assert metric(text, "simserve_artifact_version_info", version=good) == WORKERS
        lines = [line for line in server.logs().splitlines() if f"CURRENT names {bad}, which was refused" in line]
        assert len(lines) == 1 and f"newest older version that verifies, {good}" in lines[0], lines
        # it keeps refusing the corrupt version: not re-verified at every poll
        refused = metric(text, "simserve_reload_refused_total")
        time.sleep(1.0)
        assert metric(metrics_text(server), "simserve_reload_refused_total") == refused
        # a good version published: every worker follows CURRENT, and the fallback is over
        fixed, _ = copy_version(art.root, good)
        publish_by_hand(art.root, fixed)
        wait_serving(server, fixed, WORKERS)
        assert all(b["fallback"] is None for b in each_worker(server, "/readyz", WORKERS).values())
        assert metric(metrics_text(server), "simserve_fallback_info") == 0


def test_fallback_takes_the_newest_older_version_that_verifies(api_artifact, tmp_path):
    """Versions oldest to newest: good, corrupt, CURRENT (corrupt), newer (good, but never named by CURRENT):
    a worker starting now serves `good`, skipping the corrupt older one and ignoring the newer one."""
    art = copy_artifacts(api_artifact, tmp_path / "art")
    good = art.version
    older_bad = publish_corrupt(art.root, good, CORRUPTIONS["truncated-index"][0])
    time.sleep(1.1)  # version names carry the time to the second
    bad = publish_corrupt(art.root, good, CORRUPTIONS["manifest-not-json"][0])
    time.sleep(1.1)
    newer, _ = copy_version(art.root, good)
    assert good < older_bad < bad < newer
    publish_by_hand(art.root, bad)
    with in_process_server(art.root, tmp_path, RELOAD_INTERVAL="0.1") as server:
        body = server.client.get("/readyz").json()
        assert body["artifact_version"] == good, body
        assert body["fallback"]["served"] == good and body["fallback"]["current"] == bad
        assert "invalid JSON" in body["fallback"]["reason"] and body["last_refusal"]["version"] == bad
        assert server.client.get("/similar-items", params={"item_id": "i3"}).json()["artifact_version"] == good
        # CURRENT moves to another corrupt version: still the fallback, now instead of that one
        publish_by_hand(art.root, older_bad)
        wait_for(lambda: server.client.get("/readyz").json()["fallback"]["current"] == older_bad, what="the new refusal")
        assert server.client.get("/readyz").json()["artifact_version"] == good
        # CURRENT rolled back onto the version served: no fallback any more
        publish_by_hand(art.root, good)
        wait_for(lambda: server.client.get("/readyz").json()["fallback"] is None, what="the rollback")
        assert metric(metrics_text(server), "simserve_fallback_info", served=good) == 0
        # CURRENT moves on to a good version: served, fallback cleared
        publish_by_hand(art.root, newer)
        wait_for(lambda: server.client.get("/readyz").json()["artifact_version"] == newer, what="the newer version")
        assert server.client.get("/readyz").json()["fallback"] is None


@pytest.mark.slow
def test_admin_reload_reaches_every_worker_before_it_returns(api_artifact, tmp_path):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    auth = {"Authorization": "Bearer s3cret-token"}
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0", ADMIN_TOKEN="s3cret-token") as server:
        wait_serving(server, art.version, WORKERS)
        pids = _worker_pids(server)
        new, _ = copy_version(art.root, art.version)
        publish_by_hand(art.root, new)
        time.sleep(0.5)
        assert {b["artifact_version"] for b in each_worker(server, "/readyz", WORKERS).values()} == {art.version}
        r = httpx.post(server.base_url + "/admin/reload", headers=auth, timeout=30.0)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["changed"] is True and body["artifact_version"] == new and body["previous_version"] == art.version
        assert body["all_workers_reloaded"] is True and body["workers_expected"] == WORKERS
        assert {w["pid"] for w in body["workers"]} == pids and body["pid"] in pids
        assert all(w["artifact_version"] == new and w["reloaded"] for w in body["workers"]), body["workers"]
        # at once, on every worker: no poll could have done it
        answers = each_worker(server, "/readyz", WORKERS)
        assert {b["artifact_version"] for b in answers.values()} == {new}, answers
        assert metric(metrics_text(server), "simserve_reloads_total", trigger="admin") == WORKERS
        # a corrupt version: every worker refuses it and keeps serving
        bad = publish_corrupt(art.root, new, CORRUPTIONS["flipped-byte"][0])
        r = httpx.post(server.base_url + "/admin/reload", headers=auth, timeout=30.0)
        assert r.status_code == 409 and r.json()["refused_version"] == bad, r.text
        workers = r.json()["workers"]
        assert {w["pid"] for w in workers} == pids and r.json()["all_workers_reloaded"] is True
        assert all(w["artifact_version"] == new and w["refused_version"] == bad for w in workers), workers
        assert metric(metrics_text(server), "simserve_reload_refused_total", trigger="admin") == WORKERS
        # a second call with nothing new: 200, nothing changed anywhere (the refused version is retried: forced)
        publish_by_hand(art.root, new)
        r = httpx.post(server.base_url + "/admin/reload", headers=auth, timeout=30.0)
        assert r.status_code == 200 and r.json()["changed"] is False
        assert all(w["artifact_version"] == new and w["reloaded"] for w in r.json()["workers"])
