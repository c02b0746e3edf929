"""Serving under an experiment: the arm the documented formula picks decides model and metric, the response is
the endpoint's usual body plus the exposure, every exposure reaches the events database, interleaving merges the
two arms' lists, bad requests are 422s, and a bad experiments file keeps the previous definitions."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from support.artifacts import api_build_in_process
from support.in_process import in_process_server
from support.servers import each_worker, start_api_server
from support.versions import copy_version, publish_by_hand

from app.experiments.events import open_store

EXPERIMENTS = """
[[experiment]]
name = "item-metric"
endpoint = "similar-items"
salt = "2026-12"
mode = "ab"
arms = [
  { name = "control",   model = "denoising-symmetric", metric = "cosine",    weight = 50 },
  { name = "projected", model = "denoising-symmetric", metric = "projected", weight = 50 },
]

[[experiment]]
name = "rec-interleave"
endpoint = "recommend"
salt = "s2"
mode = "interleave"
arms = [
  { name = "dot",       model = "weight-decay", metric = "dot",       weight = 1 },
  { name = "projected", model = "weight-decay", metric = "projected", weight = 1 },
]
"""


def arm_of(salt: str, unit: str) -> str:
    """The issue's formula, written again here: bucket < 5000 -> the first of two equal arms."""
    bucket = int.from_bytes(hashlib.sha256(f"{salt}:{unit}".encode()).digest()[:8], "big") % 10000
    return "control" if bucket < 5000 else "projected"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    api_build_in_process(root / "art")
    (root / "experiments.toml").write_text(EXPERIMENTS)
    env = {"EXPERIMENTS_FILE": root / "experiments.toml", "EVENTS_DIR": root / "events", "RELOAD_INTERVAL": "0.1"}
    with in_process_server(root / "art", **env) as server:
        yield server, root


def test_the_arm_decides_model_and_metric_and_the_exposure_is_logged(served):
    server, root = served
    shown = {}
    for unit in (f"u{i}" for i in range(40)):
        r = server.client.get("/similar-items", params={"item_id": "i7", "experiment": "item-metric", "unit_id": unit, "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        arm = arm_of("2026-12", unit)
        assert body["experiment"]["name"] == "item-metric" and body["experiment"]["arm"] == arm
        assert body["metric"] == ("cosine" if arm == "control" else "projected") and body["model"] == "denoising-symmetric"
        plain = server.client.get("/similar-items", params={"item_id": "i7", "metric": body["metric"], "k": 5}).json()
        assert body["neighbors"] == plain["neighbors"]  # the endpoint's usual answer for that arm
        shown[body["experiment"]["exposure_id"]] = (unit, arm, [n["item_id"] for n in body["neighbors"]])
    assert {arm for _, arm, _ in shown.values()} == {"control", "projected"}
    store = open_store(f"sqlite://{(root / 'events' / 'events.db').resolve()}")
    deadline = time.monotonic() + 10
    while store.exposure_count("item-metric") < len(shown) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.exposure_count("item-metric") == len(shown)  # every response logged exactly once
    for exposure_id, (unit, arm, items) in shown.items():
        e = store.get_exposure(exposure_id)
        assert e is not None and (e.unit_id, e.arm, list(e.shown), e.query_id, e.k) == (unit, arm, items, "i7", 5)
    store.close()


def test_interleaving_merges_both_arms_lists(served):
    server, _ = served
    for unit in ("u1", "u2", "u3"):
        r = server.client.get("/recommend", params={"user_id": "u5", "experiment": "rec-interleave", "unit_id": unit, "k": 6})
        assert r.status_code == 200, r.text
        body = r.json()
        ids = [n["item_id"] for n in body["neighbors"]]
        teams = body["experiment"]["teams"]
        assert len(ids) == len(set(ids)) == len(teams) == 6 and body["experiment"]["arm"] is None
        lists = {
            m: [
                n["item_id"]
                for n in server.client.get(
                    "/recommend", params={"user_id": "u5", "model": "weight-decay", "metric": m, "k": 6}
                ).json()["neighbors"]
            ]
            for m in ("dot", "projected")
        }
        for item, team in zip(ids, teams, strict=True):
            assert item in lists[team]  # each position comes from its team's own list
        for team, own in lists.items():  # each team's picks keep its list's order
            picked = [i for i, t in zip(ids, teams, strict=True) if t == team]
            assert picked == [i for i in own if i in picked]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"experiment": "item-metric", "unit_id": "u1", "metric": "dot"}, "metric"),
        ({"experiment": "item-metric", "unit_id": "u1", "model": "weight-decay"}, "model"),
        ({"experiment": "item-metric"}, "unit_id"),
        ({"experiment": "nope", "unit_id": "u1"}, "experiment"),
        ({"experiment": "rec-interleave", "unit_id": "u1"}, "experiment"),  # a /recommend experiment on /similar-items
    ],
)
def test_bad_experiment_requests_are_422s_naming_the_parameter(served, params, param):
    server, _ = served
    r = server.client.get("/similar-items", params={"item_id": "i7", **params})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert [e["param"] for e in r.json()["errors"]] == [param]


