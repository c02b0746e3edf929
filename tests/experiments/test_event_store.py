"""The experiments' event store on real databases: a SQLite file, and a throwaway PostgreSQL cluster.

Every behaviour is checked on both backends; the aggregates (unit_rows, interleaving_credits) against the
same quantities counted in Python over the rows the test wrote. The PostgreSQL cluster is started once per
module (support.postgres); each test gets a database of its own on it. Without Debian's postgresql package
the PostgreSQL cases skip, naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import psycopg
import pytest
from support.postgres import PostgresCluster

from app.experiments.events import (
    _INSERT_EXPOSURES,
    EventStore,
    Exposure,
    Feedback,
    SqliteStore,
    StoreUnavailable,
    UnitRow,
    _json_strings,
    open_store,
)
from app.experiments.interleaving import credit
from models.errors import InputError

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'events.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def exposure(i: int, experiment: str = "exp-a", *, rng: random.Random | None = None, interleaved: bool = False) -> Exposure:
    rng = rng or random.Random(i)
    shown = tuple(f"item-{j}" for j in rng.sample(range(50), 5))
    teams = tuple(rng.randrange(2) for _ in shown) if interleaved else None
    return Exposure(
        exposure_id=f"{experiment}/{i}",
        time=1.7e9 + i / 7,
        experiment=experiment,
        arm=rng.choice(["control", "treatment"]),
        unit_id=f"user-{rng.randrange(12)}",
        endpoint="neighbours" if i % 2 else "recommendations",
        query_id=f"q-{i}",
        k=len(shown),
        artifact_version="v20240101",
        shown=shown,
        teams=teams,
    )


def feedback_for(e: Exposure, rng: random.Random, n: int, prefix: str) -> list[Feedback]:
    """n events on e: clicks (some on items it did not show), purchases with values, ratings; half with event ids."""
    out = []
    for j in range(n):
        event = rng.choice(["click", "click", "purchase", "rating"])
        item = rng.choice(e.shown) if rng.random() < 0.9 else "item-never-shown"
        value = None if event == "click" else round(rng.uniform(0, 5), 3)
        event_id = f"{prefix}/{e.exposure_id}/{j}" if j % 2 else None
        out.append(Feedback(e.exposure_id, item, event, value, event_id, e.time + 1 + j))
    return out


def test_round_trip(store: EventStore) -> None:
    rng = random.Random(1)
    exposures = [exposure(i, "exp-a", rng=rng) for i in range(30)] + [
        exposure(i, "exp-i", rng=rng, interleaved=True) for i in range(20)
    ]
    odd = Exposure("é/∑ \"quoted\" 'x'", 0.1 + 0.2, "exp-a", "control", "ünït", "neighbours", "", 0, "v1", (), None)
    assert store.write_exposures([*exposures, odd]) == 51
    for e in [*exposures, odd]:
        assert store.get_exposure(e.exposure_id) == e  # every field, floats bit for bit, tuples typed
    assert store.get_exposure("no-such-exposure") is None
    feedback = feedback_for(exposures[0], rng, 6, "f")
    assert store.write_feedback(feedback) == 6
    assert store.feedback_for(exposures[0].exposure_id) == feedback  # in write order, None values kept
    assert store.feedback_for(exposures[1].exposure_id) == []
    assert store.exposure_count() == 51
    assert store.exposure_count("exp-a") == 31
    assert store.exposure_count("exp-i") == 20
    assert store.exposure_count("exp-none") == 0
    assert store.write_exposures([]) == 0 and store.write_feedback([]) == 0
    store.ping()


def test_reopen_keeps_rows_and_schema(store_url: str) -> None:
    with closing(open_store(store_url)) as first:
        first.write_exposures([exposure(1)])
    with closing(open_store(store_url)) as again:
        assert again.get_exposure(exposure(1).exposure_id) == exposure(1)
        assert again.write_exposures([exposure(1), exposure(2)]) == 1


def test_newer_schema_version_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url[len("sqlite://") :]) as conn:
            conn.execute("UPDATE schema_version SET version = 2")
    else:
        with psycopg.connect(store_url) as pg:
            pg.execute("UPDATE schema_version SET version = 2")
    with pytest.raises(RuntimeError, match="schema version 2"):
        open_store(store_url)


def test_exposures_idempotent_on_exposure_id(store: EventStore) -> None:
    e = exposure(7)
    changed = dataclasses.replace(e, arm="other-arm", shown=("x",))
    assert store.write_exposures([e]) == 1
    assert store.write_exposures([e]) == 0
    assert store.write_exposures([changed, exposure(8)]) == 1  # the repeat is ignored, the new one written
    assert store.exposure_count() == 2
    assert store.get_exposure(e.exposure_id) == e  # the first write wins
    assert store.write_exposures([exposure(9), exposure(9)]) == 1  # a repeat inside one batch too
    assert store.exposure_count() == 3


def test_feedback_idempotent_on_event_id(store: EventStore) -> None:
    e = exposure(3)
    store.write_exposures([e])
    once = Feedback(e.exposure_id, e.shown[0], "click", None, "evt-1", 10.0)
    assert store.write_feedback([once]) == 1
    assert store.write_feedback([once, Feedback(e.exposure_id, e.shown[1], "click", None, "evt-1", 11.0)]) == 0
    anonymous = Feedback(e.exposure_id, e.shown[2], "click", None, None, 12.0)
    assert store.write_feedback([anonymous]) == 1
    assert store.write_feedback([anonymous]) == 1  # no event id: each write is a new event
    assert store.feedback_for(e.exposure_id) == [once, anonymous, anonymous]


def test_large_batches_write_every_new_row_once(store: EventStore) -> None:
    """Batches span several multi-row statements (chunk sizes 1024, 512, ..., 1): every distinct new row is
    written exactly once and counted, repeats within the batch and of stored rows are not."""
    stored = [exposure(i) for i in range(0, 3000, 7)]
    assert store.write_exposures(stored) == len(stored)
    rng = random.Random(5)
    batch = [exposure(rng.randrange(3000)) for _ in range(4001)]  # repeats within, and of the stored ones
    new_ids = {e.exposure_id for e in batch} - {e.exposure_id for e in stored}
    assert store.write_exposures(batch) == len(new_ids)
    assert store.exposure_count() == len(new_ids) + len(stored)
    for e in rng.sample(batch, 50):  # each row is the one written for its id, field by field
        assert store.get_exposure(e.exposure_id) == e
    events = [Feedback(e.exposure_id, e.shown[0], "click", None, f"ev-{i % 2500}", float(i)) for i, e in enumerate(batch)]
    anonymous = [Feedback(e.exposure_id, e.shown[1], "view", 1.5, None, 0.0) for e in batch[:1500]]
    assert store.write_feedback(events + anonymous) == 2500 + 1500
    assert sum(len(store.feedback_for(i)) for i in {e.exposure_id for e in batch}) == 2500 + 1500


@pytest.mark.parametrize(("rows", "max_params"), [(0, 100), (1, 100), (9, 11), (700, 16_384), (4001, 16_384), (33, 1)])
def test_batch_insert_chunks_are_powers_of_two_in_order(rows: int, max_params: int) -> None:
    table = [tuple(f"r{i}c{j}" for j in range(11)) for i in range(rows)]
    chunks = list(_INSERT_EXPOSURES.chunks(table, max_params))
    sizes = [n for n, _ in chunks]
    assert sum(sizes) == rows
    most = max(1, 2 ** math.floor(math.log2(max(1, max_params // 11))))
    assert all(n & (n - 1) == 0 and n <= most for n in sizes)  # powers of two: few distinct statements
    rest = [n for n in sizes if n != most]  # the remainder's binary digits, each once, largest first
    assert sizes == sorted(sizes, reverse=True) and len(rest) == len(set(rest))
    assert [v for _, params in chunks for v in params] == [v for row in table for v in row]  # order kept
    assert all(len(params) == 11 * n for n, params in chunks)


def test_a_batch_is_a_few_statements_not_one_per_row(tmp_path: Path) -> None:
    """The writer thread lets go of Python's GIL once per statement; one per row starves it on a busy server."""
    store = SqliteStore(tmp_path / "e.db")
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        assert store.write_exposures([exposure(i) for i in range(1000)]) == 1000
    finally:
        store._conn.set_trace_callback(None)
        store.close()
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == bin(1000).count("1")  # 512 + 256 + 128 + 64 + 32 + 8
    assert len(statements) == len(inserts) + 2  # and BEGIN IMMEDIATE, COMMIT


