"""One transaction's view of the store: the repositories, all bound to its connection.

What ``Store.transaction()`` and ``Store.read()`` yield. Because every repository shares
the one connection, a read inside a transaction sees that transaction's own writes
(write a tenant secret, then read it back, before anything commits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from .effects import Effects
from .endpoints import DisabledEndpoints
from .integrations import Integrations
from .journal import Journal
from .leases import Leases
from .outbox import Outbox
from .secrets import Secrets
from .waves import Waves

__all__ = ["Tx"]


class Tx:
    """``tx.journal``, ``tx.outbox``, ``tx.leases``, ``tx.effects``, ``tx.secrets``.

    Everything done through one ``Tx`` from :meth:`Store.transaction` commits together or
    not at all (a transition is journaled together with its notices, or neither happens).
    ``tx.journal(kind, at=...)`` appends a journal entry. The write methods below are the
    names this class had before the repositories; they delegate.
    """

    def __init__(self, conn: Connection, where: str) -> None:
        self.connection = conn
        self.journal = Journal(conn, where)
        self.outbox = Outbox(conn, where)
        self.leases = Leases(conn, where)
        self.effects = Effects(conn, where)
        self.secrets = Secrets(conn, where)
        self.waves = Waves(conn, where)  # SPEC 8 and 9
        self.endpoints = DisabledEndpoints(conn, where)
        self.integrations = Integrations(conn, where)

    # journal ---------------------------------------------------------------

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
        return self.journal.record_event(
            window, occurrence, event, at=at, recorded_at=recorded_at, late=late, detail=detail
        )

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
        self.journal.announce(
            window,
            occurrence,
            start=start,
            end=end,
            title=title,
            sequence=sequence,
            tenants=tenants,
            status=status,
            at=at,
            occurrence_key=occurrence_key,
        )

    def set_override(
        self, window: str, occurrence: datetime, *, end: datetime, reason: str, at: datetime, actor: str | None = None
    ) -> None:
        self.journal.set_override(window, occurrence, end=end, reason=reason, at=at, actor=actor)

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
        return self.journal.add_manual(
            id, reason=reason, start=start, end=end, tenants=tenants, policy=policy, created_at=created_at, actor=actor
        )

    def end_manual(self, id: str, at: datetime) -> bool:
        return self.journal.end_manual(id, at)

    def set_meta_time(self, key: str, value: datetime) -> None:
        self.journal.set_meta_time(key, value)

    # outbox ----------------------------------------------------------------

    def enqueue(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return self.outbox.enqueue(rows)

    def supersede(self, window: str, occurrence: datetime, kind: str, now: datetime, tenant: str | None = None) -> int:
        return self.outbox.supersede(window, occurrence, kind, now, tenant)

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
        self.leases.add_lease(
            id,
            tenant=tenant,
            kind=kind,
            admitted_at=admitted_at,
            interval_s=interval_s,
            resource=resource,
            window=window,
            occurrence=occurrence,
        )

    def add_leases(self, rows: Iterable[Mapping[str, Any]]) -> int:
        return self.leases.add_leases(rows)

    def heartbeat(self, id: str, now: datetime) -> dict | None:
        return self.leases.heartbeat(id, now)

    def release(self, id: str, now: datetime) -> bool:
        return self.leases.release(id, now)

    def expire_leases(self, now: datetime) -> list[str]:
        return self.leases.expire_leases(now)

    def order_drain(self, ids: Iterable[str], *, deadline: datetime | None, then: str) -> int:
        return self.leases.order_drain(ids, deadline=deadline, then=then)

    def resume_leases(self, now: datetime) -> int:
        return self.leases.resume_leases(now)

    # effects ---------------------------------------------------------------

    def add_hook_run(self, window: str, occurrence: datetime, event: str, *, now: datetime) -> bool:
        return self.effects.add_hook_run(window, occurrence, event, now=now)
