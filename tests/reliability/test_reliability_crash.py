"""Fault 2, API side: the offline job is SIGKILLed at several points of a build while `python -m app`
(2 workers) serves under load. The API keeps serving the previous complete version without a single
failed request, and the next build cleans up the leftovers and is picked up.

(tests/job/test_crash_publish.py checks the artifact side: CURRENT and versions/ after each kill.) Slow: the
point is real processes, SIGKILLed builds next to a serving multi-worker server, so there is no in-process twin."""

from __future__ import annotations

import signal

import pytest
from support.artifacts import api_build, copy_artifacts
from support.load import LoadGenerator, neighbour_queries
from support.prometheus import metric
from support.servers import each_worker, metrics_text, start_api_server, wait_serving
from support.versions import kill_build_when

from models.artifact.store import ArtifactStore, verify_version

WORKERS = 2
MARKERS = [
    "svd k=",  # fitting: only an empty staging folder exists
    "index users-denoising-item-orthonormal-dot",  # half of the indexes written into staging
    "publishing ...",  # hashing and renaming: the build may win the race
]


@pytest.mark.slow
def test_api_serves_the_previous_version_through_killed_builds(api_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # builds next to a busy server: no spinning BLAS threads
    art = copy_artifacts(api_artifact, tmp_path / "art")
    store = ArtifactStore(art.root)
    queries = neighbour_queries(art.version_dir, ["denoising-symmetric", "weight-decay"], ["projected", "cosine"], ids=3)
    complete = {art.version}
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
        wait_serving(server, art.version, WORKERS)
        with LoadGenerator(server.base_url, queries, threads=2, max_seconds=120, pause=0.01) as load:
            live = art.version
            for i, marker in enumerate(MARKERS):
                code, output = kill_build_when(art.root, marker, lambda_denoising=200.0 + i)
                current = store.current_version()
                if marker != "publishing ...":
                    assert code == -signal.SIGKILL, output
                if code == -signal.SIGKILL:
                    assert current == live, (marker, output)  # a killed build never moves CURRENT ...
                else:
                    assert code == 0 and marker == "publishing ...", output  # ... only one that finished does
                verify_version(store.version_dir(current))
                complete.add(current)
                live = current
                # every worker serves the live complete version, and never stopped being ready
                wait_serving(server, live, WORKERS)
                for body in each_worker(server, "/readyz", WORKERS).values():
                    assert body["artifact_version"] == live and body["last_refusal"] is None
            assert list(art.root.glob(".staging-*")), "the build killed while writing indexes left its staging folder"

            new = api_build(art.root, lambda_denoising=300.0)
            assert not list(art.root.glob(".staging-*")) and not list(art.root.glob(".CURRENT.*"))
            verify_version(store.version_dir(new))
            complete.add(new)
            wait_serving(server, new, WORKERS)
            r = server.client.get("/similar-items", params={"item_id": "i1"})
            assert r.status_code == 200 and r.json()["artifact_version"] == new
        assert metric(metrics_text(server), "simserve_reload_refused_total") == 0
    result = load.result
    assert result.failures == [], result.failures[:10]
    assert result.requests >= 200, result.requests
    assert set(result.versions) <= complete and new in result.versions
