"""Column types and the tables queries use (the latest schema).

The schema in a database is made by :mod:`.migrations`, never by ``create_all`` on
these; tests/test_store.py checks that the two agree.

Every instant is an aware UTC ``datetime`` in and out (:class:`UTCDateTime`); a naive
one is a bug and is refused with ``ValueError``. Occurrence keys are stored as
``isoz()`` text so they read the same in the file as on the wire.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..model import UTC, isoz


def aware(value: Any) -> datetime:
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
        return None if value is None else aware(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class OccurrenceKey(sa.TypeDecorator):
    """An occurrence key: ``isoz()`` text in the database (seconds, ``Z``), a datetime in Python."""

    impl = sa.String(32)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else isoz(aware(value))

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
    # v4: SHA-256 of the secret the admission handed out; `id` is the public id status shows
    sa.Column("secret_hash", sa.String(64)),
    sa.Index("ix_leases_status", "status"),  # v2
    sa.Index("ux_leases_secret_hash", "secret_hash", unique=True),  # v4
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

integration_runs = sa.Table(  # SPEC 6: what each integration did for one occurrence
    "integration_runs",
    metadata,
    sa.Column("integration", sa.String(200), primary_key=True),
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("anchor", OccurrenceKey, primary_key=True),  # the occurrence's identity (a one-off: epoch)
    sa.Column("occurrence", OccurrenceKey, nullable=False),  # the key handed to the integration
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),  # wanted: planned started finished exited cancelled
    sa.Column("start", UTCDateTime, nullable=False),
    sa.Column("end", UTCDateTime, nullable=False),
    sa.Column("done", JSONText),  # what was applied last: {"phase", "start", "end"}
    sa.Column("state", JSONText),  # the integration's own (silence id, ...)
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UTCDateTime),
    sa.Column("next_at", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_integration_runs_due", "status", "next_at"),
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

# SPEC 8 and 9: wave membership (stable once stored), halted waves, tenants' deferrals
wave_members = sa.Table(
    "wave_members",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("assigned_at", UTCDateTime, nullable=False),
)

wave_halts = sa.Table(
    "wave_halts",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("base", OccurrenceKey, primary_key=True),
    sa.Column("after", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("resume_at", UTCDateTime),
)

deferrals = sa.Table(
    "deferrals",
    metadata,
    sa.Column("window", sa.String(200), primary_key=True),
    sa.Column("base", OccurrenceKey, primary_key=True),
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("target_wave", sa.Integer),
    sa.Column("target_base", OccurrenceKey),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)
