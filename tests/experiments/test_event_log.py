"""The event log against real stores: every submitted record reaches the database exactly once, through a
PostgreSQL outage (spilled, then replayed), a full queue and a restart; drops happen only when the spill file
is full too, and are counted."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.postgres import PostgresCluster
from support.servers import free_port

from app.experiments.event_log import EventLog, EventLogParams
from app.experiments.events import Exposure, Feedback, open_store
from app.experiments.service import ExperimentsService


def exposure(i: int, interleaved: bool = False) -> Exposure:
    shown = tuple(f"i{(i + j) % 37}" for j in range(4))
    return Exposure(
        exposure_id=f"x{i}",
        time=1_800_000_000.0 + i,
        experiment="exp",
        arm="a" if i % 2 else "b",
        unit_id=f"u{i % 13}",
        endpoint="similar-items",
        query_id="i1",
        k=4,
        artifact_version="v1",
        shown=shown,
        teams=(0, 1, 1, 0) if interleaved else None,
    )


ROOT = Path(__file__).resolve().parents[2]
FAST = EventLogParams(batch=50, flush_interval=0.01, retry_interval=0.05)


def test_every_record_is_written_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'events.db'}")
    log = EventLog(store, tmp_path / "spill.jsonl", FAST)
    for i in range(1000):
        log.submit("exposure", exposure(i, interleaved=i % 3 == 0))
    log.submit("feedback", Feedback("x3", "i3", "click", None, "e1", 1.0))
    assert log.flush(20)
    assert store.exposure_count("exp") == 1000 and store.get_exposure("x3") == exposure(3, interleaved=True)
    assert store.feedback_for("x3") == [Feedback("x3", "i3", "click", None, "e1", 1.0)]
    assert log.counts() == {"queued": 1001, "written": 1001, "spilled": 0, "replayed": 0, "dropped": 0}
    log.close()
    store.close()


def test_exposures_queued_as_fields_are_stored_as_the_exposure_they_describe(tmp_path: Path) -> None:
    """submit_exposure (the request path's form: time in ns, shown and teams as lists) stores the Exposure of the
    same fields, in order, also when a full queue sends records to the spill file."""
    store = open_store(f"sqlite://{tmp_path / 'events.db'}")
    log = EventLog(store, tmp_path / "spill.jsonl", dataclasses.replace(FAST, queue_size=5))
    expected = [exposure(i, interleaved=i % 3 == 0) for i in range(300)]
    for e in expected:
        teams = None if e.teams is None else list(e.teams)
        fields = (e.exposure_id, int(e.time * 1e9), e.experiment, e.arm, e.unit_id, e.endpoint, e.query_id, e.k,
                  e.artifact_version, list(e.shown), teams)  # fmt: skip
        log.submit_exposure(fields)
    assert log.flush(20)
    assert [store.get_exposure(e.exposure_id) for e in expected] == expected
    counts = log.counts()
    assert counts["spilled"] > 0 and counts["replayed"] == counts["spilled"]  # the queue of 5 overflowed
    assert counts["written"] == 300 and counts["dropped"] == 0
    log.close()
    store.close()


def test_a_database_outage_spills_then_replays_everything_once(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    store = open_store(pg_cluster.new_database())
    seen: list[tuple[str, int]] = []
    log = EventLog(store, tmp_path / "spill.jsonl", FAST, on_count=lambda name, n: seen.append((name, n)))
    for i in range(300):
        log.submit("exposure", exposure(i))
    assert log.flush(20)
    pg_cluster.stop()
    try:
        t0 = time.perf_counter()
        for i in range(300, 900):
            log.submit("exposure", exposure(i))
        submit_seconds = time.perf_counter() - t0
        deadline = time.monotonic() + 20
        while log.counts()["spilled"] < 600 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.counts()["spilled"] == 600 and (tmp_path / "spill.jsonl").stat().st_size > 0
    finally:
        pg_cluster.start()
    assert submit_seconds < 1.0  # the request path never waits for the database
    assert log.flush(30), log.counts()
    assert store.exposure_count("exp") == 900
    counts = log.counts()
    assert counts["written"] == 900 and counts["replayed"] == 600 and counts["dropped"] == 0
    assert (tmp_path / "spill.jsonl").read_text() == ""
    assert sum(n for name, n in seen if name == "spilled") == 600  # the Prometheus hook saw what counts() says
    log.close()
    store.close()


def test_a_spill_left_by_a_stopped_process_is_replayed_by_the_next(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.new_database()
    store = open_store(url)
    pg_cluster.stop()
    try:
        log = EventLog(store, tmp_path / "spill.jsonl", FAST)
        for i in range(50):
            log.submit("exposure", exposure(i))
        log.close(timeout=0.5)  # the database is down: the records stay in the spill file
    finally:
        pg_cluster.start()
    assert len((tmp_path / "spill.jsonl").read_text().splitlines()) == 50
    again = EventLog(open_store(url), tmp_path / "spill.jsonl", FAST)
    assert again.flush(20)
    assert open_store(url).exposure_count("exp") == 50
    again.close()


def test_drops_only_when_queue_and_spill_are_full_and_counts_them(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    store = open_store(pg_cluster.new_database())
    one = len(exposure(0).exposure_id) + 300  # a spilled record is about this many bytes
    params = EventLogParams(queue_size=5, batch=5, flush_interval=0.01, retry_interval=60.0, spill_max_bytes=20 * one)
    pg_cluster.stop()
    try:
        log = EventLog(store, tmp_path / "spill.jsonl", params)
        for i in range(200):
            log.submit("exposure", exposure(i))
        time.sleep(0.3)
        counts = log.counts()
        assert counts["dropped"] > 0 and counts["spilled"] > 0
        assert (tmp_path / "spill.jsonl").stat().st_size <= params.spill_max_bytes
        assert counts["spilled"] + counts["dropped"] + len(log._queue) == 200  # every record accounted for
    finally:
        pg_cluster.start()
    log.close(timeout=0.2)


# A worker of the server: its records spill (the database is unreachable), then it waits to be killed.
_SPILLING_WORKER = """
import sys, time
from pathlib import Path
from app.experiments.event_log import EventLog, EventLogParams
from app.experiments.events import Exposure, open_store
store = open_store(sys.argv[2], connect=False)
log = EventLog(store, Path(sys.argv[1]), EventLogParams(batch=50, flush_interval=0.01, retry_interval=60.0))
name = Path(sys.argv[1]).stem
for i in range(int(sys.argv[3])):
    log.submit("exposure", Exposure(f"{name}/{i}", 1.0, "exp", "a", f"u{i}", "similar-items", "q", 1, "v1", ("i1",), None))
while log.counts()["spilled"] < int(sys.argv[3]):
    time.sleep(0.01)
print("spilled", flush=True)
time.sleep(600)
"""


def start_spilling_worker(spill: Path, n: int) -> subprocess.Popen[str]:
    unreachable = f"postgresql://simserve@127.0.0.1:{free_port()}/events"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SPILLING_WORKER, str(spill), unreachable, str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "spilled"
    return proc


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_killed_workers_spill_is_replayed_by_a_live_sibling_and_a_live_ones_is_not(tmp_path: Path) -> None:
    dead, alive = tmp_path / "events-spill-101.jsonl", tmp_path / "events-spill-102.jsonl"
    doomed, survivor = start_spilling_worker(dead, 120), start_spilling_worker(alive, 30)
    store = open_store(f"sqlite://{tmp_path / 'events.db'}")
    params = EventLogParams(batch=50, flush_interval=0.01, retry_interval=0.05, adopt_interval=0.1)
    log = EventLog(store, tmp_path / "events-spill-103.jsonl", params, siblings="events-spill-*.jsonl")
    try:
        time.sleep(0.5)  # several looks for orphans: both siblings are alive, nothing is taken
        assert store.exposure_count() == 0 and len(dead.read_text().splitlines()) == 120
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        assert wait_for(lambda: store.exposure_count() == 120, 10), log.counts()
        ids = [f"events-spill-101/{i}" for i in range(120)]
        assert all(store.get_exposure(i) is not None for i in ids)
        assert wait_for(lambda: not dead.exists(), 5) and not (tmp_path / "events-spill-101.jsonl.lock").exists()
        assert log.counts()["replayed"] == 120 and log.counts()["written"] == 120
        time.sleep(0.3)
        assert len(alive.read_text().splitlines()) == 30  # the live sibling's file is its own to replay
        assert store.exposure_count() == 120
    finally:
        survivor.kill()
        survivor.wait(10)
        if doomed.poll() is None:
            doomed.kill()
    assert wait_for(lambda: store.exposure_count() == 150, 10)  # and once it is gone, it is adopted too
    log.close()
    assert not (tmp_path / "events-spill-103.jsonl").exists() and not (tmp_path / "events-spill-103.jsonl.lock").exists()
    store.close()


def test_a_spill_line_cut_short_by_a_kill_is_counted_as_dropped_and_the_rest_written(tmp_path: Path) -> None:
    orphan = tmp_path / "events-spill-7.jsonl"
    records = [json.dumps({"kind": "exposure", "row": dataclasses.asdict(exposure(i))}) for i in range(10)]
    orphan.write_text("\n".join(records) + "\n" + records[0][: len(records[0]) // 2], encoding="utf-8")
    store = open_store(f"sqlite://{tmp_path / 'events.db'}")
    log = EventLog(store, tmp_path / "events-spill-8.jsonl", FAST, siblings="events-spill-*.jsonl")
    assert wait_for(lambda: not orphan.exists(), 10)
    assert store.exposure_count("exp") == 10
    assert log.counts()["dropped"] == 1 and log.counts()["replayed"] == 10
    log.close()
    store.close()


def test_a_record_postgresql_refuses_is_dropped_alone_and_the_log_keeps_flowing(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """PostgreSQL text cannot hold NUL: such a record fails its batch, in the queue and in a replayed spill alike;
    it is dropped and counted, every other record of the batch is written, and later batches are not held up."""
    store = open_store(pg_cluster.new_database())
    log = EventLog(store, tmp_path / "spill.jsonl", FAST)
    poisoned = dataclasses.replace(exposure(5), unit_id="u\x005")
    for i in range(100):
        log.submit("exposure", poisoned if i == 5 else exposure(i))
    log.submit("feedback", Feedback("x7", "i7", "click", None, "nul\x00id", 1.0))
    assert log.flush(20), log.counts()
    assert store.exposure_count("exp") == 99 and store.get_exposure("x5") is None
    assert log.counts()["dropped"] == 2 and log.counts()["spilled"] == 0
    pg_cluster.stop()
    try:
        for i in range(100, 150):
            log.submit("exposure", dataclasses.replace(exposure(i), unit_id="\x00") if i == 120 else exposure(i))
        assert wait_for(lambda: log.counts()["spilled"] == 50, 20), log.counts()
    finally:
        pg_cluster.start()
    assert log.flush(30), log.counts()
    assert store.exposure_count("exp") == 148
    counts = log.counts()
    assert (counts["dropped"], counts["replayed"], counts["written"]) == (3, 49, 148)
    log.submit("exposure", exposure(200))
    assert log.flush(10) and store.get_exposure("x200") == exposure(200)
    log.close()
    store.close()


def fields_of(e: Exposure) -> tuple[Any, ...]:
    """The request path's form of an Exposure (time in ns, shown as a list)."""
    return (e.exposure_id, int(e.time * 1e9), e.experiment, e.arm, e.unit_id, e.endpoint, e.query_id, e.k,
            e.artifact_version, list(e.shown), None)  # fmt: skip


def test_an_exposure_is_found_while_queued_while_being_written_and_once_stored(tmp_path: Path) -> None:
    """shown_in answers from the queue, then from the batch the writer holds (held here by another connection's
    write lock on the real SQLite file), and lets go once the store has it; the service's lookup answers from the
    queue and from the store."""
    db = tmp_path / "events.db"
    service = ExperimentsService(tmp_path / "absent.toml", f"sqlite://{db}", tmp_path)
    log, store = service.log, service.store
    log.params = dataclasses.replace(log.params, flush_interval=30.0)
    time.sleep(0.3)  # the writer's current wait (the default interval) ends: the next lasts 30 s
    e = exposure(1)
    log.submit_exposure(fields_of(e))
    assert len(log._queue) == 1 and store.get_exposure(e.exposure_id) is None
    assert log.shown_in(e.exposure_id) == e.shown and service.shown_in(e.exposure_id) == e.shown
    assert log.shown_in("x-unknown") is None and service.shown_in("x-unknown") is None
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer's own BEGIN IMMEDIATE now waits (busy_timeout, 5 s)
        log._wake.set()
        assert wait_for(lambda: len(log._queue) == 0, 2)  # taken from the queue, not yet in the store
        assert log.shown_in(e.exposure_id) == e.shown
        assert blocker.execute("SELECT COUNT(*) FROM exposures").fetchone() == (0,)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert log.flush(10)
    assert log.counts()["written"] == 1 and log.counts()["spilled"] == 0
    assert log.shown_in(e.exposure_id) is None  # the log let go: the store answers
    assert store.get_exposure(e.exposure_id) == e and service.shown_in(e.exposure_id) == e.shown
    service.close()


def test_a_lookup_right_after_submitting_always_finds_the_exposure(tmp_path: Path) -> None:
    """No gap between queue, batch in flight and store: while the writer takes batches every 2 ms, another thread
    looks each exposure up from right after it was submitted until the store has it, and every look finds it."""
    service = ExperimentsService(tmp_path / "absent.toml", f"sqlite://{tmp_path / 'events.db'}", tmp_path)
    service.log.params = dataclasses.replace(service.log.params, flush_interval=0.002, batch=7)
    missed: list[str] = []
    submitted: queue.Queue[Exposure | None] = queue.Queue()

    early = [0]  # looks that found an exposure the store did not have yet

    def look() -> None:
        while (e := submitted.get()) is not None:
            while True:  # through every stage: queued, in flight, stored
                found = service.shown_in(e.exposure_id)
                stored = service.store.get_exposure(e.exposure_id) is not None
                if found != e.shown:
                    missed.append(e.exposure_id)
                if stored:
                    break
                early[0] += 1

    looker = threading.Thread(target=look)
    looker.start()
    for i in range(300):
        e = exposure(i)
        service.log.submit_exposure(fields_of(e))
        submitted.put(e)
        for j in range(5):  # other traffic, so that batches hold several records
            service.log.submit_exposure(fields_of(exposure(10_000 + 5 * i + j)))
        time.sleep(0.0005)  # the looker starts on each exposure at once
    submitted.put(None)
    looker.join(120)
    assert service.log.flush(20)
    assert missed == [] and early[0] > 0 and service.store.exposure_count("exp") == 1800
    counts = service.log.counts()
    assert counts["written"] == 1800 and counts["spilled"] == 0
    service.close()
