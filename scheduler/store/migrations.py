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


# Version 1: the tables of the first release, frozen as released.
_v1 = sa.MetaData()
_dt, _key, _js, _S = UTCDateTime, OccurrenceKey, JSONText, sa.String  # short, for the table below
sa.Table(
    "journal",
    _v1,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _dt, nullable=False),
    sa.Column("kind", _S(32), nullable=False),
    sa.Column("window", _S(200)),
    sa.Column("occurrence", _key),
    sa.Column("actor", _S(200)),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", _js),
)
sa.Table(
    "occurrence_events",
    _v1,
    sa.Column("window", _S(200), primary_key=True),
    sa.Column("occurrence", _key, primary_key=True),
    sa.Column("event", _S(8), primary_key=True),
    sa.Column("at", _dt, nullable=False),
    sa.Column("recorded_at", _dt, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("detail", _js),
)
sa.Table(
    "announcements",
    _v1,
    sa.Column("window", _S(200), primary_key=True),
    sa.Column("occurrence", _key, primary_key=True),
    sa.Column("start", _dt, nullable=False),
    sa.Column("end", _dt, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tenants", _js, nullable=False),
    sa.Column("status", _S(16), nullable=False),
    sa.Column("updated_at", _dt, nullable=False),
)
sa.Table(
    "overrides",
    _v1,
    sa.Column("window", _S(200), primary_key=True),
    sa.Column("occurrence", _key, primary_key=True),
    sa.Column("end", _dt, nullable=False),
    sa.Column("reason", _S(16), nullable=False),
    sa.Column("at", _dt, nullable=False),
    sa.Column("actor", _S(200)),
)
sa.Table(
    "manual",
    _v1,
    sa.Column("id", _S(64), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("start", _dt, nullable=False),
    sa.Column("end", _dt),
    sa.Column("tenants", _js),
    sa.Column("policy", _S(200)),
    sa.Column("created_at", _dt, nullable=False),
    sa.Column("ended_at", _dt),
    sa.Column("actor", _S(200)),
)
sa.Table(
    "outbox",
    _v1,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", _S(64), nullable=False),
    sa.Column("channel", _S(32), nullable=False),
    sa.Column("window", _S(200), nullable=False),
    sa.Column("occurrence", _key, nullable=False),
    sa.Column("tenant", _S(200), nullable=False),
    sa.Column("kind", _S(16), nullable=False),
    sa.Column("lead", _S(32), nullable=False, server_default=""),
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("payload", _js, nullable=False),
    sa.Column("status", _S(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _dt, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", _dt, nullable=False),
    sa.Column("updated_at", _dt, nullable=False),
    sa.Column("sent_at", _dt),
    sa.Column("claimed_by", _S(200)),
    sa.Column("claimed_until", _dt),
    sa.UniqueConstraint("window", "occurrence", "tenant", "kind", "lead", "seq", "channel", name="uq_outbox_delivery"),
)
sa.Table(
    "leases",
    _v1,
    sa.Column("id", _S(64), primary_key=True),
    sa.Column("tenant", _S(200), nullable=False),
    sa.Column("kind", _S(200), nullable=False),
    sa.Column("resource", _S(200)),
    sa.Column("window", _S(200)),
    sa.Column("occurrence", _key),
    sa.Column("admitted_at", _dt, nullable=False),
    sa.Column("heartbeat_at", _dt, nullable=False),
    sa.Column("interval_s", sa.Integer, nullable=False),
    sa.Column("expires_at", _dt, nullable=False),
    sa.Column("drain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deadline", _dt),
    sa.Column("then", _S(8)),
    sa.Column("status", _S(16), nullable=False, server_default="running"),
    sa.Column("released_at", _dt),
    sa.Column("overrun", sa.Boolean, nullable=False, server_default=sa.false()),
)
sa.Table(
    "hook_runs",
    _v1,
    sa.Column("window", _S(200), primary_key=True),
    sa.Column("occurrence", _key, primary_key=True),
    sa.Column("event", _S(8), primary_key=True),
    sa.Column("status", _S(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _dt, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("exit_code", sa.Integer),
    sa.Column("updated_at", _dt, nullable=False),
)
sa.Table(
    "tenant_secrets",
    _v1,
    sa.Column("tenant", _S(200), primary_key=True),
    sa.Column("secret", _S(200), nullable=False, unique=True),
    sa.Column("created_at", _dt, nullable=False),
)
sa.Table(
    "instances",
    _v1,
    sa.Column("id", _S(200), primary_key=True),
    sa.Column("listen", _S(200), nullable=False),
    sa.Column("started_at", _dt, nullable=False),
    sa.Column("heartbeat_at", _dt, nullable=False),
    sa.Column("leader", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("since", _dt),
)


def _v1_base_tables(conn: Connection) -> None:
    """Version 1: the tables of the first release."""
    _v1.create_all(conn)


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


def _v4_waves_and_deferrals(conn: Connection) -> None:
    """Wave membership, halted waves and tenants' deferrals (SPEC 8 and 9)."""
    v4 = sa.MetaData()
    sa.Table(
        "wave_members",
        v4,
        sa.Column("window", _S(200), primary_key=True),
        sa.Column("tenant", _S(200), primary_key=True),
        sa.Column("wave", sa.Integer, nullable=False),
        sa.Column("assigned_at", _dt, nullable=False),
    )
    sa.Table(
        "wave_halts",
        v4,
        sa.Column("window", _S(200), primary_key=True),
        sa.Column("base", _key, primary_key=True),
        sa.Column("after", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", _dt, nullable=False),
        sa.Column("resume_at", _dt),
    )
    sa.Table(
        "deferrals",
        v4,
        sa.Column("window", _S(200), primary_key=True),
        sa.Column("base", _key, primary_key=True),
        sa.Column("tenant", _S(200), primary_key=True),
        sa.Column("target_wave", sa.Integer),
        sa.Column("target_base", _key),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("at", _dt, nullable=False),
    )
    v4.create_all(conn)


def _v5_lease_secrets(conn: Connection) -> None:
    """Version 5: ``leases.secret_hash``. A lease's id used to be the capability that heartbeats
    and deletes it, and status showed it to every reader. The id the old clients hold becomes
    their secret (its hash is stored), and a running lease gets a new public id."""
    import hashlib
    import secrets

    conn.execute(sa.text("ALTER TABLE leases ADD COLUMN secret_hash VARCHAR(64)"))
    for lease_id, status in conn.execute(sa.text("SELECT id, status FROM leases")).all():
        values = {"old": lease_id, "hash": hashlib.sha256(lease_id.encode()).hexdigest()}
        values["new"] = "lse_" + secrets.token_hex(6) if status == "running" else lease_id
        conn.execute(sa.text("UPDATE leases SET secret_hash = :hash, id = :new WHERE id = :old"), values)
    conn.execute(sa.text("CREATE UNIQUE INDEX ux_leases_secret_hash ON leases (secret_hash)"))


_v6 = sa.MetaData()
sa.Table(
    "integration_runs",
    _v6,
    sa.Column("integration", _S(200), primary_key=True),
    sa.Column("window", _S(200), primary_key=True),
    sa.Column("anchor", _key, primary_key=True),
    sa.Column("occurrence", _key, nullable=False),
    sa.Column("type", _S(32), nullable=False),
    sa.Column("phase", _S(16), nullable=False),
    sa.Column("start", _dt, nullable=False),
    sa.Column("end", _dt, nullable=False),
    sa.Column("done", _js),
    sa.Column("state", _js),
    sa.Column("status", _S(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", _dt),
    sa.Column("next_at", _dt),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", _dt, nullable=False),
)


def _v6_integration_runs(conn: Connection) -> None:
    """Version 6: ``integration_runs``, one row per (integration, window, occurrence) (SPEC 6)."""
    _v6.create_all(conn)
    conn.execute(sa.text("CREATE INDEX ix_integration_runs_due ON integration_runs (status, next_at)"))


MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_base_tables,
    _v2_late_notices_and_indexes,
    _v3_announced_occurrence,
    _v4_waves_and_deferrals,
    _v5_lease_secrets,
    _v6_integration_runs,
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


def _v_disabled_endpoints(conn: Connection) -> None:
    """``disabled_endpoints``: webhook endpoints that answered 410 Gone (SPEC 4.1)."""
    table = sa.Table(
        "disabled_endpoints",
        sa.MetaData(),
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("since", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    table.create(conn, checkfirst=True)


MIGRATIONS.append(_v_disabled_endpoints)
LATEST_VERSION = len(MIGRATIONS)
