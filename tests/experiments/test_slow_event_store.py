"""The events database slow (locked by another client for several seconds) never fails or slows an experiment
request: exposures wait in the worker's queue (or spill) and all of them reach the database, exactly once,
when the lock goes. SQLite (an exclusive transaction held by another connection, longer than the server's
busy_timeout) and PostgreSQL (the exposures table locked ACCESS EXCLUSIVE), each under load from a real
server with two workers. (The database down and back: test_exposures_under_load.py.)"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support.artifacts import copy_artifacts
from support.load import LoadGenerator
from support.postgres import PostgresCluster
from support.prometheus import metric
from support.servers import metrics_text, start_api_server, wait_for, wait_serving

from app.experiments.events import SQLITE_BUSY_TIMEOUT_MS, open_store

WORKERS = 2
LOCKED_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000 + 2  # longer than a writer waits for SQLite's lock
EXPERIMENTS = """
[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "slow"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]
"""


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")  # no other connection can write (or, outside WAL, read) until the end
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextlib.contextmanager
def postgres_locked(url: str) -> Iterator[None]:
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE exposures IN ACCESS EXCLUSIVE MODE")  # inserts wait until the transaction ends
        yield
        conn.rollback()


def _p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_slow_events_database_never_fails_or_slows_a_request(api_artifact, tmp_path, backend, request):
    art = copy_artifacts(api_artifact, tmp_path / "art")
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENTS)
    events = tmp_path / "events"
    env = {"RELOAD_INTERVAL": "0.5", "EXPERIMENTS_FILE": str(experiments), "EVENTS_DIR": str(events)}
    if backend == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()
        env["EVENTS_DB"] = url
        locked = lambda: postgres_locked(url)  # noqa: E731
    else:
        url = f"sqlite://{(events / 'events.db').resolve()}"
        locked = lambda: sqlite_locked(events / "events.db")  # noqa: E731
    queries = [
        ("/similar-items", {"item_id": f"i{j % 300}", "experiment": "item-metric", "unit_id": f"u{j}", "k": 5})
        for j in range(400)
    ]
    with start_api_server(art.root, tmp_path, workers=WORKERS, **env) as server:
        wait_serving(server, art.version, WORKERS)
        store = open_store(url)
        try:
            with LoadGenerator(server.base_url, queries, threads=4, max_seconds=120, pause=0.005) as load:
                wait_for(lambda: store.exposure_count("item-metric") > 50, what="exposures reaching the database")
                time.sleep(LOCKED_SECONDS)
                before = len(load.result.latencies)
                with locked():
                    time.sleep(LOCKED_SECONDS)
                    during = len(load.result.latencies)
                time.sleep(1.0)
            result = load.result
            assert result.failures == [], result.failures[:5]
            free, slow = result.latencies[:before], result.latencies[before:during]
            assert len(slow) > 200, len(slow)
            print(
                f"\n{backend} locked {LOCKED_SECONDS:.0f}s: {len(slow)} requests meanwhile, p99 {_p99(slow) * 1e3:.1f} ms "
                f"(unlocked before: {_p99(free) * 1e3:.1f} ms)"
            )
            assert _p99(slow) <= 2 * _p99(free) + 0.005, (_p99(slow), _p99(free))
            served = sum(result.versions.values())
            wait_for(lambda: store.exposure_count("item-metric") >= served, 60, "every exposure in the database")
            time.sleep(0.5)
            assert store.exposure_count("item-metric") == served  # exactly once
        finally:
            store.close()
        text = metrics_text(server)
        assert metric(text, "simserve_experiment_events_total", outcome="dropped") == 0
