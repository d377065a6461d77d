"""Durable state: journal, occurrence events, outbox, leases, hooks. The only module with SQL.

SQLAlchemy Core on SQLite by default (one file beside windows.yaml) and PostgreSQL
later for several instances, with the same code: the one dialect-specific construct,
``INSERT ... ON CONFLICT``, is picked in :func:`_insert`. PostgreSQL additionally takes
an advisory lock while migrating and ``SKIP LOCKED`` when claiming; both only make
portable code cheaper there (the compare-and-set is what keeps claims exclusive).

Rules this module keeps:

* Every instant is an aware UTC ``datetime`` in and out (:class:`UTCDateTime`); a naive
  one is a bug and is refused with ``ValueError``. Occurrence keys are stored as
  ``isoz()`` text so they read the same in the file as on the wire.
* "Never twice" lives in the schema: primary and unique keys make a repeated
  ``record_event`` or ``enqueue`` a no-op, so a restart or a second instance cannot
  duplicate a transition or a notice. State changes of shared work (outbox rows, hook
  runs, leases) are compare-and-set ``UPDATE ... WHERE id=? AND status=?`` that must
  touch exactly one row.
* Any failure of the database (disk full, read-only, locked, server gone) leaves as
  :class:`~scheduler.errors.StoreError` naming the database and the cause, and the
  :class:`Store` stays usable: the next call works once the cause is gone.
* Nothing here reads the clock for decisions: callers pass ``now``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.pool import StaticPool

from .errors import StoreError
from .model import UTC, isoz

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Store",
    "Tx",
    "database_url",
    "give_up",
    "make_engine",
    "migrate",
    "next_attempt",
]


# --------------------------------------------------------------------------- column types


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected an aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store takes aware UTC instants")
    return value.astimezone(UTC)


class UTCDateTime(sa.TypeDecorator):
    """An aware UTC instant, stored as a naive UTC timestamp.

    Naive-in-UTC compares correctly as SQLite text (``next_attempt_at <= :now``) and
    maps to a plain PostgreSQL ``timestamp``; the zone is put back on the way out.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else _aware(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class OccurrenceKey(sa.TypeDecorator):
    """An occurrence key: ``isoz()`` text in the database (seconds, ``Z``), a datetime in Python."""

    impl = sa.String(32)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else isoz(_aware(value))

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


class JSONText(sa.TypeDecorator):
    """JSON as text, keys sorted so equal values are equal strings on every dialect."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


# --------------------------------------------------------------------------- tables (latest)
# What queries use. The schema in a file is made by MIGRATIONS, never by create_all on
# these; tests/test_store.py checks that the two agree.

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

journal = sa.Table(
    "journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("window", sa.String(200)),
    sa.Column("occurrence", OccurrenceKey),
    sa.Column("actor", sa.String(200)),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", JSONText),
    sa.Index("ix_journal_at", "at"),
)

occurrence_events = sa.Table(
    "occurrence_events",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("occurrence", OccurrenceKey, primary_key=True),
    sa.Column("event", sa.String(8), primary_key=True),  # "start" | "end"
    sa.Column("at", UTCDateTime, nullable=False),  # when it took effect: scheduled, or now when late
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("detail", JSONText),
)

announcements = sa.Table(
    "announcements",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("occurrence", OccurrenceKey, primary_key=True),
    sa.Column("start", UTCDateTime, nullable=False),
    sa.Column("end", UTCDateTime, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tenants", JSONText, nullable=False),  # tenant ids told so far
    sa.Column("status", sa.String(16), nullable=False),  # "scheduled" | "cancelled"
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # v3: the occurrence key last announced. A one-off window's announcement is keyed by
    # its id alone (its start may move); this says which start tenants were told of.
    sa.Column("occurrence_key", OccurrenceKey),
)

overrides = sa.Table(
    "overrides",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("occurrence", OccurrenceKey, primary_key=True),
    sa.Column("end", UTCDateTime, nullable=False),  # the new effective end
    sa.Column("reason", sa.String(16), nullable=False),  # "extend" | "exit" | "end-check"
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200)),
)

manual = sa.Table(
    "manual",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("start", UTCDateTime, nullable=False),
    sa.Column("end", UTCDateTime),  # NULL: until `maintd exit`
    sa.Column("tenants", JSONText),  # NULL: all tenants
    sa.Column("policy", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("actor", sa.String(200)),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("window", sa.String(200), nullable=False),
    sa.Column("occurrence", OccurrenceKey, nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("lead", sa.String(32), nullable=False, server_default=""),  # '' not NULL: see the key
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("payload", JSONText, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("claimed_by", sa.String(200)),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),  # v2
    # "Nothing sent twice", in the schema. NULL never equals NULL in a UNIQUE key, which
    # is why `lead` is '' when there is none.
    sa.UniqueConstraint("window", "occurrence", "tenant", "kind", "lead", "seq", "channel", name="uq_outbox_delivery"),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),  # v2
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("resource", sa.String(200)),
    sa.Column("window", sa.String(200)),
    sa.Column("occurrence", OccurrenceKey),
    sa.Column("admitted_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("interval_s", sa.Integer, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("drain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deadline", UTCDateTime),
    sa.Column("then", sa.String(8)),  # "stop" | "keep", set with drain
    sa.Column("status", sa.String(16), nullable=False, server_default="running"),
    sa.Column("released_at", UTCDateTime),
    sa.Column("overrun", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_leases_status", "status"),  # v2
)

hook_runs = sa.Table(
    "hook_runs",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("occurrence", OccurrenceKey, primary_key=True),
    sa.Column("event", sa.String(8), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("exit_code", sa.Integer),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

tenant_secrets = sa.Table(
    "tenant_secrets",
    metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("secret", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("listen", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("leader", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("since", UTCDateTime),
)


# --------------------------------------------------------------------------- migrations
# Step i upgrades schema version i to i + 1. A released step is frozen: it spells out
# its own DDL instead of reusing the tables above, which keep moving.


def _v1_base_tables(conn: Connection) -> None:
    """Version 1: the tables of the first release."""
    md = sa.MetaData()
    dt, key, js = UTCDateTime, OccurrenceKey, JSONText
    S = sa.String
    sa.Table(
        "journal",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", dt, nullable=False),
        sa.Column("kind", S(32), nullable=False),
        sa.Column("window", S(200)),
        sa.Column("occurrence", key),
        sa.Column("actor", S(200)),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", js),
    )
    sa.Table(
        "occurrence_events",
        md,
        sa.Column("window", S(200), primary_key=True),
        sa.Column("occurrence", key, primary_key=True),
        sa.Column("event", S(8), primary_key=True),
        sa.Column("at", dt, nullable=False),
        sa.Column("recorded_at", dt, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("detail", js),
    )
    sa.Table(
        "announcements",
        md,
        sa.Column("window", S(200), primary_key=True),
        sa.Column("occurrence", key, primary_key=True),
        sa.Column("start", dt, nullable=False),
        sa.Column("end", dt, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tenants", js, nullable=False),
        sa.Column("status", S(16), nullable=False),
        sa.Column("updated_at", dt, nullable=False),
    )
    sa.Table(
        "overrides",
        md,
        sa.Column("window", S(200), primary_key=True),
        sa.Column("occurrence", key, primary_key=True),
        sa.Column("end", dt, nullable=False),
        sa.Column("reason", S(16), nullable=False),
        sa.Column("at", dt, nullable=False),
        sa.Column("actor", S(200)),
    )
    sa.Table(
        "manual",
        md,
        sa.Column("id", S(64), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("start", dt, nullable=False),
        sa.Column("end", dt),
        sa.Column("tenants", js),
        sa.Column("policy", S(200)),
        sa.Column("created_at", dt, nullable=False),
        sa.Column("ended_at", dt),
        sa.Column("actor", S(200)),
    )
    sa.Table(
        "outbox",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notice_id", S(64), nullable=False),
        sa.Column("channel", S(32), nullable=False),
        sa.Column("window", S(200), nullable=False),
        sa.Column("occurrence", key, nullable=False),
        sa.Column("tenant", S(200), nullable=False),
        sa.Column("kind", S(16), nullable=False),
        sa.Column("lead", S(32), nullable=False, server_default=""),
        sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("payload", js, nullable=False),
        sa.Column("status", S(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", dt, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", dt, nullable=False),
        sa.Column("updated_at", dt, nullable=False),
        sa.Column("sent_at", dt),
        sa.Column("claimed_by", S(200)),
        sa.Column("claimed_until", dt),
        sa.UniqueConstraint(
            "window", "occurrence", "tenant", "kind", "lead", "seq", "channel", name="uq_outbox_delivery"
        ),
    )
    sa.Table(
        "leases",
        md,
        sa.Column("id", S(64), primary_key=True),
        sa.Column("tenant", S(200), nullable=False),
        sa.Column("kind", S(200), nullable=False),
        sa.Column("resource", S(200)),
        sa.Column("window", S(200)),
        sa.Column("occurrence", key),
        sa.Column("admitted_at", dt, nullable=False),
        sa.Column("heartbeat_at", dt, nullable=False),
        sa.Column("interval_s", sa.Integer, nullable=False),
        sa.Column("expires_at", dt, nullable=False),
        sa.Column("drain", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deadline", dt),
        sa.Column("then", S(8)),
        sa.Column("status", S(16), nullable=False, server_default="running"),
        sa.Column("released_at", dt),
        sa.Column("overrun", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    sa.Table(
        "hook_runs",
        md,
        sa.Column("window", S(200), primary_key=True),
        sa.Column("occurrence", key, primary_key=True),
        sa.Column("event", S(8), primary_key=True),
        sa.Column("status", S(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", dt, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("updated_at", dt, nullable=False),
    )
    sa.Table(
        "tenant_secrets",
        md,
        sa.Column("tenant", S(200), primary_key=True),
        sa.Column("secret", S(200), nullable=False, unique=True),
        sa.Column("created_at", dt, nullable=False),
    )
    sa.Table(
        "instances",
        md,
        sa.Column("id", S(200), primary_key=True),
        sa.Column("listen", S(200), nullable=False),
        sa.Column("started_at", dt, nullable=False),
        sa.Column("heartbeat_at", dt, nullable=False),
        sa.Column("leader", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("since", dt),
    )
    md.create_all(conn)


def _v2_late_notices_and_indexes(conn: Connection) -> None:
    """Version 2: ``outbox.late`` (a notice sent after its lead time passed) and the
    indexes the hot queries need (the outbox worker's due scan, history, lease sweeps)."""
    for ddl in (
        "ALTER TABLE outbox ADD COLUMN late BOOLEAN NOT NULL DEFAULT FALSE",
        "CREATE INDEX ix_outbox_due ON outbox (status, next_attempt_at)",
        "CREATE INDEX ix_journal_at ON journal (at)",
        "CREATE INDEX ix_leases_status ON leases (status)",
    ):
        conn.execute(sa.text(ddl))


def _v3_announced_occurrence(conn: Connection) -> None:
    """Version 3: ``announcements.occurrence_key`` (which start a moved one-off was announced at)."""
    conn.execute(sa.text("ALTER TABLE announcements ADD COLUMN occurrence_key VARCHAR(32)"))


MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_base_tables,
    _v2_late_notices_and_indexes,
    _v3_announced_occurrence,
]
LATEST_VERSION = len(MIGRATIONS)

_meta_v0 = sa.Table(  # the version bookkeeping itself; it never changes shape
    "meta",
    sa.MetaData(),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise StoreError(
            f"database {where} has schema version {version}, this maintd knows up to {LATEST_VERSION}; upgrade maintd"
        )


def migrate(conn: Connection, *, target: int | None = None, where: str = "") -> int:
    """Bring the schema on ``conn`` up to ``target`` (default: the latest); return the version.

    Runs inside the caller's transaction, so a failing step leaves the file as it was.
    ``target`` exists for tests that need a file as an older release wrote it.
    """
    target = LATEST_VERSION if target is None else target
    if conn.dialect.name == "postgresql":  # two instances starting at once: one migrates
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262846)"))
    _meta_v0.create(conn, checkfirst=True)
    version = _schema_version(conn)
    _refuse_newer(version, where or str(conn.engine.url))
    for step in MIGRATIONS[version:target]:
        step(conn)
        version += 1
        # Update-or-insert by hand: this runs before the rest of the module may assume anything.
        if conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(version))).rowcount == 0:
            conn.execute(meta.insert().values(key="schema_version", value=str(version)))
    return version