@hypothesis.given(st.lists(st.text(st.one_of(st.sampled_from('"\\\x00\x1f\ud800é,'), st.characters()), max_size=8), max_size=12))
def test_shown_json_is_what_json_dumps_writes(values: list[str]) -> None:
    assert _json_strings(values) == json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def expected_unit_rows(exposures: list[Exposure], feedback: list[Feedback], experiment: str) -> list[UnitRow]:
    """Counted in Python: exposures per (arm, unit), and events per (arm, unit, event) via each event's exposure."""
    by_id = {e.exposure_id: e for e in exposures}
    n = Counter((e.arm, e.unit_id) for e in by_id.values() if e.experiment == experiment)
    events: dict[tuple[str, str], Counter[str]] = {key: Counter() for key in n}
    for f in feedback:
        e = by_id.get(f.exposure_id)
        if e is not None and e.experiment == experiment:
            events[(e.arm, e.unit_id)][f.event] += 1
    return [UnitRow(arm, unit, n[(arm, unit)], dict(events[(arm, unit)])) for arm, unit in sorted(n)]


def test_unit_rows_equal_a_python_count(store: EventStore) -> None:
    rng = random.Random(5)
    exposures = [exposure(i, "exp-a", rng=rng) for i in range(300)] + [exposure(i, "exp-b", rng=rng) for i in range(100)]
    feedback = [f for e in exposures for f in feedback_for(e, rng, rng.randrange(4), "u")]
    feedback.append(Feedback("exp-a/unknown", "item-1", "click", None, None, 1.0))  # an exposure never written
    for start in range(0, len(exposures), 64):
        store.write_exposures(exposures[start : start + 64])
    store.write_feedback(feedback)
    got = store.unit_rows("exp-a")
    want = expected_unit_rows(exposures, feedback, "exp-a")
    assert got == want
    assert sum(r.exposures for r in got) == 300
    assert store.unit_rows("exp-b") == expected_unit_rows(exposures, feedback, "exp-b")
    assert store.unit_rows("exp-none") == []


