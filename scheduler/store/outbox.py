"""The outbox aggregate: notice deliveries from ``pending`` to ``sent``, ``failed`` or ``superseded``.

"Nothing sent twice" is a UNIQUE key (window, occurrence, tenant, kind, lead, seq,
channel): enqueueing the same delivery again is a no-op. A worker claims due rows with
a compare-and-set and may finish only the rows it still holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .base import Repository, occurrence_is
from .schema import UTCDateTime, outbox

__all__ = ["Outbox"]

_REQUIRED = ("notice_id", "channel", "window", "occurrence", "tenant", "kind", "payload", "created_at")
_RESULT_FIELDS = {"status", "sent_at", "next_attempt_at", "last_error", "updated_at"}
_RESULT_STATUSES = ("sent", "pending", "failed", "superseded")


class Outbox(Repository):
    def enqueue(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Add notice deliveries as ``pending``; rows already there are skipped. Returns how many were new.

        Each row needs ``notice_id, channel, window, occurrence, tenant, kind, payload,
        created_at``; ``lead`` (None -> ''), ``seq`` (0), ``status`` ('pending', or
        'dry-run'), ``next_attempt_at`` (``created_at``) and ``late`` (False) are optional.
        One multi-row statement per batch, so 10,000 rows take well under a second.
        """
        if not rows:
            return 0
        params = []
        for row in rows:
            missing = [k for k in _REQUIRED if k not in row]
            if missing:
                raise ValueError(f"outbox row lacks {', '.join(missing)}: {dict(row)!r}")
            params.append(
                {
                    **{k: row[k] for k in _REQUIRED},
                    "lead": row.get("lead") or "",
                    "seq": row.get("seq", 0),
                    "status": row.get("status", "pending"),
                    "attempts": 0,
                    "next_attempt_at": row.get("next_attempt_at") or row["created_at"],
                    "updated_at": row["created_at"],
                    "late": bool(row.get("late", False)),
                }
            )
        statement = self._insert(outbox).on_conflict_do_nothing()
        if self._conn.dialect.insert_executemany_returning:
            # Counting the returned ids is exact on every driver; executemany rowcounts are not.
            return len(self._run("enqueue notices", statement.returning(outbox.c.id), params).all())
        return self._run("enqueue notices", statement, params).rowcount

    def supersede(self, window: str, occurrence: datetime, kind: str, now: datetime, tenant: str | None = None) -> int:
        """Stop notices of one kind whose send has not begun (e.g. at the window's start).

        Only ``pending`` rows: a claimed (``sending``) row may be on the wire already, so it
        finishes and is recorded as what it was (SPEC 4.1); the outbox itself drops one it
        claimed but had not begun to send once the start has passed.
        """
        conditions = [
            occurrence_is(outbox, window, occurrence),
            outbox.c.kind == kind,
            outbox.c.status == "pending",
        ]
        if tenant is not None:
            conditions.append(outbox.c.tenant == tenant)
        values = dict(status="superseded", updated_at=now, claimed_by=None, claimed_until=None)
        return self._run("supersede notices", outbox.update().where(*conditions).values(**values)).rowcount

    def claim_batch(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int,
        lease: timedelta,
        busy: Collection[tuple[str, str]] = (),
        per_endpoint: int = 1,
    ) -> list[dict]:
        """Claim up to ``limit`` due deliveries for ``worker`` until ``now + lease``, in three statements.

        Due: ``pending`` with ``next_attempt_at <= now``, or ``sending`` whose claim ran
        out (a worker that crashed mid-send). Due rows are selected, then taken by ONE
        compare-and-set ``UPDATE`` that repeats the due condition (a row another worker
        took in between no longer matches it), and what this worker now holds --
        ``sending``, its name, this claim's expiry -- is read back. Each claim counts as an
        attempt, so a row that keeps crashing its worker still gives up.

        ``busy``: ``(tenant, channel)`` endpoints with a send in flight; their rows are left
        alone. ``limit`` counts endpoints, each with up to ``per_endpoint`` rows: the caller
        sends one endpoint's rows in order on one slot, so one slow tenant holds one slot.
        """
        due = sa.or_(
            sa.and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now),
            sa.and_(outbox.c.status == "sending", outbox.c.claimed_until < now),
        )
        until = now + lease
        query = sa.select(outbox.c.id, outbox.c.tenant, outbox.c.channel).where(due)
        query = query.order_by(outbox.c.next_attempt_at, outbox.c.id)
        skip = set(busy)
        if self._conn.dialect.name == "postgresql":
            if skip:
                query = query.where(sa.tuple_(outbox.c.tenant, outbox.c.channel).not_in(sorted(skip)))
            # Read more than asked: rows beyond the first of an endpoint are skipped below.
            query = query.limit(limit * per_endpoint).with_for_update(skip_locked=True)  # others skip rows we hold
        # SQLite: busy endpoints are skipped here while the due rows stream in, in order, until
        # enough are taken: a NOT IN of row values costs a comparison per due row and busy
        # endpoint, which made this claim the outbox's bottleneck (benchmarks/notify_bench.py).
        ids: list[int] = []
        taken: dict[tuple[str, str], int] = {}
        result = self._run("claim notices", query)
        for seen, (id, tenant, channel) in enumerate((r for r in result if (r[1], r[2]) not in skip), 1):
            key = (tenant, channel)
            if taken.get(key, 0) < per_endpoint and (key in taken or len(taken) < limit):
                taken[key] = taken.get(key, 0) + 1
                ids.append(id)
            if seen >= limit * per_endpoint:
                break
        result.close()
        if not ids:
            return []
        values = dict(status="sending", claimed_by=worker, claimed_until=until, updated_at=now)
        self._run(
            "claim notices",
            outbox.update().where(outbox.c.id.in_(ids), due).values(attempts=outbox.c.attempts + 1, **values),
        )
        held = (outbox.c.status == "sending", outbox.c.claimed_by == worker, outbox.c.claimed_until == until)
        query = sa.select(outbox).where(outbox.c.id.in_(ids), *held).order_by(outbox.c.next_attempt_at, outbox.c.id)
        return self._rows("claim notices", query)

    def finish_many(self, results: Iterable[tuple[int, Mapping[str, Any]]], *, worker: str | None = None) -> set[int]:
        """Record many delivery results in one transaction: ``(id, values)`` with ``values``
        holding the new ``status`` (``sent``, ``pending`` for a retry, ``failed``,
        ``superseded``), ``updated_at``, and as the status needs ``sent_at``,
        ``next_attempt_at`` and ``last_error``.

        Each row moves only from ``sending`` (and, given ``worker``, only if that worker
        still holds the claim); the claim is cleared, ``sent_at`` and ``next_attempt_at``
        keep their value when not given, ``last_error`` is set to what is given (None
        clears it). Returns the ids that moved. One transaction and one prepared statement
        per batch is what lets many senders share SQLite's single writer.
        """
        params = [_result_params(id, values) for id, values in results]
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
        ids = [p["b_id"] for p in params]
        mine: set[int] = set()
        for chunk in range(0, len(ids), 500):  # under every driver's bound-parameter limit
            query = sa.select(outbox.c.id).where(outbox.c.id.in_(ids[chunk : chunk + 500]), *held)
            mine |= set(self._run("record notice results", query).scalars())
        todo = [p for p in params if p["b_id"] in mine]
        if todo:
            self._run("record notice results", statement, todo)
        return mine

    def extend_claims(self, ids: Collection[int], *, worker: str, until: datetime) -> int:
        """Hold ``worker``'s claims on ``ids`` (sends still in flight) until ``until``."""
        if not ids:
            return 0
        held = (outbox.c.status == "sending", outbox.c.claimed_by == worker)
        statement = outbox.update().where(outbox.c.id.in_(sorted(ids)), *held).values(claimed_until=until)
        return self._run("extend notice claims", statement).rowcount

    def orphaned_claims(self, *, alive: Collection[str]) -> list[dict]:
        """Rows claimed (``sending``) by a worker not in ``alive``: an instance that died mid-send."""
        c = outbox.c
        query = sa.select(outbox).where(c.status == "sending", c.claimed_by.is_not(None))
        if alive:
            query = query.where(c.claimed_by.not_in(sorted(alive)))
        return self._rows("read orphaned claims", query.order_by(c.id))

    def release_claims(self, ids: Collection[int], *, worker: str | None, now: datetime) -> int:
        """Put claimed rows of ``worker`` (None: of whoever holds them) back to ``pending``, due now."""
        if not ids:
            return 0
        held = [outbox.c.status == "sending"]
        if worker is not None:
            held.append(outbox.c.claimed_by == worker)
        values = dict(status="pending", next_attempt_at=now, updated_at=now, claimed_by=None, claimed_until=None)
        statement = outbox.update().where(outbox.c.id.in_(sorted(ids)), *held).values(**values)
        return self._run("release notice claims", statement).rowcount

    def resend(self, now: datetime, *, notice_id: str | None = None, all_failed: bool = False) -> list[dict]:
        """Failed deliveries back to ``pending`` with a fresh schedule (SPEC 4.1): no attempts
        yet, due now, and their age counted from now (``created_at``), the notice id kept.

        ``notice_id`` matches the notice id (all its channels) or, if all digits, a delivery
        row id. Returns the rows put back (``id, notice_id, tenant, channel``).
        """
        c = outbox.c
        if notice_id is not None:
            which = c.notice_id == notice_id
            if notice_id.isdigit():
                which = sa.or_(which, c.id == int(notice_id))
        elif not all_failed:
            raise ValueError("resend needs a notice id or all_failed")
        query = sa.select(c.id, c.notice_id, c.tenant, c.channel).where(c.status == "failed")
        if notice_id is not None:
            query = query.where(which)
        rows = self._rows("read failed notices", query.order_by(c.id))
        if rows:
            values = dict(
                status="pending", attempts=0, next_attempt_at=now, created_at=now, updated_at=now, last_error=None
            )
            ids = [r["id"] for r in rows]
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                self._run(
                    "resend notices", outbox.update().where(c.id.in_(part), c.status == "failed").values(**values)
                )
        return rows

    # reads -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Deliveries by state for ``status``: ``pending`` includes those being sent;
        ``superseded`` (never sent: the window started first, or later news replaced it)."""
        # The provider's ops room (tenant "@ops", runtime.ops) is not a tenant delivery (SPEC 4.2).
        query = sa.select(outbox.c.status, sa.func.count()).where(outbox.c.tenant != "@ops").group_by(outbox.c.status)
        by_status = {status: n for status, n in self._run("count notices", query).all()}
        return {
            "sent": by_status.get("sent", 0),
            "pending": by_status.get("pending", 0) + by_status.get("sending", 0),
            "failed": by_status.get("failed", 0),
            "superseded": by_status.get("superseded", 0),
        }

    def listing(
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
        return self._rows("read notices", query)

    def was_notified(self, window: str, occurrence: datetime, *, include_dry_run: bool = False) -> set[str]:
        """Tenants with a live ``scheduled`` notice for the occurrence: they get cancellations.

        Superseded and failed rows do not count. Dry-run rows count only when asked: a
        tenant "told" by a dry run was never told.
        """
        statuses = ["pending", "sending", "sent"] + (["dry-run"] if include_dry_run else [])
        live = (occurrence_is(outbox, window, occurrence), outbox.c.kind == "scheduled", outbox.c.status.in_(statuses))
        return set(self._run("read notified tenants", sa.select(outbox.c.tenant).distinct().where(*live)).scalars())

    def sent_leads(self, since: datetime) -> set[tuple[str, datetime, str]]:
        """``(window, occurrence, lead)`` of scheduled notices already enqueued for occurrences
        from ``since`` on: the planner does not enqueue the same lead twice."""
        query = (
            sa.select(outbox.c.window, outbox.c.occurrence, outbox.c.lead)
            .distinct()
            .where(outbox.c.kind == "scheduled", outbox.c.occurrence >= since)
        )
        return {(w, o, lead) for w, o, lead in self._run("read sent leads", query)}

    def changes_after(self, windows: Iterable[str], after_id: int) -> list[dict]:
        """``rescheduled`` and ``cancelled`` deliveries of ``windows`` enqueued after outbox row
        ``after_id``, oldest first (``id, notice_id, window, occurrence, tenant, kind``).

        The outbox worker reads them once per claimed batch: a claimed ``scheduled`` or
        ``rescheduled`` notice with a later change for its tenant is out of date.
        """
        names = sorted(set(windows))
        if not names:
            return []
        c = outbox.c
        query = (
            sa.select(c.id, c.notice_id, c.window, c.occurrence, c.tenant, c.kind)
            .where(c.window.in_(names), c.id > after_id, c.kind.in_(("rescheduled", "cancelled")))
            .order_by(c.id)
        )
        return self._rows("read changed notices", query)


def _result_params(id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    if set(values) - _RESULT_FIELDS or values.get("status") not in _RESULT_STATUSES or "updated_at" not in values:
        raise ValueError(f"not a delivery result: {dict(values)!r}")
    return {
        "b_id": id,
        "b_status": values["status"],
        "b_sent_at": values.get("sent_at"),
        "b_next": values.get("next_attempt_at"),
        "b_error": values.get("last_error"),
        "b_updated": values["updated_at"],
    }
