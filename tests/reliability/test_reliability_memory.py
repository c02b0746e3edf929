"""Fault 5, the light variant: with 2 workers every index file is memory-mapped in every worker, and the
workers share one copy of it: each worker has the whole file resident (RSS), yet the PSS of the file
summed over the workers is one copy, not two. The measurement with 1, 2 and 4 workers on a ~425 MB
catalogue, next to a copy-per-worker reference, is bench/worker_memory.py (bench/README.md#worker-memory).
Slow: what is measured is memory shared between worker processes, so there is no in-process twin."""

from __future__ import annotations

import json

import pytest
from support.artifacts import copy_artifacts
from support.load import LoadGenerator, neighbour_queries
from support.processes import worker_processes
from support.servers import start_api_server, wait_for, wait_serving

from models.artifact.manifest import METRICS
from models.fit.closed_forms import MODELS

WORKERS = 2
PAGE = 4096


@pytest.mark.slow
def test_workers_share_one_copy_of_every_index(api_artifact, tmp_path):
    # A private copy: PSS divides a page among every process mapping it, including other tests' servers.
    art = copy_artifacts(api_artifact, tmp_path / "art")
    manifest = json.loads((art.version_dir / "manifest.json").read_text())
    files = {
        str((art.version_dir / rel).resolve()): meta["bytes"]
        for rel, meta in manifest["files"].items()
        if rel.startswith("indexes/")
    }
    assert any(p.endswith(".faiss") for p in files) and any(p.endswith(".npy") for p in files)
    queries = neighbour_queries(art.version_dir, MODELS, METRICS, ids=2)
    with start_api_server(art.root, tmp_path, workers=WORKERS, RELOAD_INTERVAL="0") as server:
        wait_serving(server, art.version, WORKERS)
        with LoadGenerator(server.base_url, queries, threads=2, max_requests=4 * len(queries)) as warm:
            wait_for(lambda: warm.result.requests >= 4 * len(queries), 60, "every index searched on both workers")
        assert warm.stop().failures == []
        maps = {p.pid: {m.path: m for m in p.memory_maps(grouped=True) if m.path in files} for p in worker_processes(server)}
    assert len(maps) == WORKERS
    opened = {path for by_path in maps.values() for path in by_path}
    flat = {str((art.version_dir / e["file"]).resolve()) for e in manifest["indexes"].values()}
    assert flat <= opened, flat - opened  # every index the manifest serves from is memory-mapped ...
    total_pss = total_rss = 0
    for path in opened:
        mapped = [by_path[path] for by_path in maps.values() if path in by_path]
        assert len(mapped) == WORKERS, f"{path} is memory-mapped in one worker only"  # ... in every worker
        rss, pss = [m.rss for m in mapped], [m.pss for m in mapped]
        if path.endswith(".faiss"):  # searched by both workers: wholly resident in each
            assert min(rss) >= files[path] - PAGE, (path, rss, files[path])
        # one copy between the workers: each resident page counted once over them (two copies: sum(pss) = sum(rss))
        assert sum(pss) <= max(rss) + WORKERS * PAGE, (path, rss, pss)
        total_pss, total_rss = total_pss + sum(pss), total_rss + sum(rss)
    index_bytes = sum(files[path] for path in opened)
    print(f"indexes {index_bytes >> 10} KiB; summed over {WORKERS} workers: RSS {total_rss >> 10} KiB, PSS {total_pss >> 10} KiB")
    assert total_rss >= 1.9 * sum(files[p] for p in opened if p.endswith(".faiss"))  # both workers hold them ...
    assert total_pss <= 1.05 * index_bytes  # ... as one copy