def test_unit_without_feedback_has_no_events(store: EventStore) -> None:
    store.write_exposures([exposure(1), exposure(2)])
    rows = store.unit_rows("exp-a")
    assert [r.events for r in rows] == [{}] * len(rows)
    assert sum(r.exposures for r in rows) == 2


def expected_credits(exposures: list[Exposure], feedback: list[Feedback], experiment: str) -> list[tuple[str, int, int]]:
    """Per interleaved exposure: the click events' positions in shown, credited by interleaving.credit."""
    clicked: dict[str, list[int]] = {e.exposure_id: [] for e in exposures if e.experiment == experiment and e.teams is not None}
    shown = {e.exposure_id: e.shown for e in exposures}
    for f in feedback:
        if f.event == "click" and f.exposure_id in clicked and f.item_id in shown[f.exposure_id]:
            clicked[f.exposure_id].append(shown[f.exposure_id].index(f.item_id))
    teams = {e.exposure_id: e.teams for e in exposures}
    out = []
    for eid, positions in clicked.items():
        t = teams[eid]
        assert t is not None
        out.append((eid, *credit(t, positions)))
    return sorted(out)


def test_interleaving_credits_equal_a_python_count(store: EventStore) -> None:
    rng = random.Random(9)
    exposures = [exposure(i, "exp-i", rng=rng, interleaved=True) for i in range(200)]
    exposures += [exposure(i, "exp-a", rng=rng) for i in range(50)]  # A/B exposures: not in the credits
    exposures += [exposure(i, "exp-j", rng=rng, interleaved=True) for i in range(30)]  # another experiment
    feedback = [f for e in exposures for f in feedback_for(e, rng, rng.randrange(5), "c")]
    store.write_exposures(exposures)
    store.write_feedback(feedback)
    got = store.interleaving_credits("exp-i")
    want = expected_credits(exposures, feedback, "exp-i")
    assert got == want
    assert len(got) == 200 and any(a > 0 for _, a, _ in got) and any(b > 0 for _, _, b in got)  # both teams credited
    assert any(a == b == 0 for _, a, b in got)  # and exposures without credited clicks are there, as (0, 0)
    assert store.interleaving_credits("exp-a") == []
    assert store.interleaving_credits("exp-j") == expected_credits(exposures, feedback, "exp-j")


