"""The effects aggregate: durable runs of what a transition sets off (hooks now; later
integration actions), each planned once per (window, occurrence, event) and claimed
with a compare-and-set so two instances or ticks never run it twice at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .base import Repository, occurrence_is
from .schema import hook_runs

__all__ = ["Effects"]


class Effects(Repository):
    def add_hook_run(self, window: str, occurrence: datetime, event: str, *, now: datetime) -> bool:
        """Plan the hook of one occurrence event, once: False if it was planned before."""
        values = dict(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
        statement = self._insert(hook_runs).values(window=window, occurrence=occurrence, event=event, **values)
        return self._run("plan a hook run", statement.on_conflict_do_nothing()).rowcount == 1

    def claim_hook(self, window: str, occurrence: datetime, event: str, now: datetime) -> bool:
        """``pending`` and due -> ``running``; False if another instance or tick got it first."""
        due = (hook_runs.c.event == event, hook_runs.c.status == "pending", hook_runs.c.next_attempt_at <= now)
        statement = (
            hook_runs.update()
            .where(occurrence_is(hook_runs, window, occurrence), *due)
            .values(status="running", attempts=hook_runs.c.attempts + 1, updated_at=now)
        )
        return self._run("claim a hook run", statement).rowcount == 1

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
        running = (
            occurrence_is(hook_runs, window, occurrence),
            hook_runs.c.event == event,
            hook_runs.c.status == "running",
        )
        return self._run("record a hook result", hook_runs.update().where(*running).values(**values)).rowcount == 1

    def reset_running_hooks(self, now: datetime) -> int:
        """Hook runs left ``running`` by a crashed instance go back to ``pending``."""
        statement = (
            hook_runs.update()
            .where(hook_runs.c.status == "running")
            .values(status="pending", next_attempt_at=now, updated_at=now)
        )
        return self._run("reset hook runs", statement).rowcount

    def hook_runs(self, status: str | None = None) -> list[dict]:
        c = hook_runs.c
        query = sa.select(hook_runs).order_by(c.next_attempt_at, c.window, c.occurrence, c.event)
        if status is not None:
            query = query.where(c.status == status)
        return self._rows("read hook runs", query)
