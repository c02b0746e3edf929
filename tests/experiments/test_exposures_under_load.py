"""Every experiment response is logged exactly once, under load from a real load generator against a real
server (two workers), across an artifact reload, an experiments-file reload and a PostgreSQL stop and start
in the middle of the run: N successful experiment responses -> N exposure rows, nothing dropped."""

from __future__ import annotations

import hashlib
import time

import pytest
from support.artifacts import api_build
from support.load import LoadGenerator
from support.postgres import PostgresCluster
from support.prometheus import metric
from support.servers import metrics_text, start_api_server, wait_for, wait_serving

from app.experiments.events import open_store

WORKERS = 2
EXPERIMENTS = """
[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "load"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 1 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 1 },
]
"""


@pytest.mark.slow
def test_every_response_is_logged_once_across_reloads_and_a_database_restart(tmp_path, pg_cluster: PostgresCluster):
    root = tmp_path / "art"
    first = api_build(root)
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENTS)
    url = pg_cluster.new_database()
    env = {
        "RELOAD_INTERVAL": "0.2",
        "EXPERIMENTS_FILE": str(experiments),
        "EVENTS_DB": url,
        "EVENTS_DIR": str(tmp_path / "events"),
    }
    queries = [
        ("/similar-items", {"item_id": f"i{j % 300}", "experiment": "item-metric", "unit_id": f"u{j}", "k": 5})
        for j in range(400)
    ]
    with start_api_server(root, tmp_path, workers=WORKERS, **env) as server:
        wait_serving(server, first, WORKERS)
        with LoadGenerator(server.base_url, queries, threads=4, max_requests=100_000, max_seconds=120, pause=0.01) as load:
            time.sleep(1.0)
            second = api_build(root, lambda_denoising=150.0)  # an artifact reload under load
            wait_serving(server, second, WORKERS)
            experiments.write_text(EXPERIMENTS + "\n# edited: the file is reloaded\n")  # an experiments-file reload
            time.sleep(1.0)
            pg_cluster.stop()  # the database goes away mid-run: exposures spill, requests keep succeeding
            time.sleep(2.0)
            pg_cluster.start()
            time.sleep(1.0)
        result = load.result
        served = sum(result.versions.values())
        assert result.failures == [], result.failures[:5]
        assert served > 200 and set(result.versions) == {first, second}
        store = open_store(url)
        try:
            wait_for(lambda: store.exposure_count("item-metric") >= served, 60, "every exposure in the database")
            time.sleep(0.5)  # nothing more arrives: exactly once
            assert store.exposure_count("item-metric") == served
        finally:
            store.close()
        text = metrics_text(server)
        assert metric(text, "simserve_experiment_events_total", outcome="dropped") == 0
        assert metric(text, "simserve_experiment_events_total", outcome="spilled") > 0  # the outage was felt
        status = server.client.get("/readyz").json()["experiments"]
        assert status["last_refusal"] is None and status["experiments"] == ["item-metric"]
        assert status["fingerprint"] == hashlib.sha256(experiments.read_bytes()).hexdigest()  # the edited file was taken
