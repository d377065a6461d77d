"""The waves aggregate (SPEC 8 and 9): stored wave membership, halted waves, deferrals.

Membership is written once per tenant and never moved (``INSERT ... ON CONFLICT DO
NOTHING``); a halt is one row per occurrence (its base start), a resume sets its
``resume_at``; a deferral is one row per (window, base, tenant) with how often it moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from .base import Repository
from .schema import deferrals, wave_halts, wave_members

__all__ = ["Waves"]


class Waves(Repository):
    # membership ------------------------------------------------------------

    def store_members(self, window: str, members: Mapping[str, int], *, now: datetime) -> int:
        """Keep the wave of every tenant not stored yet; stored ones never move. Returns rows added."""
        if not members:
            return 0
        rows = [dict(window=window, tenant=t, wave=n, assigned_at=now) for t, n in sorted(members.items())]
        statement = self._insert(wave_members).values(rows).on_conflict_do_nothing()
        return self._run("store wave membership", statement).rowcount

    def members(self) -> dict[str, dict[str, int]]:
        """window -> tenant -> wave."""
        out: dict[str, dict[str, int]] = {}
        for r in self._rows("read wave membership", sa.select(wave_members)):
            out.setdefault(r["window"], {})[r["tenant"]] = r["wave"]
        return out

    # halts -----------------------------------------------------------------

    def halt(self, window: str, base: datetime, *, after: int, reason: str, at: datetime) -> bool:
        """Halt the waves after ``after`` of one occurrence; False when it was halted already."""
        values = dict(window=window, base=base, after=after, reason=reason, at=at)
        statement = self._insert(wave_halts).values(**values).on_conflict_do_nothing()
        return self._run("halt waves", statement).rowcount == 1

    def resume(self, window: str, base: datetime, *, at: datetime) -> bool:
        """Plan the halted waves again from ``at``; False when that occurrence was not halted."""
        c = wave_halts.c
        statement = wave_halts.update().where(c.window == window, c.base == base).values(resume_at=at)
        return self._run("resume waves", statement).rowcount == 1

    def halts(self) -> dict[tuple[str, datetime], dict]:
        """(window, base) -> {after, reason, at, resume_at}."""
        return {(r["window"], r["base"]): r for r in self._rows("read halted waves", sa.select(wave_halts))}

    # deferrals -------------------------------------------------------------

    def defer(
        self,
        window: str,
        base: datetime,
        tenant: str,
        *,
        target_wave: int | None,
        target_base: datetime | None,
        count: int,
        at: datetime,
    ) -> None:
        """Record where ``tenant`` now is for that occurrence and how often it deferred."""
        values = dict(target_wave=target_wave, target_base=target_base, count=count, at=at)
        statement = self._insert(deferrals).values(window=window, base=base, tenant=tenant, **values)
        statement = statement.on_conflict_do_update(index_elements=["window", "base", "tenant"], set_=values)
        self._run("record a deferral", statement)

    def deferrals(self) -> dict[tuple[str, datetime], dict[str, dict]]:
        """(window, base) -> tenant -> {target_wave, target_base, count, at}."""
        out: dict[tuple[str, datetime], dict[str, dict]] = {}
        for r in self._rows("read deferrals", sa.select(deferrals)):
            out.setdefault((r["window"], r["base"]), {})[r["tenant"]] = r
        return out