def test_a_bad_experiments_file_is_refused_and_the_previous_definitions_stay(served):
    server, root = served
    path = root / "experiments.toml"
    path.write_text(EXPERIMENTS.replace('metric = "projected", weight = 50', 'metric = "euclid", weight = 50'))
    try:
        deadline = time.monotonic() + 10
        status = {}
        while time.monotonic() < deadline:
            status = server.client.get("/readyz").json()["experiments"]
            if status["last_refusal"]:
                break
            time.sleep(0.05)
        assert "euclid" in status["last_refusal"]["reason"] and "arms[1].metric" in status["last_refusal"]["reason"]
        assert status["experiments"] == ["item-metric", "rec-interleave"]  # still served
        r = server.client.get("/similar-items", params={"item_id": "i7", "experiment": "item-metric", "unit_id": "u1"})
        assert r.status_code == 200
    finally:
        path.write_text(EXPERIMENTS)
    deadline = time.monotonic() + 10
    while server.client.get("/readyz").json()["experiments"]["last_refusal"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.client.get("/readyz").json()["experiments"]["last_refusal"] is None


def _exposed(server, unit: str) -> dict:
    r = server.client.get("/similar-items", params={"item_id": "i9", "experiment": "item-metric", "unit_id": unit, "k": 4})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_stored(root, count_at_least: int, experiment: str = "item-metric"):
    store = open_store(f"sqlite://{(root / 'events' / 'events.db').resolve()}")
    deadline = time.monotonic() + 10
    while store.exposure_count(experiment) < count_at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return store


def test_feedback_is_validated_accepted_once_and_reported(served):
    server, root = served
    body = _exposed(server, "fb-unit")
    exposure_id, shown = body["experiment"]["exposure_id"], [n["item_id"] for n in body["neighbors"]]
    click = {"exposure_id": exposure_id, "item_id": shown[1], "event": "click", "event_id": "ev-1"}
    for _ in range(3):  # repeating an event_id is idempotent
        r = server.client.post("/feedback", json=click)
        assert r.status_code == 202 and r.json() == {
            "accepted": True,
            "exposure_id": exposure_id,
            "event_id": "ev-1",
            "validated": True,
        }
    assert (
        server.client.post("/feedback", json={**click, "event": "conversion", "event_id": "ev-2", "value": 9.5}).status_code
        == 202
    )
    for bad, param in (
        ({**click, "exposure_id": "nope"}, "exposure_id"),
        ({**click, "item_id": "i-never-shown"}, "item_id"),
        ({**click, "event": "Not A Name!"}, "event"),
        ({**click, "extra": 1}, "extra"),
    ):
        r = server.client.post("/feedback", json=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert param in {e["param"] for e in r.json()["errors"]}, r.json()
    store = _wait_stored(root, 1)
    deadline = time.monotonic() + 10
    while len(store.feedback_for(exposure_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = store.feedback_for(exposure_id)
    assert sorted((f.event, f.item_id, f.event_id) for f in events) == [
        ("click", shown[1], "ev-1"),
        ("conversion", shown[1], "ev-2"),
    ]
    report = server.client.get("/experiments/item-metric/report").json()
    arms = {a["name"]: a for a in report["arms"]}
    assert set(arms) == {"control", "projected"} and report["mode"] == "ab"
    assert sum(a["exposures"] for a in arms.values()) == store.exposure_count("item-metric")
    assert (
        arms[body["experiment"]["arm"]]["events"]["click"] >= 1 and arms[body["experiment"]["arm"]]["events"]["conversion"] == 1
    )
    assert {"chi2", "p_value", "flag"} <= set(report["srm"])
    markdown = server.client.get("/experiments/item-metric/report", params={"format": "markdown"})
    assert markdown.status_code == 200 and "control" in markdown.text and "projected" in markdown.text
    listing = server.client.get("/experiments").json()
    assert listing["configured"] and [e["name"] for e in listing["experiments"]] == ["item-metric", "rec-interleave"]
    assert server.client.get("/experiments/nope/report").status_code == 404
    store.close()


def test_every_worker_and_a_restarted_server_assign_by_the_formula(served):
    """Two real worker processes, then a restart: each unit gets the arm of the formula from whichever answers."""
    _, root = served
    units = [f"unit-{i}" for i in range(40)]
    env = {"EXPERIMENTS_FILE": str(root / "experiments.toml"), "EVENTS_DIR": str(root / "events-workers")}
    for attempt in ("first start", "after a restart"):
        with start_api_server(root / "art", root, workers=2, **env) as server:
            assert len(each_worker(server, "/readyz", 2)) == 2, attempt
            # no keep-alive: every request a fresh connection, which either worker may accept
            fresh = httpx.Client(base_url=server.base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
            with fresh:
                for unit in units:
                    for _ in range(4):  # with two workers nearly every unit meets both
                        params = {"item_id": "i7", "experiment": "item-metric", "unit_id": unit, "k": 3}
                        r = fresh.get("/similar-items", params=params)
                        assert r.status_code == 200, r.text
                        assert r.json()["experiment"]["arm"] == arm_of("2026-12", unit), (attempt, unit)


def test_a_version_without_an_arms_metric_refuses_the_experiment_until_one_with_it_is_served(served):
    """The arms are validated against the version that serves the request, not only the one the file was loaded
    for: on a version without `projected`, every unit of item-metric (either arm) gets a 422 naming the metric."""
    server, root = served
    art = root / "art"
    good = (art / "CURRENT").read_text().strip()
    name, folder = copy_version(art, good)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"] = [m for m in manifest["metrics"] if m != "projected"]
    manifest["indexes"] = {key: v for key, v in manifest["indexes"].items() if not key.endswith("/projected")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    units = {arm_of("2026-12", f"u{i}"): f"u{i}" for i in range(20)}
    assert set(units) == {"control", "projected"}
    try:
        publish_by_hand(art, name)
        _wait_ready(server, lambda s: s["artifact_version"] == name and s["experiments"]["last_refusal"])
        for unit in units.values():
            r = server.client.get("/similar-items", params={"item_id": "i7", "experiment": "item-metric", "unit_id": unit})
            assert r.status_code == 422, r.text
            assert "metric" in {e["param"] for e in r.json()["errors"]} and "projected" in r.text, r.text
    finally:
        publish_by_hand(art, good)
    _wait_ready(server, lambda s: s["artifact_version"] == good and not s["experiments"]["last_refusal"])
    for unit in units.values():
        r = server.client.get("/similar-items", params={"item_id": "i7", "experiment": "item-metric", "unit_id": unit})
        assert r.status_code == 200 and r.json()["metric"] == ("cosine" if arm_of("2026-12", unit) == "control" else "projected")


def _wait_ready(server, condition, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    status = server.client.get("/readyz").json()
    while not condition(status) and time.monotonic() < deadline:
        time.sleep(0.05)
        status = server.client.get("/readyz").json()
    assert condition(status), status
    return status
