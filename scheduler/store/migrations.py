"""Versioned migrations: step i upgrades schema version i to i + 1.

A released step is frozen: it spells out its own DDL instead of reusing the tables in
:mod:`.schema`, which keep moving. A database from a newer maintd is refused, never
touched. PostgreSQL takes an advisory lock while migrating, so of two instances
starting at once one migrates and the other finds the work done.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import StoreError
from .schema import JSONText, OccurrenceKey, UTCDateTime

__all__ = ["LATEST_VERSION", "MIGRATIONS", "migrate", "refuse_newer", "schema_version"]


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


def schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    value = conn.execute(sa.select(_meta_v0.c.value).where(_meta_v0.c.key == "schema_version")).scalar()
    return int(value) if value is not None else 0


def refuse_newer(version: int, where: str) -> None:
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
    version = schema_version(conn)
    refuse_newer(version, where or str(conn.engine.url))
    for step in MIGRATIONS[version:target]:
        step(conn)
        version += 1
        # Update-or-insert by hand: this runs before the rest of the store may assume anything.
        if (
            conn.execute(
                _meta_v0.update().where(_meta_v0.c.key == "schema_version").values(value=str(version))
            ).rowcount
            == 0
        ):
            conn.execute(_meta_v0.insert().values(key="schema_version", value=str(version)))
    return version
