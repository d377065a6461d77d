"""The journal aggregate: history entries, occurrence starts and ends, announcements,
overrides, manual windows, remembered instants and the instances list.

"Never twice" lives in the schema: primary keys make a repeated ``record_event`` or
``add_manual`` a no-op, so a restart or a second instance cannot duplicate a transition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..model import isoz
from .base import Repository, occurrence_is
from .schema import announcements, aware, instances, journal, leases, manual, meta, occurrence_events, overrides

__all__ = ["Journal"]


class Journal(Repository):
    """``tx.journal(kind, at=...)`` appends an entry; the methods read and record the rest."""

    def __call__(
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
        statement = journal.insert().values(
            at=at, kind=kind, window=window, occurrence=occurrence, actor=actor, message=message, detail=detail
        )
        inserted = self._run("write the journal", statement).inserted_primary_key
        assert inserted is not None  # an INSERT of one row always has one
        return int(inserted[0])

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
        rows = self._rows("read the history", query)
        for row in rows:
            row["at"] = isoz(row["at"])
            row["occurrence"] = isoz(row["occurrence"])
        return rows

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
        values = dict(at=at, recorded_at=recorded_at, late=late, detail=detail)
        statement = self._insert(occurrence_events).values(window=window, occurrence=occurrence, event=event, **values)
        return self._run("record an occurrence event", statement.on_conflict_do_nothing()).rowcount == 1

    def events(self, since: datetime | None = None) -> dict[tuple[str, datetime, str], dict]:
        """Recorded starts and ends keyed by (window, occurrence, event); ``since`` filters on ``at``."""
        query = sa.select(occurrence_events)
        if since is not None:
            query = query.where(occurrence_events.c.at >= since)
        rows = self._rows("read occurrence events", query)
        return {(r["window"], r["occurrence"], r["event"]): r for r in rows}

    def open_occurrences(self) -> list[dict]:
        """Start events without an end: occurrences maintd entered and has not left."""
        started, ended = occurrence_events, occurrence_events.alias("ended")
        same = sa.and_(ended.c.window == started.c.window, ended.c.occurrence == started.c.occurrence)
        query = (
            sa.select(started)
            .outerjoin(ended, sa.and_(same, ended.c.event == "end"))
            .where(started.c.event == "start", ended.c.window.is_(None))
            .order_by(started.c.at, started.c.window)
        )
        return self._rows("read open occurrences", query)

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
        values = dict(start=start, end=end, title=title, sequence=sequence, tenants=sorted(set(tenants)))
        values.update(status=status, updated_at=at, occurrence_key=occurrence_key)
        statement = self._insert(announcements).values(window=window, occurrence=occurrence, **values)
        statement = statement.on_conflict_do_update(index_elements=["window", "occurrence"], set_=values)
        self._run("record an announcement", statement)

    def announcements(self) -> dict[tuple[str, datetime], dict]:
        rows = self._rows("read announcements", sa.select(announcements))
        return {(r["window"], r["occurrence"]): r for r in rows}

    def set_override(
        self, window: str, occurrence: datetime, *, end: datetime, reason: str, at: datetime, actor: str | None = None
    ) -> None:
        """Set the effective end of an occurrence (extend, exit early, failing end check)."""
        values = dict(end=end, reason=reason, at=at, actor=actor)
        statement = self._insert(overrides).values(window=window, occurrence=occurrence, **values)
        statement = statement.on_conflict_do_update(index_elements=["window", "occurrence"], set_=values)
        self._run("record an override", statement)

    def overrides(self) -> dict[tuple[str, datetime], dict]:
        rows = self._rows("read overrides", sa.select(overrides))
        return {(r["window"], r["occurrence"]): r for r in rows}

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
        tenant_list = None if tenants is None else sorted(set(tenants))
        values = dict(reason=reason, start=start, end=end, tenants=tenant_list, policy=policy)
        statement = self._insert(manual).values(id=id, created_at=created_at, actor=actor, **values)
        return self._run("record manual maintenance", statement.on_conflict_do_nothing()).rowcount == 1

    def end_manual(self, id: str, at: datetime) -> bool:
        """End a manual window (``maintd exit``); False if unknown or already ended."""
        statement = manual.update().where(manual.c.id == id, manual.c.ended_at.is_(None)).values(ended_at=at)
        return self._run("end manual maintenance", statement).rowcount == 1

    def manual_windows(self, active_only: bool = True, now: datetime | None = None) -> list[dict]:
        """Manual maintenance, oldest first. Active: not ended and, given ``now``, ``now < end``."""
        query = sa.select(manual).order_by(manual.c.start, manual.c.id)
        if active_only:
            query = query.where(manual.c.ended_at.is_(None))
            if now is not None:
                query = query.where(sa.or_(manual.c.end.is_(None), manual.c.end > now))
        return self._rows("read manual maintenance", query)

    # remembered instants and instances -------------------------------------

    def set_meta_time(self, key: str, value: datetime) -> None:
        """Remember an instant under ``key`` (e.g. ``last_tick``, the catch-up floor)."""
        text = aware(value).isoformat()
        statement = self._insert(meta).values(key=key, value=text)
        self._run("record " + key, statement.on_conflict_do_update(index_elements=["key"], set_={"value": text}))

    def get_meta_time(self, key: str) -> datetime | None:
        value = self._run("read " + key, sa.select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else aware(datetime.fromisoformat(value))

    def register_instance(
        self, id: str, *, listen: str, now: datetime, leader: bool = False, since: datetime | None = None
    ) -> None:
        """Announce this instance (and heartbeat it: call again every tick)."""
        values = dict(listen=listen, heartbeat_at=now, leader=leader, since=since)
        statement = self._insert(instances).values(id=id, started_at=now, **values)
        self._run("register the instance", statement.on_conflict_do_update(index_elements=["id"], set_=values))

    def remove_instance(self, id: str) -> None:
        """A clean stop: the instance leaves the list at once instead of going stale."""
        self._run("remove the instance", instances.delete().where(instances.c.id == id))

    def instances(self) -> list[dict]:
        return self._rows("read instances", sa.select(instances).order_by(instances.c.id))

    # the completed summary ---------------------------------------------------

    def counts(self, window: str, occurrence: datetime) -> dict[str, dict[str, Any]]:
        """Per tenant, what happened to its jobs during one occurrence, from the journal:
        ``{tenant: {"refused": {kind: n}, "drained": n, "stopped": n}}``.

        ``refused``: gate refusals keyed to the occurrence. A drain order counts as
        ``stopped`` when the job was to be stopped (``then: stop``) and did not end by its
        deadline, else as ``drained`` (finished in its grace, or allowed to finish).
        Tenants with nothing to report are absent.
        """
        action = "read the journal of an occurrence"
        query = (
            sa.select(journal.c.kind, journal.c.detail)
            .where(occurrence_is(journal, window, occurrence), journal.c.kind.in_(("refused", "drain")))
            .order_by(journal.c.id)
        )
        rows = self._run(action, query).all()
        lease_ids = sorted({lid for k, d in rows if k == "drain" and (lid := (d or {}).get("lease")) is not None})
        ended = {}
        if lease_ids:
            columns = (leases.c.id, leases.c.status, leases.c.released_at, leases.c.deadline)
            ended = {r.id: r for r in self._run(action, sa.select(*columns).where(leases.c.id.in_(lease_ids)))}
        out: dict[str, dict[str, Any]] = {}
        seen_leases: set[Any] = set()
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
