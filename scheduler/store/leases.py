"""The leases aggregate: jobs the gate admitted, their heartbeats, drain orders and ends.

A lease has a public ``id`` (status, journal, drains show it) and a secret only the admitted
job holds; the store keeps the secret's SHA-256 (``secret_hash``) and the gate heartbeats and
releases only by it (:meth:`Leases.heartbeat_secret`, :meth:`Leases.release_secret`).

A lease expires unless heartbeated within 3 intervals; expiry does not depend on when
the sweep ran. State changes are compare-and-set on ``status='running'``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .base import Repository
from .schema import leases

__all__ = ["Leases", "secret_hash"]


def _admitted(row: Mapping[str, Any]) -> dict[str, Any]:
    admitted_at, interval_s = row["admitted_at"], row["interval_s"]
    return {
        "id": row["id"],
        "tenant": row["tenant"],
        "kind": row["kind"],
        "resource": row.get("resource"),
        "window": row.get("window"),
        "occurrence": row.get("occurrence"),
        "admitted_at": admitted_at,
        "heartbeat_at": admitted_at,
        "interval_s": interval_s,
        "expires_at": admitted_at + timedelta(seconds=3 * interval_s),
        "status": "running",
        "secret_hash": row.get("secret_hash"),
    }


def secret_hash(secret: str) -> str:
    """What the store keeps of a lease's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Leases(Repository):
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
        secret_hash: str | None = None,
    ) -> None:
        """Record an admitted job; it expires unless heartbeated within 3 intervals."""
        row = dict(id=id, tenant=tenant, kind=kind, admitted_at=admitted_at, interval_s=interval_s)
        row.update(resource=resource, window=window, occurrence=occurrence, secret_hash=secret_hash)
        self._run("record a lease", leases.insert().values(**_admitted(row)))

    def add_leases(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """:meth:`add_lease` for many jobs in one statement; each row has its keywords
        (``id``, ``tenant``, ``kind``, ``admitted_at``, ``interval_s``, optional ``resource`` and
        ``secret_hash``).
        The gate's group commit writes the admissions that arrived together this way."""
        params = [_admitted(r) for r in rows]
        if params:
            self._run("record leases", leases.insert(), params)
        return len(params)

    def heartbeat(self, id: str, now: datetime) -> dict | None:
        """Keep a running lease alive; returns it (with ``drain``/``deadline``), or None.

        None when the lease is unknown, released, or already past ``expires_at`` (even
        if the sweep has not marked it yet: expiry does not depend on when the loop ran).
        A heartbeat after a drain deadline marks the lease ``overrun``.
        """
        action = "record a heartbeat"
        live = (leases.c.id == id, leases.c.status == "running", leases.c.expires_at > now)
        row = self._run(action, sa.select(leases.c.interval_s, leases.c.drain, leases.c.deadline).where(*live)).first()
        if row is None:
            return None
        values: dict[str, Any] = dict(heartbeat_at=now, expires_at=now + timedelta(seconds=3 * row.interval_s))
        if row.drain and row.deadline is not None and now >= row.deadline:
            values["overrun"] = True
        self._run(action, leases.update().where(leases.c.id == id).values(**values))
        return dict(self._run(action, sa.select(leases).where(leases.c.id == id)).mappings().one())

    def _by_secret(self, hashed: str) -> str | None:
        query = sa.select(leases.c.id).where(leases.c.secret_hash == hashed)
        return self._run("find a lease", query).scalar()

    def heartbeat_secret(self, hashed: str, now: datetime) -> dict | None:
        """:meth:`heartbeat` of the lease whose secret hashes to ``hashed``."""
        lease_id = self._by_secret(hashed)
        return None if lease_id is None else self.heartbeat(lease_id, now)

    def revive(self, lease: Mapping[str, Any], now: datetime) -> dict | None:
        """Record a lease whose admission was answered but whose row was lost (the daemon died
        before the commit), then heartbeat it. None if the store knows that secret or id
        already: a lease that ended or expired stays ended."""
        taken = sa.select(leases.c.id).where(
            (leases.c.secret_hash == lease["secret_hash"]) | (leases.c.id == lease["id"])
        )
        if self._run("revive a lease", taken).first() is not None:
            return None
        row = _admitted(lease)
        row.update(heartbeat_at=now, expires_at=now + timedelta(seconds=3 * row["interval_s"]))
        self._run("revive a lease", leases.insert().values(**row))
        return self.heartbeat(lease["id"], now)

    def release_secret(self, hashed: str, now: datetime) -> str | None:
        """:meth:`release` of the lease whose secret hashes to ``hashed``; its public id, or None."""
        lease_id = self._by_secret(hashed)
        return lease_id if lease_id is not None and self.release(lease_id, now) else None

    def release(self, id: str, now: datetime) -> bool:
        """The job ended: ``running`` -> ``released``. False if it was not running."""
        statement = (
            leases.update()
            .where(leases.c.id == id, leases.c.status == "running")
            .values(status="released", released_at=now)
        )
        return self._run("release a lease", statement).rowcount == 1

    def expire_leases(self, now: datetime) -> list[str]:
        """Mark running leases whose ``expires_at`` has passed as expired; return their ids."""
        query = sa.select(leases.c.id).where(leases.c.status == "running", leases.c.expires_at <= now)
        ids = list(self._run("expire leases", query.order_by(leases.c.id)).scalars())
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
        undrained = (leases.c.id.in_(ids), leases.c.status == "running", leases.c.drain.is_(sa.false()))
        statement = leases.update().where(*undrained).values(drain=True, deadline=deadline, then=then)
        return self._run("order a drain", statement).rowcount

    def resume_leases(self, now: datetime) -> int:
        """Give every running lease a full 3 intervals from ``now`` (never less than it has).

        For start-up: while maintd was down its clients could not heartbeat, and that time
        must not expire their leases (with their drain orders and deadlines) the moment it
        is back. A client that really is gone still expires 3 intervals later.
        """
        query = sa.select(leases.c.interval_s).where(leases.c.status == "running").distinct()
        resumed = 0
        for interval_s in list(self._run("resume leases", query).scalars()):
            until = now + timedelta(seconds=3 * interval_s)
            running = (leases.c.status == "running", leases.c.interval_s == interval_s, leases.c.expires_at < until)
            resumed += self._run("resume leases", leases.update().where(*running).values(expires_at=until)).rowcount
        return resumed

    def leases(self, status: str | None = "running") -> list[dict]:
        """Leases in ``status`` (None: all), oldest first."""
        query = sa.select(leases).order_by(leases.c.admitted_at, leases.c.id)
        if status is not None:
            query = query.where(leases.c.status == status)
        return self._rows("read leases", query)

    def lease(self, id: str) -> dict | None:
        row = self._run("read a lease", sa.select(leases).where(leases.c.id == id)).mappings().first()
        return None if row is None else dict(row)