def test_interleaved_exposures_credit_every_event_type_like_a_python_count(store: EventStore) -> None:
    rng = random.Random(11)
    exposures = [exposure(i, "exp-i", rng=rng, interleaved=True) for i in range(150)]
    exposures += [exposure(i, "exp-a", rng=rng) for i in range(20)]
    feedback = [f for e in exposures for f in feedback_for(e, rng, rng.randrange(6), "t")]
    store.write_exposures(exposures)
    store.write_feedback(feedback)
    want: dict[str, Counter[tuple[int, str]]] = {e.exposure_id: Counter() for e in exposures if e.experiment == "exp-i"}
    by_id = {e.exposure_id: e for e in exposures}
    for f in feedback:
        e = by_id[f.exposure_id]
        if f.exposure_id in want and f.item_id in e.shown:
            assert e.teams is not None
            want[f.exposure_id][(e.teams[e.shown.index(f.item_id)], f.event)] += 1
    got = store.interleaved_exposures("exp-i")
    assert [g.exposure_id for g in got] == sorted(want)
    for g in got:
        e = by_id[g.exposure_id]
        assert e.teams is not None
        assert (g.unit_id, g.first_team, g.events) == (e.unit_id, e.teams[0], dict(want[g.exposure_id]))
    assert {event for g in got for _, event in g.events} == {"click", "purchase", "rating"}
    assert store.interleaved_exposures("exp-a") == []


def test_credits_of_an_exposure_without_clicks_are_zero(store: EventStore) -> None:
    e = Exposure("x", 1.0, "exp-i", "interleaved", "u", "neighbours", "q", 3, "v1", ("a", "b", "c"), (0, 1, 0))
    store.write_exposures([e])
    store.write_feedback([Feedback("x", "b", "purchase", 2.0, None, 2.0), Feedback("x", "zz", "click", None, None, 3.0)])
    assert store.interleaving_credits("exp-i") == [("x", 0, 0)]
    store.write_feedback([Feedback("x", "c", "click", None, None, 4.0), Feedback("x", "c", "click", None, None, 5.0)])
    store.write_feedback([Feedback("x", "b", "click", None, "once", 6.0), Feedback("x", "b", "click", None, "once", 7.0)])
    assert store.interleaving_credits("exp-i") == [("x", 2, 1)]  # position 2 (team 0) twice, position 1 (team 1) once


