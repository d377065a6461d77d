"""Disabled endpoints (SPEC 4.1): a tenant's webhook that answered ``410 Gone``.

A row names the tenant, the channel and a hash of what the endpoint is (the URL and the
signing secret: :func:`endpoint_hash`), never the URL itself. A changed URL or secret
hashes differently, so a reload that changes either enables the endpoint again without
touching the table; a resend deletes the tenant's row.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa

from .base import Repository
from .schema import UTCDateTime, metadata

__all__ = ["DisabledEndpoints", "disabled_endpoints", "endpoint_hash"]

disabled_endpoints = sa.Table(
    "disabled_endpoints",
    metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("endpoint", sa.String(64), primary_key=True),  # endpoint_hash(): no URL secrets stored
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)


def endpoint_hash(*parts: str) -> str:
    """A stable hash of what identifies an endpoint (e.g. a webhook URL and its secret)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class DisabledEndpoints(Repository):
    def disable(self, tenant: str, channel: str, endpoint: str, *, now: datetime, reason: str) -> bool:
        """Record an endpoint as disabled; a second 410 keeps the first ``since``. True if new."""
        row = dict(tenant=tenant, channel=channel, endpoint=endpoint, since=now, reason=reason)
        statement = self._insert(disabled_endpoints).values(**row).on_conflict_do_nothing()
        return self._run("disable an endpoint", statement).rowcount == 1

    def enable(self, tenant: str, channel: str | None = None) -> int:
        """Enable a tenant's disabled endpoints (of one channel, or all). Returns how many."""
        conditions = [disabled_endpoints.c.tenant == tenant]
        if channel is not None:
            conditions.append(disabled_endpoints.c.channel == channel)
        return self._run("enable an endpoint", disabled_endpoints.delete().where(*conditions)).rowcount

    def listing(self) -> list[dict]:
        """Every disabled endpoint, oldest first (callers keep those that match the config)."""
        c = disabled_endpoints.c
        query = sa.select(disabled_endpoints).order_by(c.since, c.tenant, c.channel)
        return self._rows("read disabled endpoints", query)
