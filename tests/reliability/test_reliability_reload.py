"""Fault 1: reload under load. A load generator runs against `python -m app` (2 workers) while the
offline job publishes 5 new versions: no request fails, every response comes whole from one complete
published version, and no worker keeps superseded versions mapped or grows in memory. Slow (6 builds under
load); reload itself is checked fast, in-process, by tests/api/test_api_reload.py's twins."""

from __future__ import annotations

import time

import pytest
from support.artifacts import ApiArtifact, api_build
from support.load import LoadGenerator, neighbour_queries
from support.processes import mapped_versions, memory, worker_processes
from support.prometheus import metric
from support.servers import metrics_text, start_api_server, wait_for, wait_serving

from models.artifact.manifest import METRICS
from models.artifact.store import verify_version
from models.fit.closed_forms import MODELS

WORKERS = 2
RELOADS = 5
# k = 128 makes a version ~17 MB on disk (16 MB of indexes, all memory-mapped): large enough that one
# leaked version shows in a worker's RSS, small enough that 6 builds take ~30 s on 2 cores.
BUILD = {"k": 128}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> ApiArtifact:
    root = tmp_path_factory.mktemp("reload-under-load")
    return ApiArtifact(root, api_build(root, **BUILD))


@pytest.mark.slow
def test_five_reloads_under_load_lose_nothing_and_leak_nothing(artifact, tmp_path, monkeypatch):
    # One BLAS thread in the builds: next to a busy server, spinning BLAS threads make a 2 s build take 20 s.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    root, first = artifact.root, artifact.version
    queries = neighbour_queries(artifact.version_dir, MODELS, METRICS)  # every index file of a version is searched
    with start_api_server(root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0.2") as server:
        wait_serving(server, first, WORKERS)
        workers = worker_processes(server)
        assert len(workers) == WORKERS
        pids = {p.pid for p in workers}

        # Warm up: every query on every worker, so the baseline has the live version's pages resident.
        with LoadGenerator(server.base_url, queries, threads=4, max_requests=4 * len(queries)) as warm:
            wait_for(lambda: warm.result.requests >= 4 * len(queries), 60, "warm-up")
        assert warm.stop().failures == []
        before = {p.pid: memory(p) for p in workers}
        mapped_before = {p.pid: mapped_versions(p, root) for p in workers}
        for maps in mapped_before.values():
            assert set(maps) == {first}, maps
        version_bytes = min(maps[first] for maps in mapped_before.values())  # resident mapped bytes of one version

        published = [first]
        # Paced (~100-200 requests/s): on 2 cores an unpaced generator starves the builds it runs against.
        with LoadGenerator(server.base_url, queries, threads=4, max_requests=100_000, max_seconds=240, pause=0.02) as load:
            for i in range(RELOADS):
                new = api_build(root, **BUILD, lambda_denoising=150.0 + 50 * i)  # different scores per version
                verify_version(root / "versions" / new)  # complete and checksummed (retention keeps it for 3 builds)
                published.append(new)
                wait_serving(server, new, WORKERS)
            time.sleep(1.0)  # the last version serves under load too
        result = load.result

        # Requests in flight when the load stopped have finished: only the live version may stay mapped.
        time.sleep(0.5)
        after = {p.pid: memory(p) for p in workers}
        mapped_after = {p.pid: mapped_versions(p, root) for p in workers}
        text = metrics_text(server)
        assert {p.pid for p in worker_processes(server)} == pids and server.proc.poll() is None  # no worker died
        assert metric(text, "simserve_reloads_total", trigger="poll") == WORKERS * RELOADS
        assert metric(text, "simserve_reload_refused_total") == 0
        log = server.logs()

    # zero failed requests, and enough of them that this means something
    assert result.failures == [], result.failures[:10]
    assert result.requests >= 1000, result
    # every response names a complete published version, and every version served
    assert set(result.versions) == set(published), (result.versions, published)
    # each response is wholly from the version it names: one answer per (query, version) ...
    mixed = {key: digests for key, digests in result.bodies.items() if len(digests) != 1}
    assert not mixed, list(mixed)[:5]
    # ... and versions answer differently, so a response mixing two versions would have shown above
    by_query: dict[str, set[str]] = {}
    for (query, _version), digests in result.bodies.items():
        by_query.setdefault(query, set()).update(digests)
    assert max(len(d) for d in by_query.values()) == len(published)

    # memory: superseded versions are unmapped (even those retention deleted from disk) ...
    for pid, maps in mapped_after.items():
        assert set(maps) == {published[-1]}, (pid, maps)
    # ... and no worker grew by as much as one version's mapped bytes over 5 reloads (a leak of every
    # superseded version would add ~5x that; allocator noise is a few MB).
    for pid in pids:
        grew_rss = after[pid].rss - before[pid].rss
        grew_pss = after[pid].pss - before[pid].pss
        print(
            f"worker {pid}: rss {before[pid].rss >> 20} -> {after[pid].rss >> 20} MiB, "
            f"pss {before[pid].pss >> 20} -> {after[pid].pss >> 20} MiB, one version {version_bytes >> 20} MiB, "
            f"{result.requests} requests in {result.seconds:.1f}s"
        )
        assert grew_rss < version_bytes, (pid, before[pid], after[pid], version_bytes)
        assert grew_pss < version_bytes, (pid, before[pid], after[pid], version_bytes)
    assert log.count("serving artifact version") == WORKERS * (RELOADS + 1)