@pytest.mark.parametrize("sharing", ["one store", "a store per thread"])
def test_concurrent_writers_lose_nothing(store_url: str, sharing: str) -> None:
    """Two threads, 2,000 exposures each in batches of 25 with feedback, plus 200 exposure ids both write."""
    stores = [open_store(store_url)] if sharing == "one store" else [open_store(store_url), open_store(store_url)]
    written = [0, 0]
    feedback_written = [0, 0]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        store = stores[t % len(stores)]
        rng = random.Random(t)
        try:
            for start in range(0, 2000, 25):
                batch = [exposure(i, f"exp-{t}", rng=rng) for i in range(start, start + 25)]
                batch += [exposure(i, "exp-shared", rng=random.Random(i)) for i in range(start // 10, start // 10 + 3)]
                written[t] += store.write_exposures(batch)
                feedback_written[t] += store.write_feedback(
                    [Feedback(e.exposure_id, e.shown[0], "click", None, None, 0.0) for e in batch[:25]]
                )
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    try:
        assert not errors, errors
        shared = len({i for start in range(0, 2000, 25) for i in range(start // 10, start // 10 + 3)})
        assert sum(written) == 4000 + shared  # each shared id counted once, by whichever thread wrote it first
        assert stores[0].exposure_count() == 4000 + shared
        assert stores[0].exposure_count("exp-0") == stores[0].exposure_count("exp-1") == 2000
        assert feedback_written == [2000, 2000]
        for t in (0, 1):
            rows = stores[0].unit_rows(f"exp-{t}")
            assert sum(r.exposures for r in rows) == 2000
            assert sum(r.events.get("click", 0) for r in rows) == 2000
    finally:
        for s in stores:
            s.close()


def test_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.db"  # the folder is created
    store = open_store(f"sqlite://{path}")
    try:
        assert isinstance(store, SqliteStore)
        with sqlite3.connect(path) as other:  # WAL is a property of the file, seen by any connection
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        store.close()


def test_sqlite_locked_past_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteStore(path, busy_timeout_ms=100)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write_exposures([exposure(1)])
        assert store.exposure_count() == 0  # readers are not blocked by a writer in WAL mode
        holder.execute("ROLLBACK")
        assert store.write_exposures([exposure(1)]) == 1
    finally:
        holder.close()
        store.close()


def test_postgres_down_then_up_reconnects(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.new_database()
    store = open_store(url)
    try:
        assert store.write_exposures([exposure(i) for i in range(10)]) == 10
        store.write_feedback([Feedback(exposure(0).exposure_id, "item-1", "click", None, "e0", 1.0)])
        pg_cluster.stop()
        try:
            with pytest.raises(StoreUnavailable):
                store.ping()
            with pytest.raises(StoreUnavailable):
                store.write_exposures([exposure(10)])
            with pytest.raises(StoreUnavailable):
                store.write_feedback([Feedback(exposure(0).exposure_id, "item-1", "click", None, "e1", 2.0)])
            with pytest.raises(StoreUnavailable):
                store.unit_rows("exp-a")
        finally:
            pg_cluster.start()
        store.ping()  # the same store object, a new connection
        assert store.write_exposures([exposure(i) for i in range(8, 12)]) == 2
        assert store.exposure_count() == 12  # nothing written before the stop is lost
        assert store.feedback_for(exposure(0).exposure_id) == [
            Feedback(exposure(0).exposure_id, "item-1", "click", None, "e0", 1.0)
        ]
        assert store.get_exposure(exposure(3).exposure_id) == exposure(3)
    finally:
        store.close()


def test_postgres_restart_while_idle_costs_no_failure(pg_cluster: PostgresCluster) -> None:
    """A stale connection fails before anything is committed, so the call runs again on a new one."""
    store = open_store(pg_cluster.new_database())
    try:
        store.write_exposures([exposure(1)])
        pg_cluster.stop()
        pg_cluster.start()
        assert store.write_exposures([exposure(2)]) == 1
        assert store.exposure_count() == 2
    finally:
        store.close()


def test_postgres_down_at_open(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.new_database()
    pg_cluster.stop()
    try:
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            open_store(url)
        lazy = open_store(url, connect=False)  # a service that starts before its database
        with pytest.raises(StoreUnavailable):
            lazy.ping()
    finally:
        pg_cluster.start()
    try:
        assert lazy.write_exposures([exposure(1)]) == 1  # the first call that can connect creates the schema
        assert lazy.get_exposure(exposure(1).exposure_id) == exposure(1)
    finally:
        lazy.close()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "events.db",
        "mysql://u@h/db",
        "sqlite:relative.db",
        "sqlite://relative.db",
        "sqlite:///tmp/events.db?mode=ro",
        "sqlite:///tmp/",
        "postgresql://[::1",
        "postgresql://u@h/db?nonsense=1",
        "postgresql://u:secret@h:notaport/db",
    ],
)
def test_bad_urls_are_refused_naming_events_db(url: str) -> None:
    with pytest.raises(ValueError, match="EVENTS_DB") as info:
        open_store(url)
    assert isinstance(info.value, InputError)
    message = str(info.value)
    assert "sqlite:///" in message and "postgresql://" in message  # the accepted forms
    assert "secret" not in message  # a password never reaches a log


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'e.db'}")
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.write_exposures([exposure(1)])


@pytest.mark.parametrize(
    ("teams", "shown"),
    [((0, 1), ("a", "b", "c")), ((0, 2, 1), ("a", "b", "c")), ((0, 1), ("a", "a")), ((True, False), ("a", "b"))],
)
def test_inconsistent_interleaved_exposure_is_refused(teams: tuple[int, ...], shown: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match="exposure 'x'"):
        Exposure("x", 1.0, "exp", "arm", "u", "neighbours", "q", len(shown), "v1", shown, teams).check()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("k", -1, "k must"), ("k", True, "k must"), ("k", 2.0, "k must"), ("time", "now", "time must"),
     ("unit_id", 7, "unit_id must"), ("arm", None, "arm must"), ("shown", ["a"], "shown must"), ("shown", (1,), "shown must")],
)  # fmt: skip
def test_check_names_the_broken_field(field: str, value: object, named: str) -> None:
    good = Exposure("x", 1.0, "exp", "arm", "u", "neighbours", "q", 1, "v1", ("a",), None)
    assert good.check() is good
    with pytest.raises(InputError, match=f"exposure 'x': {named}"):
        dataclasses.replace(good, **{field: value}).check()
