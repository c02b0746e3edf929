"""The event store of online experiments: exposures (what one request showed) and feedback (what the user did).

Two backends behind one protocol, `EventStore`: `SqliteStore` (the default, one file in WAL mode) and
`PostgresStore` (production, psycopg 3). `open_store(url)` picks one from the EVENTS_DB URL:

    sqlite:///absolute/path/events.db      postgresql://user:password@host:5432/database   (postgres:// too)

Schema (the same logical schema in both, created if absent on open, versioned by schema_version):

    exposures(exposure_id PRIMARY KEY, time, experiment, arm, unit_id, endpoint, query_id, k, artifact_version,
              shown   -- JSON text array of item ids, in display order
              teams)  -- JSON text array of 0/1 per position (team-draft interleaving), NULL otherwise
    feedback(id, exposure_id, item_id, event, value, event_id UNIQUE (NULLs allowed), time)
    indexes: exposures(experiment, time), feedback(exposure_id)

Every index an exposure enters grows at its end: exposure ids begin with the time (app.experiments.service)
and the experiment index is on (experiment, time). A batch then dirties a few pages per index instead of a
page per row, which SQLite's write-ahead log writes out whole: with random keys, at 200,000 rows, a row cost
seven times the CPU. (An index on (experiment, arm, unit_id), which databases made before have and which is
dropped on open, was such a random one.)

Writes are batches, one transaction each, idempotent: an exposure whose exposure_id is stored already, and
feedback whose event_id is, are ignored (feedback without an event_id is always written), and the count of
rows newly written is returned. The store is deliberately dumb: feedback.exposure_id is not a foreign key,
and feedback for an unknown exposure is written and then simply never joins an exposure in the report; the
API validates events before writing them.

Aggregates are computed by the database: `unit_rows` groups by (arm, unit_id) and by event name, and
`interleaved_exposures` joins each event to its item's position in `shown` and that position's team
(`interleaving_credits`: the clicks of that, per team). Rows are returned sorted in Python, so both backends
give the same order whatever the database collation.

Failures that a later retry can cure (PostgreSQL down or unreachable, the connection lost, SQLite busy past
its busy_timeout, disk full or I/O errors) raise StoreUnavailable; the caller spills and retries. A store
is safe to share between threads: one connection per store, one lock around it. A PostgreSQL store whose
connection was lost reconnects on its next call; a call that finds its connection stale before anything was
committed (the server restarted while the store was idle) retries once on a new connection, because nothing
of it can have been written, so a restart between calls costs no failure.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import psycopg
import psycopg.conninfo

from models.errors import InputError

SCHEMA_VERSION = 1
CLICK = "click"  # the event the CTR, the lift and the interleaving count
SQLITE_BUSY_TIMEOUT_MS = 5000
POSTGRES_CONNECT_TIMEOUT_S = 5
# Held during schema creation so that workers opening one fresh database at once do not race on CREATE TABLE.
_POSTGRES_SCHEMA_LOCK = 0x5EE5E7E5
_ACCEPTED = "sqlite:///absolute/path/events.db or postgresql://user:password@host:port/database"

T = TypeVar("T")


@dataclass(slots=True)
class Exposure:
    """One response shown to a unit: the items in display order and, for interleaving, each position's team.

    Made on the request path of every experiment request, so the constructor checks nothing (a frozen
    dataclass's alone costs several µs, a good part of an exposure's budget); `check()` validates one that
    comes from outside the server's own code (a spill file).
    """

    exposure_id: str
    time: float  # seconds since the epoch
    experiment: str
    arm: str
    unit_id: str
    endpoint: str
    query_id: str
    k: int
    artifact_version: str
    shown: tuple[str, ...]
    teams: tuple[int, ...] | None  # interleaving only: teams[i] in {0, 1} picked shown[i]

    def check(self) -> Self:
        """This exposure, or InputError naming the field that breaks the schema's rules."""
        for name in ("exposure_id", "experiment", "arm", "unit_id", "endpoint", "query_id", "artifact_version"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"exposure {self.exposure_id!r}: {name} must be a string")
        if isinstance(self.time, bool) or not isinstance(self.time, int | float):
            raise InputError(f"exposure {self.exposure_id!r}: time must be a number, got {self.time!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise InputError(f"exposure {self.exposure_id!r}: k must be a non-negative integer, got {self.k!r}")
        if not isinstance(self.shown, tuple) or not all(isinstance(i, str) for i in self.shown):
            raise InputError(f"exposure {self.exposure_id!r}: shown must be a tuple of item id strings")
        if self.teams is None:
            return self
        if not isinstance(self.teams, tuple) or len(self.teams) != len(self.shown):
            raise InputError(f"exposure {self.exposure_id!r}: teams must be a tuple with one team per shown item")
        if any(isinstance(t, bool) or t not in (0, 1) for t in self.teams):
            raise InputError(f"exposure {self.exposure_id!r}: teams must be 0 or 1, got {self.teams!r}")
        # A click is credited through its item's position: an item shown twice would have two.
        if len(set(self.shown)) != len(self.shown):
            raise InputError(f"exposure {self.exposure_id!r}: an interleaved list shows each item once")
        return self


# An exposure as the request path queues it: Exposure's fields in order, but the time in nanoseconds and shown and
# teams any sequences. The event log's writer makes the Exposure (exposure_of), off the request path.
ExposureFields = tuple[str, int, str, str, str, str, str, int, str, Sequence[str], Sequence[int] | None]


# What the event log queues and the store writes: an Exposure, or the same exposure in its request-path form.
ExposureRow = Exposure | ExposureFields


def exposure_of(row: ExposureRow) -> Exposure:
    """The Exposure of ExposureFields (no check: the server's own code made them); an Exposure as it is."""
    if isinstance(row, Exposure):
        return row
    f = row
    teams = None if f[10] is None else tuple(f[10])
    return Exposure(f[0], f[1] / 1e9, f[2], f[3], f[4], f[5], f[6], f[7], f[8], tuple(f[9]), teams)


def exposure_id_of(row: ExposureRow) -> str:
    return row.exposure_id if isinstance(row, Exposure) else row[0]


def shown_of(row: ExposureRow) -> tuple[str, ...]:
    return row.shown if isinstance(row, Exposure) else tuple(row[9])


@dataclass(frozen=True)
class Feedback:
    """One user event on an item of an exposure (a click, a purchase, a rating with its value ...)."""

    exposure_id: str
    item_id: str
    event: str
    value: float | None
    event_id: str | None  # the client's idempotency key; None: every write is a new event
    time: float


@dataclass(frozen=True)
class UnitRow:
    """One unit's aggregate within an experiment arm: its exposures and its feedback events by name."""

    arm: str
    unit_id: str
    exposures: int
    events: dict[str, int]  # event name -> count over the unit's exposures in this arm


@dataclass(frozen=True)
class CreditedExposure:
    """One interleaved exposure with its events credited to teams: events[(team, event name)] = count.

    An event is credited to the team of the position that showed its item (0 = arms[0], 1 = arms[1]);
    first_team is teams[0], the team that won the exposure's first coin flip of the draft.
    """

    exposure_id: str
    unit_id: str
    first_team: int
    events: dict[tuple[int, str], int]

    def credited(self, team: int, event: str) -> int:
        return self.events.get((team, event), 0)


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or cannot take the write now (down, connection lost, busy, disk full)."""


class RecordRefused(ValueError):
    """The database refuses a batch for what a record holds (PostgreSQL text cannot hold NUL, a constraint):
    no retry cures it, while the batch's other records can be written one by one."""


class EventStore(Protocol):
    def write_exposures(self, rows: Sequence[ExposureRow]) -> int:
        """Write a batch in one transaction; repeats of a stored exposure_id are ignored. Rows newly written."""
        ...

    def write_feedback(self, rows: Sequence[Feedback]) -> int:
        """Write a batch in one transaction; repeats of a stored event_id are ignored. Rows newly written."""
        ...

    def get_exposure(self, exposure_id: str) -> Exposure | None: ...

    def feedback_for(self, exposure_id: str) -> list[Feedback]:
        """The feedback rows of one exposure, in the order they were written."""
        ...

    def unit_rows(self, experiment: str) -> list[UnitRow]:
        """Per (arm, unit_id) of the experiment: exposures and event counts, sorted by (arm, unit_id)."""
        ...

    def exposure_count(self, experiment: str | None = None) -> int: ...

    def interleaved_exposures(self, experiment: str) -> list[CreditedExposure]:
        """The experiment's exposures that have teams, sorted by id, each with its events credited to teams."""
        ...

    def interleaving_credits(self, experiment: str) -> list[tuple[str, int, int]]:
        """Per interleaved exposure, sorted by id: (exposure_id, clicks credited to team 0, to team 1)."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the database cannot be reached."""
        ...

    def close(self) -> None: ...


def _schema_ddl(id_column: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
        """CREATE TABLE IF NOT EXISTS exposures (
            exposure_id TEXT PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            experiment TEXT NOT NULL,
            arm TEXT NOT NULL,
            unit_id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            query_id TEXT NOT NULL,
            k INTEGER NOT NULL,
            artifact_version TEXT NOT NULL,
            shown TEXT NOT NULL,
            teams TEXT
        )""",
        "DROP INDEX IF EXISTS exposures_experiment_arm_unit",
        "CREATE INDEX IF NOT EXISTS exposures_experiment_time ON exposures (experiment, time)",
        f"""CREATE TABLE IF NOT EXISTS feedback (
            {id_column},
            exposure_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            event TEXT NOT NULL,
            value DOUBLE PRECISION,
            event_id TEXT UNIQUE,
            time DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS feedback_exposure ON feedback (exposure_id)",
        f"INSERT INTO schema_version (id, version) VALUES (1, {SCHEMA_VERSION}) ON CONFLICT (id) DO NOTHING",
    ]


_EXPOSURE_COLUMNS = "exposure_id, time, experiment, arm, unit_id, endpoint, query_id, k, artifact_version, shown, teams"
_FEEDBACK_COLUMNS = "exposure_id, item_id, event, value, event_id, time"
_SELECT_EXPOSURE = f"SELECT {_EXPOSURE_COLUMNS} FROM exposures WHERE exposure_id = ?"
_SELECT_FEEDBACK = f"SELECT {_FEEDBACK_COLUMNS} FROM feedback WHERE exposure_id = ? ORDER BY id"
# One statement, so one snapshot: the exposures and the events of a unit are counted at the same instant.
_UNIT_ROWS = """
WITH u AS (
    SELECT arm, unit_id, COUNT(*) AS n FROM exposures WHERE experiment = ? GROUP BY arm, unit_id
), ev AS (
    SELECT e.arm, e.unit_id, f.event, COUNT(*) AS c
    FROM feedback f JOIN exposures e ON e.exposure_id = f.exposure_id
    WHERE e.experiment = ?
    GROUP BY e.arm, e.unit_id, f.event
)
SELECT u.arm, u.unit_id, u.n, ev.event, ev.c FROM u LEFT JOIN ev ON ev.arm = u.arm AND ev.unit_id = u.unit_id
"""
# Each event joins the position of its item in the exposure's shown list and takes that position's team; an
# event on an item the exposure did not show credits nobody. An exposure without credited events is one row
# with team and event NULL.
_INTERLEAVED = """
SELECT e.exposure_id, e.unit_id, e.teams, t.team, t.event, COUNT(t.team)
FROM exposures e LEFT JOIN ({event_teams}) t ON t.exposure_id = e.exposure_id
WHERE e.experiment = ? AND e.teams IS NOT NULL
GROUP BY e.exposure_id, e.unit_id, e.teams, t.team, t.event
"""
_SQLITE_EVENT_TEAMS = """
SELECT f.exposure_id, f.event, CAST(json_extract(x.teams, '$[' || s.key || ']') AS INTEGER) AS team
FROM feedback f JOIN exposures x ON x.exposure_id = f.exposure_id, json_each(x.shown) s
WHERE x.experiment = ? AND x.teams IS NOT NULL AND s.value = f.item_id
"""
_POSTGRES_EVENT_TEAMS = """
SELECT f.exposure_id, f.event, (x.teams::jsonb ->> (s.ord - 1)::int)::int AS team
FROM feedback f JOIN exposures x ON x.exposure_id = f.exposure_id
CROSS JOIN LATERAL jsonb_array_elements_text(x.shown::jsonb) WITH ORDINALITY AS s(item, ord)
WHERE x.experiment = ? AND x.teams IS NOT NULL AND s.item = f.item_id
"""


@dataclass(frozen=True)
class BatchInsert:
    """An idempotent INSERT of many rows as multi-row VALUES statements, one per chunk of rows.

    One statement per chunk, not one per row (executemany): a row costs one bound tuple instead of a statement
    execution, and the driver lets go of Python's GIL once per chunk instead of once per row. The writer runs
    in a thread of a busy server process, where every re-acquisition of the GIL can wait a switch interval
    (5 ms), so per-row executions wrote ~100 rows/s there. Chunks are `most` rows and the powers of two of the
    rest, so a handful of statement texts serve every batch size and each is compiled once and cached.
    """

    table: str
    columns: str
    conflict: str  # the unique column whose repeats are ignored (ON CONFLICT DO NOTHING)

    @property
    def width(self) -> int:
        """Parameters per row: the number of columns."""
        return self.columns.count(",") + 1

    def statement(self, n: int, param: str) -> str:
        """INSERT ... VALUES (p, ..), (p, ..) ... of n rows, p the driver's placeholder."""
        return _values_statement(self, n, param)

    def chunks(self, rows: Sequence[tuple[Any, ...]], max_params: int) -> Iterator[tuple[int, list[Any]]]:
        """(rows in the chunk, its parameters flattened) for `rows`, at most `max_params` parameters a chunk."""
        most = 1 << max(0, (max_params // self.width).bit_length() - 1)  # a power of two, like every chunk size
        start = 0
        while start < len(rows):
            left = len(rows) - start
            n = most if left >= most else 1 << (left.bit_length() - 1)
            yield n, list(itertools.chain.from_iterable(rows[start : start + n]))
            start += n


@functools.lru_cache(maxsize=64)
def _values_statement(insert: BatchInsert, n: int, param: str) -> str:
    row = "(" + ", ".join([param] * insert.width) + ")"
    return (
        f"INSERT INTO {insert.table} ({insert.columns}) VALUES {', '.join([row] * n)} ON CONFLICT ({insert.conflict}) DO NOTHING"
    )


_INSERT_EXPOSURES = BatchInsert("exposures", _EXPOSURE_COLUMNS, "exposure_id")
# ON CONFLICT (event_id): NULL never conflicts, so feedback without an event_id is always inserted.
_INSERT_FEEDBACK = BatchInsert("feedback", _FEEDBACK_COLUMNS, "event_id")
# Parameters in one statement: within SQLite's SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32; the connection's
# own limit is read when lower) and PostgreSQL's protocol limit (65535).
MAX_PARAMS = 16_384


def _json(values: Iterable[Any]) -> str:
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


# What JSON must escape in a string besides the quote (and lone surrogates, which UTF-8 cannot hold).
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\ud800-\udfff]")


def _json_strings(values: Sequence[str]) -> str:
    """The JSON array of `values` as json.dumps writes it (compact, ensure_ascii=False).

    Joined directly when no string needs escaping, the common case, at a tenth of the encoder's cost (this
    runs once per exposure): the separators hold 2 (n - 1) quotes, so any more belong to a value.
    """
    if not values:
        return "[]"
    joined = '","'.join(values)
    if joined.count('"') == 2 * (len(values) - 1) and _NEEDS_ESCAPE.search(joined) is None:
        return f'["{joined}"]'
    return _json(values)


def _exposure_params(e: ExposureRow) -> tuple[Any, ...]:
    """The INSERT parameters of an exposure. The request path's tuples are read as they are: making an Exposure
    of each first would cost the writer a third of its Python work per row."""
    if type(e) is tuple:
        teams = None if e[10] is None else _json(e[10])
        return (e[0], e[1] / 1e9, e[2], e[3], e[4], e[5], e[6], e[7], e[8], _json_strings(e[9]), teams)
    assert isinstance(e, Exposure)
    teams = None if e.teams is None else _json(e.teams)
    shown = _json_strings(e.shown)
    return (e.exposure_id, e.time, e.experiment, e.arm, e.unit_id, e.endpoint, e.query_id, e.k, e.artifact_version, shown, teams)


def _feedback_params(f: Feedback) -> tuple[Any, ...]:
    return (f.exposure_id, f.item_id, f.event, f.value, f.event_id, f.time)


def _exposure(row: Sequence[Any]) -> Exposure:
    teams = None if row[10] is None else tuple(int(t) for t in json.loads(row[10]))
    return Exposure(
        row[0], float(row[1]), row[2], row[3], row[4], row[5], row[6], int(row[7]), row[8], tuple(json.loads(row[9])), teams
    )


def _feedback(row: Sequence[Any]) -> Feedback:
    return Feedback(row[0], row[1], row[2], None if row[3] is None else float(row[3]), row[4], float(row[5]))


def _unit_rows(rows: Iterable[Sequence[Any]]) -> list[UnitRow]:
    """Fold the (arm, unit, exposures, event, count) rows of _UNIT_ROWS, one per event name, into UnitRows."""
    units: dict[tuple[str, str], UnitRow] = {}
    for arm, unit_id, n, event, count in rows:
        row = units.setdefault((arm, unit_id), UnitRow(arm, unit_id, int(n), {}))
        if event is not None:
            row.events[event] = int(count)
    return [units[key] for key in sorted(units)]


def _credited(rows: Iterable[Sequence[Any]]) -> list[CreditedExposure]:
    """Fold the (exposure, unit, teams, team, event, count) rows of _INTERLEAVED into CreditedExposures by id."""
    out: dict[str, CreditedExposure] = {}
    for exposure_id, unit_id, teams, team, event, count in rows:
        e = out.get(exposure_id)
        if e is None:
            first = json.loads(teams)
            e = out[exposure_id] = CreditedExposure(str(exposure_id), str(unit_id), int(first[0]) if first else -1, {})
        if team is not None and event is not None:
            e.events[(int(team), str(event))] = int(count)
    return [out[key] for key in sorted(out)]


class _SqlStore:
    """The queries of both backends; a subclass runs them (`_write`, `_read`) on its connection."""

    _event_teams: str
    _param = "?"

    def _sql(self, statement: str) -> str:
        return statement if self._param == "?" else statement.replace("?", self._param)

    def _write(self, insert: BatchInsert, rows: list[tuple[Any, ...]]) -> int:
        """Insert `rows` in one transaction; the rows newly written (repeats of the conflict column are not)."""
        raise NotImplementedError

    def _read(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def write_exposures(self, rows: Sequence[ExposureRow]) -> int:
        params = [_exposure_params(e) for e in rows]
        return self._write(_INSERT_EXPOSURES, params) if params else 0

    def write_feedback(self, rows: Sequence[Feedback]) -> int:
        params = [_feedback_params(f) for f in rows]
        return self._write(_INSERT_FEEDBACK, params) if params else 0

    def get_exposure(self, exposure_id: str) -> Exposure | None:
        rows = self._read(self._sql(_SELECT_EXPOSURE), (exposure_id,))
        return _exposure(rows[0]) if rows else None

    def feedback_for(self, exposure_id: str) -> list[Feedback]:
        return [_feedback(r) for r in self._read(self._sql(_SELECT_FEEDBACK), (exposure_id,))]

    def unit_rows(self, experiment: str) -> list[UnitRow]:
        return _unit_rows(self._read(self._sql(_UNIT_ROWS), (experiment, experiment)))

    def exposure_count(self, experiment: str | None = None) -> int:
        if experiment is None:
            rows = self._read("SELECT COUNT(*) FROM exposures", ())
        else:
            rows = self._read(self._sql("SELECT COUNT(*) FROM exposures WHERE experiment = ?"), (experiment,))
        return int(rows[0][0])

    def interleaved_exposures(self, experiment: str) -> list[CreditedExposure]:
        rows = self._read(self._sql(_INTERLEAVED.format(event_teams=self._event_teams)), (experiment, experiment))
        return _credited(rows)

    def interleaving_credits(self, experiment: str) -> list[tuple[str, int, int]]:
        return [(e.exposure_id, e.credited(0, CLICK), e.credited(1, CLICK)) for e in self.interleaved_exposures(experiment)]

    def ping(self) -> None:
        self._read("SELECT version FROM schema_version", ())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


# SQLite result codes (the low byte of the extended code) that a retry can cure.
_SQLITE_TRANSIENT = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 10: "SQLITE_IOERR", 13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN"}


def _sqlite_transient(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _SQLITE_TRANSIENT


class SqliteStore(_SqlStore):
    """One SQLite file in WAL mode (readers never block the writer), synchronous=NORMAL, a busy_timeout.

    WAL with synchronous=NORMAL keeps every commit atomic and the database consistent after a crash; a power
    loss can lose the last commits (not a process crash). Several processes may open the same file: writes
    take the lock up front (BEGIN IMMEDIATE), so a writer waits up to busy_timeout instead of failing.
    """

    _event_teams = _SQLITE_EVENT_TEAMS

    def __init__(self, path: Path, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions, this class issues BEGIN/COMMIT itself.
            self._conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot open the SQLite event store {path}: {err}") from err
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(f"the SQLite event store {path} cannot use WAL mode (journal_mode is {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._max_params = min(MAX_PARAMS, self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
            self._transaction(lambda c: [c.execute(s) for s in _schema_ddl("id INTEGER PRIMARY KEY")])
            _check_version(self._conn.execute("SELECT version FROM schema_version").fetchone(), str(path))
        except BaseException:
            self._conn.close()
            raise

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            if _sqlite_transient(err):
                raise StoreUnavailable(f"SQLite event store {self.path}: {err}") from err
            raise
        return result

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the event store is closed")

    def _write(self, insert: BatchInsert, rows: list[tuple[Any, ...]]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes  # rows ignored by ON CONFLICT DO NOTHING are not changes
            for n, params in insert.chunks(rows, self._max_params):
                conn.execute(insert.statement(n, "?"), params)
            return conn.total_changes - before

        with self._lock:
            self._check_open()
            try:
                return self._transaction(work)
            except (sqlite3.DataError, sqlite3.IntegrityError) as err:
                raise RecordRefused(f"SQLite event store {self.path}: {err}") from err

    def _read(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(statement, params).fetchall()
            except sqlite3.Error as err:
                if _sqlite_transient(err):
                    raise StoreUnavailable(f"SQLite event store {self.path}: {err}") from err
                raise

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _check_version(row: Sequence[Any] | None, where: str) -> None:
    version = None if row is None else int(row[0])
    if version != SCHEMA_VERSION:
        raise RuntimeError(f"the event store {where} has schema version {version}; this simserve reads version {SCHEMA_VERSION}")


class PostgresStore(_SqlStore):
    """A PostgreSQL database through one psycopg 3 connection (autocommit off, one transaction per call).

    The connection is opened lazily and again after a loss: a call that cannot connect raises StoreUnavailable
    and the next call tries anew. The schema is ensured on every (re)connection, under an advisory lock.
    """

    _event_teams = _POSTGRES_EVENT_TEAMS
    _param = "%s"

    def __init__(self, url: str, connect: bool = True) -> None:
        if "connect_timeout" in psycopg.conninfo.conninfo_to_dict(url):
            self._conninfo = url
        else:  # without one, connecting to an unreachable host waits on the operating system's TCP timeout
            self._conninfo = psycopg.conninfo.make_conninfo(url, connect_timeout=POSTGRES_CONNECT_TIMEOUT_S)
        self._where = _redact(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False
        if connect:
            with self._lock:
                self._connection()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise RuntimeError("the event store is closed")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self._conninfo, autocommit=False)
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL event store {self._where}: {err}") from err
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_POSTGRES_SCHEMA_LOCK,))
                for statement in _schema_ddl("id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"):
                    conn.execute(statement)
                _check_version(conn.execute("SELECT version FROM schema_version").fetchone(), self._where)
        except (psycopg.OperationalError, psycopg.InterfaceError) as err:
            conn.close()
            raise StoreUnavailable(f"PostgreSQL event store {self._where}: {err}") from err
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _run(self, work: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """`work` in one transaction; a connection error drops the connection and raises StoreUnavailable.

        A stale connection (the server restarted while this store was idle) fails on the first statement,
        before anything was committed: then the call runs once more on a fresh connection. A failure during
        or after COMMIT is not retried, since the transaction may have been committed.
        """
        with self._lock:
            for attempt in (0, 1):
                reused = self._conn is not None and not self._conn.closed
                conn = self._connection()
                committing = False
                try:
                    with conn.transaction():
                        result = work(conn)
                        committing = True
                    return result
                except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                    self._drop()
                    if committing or not reused or attempt == 1:
                        raise StoreUnavailable(f"PostgreSQL event store {self._where}: {err}") from err
        raise AssertionError("unreachable")

    def _write(self, insert: BatchInsert, rows: list[tuple[Any, ...]]) -> int:
        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            written = 0
            with conn.cursor() as cur:
                for n, params in insert.chunks(rows, MAX_PARAMS):
                    cur.execute(insert.statement(n, "%s"), params)
                    written += max(cur.rowcount, 0)  # rows ignored by ON CONFLICT DO NOTHING count 0
            return written

        try:
            return self._run(work)
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            raise RecordRefused(f"PostgreSQL event store {self._where}: {err}") from err

    def _read(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(statement, params).fetchall())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _bad_url(url: str, why: str) -> InputError:
    return InputError(f"EVENTS_DB={_redact(url)!r}: {why}; accepted forms: {_ACCEPTED}")


def open_store(url: str, *, connect: bool = True) -> EventStore:
    """The store an EVENTS_DB URL names: "sqlite:///abs/path.db" or "postgresql://..." (also "postgres://").

    The SQLite file (and its folder) is created if absent. PostgreSQL is connected to at once and
    StoreUnavailable raised when it cannot be reached; with connect=False the store is returned anyway and
    connects on its first call (a service that starts while its database is down). A malformed URL raises
    InputError (a ValueError) naming EVENTS_DB and the accepted forms.
    """
    if not isinstance(url, str) or not url.strip():
        raise _bad_url(str(url), "empty")
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise _bad_url(url, "a SQLite URL needs an absolute path, sqlite:/// followed by the path without its leading slash")
        rest = url[len("sqlite://") :]
        if "?" in rest or "#" in rest:
            raise _bad_url(url, "a SQLite URL takes no query string or fragment")
        path = Path(rest)
        if path.name in ("", ".", "..") or rest.endswith("/"):
            raise _bad_url(url, "the SQLite URL names a folder, not a database file")
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as err:
            raise _bad_url(url, f"not a valid PostgreSQL URL ({_redact(str(err).strip())})") from None
        # libpq parses the port lazily: caught here, a typo would otherwise read as a database that is down.
        port = str(params.get("port") or "")
        if port and not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
            raise _bad_url(url, f"the port {port!r} is not a number in 1..65535")
        return PostgresStore(url, connect=connect)
    raise _bad_url(url, "unknown scheme")
