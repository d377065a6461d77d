"""The integrations aggregate (SPEC 6): one row per (integration, window, occurrence).

The tick writes what is wanted (``phase``: planned, started, finished, exited, cancelled,
and the occurrence's current ``start``/``end``); the worker claims a due row with a
compare-and-set, brings the outside system there, and writes what it did (``done``) and
the integration's own ``state`` (a silence id). A row whose wish equals what was done is
``applied`` (or ``reverted``) and is never run again: nothing is done twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .base import Repository
from .schema import integration_runs

__all__ = ["Integrations", "Key"]

Key = tuple[str, str, datetime]  # (integration, window, anchor)
LIVE = ("planned", "started")
_t = integration_runs
_c = integration_runs.c


def _is(key: Key) -> Any:
    integration, window, anchor = key
    return sa.and_(_c.integration == integration, _c.window == window, _c.anchor == anchor)


class Integrations(Repository):
    def want(
        self,
        key: Key,
        *,
        occurrence: datetime,
        type: str,
        phase: str,
        start: datetime,
        end: datetime,
        due: datetime,
        now: datetime,
        row: dict | None,
    ) -> bool:
        """Record what ``key`` should look like; a change makes the row due at ``due``.

        ``row`` is the row as the caller read it in this transaction (None: there is none).
        Returns whether anything changed.
        """
        wish = dict(phase=phase, start=start, end=end, occurrence=occurrence, type=type)
        again = dict(status="pending", attempts=0, due_at=due, next_at=due, error=None, updated_at=now)
        if row is None:
            integration, window, anchor = key
            values = dict(integration=integration, window=window, anchor=anchor, state={}, **wish, **again)
            return (
                self._run("plan an integration", self._insert(_t).values(**values).on_conflict_do_nothing()).rowcount
                == 1
            )
        if all(row[k] == v for k, v in wish.items()):
            return False
        if row["status"] == "running":  # the worker sees the new wish when it records its result
            return self._run("plan an integration", _t.update().where(_is(key)).values(**wish)).rowcount == 1
        return self._run("plan an integration", _t.update().where(_is(key)).values(**wish, **again)).rowcount == 1

    def rows(self, *, live_only: bool = False, window: str | None = None, since: datetime | None = None) -> list[dict]:
        """Rows by start; ``live_only``: still wanted or still to do; ``since``: ending at or after it."""
        query = sa.select(_t).order_by(_c.start, _c.window, _c.integration)
        if since is not None:
            query = query.where(_c.end >= since)
        if live_only:
            retrying = sa.and_(_c.status == "failed", _c.next_at.is_not(None))
            query = query.where(sa.or_(_c.phase.in_(LIVE), _c.status.in_(("pending", "running")), retrying))
        if window is not None:
            query = query.where(_c.window == window)
        return self._rows("read integration runs", query)

    def due(self, now: datetime, limit: int = 50) -> list[dict]:
        query = (
            sa.select(_t)
            .where(_c.status.in_(("pending", "failed")), _c.next_at.is_not(None), _c.next_at <= now)
            .order_by(_c.next_at)
            .limit(limit)
        )
        return self._rows("read due integration runs", query)

    def claim(self, key: Key, now: datetime) -> dict | None:
        """``pending``/``failed`` and due -> ``running``; the row as claimed, or None if another got it."""
        due = (_c.status.in_(("pending", "failed")), _c.next_at <= now)
        statement = _t.update().where(_is(key), *due).values(status="running", updated_at=now)
        if self._run("claim an integration run", statement).rowcount != 1:
            return None
        found = self._rows("read an integration run", sa.select(_t).where(_is(key)))
        return found[0] if found else None

    def record(
        self,
        key: Key,
        *,
        now: datetime,
        state: dict,
        done: dict | None,
        status: str,
        attempts: int,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        """The result of one run (``running`` -> ``status``); the state first, so it is never lost."""
        values = dict(
            state=state, done=done, status=status, attempts=attempts, error=error, next_at=next_at, updated_at=now
        )
        statement = _t.update().where(_is(key), _c.status == "running").values(**values)
        return self._run("record an integration run", statement).rowcount == 1

    def reset_running(self, now: datetime) -> int:
        """Runs left ``running`` by a crashed instance are due again."""
        statement = _t.update().where(_c.status == "running").values(status="pending", next_at=now, updated_at=now)
        return self._run("reset integration runs", statement).rowcount