# --------------------------------------------------------------------------- engine


_WRITE = "maintd_write"  # execution option: this transaction will write


def database_url(database: str, base_dir: str) -> str:
    """``daemon.database`` -> a SQLAlchemy URL: URLs pass through, a path becomes SQLite.

    A relative path is relative to ``base_dir`` (the directory of windows.yaml).
    """
    if "://" in database:
        return database
    path = os.path.expanduser(database)
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return f"sqlite:///{os.path.abspath(path)}"


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str | URL) -> Engine:
    """An engine with maintd's connection settings (for :class:`Store` and tests).

    SQLite: WAL (readers never block the writer), ``synchronous=NORMAL`` (durable at
    checkpoints, safe with WAL), a 5 s ``busy_timeout`` for a second writer, foreign
    keys on. sqlite3's own transaction handling is switched off so that DDL is
    transactional (migrations) and writers ``BEGIN IMMEDIATE``: a writer takes the
    write lock before reading, so a compare-and-set never fails on a stale snapshot.
    """
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    memory = _is_memory(url)
    if memory:  # one shared connection, so every caller sees the same in-memory database
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout = 5000")
            if not memory:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    if not memory and url.database:
        path = url.database

        @event.listens_for(engine, "connect")
        def _note_read_only(_dbapi_conn: Any, record: Any) -> None:
            record.info["opened_read_only"] = os.path.exists(path) and not os.access(path, os.W_OK)

        @event.listens_for(engine, "checkout")
        def _drop_stale_read_only(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            # sqlite3 opens a file it may not write read-only, and that connection stays
            # read-only after the file is fixed; the pool replaces it on this signal.
            if record.info.get("opened_read_only") and os.access(path, os.W_OK):
                raise sa.exc.DisconnectionError(f"{path} has become writable")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def _insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that knows ``ON CONFLICT``: the one place that picks a dialect."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise StoreError(f"unsupported database {name!r}: maintd supports SQLite and PostgreSQL")


def _dicts(result: sa.CursorResult) -> list[dict]:
    return [dict(row) for row in result.mappings()]


def _key(table: sa.Table, window: str, occurrence: datetime) -> Any:
    return sa.and_(table.c.window == window, table.c.occurrence == occurrence)


# --------------------------------------------------------------------------- retry policy


def next_attempt(
    attempts: int,
    now: datetime,
    *,
    base: timedelta = timedelta(seconds=30),
    cap: timedelta = timedelta(hours=1),
    jitter: float = 0.0,
) -> datetime:
    """When to try again after ``attempts`` failed tries: ``base * 2**(attempts-1)``, at most ``cap``.

    ``jitter`` (0..1, drawn by the caller so this stays pure) takes up to half the delay
    off, so rows that failed together do not all come back in the same second; the
    delay never exceeds ``cap`` and never drops below half of it.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
    exponent = min(max(attempts - 1, 0), 62)  # 2**62 * 30 s is far past any cap
    delay = min(cap.total_seconds(), base.total_seconds() * 2.0**exponent)
    return now + timedelta(seconds=delay * (1.0 - jitter / 2.0))


def give_up(attempts: int, first_created_at: datetime, now: datetime, max_attempts: int, max_age: timedelta) -> bool:
    """True when a notice has had ``max_attempts`` tries or is older than ``max_age``.

    The age bound matters as much as the count: a "starts in 1h" notice delivered a day
    late is wrong, not merely slow.
    """
    return attempts >= max_attempts or now - first_created_at >= max_age


# --------------------------------------------------------------------------- writes in a transaction


class Tx:
    """The write methods that belong together; obtained from :meth:`Store.transaction`.

    Everything done through one ``Tx`` commits together or not at all (a transition is
    journaled together with its notices, or neither happens).
    """

    def __init__(self, store: Store, conn: Connection) -> None:
        self._store = store
        self._conn = conn

    def _run(self, action: str, statement: Any, params: Any = None) -> sa.CursorResult:
        with self._store._guard(action):
            # rowcount after an INSERT (did ON CONFLICT skip it?) is kept only when asked for
            return self._conn.execute(statement, params, execution_options={"preserve_rowcount": True})

    # journal ---------------------------------------------------------------

    def journal(
        self,
        kind: str,
        *,
        at: datetime,
        window: str | None = None,
        occurrence: datetime | None = None,
        actor: str | None = None,
        message: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one history entry; returns its id."""
        result = self._run(
            "write the journal",
            journal.insert().values(
                at=at, kind=kind, window=window, occurrence=occurrence, actor=actor, message=message, detail=detail
            ),
        )
        return int(result.inserted_primary_key[0])

    # occurrences -----------------------------------------------------------

    def record_event(
        self,
        window: str,
        occurrence: datetime,
        event: str,
        *,
        at: datetime,
        recorded_at: datetime,
        late: bool,
        detail: Any = None,
    ) -> bool:
        """Record that an occurrence started or ended; False if it already was (the key says so)."""
        if event not in ("start", "end"):
            raise ValueError(f"occurrence event must be 'start' or 'end', got {event!r}")
        statement = (
            _insert(self._conn, occurrence_events)
            .values(
                window=window,
                occurrence=occurrence,
                event=event,
                at=at,
                recorded_at=recorded_at,
                late=late,
                detail=detail,
            )
            .on_conflict_do_nothing()
        )
        return self._run("record an occurrence event", statement).rowcount == 1

    def announce(
        self,
        window: str,
        occurrence: datetime,
        *,
        start: datetime,
        end: datetime,
        title: str,
        sequence: int,
        tenants: Iterable[str],
        status: str,
        at: datetime,
        occurrence_key: datetime | None = None,
    ) -> None:
        """Remember what tenants were told about an occurrence (for reschedules and cancels)."""
        values = dict(
            start=start,
            end=end,
            title=title,
            sequence=sequence,
            tenants=sorted(set(tenants)),
            status=status,
            updated_at=at,
            occurrence_key=occurrence_key,
        )
        statement = _insert(self._conn, announcements).values(window=window, occurrence=occurrence, **values)
        statement = statement.on_conflict_do_update(index_elements=["window", "occurrence"], set_=values)
        self._run("record an announcement", statement)

    def set_override(
        self, window: str, occurrence: datetime, *, end: datetime, reason: str, at: datetime, actor: str | None = None
    ) -> None:
        """Set the effective end of an occurrence (extend, exit early, failing end check)."""
        values = dict(end=end, reason=reason, at=at, actor=actor)
        statement = _insert(self._conn, overrides).values(window=window, occurrence=occurrence, **values)
        statement = statement.on_conflict_do_update(index_elements=["window", "occurrence"], set_=values)
        self._run("record an override", statement)

    # manual maintenance ------------------------------------------------------

    def add_manual(
        self,
        id: str,
        *,
        reason: str,
        start: datetime,
        end: datetime | None = None,
        tenants: Iterable[str] | None = None,
        policy: str | None = None,
        created_at: datetime,
        actor: str | None = None,
    ) -> bool:
        """Record a ``maintd enter``; False if that id exists already (the same request twice)."""
        statement = (
            _insert(self._conn, manual)
            .values(
                id=id,
                reason=reason,
                start=start,
                end=end,
                tenants=None if tenants is None else sorted(set(tenants)),
                policy=policy,
                created_at=created_at,
                actor=actor,
            )
            .on_conflict_do_nothing()
        )
        return self._run("record manual maintenance", statement).rowcount == 1

    def end_manual(self, id: str, at: datetime) -> bool:
        """End a manual window (``maintd exit``); False if unknown or already ended."""
        statement = manual.update().where(manual.c.id == id, manual.c.ended_at.is_(None)).values(ended_at=at)
        return self._run("end manual maintenance", statement).rowcount == 1

    # outbox ----------------------------------------------------------------

    def enqueue(self, rows: list[Mapping[str, Any]]) -> int:
        """Add notice deliveries as ``pending``; rows already there are skipped. Returns how many were new.

        Each row needs ``notice_id, channel, window, occurrence, tenant, kind, payload,
        created_at``; ``lead`` (None -> ''), ``seq`` (0), ``status`` ('pending', or
        'dry-run'), ``next_attempt_at`` (``created_at``) and ``late`` (False) are optional.
        One multi-row statement per batch, so 10,000 rows take well under a second.
        """
        if not rows:
            return 0
        required = ("notice_id", "channel", "window", "occurrence", "tenant", "kind", "payload", "created_at")
        params = []
        for row in rows:
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"outbox row lacks {', '.join(missing)}: {dict(row)!r}")
            params.append(
                {
                    **{k: row[k] for k in required},
                    "lead": row.get("lead") or "",
                    "seq": row.get("seq", 0),
                    "status": row.get("status", "pending"),
                    "attempts": 0,
                    "next_attempt_at": row.get("next_attempt_at") or row["created_at"],
                    "updated_at": row["created_at"],
                    "late": bool(row.get("late", False)),
                }
            )
        statement = _insert(self._conn, outbox).on_conflict_do_nothing()
        if self._conn.dialect.insert_executemany_returning:
            # Counting the returned ids is exact on every driver; executemany rowcounts are not.
            return len(self._run("enqueue notices", statement.returning(outbox.c.id), params).all())
        return self._run("enqueue notices", statement, params).rowcount

    def supersede(self, window: str, occurrence: datetime, kind: str, now: datetime, tenant: str | None = None) -> int:
        """Stop still-undelivered notices of one kind (e.g. a reschedule replaces them)."""
        conditions = [
            _key(outbox, window, occurrence),
            outbox.c.kind == kind,
            outbox.c.status.in_(("pending", "sending")),
        ]
        if tenant is not None:
            conditions.append(outbox.c.tenant == tenant)
        statement = (
            outbox.update()
            .where(*conditions)
            .values(status="superseded", updated_at=now, claimed_by=None, claimed_until=None)
        )
        return self._run("supersede notices", statement).rowcount

    # leases ----------------------------------------------------------------

    def add_lease(
        self,
        id: str,
        *,
        tenant: str,
        kind: str,
        admitted_at: datetime,
        interval_s: int,
        resource: str | None = None,
        window: str | None = None,
        occurrence: datetime | None = None,
    ) -> None:
        """Record an admitted job; it expires unless heartbeated within 3 intervals."""
        self._run(
            "record a lease",
            leases.insert().values(
                id=id,
                tenant=tenant,
                kind=kind,
                resource=resource,
                window=window,
                occurrence=occurrence,
                admitted_at=admitted_at,
                heartbeat_at=admitted_at,
                interval_s=interval_s,
                expires_at=admitted_at + timedelta(seconds=3 * interval_s),
                status="running",
            ),
        )

    def add_leases(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """:meth:`add_lease` for many jobs in one statement; each row has its keywords
        (``id``, ``tenant``, ``kind``, ``admitted_at``, ``interval_s``, optional ``resource``).
        The gate's group commit writes the admissions that arrived together this way."""
        params = [
            {
                "id": r["id"],
                "tenant": r["tenant"],
                "kind": r["kind"],
                "resource": r.get("resource"),
                "window": r.get("window"),
                "occurrence": r.get("occurrence"),
                "admitted_at": r["admitted_at"],
                "heartbeat_at": r["admitted_at"],
                "interval_s": r["interval_s"],
                "expires_at": r["admitted_at"] + timedelta(seconds=3 * r["interval_s"]),
                "status": "running",
            }
            for r in rows
        ]
        if params:
            self._run("record leases", leases.insert(), params)
        return len(params)

    def heartbeat(self, id: str, now: datetime) -> dict | None:
        """:meth:`Store.heartbeat` inside this transaction."""
        row = self._run(
            "record a heartbeat",
            sa.select(leases.c.interval_s, leases.c.drain, leases.c.deadline).where(
                leases.c.id == id, leases.c.status == "running", leases.c.expires_at > now
            ),
        ).first()
        if row is None:
            return None
        values: dict[str, Any] = dict(heartbeat_at=now, expires_at=now + timedelta(seconds=3 * row.interval_s))
        if row.drain and row.deadline is not None and now >= row.deadline:
            values["overrun"] = True
        self._run("record a heartbeat", leases.update().where(leases.c.id == id).values(**values))
        return dict(self._run("record a heartbeat", sa.select(leases).where(leases.c.id == id)).mappings().one())

    def release(self, id: str, now: datetime) -> bool:
        """:meth:`Store.release` inside this transaction."""
        return (
            self._run(
                "release a lease",
                leases.update()
                .where(leases.c.id == id, leases.c.status == "running")
                .values(status="released", released_at=now),
            ).rowcount
            == 1
        )

    def expire_leases(self, now: datetime) -> list[str]:
        """Mark running leases whose ``expires_at`` has passed as expired; return their ids."""
        ids = list(
            self._run(
                "expire leases",
                sa.select(leases.c.id)
                .where(leases.c.status == "running", leases.c.expires_at <= now)
                .order_by(leases.c.id),
            ).scalars()
        )
        if ids:
            self._run(
                "expire leases",
                leases.update()
                .where(leases.c.id.in_(ids), leases.c.status == "running")
                .values(status="expired", released_at=now),
            )
        return ids

    def order_drain(self, ids: Iterable[str], *, deadline: datetime | None, then: str) -> int:
        """Tell running leases to drain by ``deadline``; a lease already draining keeps its
        first order, so replanning every tick cannot push a deadline out."""
        if then not in ("stop", "keep"):
            raise ValueError(f"then must be 'stop' or 'keep', got {then!r}")
        ids = list(ids)
        if not ids:
            return 0
        statement = (
            leases.update()
            .where(
                leases.c.id.in_(ids),
                leases.c.status == "running",
                leases.c.drain.is_(sa.false()),
            )
            .values(drain=True, deadline=deadline, then=then)
        )
        return self._run("order a drain", statement).rowcount

    def resume_leases(self, now: datetime) -> int:
        """Give every running lease a full 3 intervals from ``now`` (never less than it has).

        For start-up: while maintd was down its clients could not heartbeat, and that time
        must not expire their leases (with their drain orders and deadlines) the moment it
        is back. A client that really is gone still expires 3 intervals later.
        """
        intervals = list(
            self._run(
                "resume leases", sa.select(leases.c.interval_s).where(leases.c.status == "running").distinct()
            ).scalars()
        )
        resumed = 0
        for interval_s in intervals:
            until = now + timedelta(seconds=3 * interval_s)
            resumed += self._run(
                "resume leases",
                leases.update()
                .where(leases.c.status == "running", leases.c.interval_s == interval_s, leases.c.expires_at < until)
                .values(expires_at=until),
            ).rowcount
        return resumed

    # hooks -----------------------------------------------------------------

    def set_meta_time(self, key: str, value: datetime) -> None:
        """Remember an instant under ``key`` (e.g. ``last_tick``, the catch-up floor)."""
        text = _aware(value).isoformat()
        statement = (
            _insert(self._conn, meta)
            .values(key=key, value=text)
            .on_conflict_do_update(index_elements=["key"], set_={"value": text})
        )
        self._run("record " + key, statement)

    def add_hook_run(self, window: str, occurrence: datetime, event: str, *, now: datetime) -> bool:
        """Plan the hook of one occurrence event, once: False if it was planned before."""
        statement = (
            _insert(self._conn, hook_runs)
            .values(
                window=window,
                occurrence=occurrence,
                event=event,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        return self._run("plan a hook run", statement).rowcount == 1


# --------------------------------------------------------------------------- the store


class Store:
    """maintd's durable state over one SQLAlchemy engine.

    Reads are methods here; writes that belong together go through
    ``with store.transaction() as tx:``; single-row state changes of shared work
    (``claim``, ``mark_*``, ``heartbeat`` ...) are methods here with their own short
    transaction. Do not nest transactions in one thread (SQLite has one writer).
    """

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.where = ":memory:" if _is_memory(self.url) else str(self.url.database)
        else:
            self.where = self.url.render_as_string(hide_password=True)
        self.engine = make_engine(self.url)
        try:
            self._upgrade()
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(cls, database: str, base_dir: str) -> Store:
        """Open ``daemon.database``: a path (relative to ``base_dir``) or a SQLAlchemy URL."""
        return cls(database_url(database, base_dir))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"

    # plumbing ----------------------------------------------------------------

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn a database failure into StoreError("cannot ACTION: database WHERE: CAUSE").

        A value SQLAlchemy could not bind (a naive datetime, an object JSON cannot
        hold) is a bug in the caller, not a database failure: it leaves as itself.
        """
        try:
            yield
        except StatementError as exc:
            if not isinstance(exc, DBAPIError) and isinstance(exc.orig, (ValueError, TypeError)):
                raise exc.orig from None
            raise self._error(action, exc) from exc
        except (SQLAlchemyError, OSError) as exc:
            raise self._error(action, exc) from exc

    def _error(self, action: str, exc: BaseException) -> StoreError:
        cause = getattr(exc, "orig", None) or exc
        return StoreError(f"cannot {action}: database {self.where}: {cause}")

    @contextmanager
    def _connect(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction on a pooled connection; commits on leaving, rolls back on error."""
        with self._guard(action):
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield conn

    def _upgrade(self) -> None:
        with self._connect("open") as conn:
            version = _schema_version(conn)
        _refuse_newer(version, self.where)
        if version < LATEST_VERSION:
            with self._connect("upgrade the schema", write=True) as conn:
                migrate(conn, where=self.where)  # re-reads the version under the write lock

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """``with store.transaction() as tx:`` — commit on leaving the block, roll back on an exception."""
        with self._connect("write", write=True) as conn:
            yield Tx(self, conn)

    def schema_version(self) -> int:
        with self._connect("read the schema version") as conn:
            return _schema_version(conn)

    # journal ---------------------------------------------------------------

    def history(
        self,
        *,
        limit: int = 200,
        kinds: Iterable[str] | None = None,
        window: str | None = None,
        since: datetime | None = None,
    ) -> list[dict]:
        """Journal entries, newest first, as JSON-ready dicts (instants as ``isoz`` strings)."""
        query = sa.select(journal).order_by(journal.c.at.desc(), journal.c.id.desc()).limit(limit)
        if kinds is not None:
            query = query.where(journal.c.kind.in_(list(kinds)))
        if window is not None:
            query = query.where(journal.c.window == window)
        if since is not None:
            query = query.where(journal.c.at >= since)
        with self._connect("read the history") as conn:
            rows = _dicts(conn.execute(query))
        for row in rows:
            row["at"] = isoz(row["at"])
            row["occurrence"] = isoz(row["occurrence"])
        return rows

    # occurrences -----------------------------------------------------------

    def events(self, since: datetime | None = None) -> dict[tuple[str, datetime, str], dict]:
        """Recorded starts and ends keyed by (window, occurrence, event); ``since`` filters on ``at``."""
        query = sa.select(occurrence_events)
        if since is not None:
            query = query.where(occurrence_events.c.at >= since)
        with self._connect("read occurrence events") as conn:
            rows = _dicts(conn.execute(query))
        return {(r["window"], r["occurrence"], r["event"]): r for r in rows}

    def open_occurrences(self) -> list[dict]:
        """Start events without an end: occurrences maintd entered and has not left."""
        ended = occurrence_events.alias("ended")
        query = (
            sa.select(occurrence_events)
            .outerjoin(
                ended,
                sa.and_(
                    ended.c.window == occurrence_events.c.window,
                    ended.c.occurrence == occurrence_events.c.occurrence,
                    ended.c.event == "end",
                ),
            )
            .where(occurrence_events.c.event == "start", ended.c.window.is_(None))
            .order_by(occurrence_events.c.at, occurrence_events.c.window)
        )
        with self._connect("read open occurrences") as conn:
            return _dicts(conn.execute(query))

    def announcements(self) -> dict[tuple[str, datetime], dict]:
        with self._connect("read announcements") as conn:
            rows = _dicts(conn.execute(sa.select(announcements)))
        return {(r["window"], r["occurrence"]): r for r in rows}

    def overrides(self) -> dict[tuple[str, datetime], dict]:
        with self._connect("read overrides") as conn:
            rows = _dicts(conn.execute(sa.select(overrides)))
        return {(r["window"], r["occurrence"]): r for r in rows}

    def manual_windows(self, active_only: bool = True, now: datetime | None = None) -> list[dict]:
        """Manual maintenance, oldest first. Active: not ended and, given ``now``, ``now < end``."""
        query = sa.select(manual).order_by(manual.c.start, manual.c.id)
        if active_only:
            query = query.where(manual.c.ended_at.is_(None))
            if now is not None:
                query = query.where(sa.or_(manual.c.end.is_(None), manual.c.end > now))
        with self._connect("read manual maintenance") as conn:
            return _dicts(conn.execute(query))

    # outbox ----------------------------------------------------------------

    def claim(self, now: datetime, *, worker: str, limit: int, lease: timedelta) -> list[dict]:
        """Claim up to ``limit`` due deliveries for ``worker`` until ``now + lease``.

        Due: ``pending`` with ``next_attempt_at <= now``, or ``sending`` whose claim ran
        out (a worker that crashed mid-send). Each row is taken by a compare-and-set on
        the status and claim as read, so two workers never get the same row; each claim
        counts as an attempt, so a row that keeps crashing its worker still gives up.
        """
        due = sa.or_(
            sa.and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now),
            sa.and_(outbox.c.status == "sending", outbox.c.claimed_until < now),
        )
        query = (
            sa.select(outbox.c.id, outbox.c.status, outbox.c.claimed_until)
            .where(due)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        claimed: list[int] = []
        with self._connect("claim notices", write=True) as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # others skip rows we hold
            for row in conn.execute(query).all():
                result = conn.execute(
                    outbox.update()
                    .where(
                        outbox.c.id == row.id,
                        outbox.c.status == row.status,
                        outbox.c.claimed_until.is_not_distinct_from(row.claimed_until),
                    )
                    .values(
                        status="sending",
                        claimed_by=worker,
                        claimed_until=now + lease,
                        attempts=outbox.c.attempts + 1,
                        updated_at=now,
                    )
                )
                if result.rowcount == 1:
                    claimed.append(row.id)
            if not claimed:
                return []
            rows = _dicts(
                conn.execute(
                    sa.select(outbox).where(outbox.c.id.in_(claimed)).order_by(outbox.c.next_attempt_at, outbox.c.id)
                )
            )
        return rows

    def _finish(self, action: str, id: int, worker: str | None, values: dict) -> bool:
        conditions = [outbox.c.id == id, outbox.c.status == "sending"]
        if worker is not None:
            conditions.append(outbox.c.claimed_by == worker)
        with self._connect(action, write=True) as conn:
            result = conn.execute(
                outbox.update().where(*conditions).values(claimed_by=None, claimed_until=None, **values)
            )
            return result.rowcount == 1

    def mark_sent(self, id: int, now: datetime, *, worker: str | None = None) -> bool:
        """``sending`` -> ``sent``. False if the row is not ``sending`` (superseded, re-claimed)."""
        return self._finish(
            "mark a notice sent", id, worker, dict(status="sent", sent_at=now, updated_at=now, last_error=None)
        )

    def mark_retry(self, id: int, now: datetime, error: str, next_at: datetime, *, worker: str | None = None) -> bool:
        """``sending`` -> ``pending`` again at ``next_at``, keeping the error for ``notices``."""
        return self._finish(
            "reschedule a notice",
            id,
            worker,
            dict(status="pending", next_attempt_at=next_at, last_error=error, updated_at=now),
        )

    def mark_failed(self, id: int, now: datetime, error: str, *, worker: str | None = None) -> bool:
        """``sending`` -> ``failed`` for good (permanent error, or out of attempts)."""
        return self._finish("mark a notice failed", id, worker, dict(status="failed", last_error=error, updated_at=now))

    def notice_counts(self) -> dict[str, int]:
        """Deliveries by state for ``status``: ``pending`` includes those being sent."""
        with self._connect("count notices") as conn:
            rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
        by_status = {status: n for status, n in rows}
        return {
            "sent": by_status.get("sent", 0),
            "pending": by_status.get("pending", 0) + by_status.get("sending", 0),
            "failed": by_status.get("failed", 0),
        }

    def notices(
        self, *, failed_only: bool = False, limit: int = 500, window: str | None = None, tenant: str | None = None
    ) -> list[dict]:
        """The delivery log, newest first."""
        query = sa.select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id.desc()).limit(limit)
        if failed_only:
            query = query.where(outbox.c.status == "failed")
        if window is not None:
            query = query.where(outbox.c.window == window)
        if tenant is not None:
            query = query.where(outbox.c.tenant == tenant)
        with self._connect("read notices") as conn:
            return _dicts(conn.execute(query))

    def was_notified(self, window: str, occurrence: datetime, *, include_dry_run: bool = False) -> set[str]:
        """Tenants with a live ``scheduled`` notice for the occurrence: they get cancellations.

        Superseded and failed rows do not count. Dry-run rows count only when asked: a
        tenant "told" by a dry run was never told.
        """
        statuses = ["pending", "sending", "sent"] + (["dry-run"] if include_dry_run else [])
        query = (
            sa.select(outbox.c.tenant)
            .distinct()
            .where(_key(outbox, window, occurrence), outbox.c.kind == "scheduled", outbox.c.status.in_(statuses))
        )
        with self._connect("read notified tenants") as conn:
            return set(conn.execute(query).scalars())

    # leases ----------------------------------------------------------------

    def heartbeat(self, id: str, now: datetime) -> dict | None:
        """Keep a running lease alive; returns it (with ``drain``/``deadline``), or None.

        None when the lease is unknown, released, or already past ``expires_at`` (even
        if the sweep has not marked it yet: expiry does not depend on when the loop ran).
        A heartbeat after a drain deadline marks the lease ``overrun``.
        """
        with self._connect("record a heartbeat", write=True) as conn:
            return Tx(self, conn).heartbeat(id, now)

    def release(self, id: str, now: datetime) -> bool:
        """The job ended: ``running`` -> ``released``. False if it was not running."""
        with self._connect("release a lease", write=True) as conn:
            return Tx(self, conn).release(id, now)

    def leases(self, status: str | None = "running") -> list[dict]:
        """Leases in ``status`` (None: all), oldest first."""
        query = sa.select(leases).order_by(leases.c.admitted_at, leases.c.id)
        if status is not None:
            query = query.where(leases.c.status == status)
        with self._connect("read leases") as conn:
            return _dicts(conn.execute(query))

    def lease(self, id: str) -> dict | None:
        with self._connect("read a lease") as conn:
            row = conn.execute(sa.select(leases).where(leases.c.id == id)).mappings().first()
        return None if row is None else dict(row)

    # hooks -----------------------------------------------------------------

    def get_meta_time(self, key: str) -> datetime | None:
        with self._connect("read " + key) as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else _aware(datetime.fromisoformat(value))

    def sent_leads(self, since: datetime) -> set[tuple[str, datetime, str]]:
        """``(window, occurrence, lead)`` of scheduled notices already enqueued for occurrences
        from ``since`` on: the planner does not enqueue the same lead twice."""
        query = (
            sa.select(outbox.c.window, outbox.c.occurrence, outbox.c.lead)
            .distinct()
            .where(outbox.c.kind == "scheduled", outbox.c.occurrence >= since)
        )
        with self._connect("read sent leads") as conn:
            return {(w, o, lead) for w, o, lead in conn.execute(query)}

    def reset_running_hooks(self, now: datetime) -> int:
        """Hook runs left ``running`` by a crashed instance go back to ``pending``."""
        with self._connect("reset hook runs", write=True) as conn:
            return conn.execute(
                hook_runs.update()
                .where(hook_runs.c.status == "running")
                .values(status="pending", next_attempt_at=now, updated_at=now)
            ).rowcount

    def hook_runs(self, status: str | None = None) -> list[dict]:
        query = sa.select(hook_runs).order_by(
            hook_runs.c.next_attempt_at, hook_runs.c.window, hook_runs.c.occurrence, hook_runs.c.event
        )
        if status is not None:
            query = query.where(hook_runs.c.status == status)
        with self._connect("read hook runs") as conn:
            return _dicts(conn.execute(query))

    def claim_hook(self, window: str, occurrence: datetime, event: str, now: datetime) -> bool:
        """``pending`` and due -> ``running``; False if another instance or tick got it first."""
        with self._connect("claim a hook run", write=True) as conn:
            return (
                conn.execute(
                    hook_runs.update()
                    .where(
                        _key(hook_runs, window, occurrence),
                        hook_runs.c.event == event,
                        hook_runs.c.status == "pending",
                        hook_runs.c.next_attempt_at <= now,
                    )
                    .values(status="running", attempts=hook_runs.c.attempts + 1, updated_at=now)
                ).rowcount
                == 1
            )

    def finish_hook(
        self,
        key: tuple[str, datetime, str],
        *,
        ok: bool,
        now: datetime,
        exit_code: int | None = None,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        """``running`` -> ``ok``; or ``pending`` again at ``next_at``; or ``failed`` without one."""
        window, occurrence, event = key
        status = "ok" if ok else ("pending" if next_at is not None else "failed")
        values: dict[str, Any] = dict(status=status, exit_code=exit_code, last_error=error, updated_at=now)
        if status == "pending":
            values["next_attempt_at"] = next_at
        with self._connect("record a hook result", write=True) as conn:
            return (
                conn.execute(
                    hook_runs.update()
                    .where(
                        _key(hook_runs, window, occurrence), hook_runs.c.event == event, hook_runs.c.status == "running"
                    )
                    .values(**values)
                ).rowcount
                == 1
            )

    # tenant secrets --------------------------------------------------------

    def tenant_secret(
        self,
        tenant: str,
        create: bool = True,
        token_factory: Callable[[], str] = secrets.token_urlsafe,
        *,
        now: datetime | None = None,
    ) -> str | None:
        """The secret in a tenant's page and calendar URLs, made on first use when ``create``.

        ``now`` defaults to the clock: ``created_at`` is a record, not an input to any decision.
        """
        query = sa.select(tenant_secrets.c.secret).where(tenant_secrets.c.tenant == tenant)
        with self._connect("read a tenant secret", write=create) as conn:
            secret = conn.execute(query).scalar()
            if secret is None and create:
                conn.execute(
                    _insert(conn, tenant_secrets)
                    .values(
                        tenant=tenant,
                        secret=token_factory(),
                        created_at=now or datetime.now(UTC),
                    )
                    .on_conflict_do_nothing(index_elements=["tenant"])
                )
                secret = conn.execute(query).scalar()
            return secret

    def rotate_secret(
        self, tenant: str, token_factory: Callable[[], str] = secrets.token_urlsafe, *, now: datetime | None = None
    ) -> str:
        """A new secret for the tenant; the old URLs stop working at once."""
        values = dict(secret=token_factory(), created_at=now or datetime.now(UTC))
        with self._connect("rotate a tenant secret", write=True) as conn:
            conn.execute(
                _insert(conn, tenant_secrets)
                .values(tenant=tenant, **values)
                .on_conflict_do_update(index_elements=["tenant"], set_=values)
            )
        return values["secret"]

    def tenant_for_secret(self, secret: str) -> str | None:
        with self._connect("read a tenant secret") as conn:
            return conn.execute(sa.select(tenant_secrets.c.tenant).where(tenant_secrets.c.secret == secret)).scalar()

    # instances -------------------------------------------------------------

    def register_instance(
        self, id: str, *, listen: str, now: datetime, leader: bool = False, since: datetime | None = None
    ) -> None:
        """Announce this instance (and heartbeat it: call again every tick)."""
        values = dict(listen=listen, heartbeat_at=now, leader=leader, since=since)
        with self._connect("register the instance", write=True) as conn:
            conn.execute(
                _insert(conn, instances)
                .values(id=id, started_at=now, **values)
                .on_conflict_do_update(index_elements=["id"], set_=values)
            )

    def remove_instance(self, id: str) -> None:
        """A clean stop: the instance leaves the list at once instead of going stale."""
        with self._connect("remove the instance", write=True) as conn:
            conn.execute(instances.delete().where(instances.c.id == id))

    def instances(self) -> list[dict]:
        with self._connect("read instances") as conn:
            return _dicts(conn.execute(sa.select(instances).order_by(instances.c.id)))

    # notices: what the completed summary and the outbox worker read --------------

    def journal_counts(self, window: str, occurrence: datetime) -> dict[str, dict[str, Any]]:
        """Per tenant, what happened to its jobs during one occurrence, from the journal:
        ``{tenant: {"refused": {kind: n}, "drained": n, "stopped": n}}``.

        ``refused``: gate refusals keyed to the occurrence. A drain order counts as
        ``stopped`` when the job was to be stopped (``then: stop``) and did not end by its
        deadline, else as ``drained`` (finished in its grace, or allowed to finish).
        Tenants with nothing to report are absent.
        """
        query = (
            sa.select(journal.c.kind, journal.c.detail)
            .where(_key(journal, window, occurrence), journal.c.kind.in_(("refused", "drain")))
            .order_by(journal.c.id)
        )
        with self._connect("read the journal of an occurrence") as conn:
            rows = conn.execute(query).all()
            lease_ids = sorted({(d or {}).get("lease") for k, d in rows if k == "drain"} - {None})
            ended = {}
            if lease_ids:
                ended = {
                    r.id: r
                    for r in conn.execute(
                        sa.select(leases.c.id, leases.c.status, leases.c.released_at, leases.c.deadline).where(
                            leases.c.id.in_(lease_ids)
                        )
                    )
                }
        out: dict[str, dict[str, Any]] = {}
        seen_leases: set[str] = set()
        for kind, detail in rows:
            detail = detail or {}
            tenant = detail.get("tenant")
            if not tenant:
                continue
            entry = out.setdefault(tenant, {"refused": {}, "drained": 0, "stopped": 0})
            if kind == "refused":
                job = str(detail.get("kind") or "unknown")
                entry["refused"][job] = entry["refused"].get(job, 0) + 1
                continue
            lease_id = detail.get("lease")
            if lease_id in seen_leases:
                continue  # one job is one job, however often its drain was journaled
            seen_leases.add(lease_id)
            lease = ended.get(lease_id)
            finished_in_time = (
                lease is not None
                and lease.status == "released"
                and (lease.deadline is None or lease.released_at <= lease.deadline)
            )
            if detail.get("then") == "stop" and not finished_in_time:
                entry["stopped"] += 1
            else:
                entry["drained"] += 1
        return out

    def changes_after(self, windows: Iterable[str], after_id: int) -> list[dict]:
        """``rescheduled`` and ``cancelled`` deliveries of ``windows`` enqueued after outbox row
        ``after_id``, oldest first (``id, notice_id, window, occurrence, tenant, kind``).

        The outbox worker reads them once per claimed batch: a claimed ``scheduled`` or
        ``rescheduled`` notice with a later change for its tenant is out of date.
        """
        windows = sorted(set(windows))
        if not windows:
            return []
        query = (
            sa.select(
                outbox.c.id, outbox.c.notice_id, outbox.c.window, outbox.c.occurrence, outbox.c.tenant, outbox.c.kind
            )
            .where(
                outbox.c.window.in_(windows), outbox.c.id > after_id, outbox.c.kind.in_(("rescheduled", "cancelled"))
            )
            .order_by(outbox.c.id)
        )
        with self._connect("read changed notices") as conn:
            return _dicts(conn.execute(query))

    def mark_superseded(self, id: int, now: datetime, reason: str, *, worker: str | None = None) -> bool:
        """``sending`` -> ``superseded``: claimed, but newer news makes sending it wrong."""
        return self._finish(
            "supersede a notice", id, worker, dict(status="superseded", last_error=reason, updated_at=now)
        )

    def finish_many(self, results: Iterable[tuple[int, Mapping[str, Any]]], *, worker: str | None = None) -> set[int]:
        """Record many delivery results in one transaction: ``(id, values)`` with ``values``
        holding the new ``status`` (``sent``, ``pending`` for a retry, ``failed``,
        ``superseded``), ``updated_at``, and as the status needs ``sent_at``,
        ``next_attempt_at`` and ``last_error``.

        Each row moves only from ``sending`` (and, given ``worker``, only if that worker
        still holds the claim), exactly as ``mark_sent``/``mark_retry``/``mark_failed``;
        returns the ids that moved. One transaction and one prepared statement per batch is
        what lets many senders share SQLite's single writer.
        """
        params = []
        for id, values in results:
            unknown = set(values) - {"status", "sent_at", "next_attempt_at", "last_error", "updated_at"}
            if (
                unknown
                or values.get("status") not in ("sent", "pending", "failed", "superseded")
                or "updated_at" not in values
            ):
                raise ValueError(f"not a delivery result: {dict(values)!r}")
            params.append(
                {
                    "b_id": id,
                    "b_status": values["status"],
                    "b_sent_at": values.get("sent_at"),
                    "b_next": values.get("next_attempt_at"),
                    "b_error": values.get("last_error"),
                    "b_updated": values["updated_at"],
                }
            )
        if not params:
            return set()
        held = [outbox.c.status == "sending"] + ([outbox.c.claimed_by == worker] if worker is not None else [])
        statement = (
            outbox.update()
            .where(outbox.c.id == sa.bindparam("b_id"), *held)
            .values(
                status=sa.bindparam("b_status"),
                sent_at=sa.func.coalesce(sa.bindparam("b_sent_at", type_=UTCDateTime), outbox.c.sent_at),
                next_attempt_at=sa.func.coalesce(sa.bindparam("b_next", type_=UTCDateTime), outbox.c.next_attempt_at),
                last_error=sa.bindparam("b_error", type_=sa.Text),
                updated_at=sa.bindparam("b_updated", type_=UTCDateTime),
                claimed_by=None,
                claimed_until=None,
            )
        )
        with self._connect("record notice results", write=True) as conn:
            ids = [p["b_id"] for p in params]
            mine: set[int] = set()
            for chunk in range(0, len(ids), 500):  # under every driver's bound-parameter limit
                mine |= set(
                    conn.execute(
                        sa.select(outbox.c.id).where(outbox.c.id.in_(ids[chunk : chunk + 500]), *held)
                    ).scalars()
                )
            todo = [p for p in params if p["b_id"] in mine]
            if todo:
                conn.execute(statement, todo)
        return mine

    def claim_batch(self, now: datetime, *, worker: str, limit: int, lease: timedelta) -> list[dict]:
        """``claim`` in three statements however many rows: the same rows, the same rules.

        Due rows are selected, then taken by ONE compare-and-set ``UPDATE`` that repeats the
        due condition (a row another worker took in between no longer matches it), and
        what this worker now holds -- ``sending``, its name, this claim's expiry -- is read
        back. ``claim`` spends a statement per row; at a few hundred deliveries a second
        that was the outbox's bottleneck.
        """
        due = sa.or_(
            sa.and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now),
            sa.and_(outbox.c.status == "sending", outbox.c.claimed_until < now),
        )
        until = now + lease
        query = sa.select(outbox.c.id).where(due).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
        with self._connect("claim notices", write=True) as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)  # others skip rows we hold
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(ids), due)
                .values(
                    status="sending",
                    claimed_by=worker,
                    claimed_until=until,
                    attempts=outbox.c.attempts + 1,
                    updated_at=now,
                )
            )
            return _dicts(
                conn.execute(
                    sa.select(outbox)
                    .where(
                        outbox.c.id.in_(ids),
                        outbox.c.status == "sending",
                        outbox.c.claimed_by == worker,
                        outbox.c.claimed_until == until,
                    )
                    .order_by(outbox.c.next_attempt_at, outbox.c.id)
                )
            )
