"""Guardrails of SPEC section 7: change freezes, tenant blackouts, redundant resources.

Pure (no clock, disk or network). Instants are aware UTC; intervals are half-open,
``[start, end)``: ending exactly when a freeze starts is not overlapping it.

- freeze: a one-off window inside one is a validation error unless it has
  ``override_freeze``; a recurring window's occurrences inside one are skipped (unless
  it has ``override_freeze`` too).
- blackout: an occurrence meeting a tenant's blackout is a warning; ``blackouts: skip``
  also leaves that tenant out of that occurrence.
- redundancy: windows overlapping in time on two different resources of one
  ``provider.redundant`` group (or one window naming two) conflict: an error if all are
  one-off, else a warning. A window without ``resources`` gates whole tenants, names no
  resource, and so takes no part.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.model import UTC, Blackout, Freeze, Occurrence, Tenant, Window, isoz
from scheduler.recurrence import cron_intervals, occurrences

_TICK = timedelta(microseconds=1)  # an interval's last instant is end - _TICK
KINDS = ("freeze", "blackout", "redundancy")  # also the order of kinds among equal starts
_KIND_RANK = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """One guardrail hit on one occurrence (``start``/``end``) of ``window``.

    ``other`` names what it hits: a freeze id, a blackout position (``blackouts[0]``, of
    ``tenant``) or the other window's id; ``other_start``/``other_end`` is that thing's
    interval. ``skipped`` says the occurrence (freeze) or the tenant (blackout, ``skip``)
    is left out of the plan because of it.
    """

    kind: str  # "freeze" | "blackout" | "redundancy"
    severity: str  # "error" | "warning"
    window: str
    occurrence: datetime  # the occurrence key (UTC)
    start: datetime
    end: datetime
    tenant: str | None = None
    other: str | None = None
    other_start: datetime | None = None
    other_end: datetime | None = None
    resources: tuple[str, ...] = ()
    skipped: bool = False
    line: int = 0
    other_line: int = 0
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The wire form of ``maintd conflicts --json``: every field above, in that order, always."""
        return {f.name: _wire(getattr(self, f.name)) for f in fields(self)}


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoz(value)
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, kw_only=True)
class Guardrails:
    """What the rules need besides windows and tenants. ``overrides``: window id ->
    ``override_freeze`` reason; ``modes``: window id -> ``"warn"`` (default) | ``"skip"``."""

    freezes: tuple[Freeze, ...] = ()
    blackouts: Mapping[str, Sequence[Blackout]] = field(default_factory=dict)  # by tenant id
    redundant: tuple[frozenset[str], ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)
    modes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Any) -> Guardrails:
        """From ``config.freezes``, ``provider.redundant``, ``tenant.blackouts``,
        ``window.override_freeze`` and ``window.blackouts``; a missing field is empty."""
        tenants = getattr(config, "tenants", {}) or {}
        return cls(
            freezes=tuple(getattr(config, "freezes", ()) or ()),
            blackouts={t.id: tuple(b) for t in tenants.values() if (b := getattr(t, "blackouts", ()))},
            redundant=tuple(frozenset(g) for g in getattr(getattr(config, "provider", None), "redundant", ()) or ()),
            overrides={w.id: r for w in config.windows if (r := getattr(w, "override_freeze", None))},
            modes={w.id: m for w in config.windows if (m := getattr(w, "blackouts", None)) in ("warn", "skip")},
        )


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def _local(ts: datetime, zone: ZoneInfo) -> str:
    return ts.astimezone(zone).strftime("%Y-%m-%d %H:%M")


@lru_cache(maxsize=4096)  # blackouts sharing a cron and zone repeat the same span in many messages
def _span(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    return f"{_local(start, zone)} - {_local(end, zone)} {zone.key}"


def _freeze_text(freeze: Freeze) -> str:
    reason = f": {freeze.reason}" if freeze.reason else ""
    return f'freeze "{freeze.id}" ({_span(freeze.start, freeze.end, freeze.zone)}{reason})'


# ---------------------------------------------------------------- freezes


def freeze_for(start: datetime, end: datetime, freezes: Iterable[Freeze]) -> Freeze | None:
    """The earliest freeze overlapping ``[start, end)``, or None (touching is not overlapping)."""
    hits = [f for f in freezes if _overlaps(start, end, f.start, f.end)]
    return min(hits, key=lambda f: (f.start, f.id)) if hits else None


def skipped_by_freeze(
    window: Window, occs: Iterable[Occurrence], freezes: Sequence[Freeze], override: str | None = None
) -> tuple[list[Occurrence], list[tuple[Occurrence, Freeze]]]:
    """Split a window's occurrences into those kept and those skipped by a freeze.

    Only a recurring window without ``override`` (its ``override_freeze``) loses
    occurrences; a one-off window's overlap is a validation error instead
    (:func:`oneoff_freeze_errors`), so it is kept here.
    """
    kept: list[Occurrence] = []
    skipped: list[tuple[Occurrence, Freeze]] = []
    for occ in occs:
        hit = freeze_for(occ.start, occ.end, freezes) if window.recurring and not override else None
        if hit is None:
            kept.append(occ)
        else:
            skipped.append((occ, hit))
    return kept, skipped


def oneoff_freeze_errors(
    windows: Iterable[Window], freezes: Sequence[Freeze], override: Mapping[str, str | None]
) -> list[tuple[int, int | None, str]]:
    """``(line, column, message)`` for each one-off window overlapping a freeze without an override.

    Cancelled windows never run, so they cannot break a freeze. The column is None: a
    window record knows only its line.
    """
    errors: list[tuple[int, int | None, str]] = []
    for w in windows:
        if w.recurring or w.cancelled or w.start is None or override.get(w.id):
            continue
        # A one-off's single occurrence, with its end worked out the one way recurrence does.
        for occ in occurrences(w, w.start, w.start + timedelta(seconds=1)):
            hit = freeze_for(occ.start, occ.end, freezes)
            if hit is not None:
                errors.append((w.line, None, _oneoff_freeze_message(w, hit)))
    return errors


def _oneoff_freeze_message(window: Window, freeze: Freeze) -> str:
    return f'window "{window.id}" overlaps {_freeze_text(freeze)}; move it or add override_freeze: REASON'


def _freeze_conflicts(window: Window, occs: list[Occurrence], g: Guardrails) -> tuple[list[Occurrence], list[Conflict]]:
    override = g.overrides.get(window.id)
    kept, skipped = skipped_by_freeze(window, occs, g.freezes, override)
    rows = [(occ, fz, True) for occ, fz in skipped]
    if not window.recurring and not override:
        rows += [(occ, fz, False) for occ in kept if (fz := freeze_for(occ.start, occ.end, g.freezes))]
    found = []
    for occ, fz, skip in rows:
        where = f'occurrence {_local(occ.start, window.zone)} {window.zone.key} of window "{window.id}"'
        text = f"{where} is skipped: inside {_freeze_text(fz)}" if skip else _oneoff_freeze_message(window, fz)
        found.append(
            Conflict(
                **_on(window, occ),
                kind="freeze",
                severity="warning" if skip else "error",
                other=fz.id,
                other_start=fz.start,
                other_end=fz.end,
                other_line=fz.line,
                skipped=skip,
                message=text,
            )
        )
    return kept, found


def _on(window: Window, occ: Occurrence) -> dict[str, Any]:  # a Conflict's fields from its occurrence
    return {"window": window.id, "occurrence": occ.key, "start": occ.start, "end": occ.end, "line": window.line}


# ---------------------------------------------------------------- blackouts


def blackout_intervals(blackout: Blackout, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` (UTC) of ``blackout`` that intersect ``[frm, to)``, ascending."""
    if blackout.cron is not None:
        if blackout.duration is None:
            raise ValueError(f"blackout {blackout.label} of tenant {blackout.tenant!r} has a cron but no duration")
        return cron_intervals(blackout.cron, blackout.duration, blackout.zone, frm, to)
    if blackout.start is None:
        raise ValueError(f"blackout {blackout.label} of tenant {blackout.tenant!r} has neither a start nor a cron")
    end = blackout.end if blackout.end is not None else blackout.start + (blackout.duration or timedelta(0))
    return [(blackout.start, end)] if _overlaps(blackout.start, end, frm, to) else []


class BlackoutIndex:
    """Every blackout interval meeting ``[frm, to)``, filed by UTC day: build it once per
    plan or conflicts run, and :meth:`hits` costs the blackouts of the days it touches, not
    tenants x blackouts. Tenants sharing a cron, duration and zone are expanded once."""

    def __init__(self, blackouts: Mapping[str, Sequence[Blackout]], frm: datetime, to: datetime) -> None:
        self.frm, self.to = frm, to
        # Rows are (start, end, first UTC day, blackout), filed under every day they touch.
        self._days: dict[int, list[tuple[datetime, datetime, int, Blackout]]] = {}
        memo: dict[object, list[tuple[datetime, datetime]]] = {}
        for items in blackouts.values():
            for b in items:
                key = (b.cron, b.duration, b.zone) if b.cron is not None else b
                if key not in memo:
                    memo[key] = blackout_intervals(b, frm, to)
                for start, end in memo[key]:
                    first = _day(start)
                    for day in range(first, _day(end - _TICK) + 1):
                        self._days.setdefault(day, []).append((start, end, first, b))
        for rows in self._days.values():
            rows.sort(key=lambda r: (r[0], r[3].tenant, r[3].index))

    def hits(
        self, start: datetime, end: datetime, tenants: Collection[str] | None = None
    ) -> list[tuple[Blackout, datetime, datetime]]:
        """Blackout intervals overlapping ``[start, end)`` (of ``tenants`` when given), each once."""
        if start < self.frm or end > self.to:
            raise ValueError(f"[{isoz(start)}, {isoz(end)}) is outside the index [{isoz(self.frm)}, {isoz(self.to)})")
        first = _day(start)
        found = []
        for day in range(first, _day(end - _TICK) + 1):
            for b_start, b_end, b_first, b in self._days.get(day, ()):
                # A row spanning several days is filed under each: take it only on the
                # first of them that this lookup visits.
                if (b_first if b_first > first else first) != day or not (b_start < end and start < b_end):
                    continue
                if tenants is None or b.tenant in tenants:
                    found.append((b, b_start, b_end))
        return found


def _day(ts: datetime) -> int:
    return (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).toordinal()


# What lookups accept: an index built once (fast) or the blackouts by tenant id.
BlackoutsLike = BlackoutIndex | Mapping[str, Sequence[Blackout]]


def blackout_tenants(occurrence: Occurrence, tenants: Collection[str], blackouts: BlackoutsLike) -> frozenset[str]:
    """Tenants among ``tenants`` whose blackout ``occurrence`` overlaps (whatever the mode)."""
    index = blackouts
    if not isinstance(index, BlackoutIndex):
        index = BlackoutIndex(index, occurrence.start, occurrence.end)
    return frozenset(b.tenant for b, _, _ in index.hits(occurrence.start, occurrence.end, tenants))


def tenants_excluded(
    window: Window,
    occurrence: Occurrence,
    tenants: Collection[str],
    blackouts: BlackoutsLike,
    mode: str | None = None,
) -> frozenset[str]:
    """Tenants to leave out of ``occurrence``: those in a blackout when the mode is ``skip``.

    ``mode`` defaults to ``window.blackouts`` (``warn`` when absent). With ``warn`` nobody
    is left out; :func:`blackout_tenants` then tells whose events to mark.
    """
    if (mode or getattr(window, "blackouts", None) or "warn") != "skip":
        return frozenset()
    return blackout_tenants(occurrence, tenants, blackouts)


def blackout_conflicts(
    occurrences_by_window: Mapping[Window, Sequence[Occurrence]],
    tenants: Mapping[str, Tenant],
    blackouts: BlackoutsLike,
    frm: datetime,
    to: datetime,
    modes: Mapping[str, str] | None = None,
) -> list[Conflict]:
    """A warning per (occurrence, tenant of its window, blackout interval) that overlap.

    Blackouts of tenants not in ``tenants`` are ignored. ``modes`` (window id -> warn |
    skip) sets ``skipped``; the index, when given, must cover every occurrence.
    """
    modes = modes or {}
    if not isinstance(blackouts, BlackoutIndex):
        spans = [o for occs in occurrences_by_window.values() for o in occs]
        lo = min([frm, *(o.start for o in spans)])
        hi = max([to, *(o.end for o in spans)])
        blackouts = BlackoutIndex({t: b for t, b in blackouts.items() if t in tenants}, lo, hi)
    found = []
    for window, occs in occurrences_by_window.items():
        skip = (modes.get(window.id) or getattr(window, "blackouts", None)) == "skip"
        for occ in occs:
            where = f'occurrence {_local(occ.start, window.zone)} {window.zone.key} of window "{window.id}"'
            for b, b_start, b_end in blackouts.hits(occ.start, occ.end, window.tenants):
                if b.tenant not in tenants:
                    continue
                text = f'{where} overlaps {b.label} of tenant "{b.tenant}" ({_span(b_start, b_end, b.zone)})'
                found.append(
                    Conflict(
                        **_on(window, occ),
                        kind="blackout",
                        severity="warning",
                        tenant=b.tenant,
                        other=b.label,
                        other_start=b_start,
                        other_end=b_end,
                        skipped=skip,
                        other_line=b.line,
                        message=text + ("; the tenant is left out (blackouts: skip)" if skip else ""),
                    )
                )
    return found


# ---------------------------------------------------------------- redundancy


def redundancy_conflicts(
    windows_occurrences: Mapping[Window, Sequence[Occurrence]], redundant_groups: Iterable[Collection[str]]
) -> list[Conflict]:
    """Occurrences overlapping in time on two different resources of one redundant group.

    Per group: sort the occurrences touching it by start and sweep, keeping only those
    still running. Two occurrences of the same window are never paired (it cannot be in
    maintenance twice); one occurrence naming two resources of a group conflicts alone.
    """
    found = []
    for group in redundant_groups:
        members = frozenset(group)
        rows = []
        for window, occs in windows_occurrences.items():
            touched = (window.resources or frozenset()) & members
            if touched:
                rows += [(occ, window, touched) for occ in occs]
        rows.sort(key=lambda r: (r[0].start, r[1].id, r[0].key))
        running: list[tuple[Occurrence, Window, frozenset[str]]] = []
        for row in rows:
            occ, window, touched = row
            running = [r for r in running if r[0].end > occ.start]
            if len(touched) > 1:
                found.append(_redundancy_conflict(row, None))
            for earlier in running:
                if earlier[1].id != window.id and not (earlier[2] == touched and len(touched) == 1):
                    found.append(_redundancy_conflict(earlier, row))
            running.append(row)
    return found


def _redundancy_conflict(row: tuple[Occurrence, Window, frozenset[str]], other: tuple | None) -> Conflict:
    occ, window, touched = row
    severity = "warning" if window.recurring or (other is not None and other[1].recurring) else "error"
    if other is None:
        resources = tuple(sorted(touched))
        text = f'window "{window.id}" takes redundant resources {", ".join(resources)} down together'
    else:
        resources = tuple(sorted(touched | other[2]))
        text = f'windows "{window.id}" and "{other[1].id}" overlap on redundant resources {", ".join(resources)}'
    start, end = (occ.start, occ.end) if other is None else (max(occ.start, other[0].start), min(occ.end, other[0].end))
    return Conflict(
        **_on(window, occ),
        kind="redundancy",
        severity=severity,
        other=None if other is None else other[1].id,
        other_start=None if other is None else other[0].start,
        other_end=None if other is None else other[0].end,
        resources=resources,
        other_line=0 if other is None else other[1].line,
        message=f"{text} ({_span(start, end, window.zone)})",
    )


# ---------------------------------------------------------------- all together


def sort_conflicts(found: Iterable[Conflict]) -> list[Conflict]:
    """By start, then kind (freeze, blackout, redundancy), then names: a stable listing."""
    return sorted(found, key=lambda c: (c.start, _KIND_RANK[c.kind], c.window, c.tenant or "", c.other or ""))


def conflicts(config: Any, frm: datetime, to: datetime, guardrails: Guardrails | None = None) -> list[Conflict]:
    """Every conflict of occurrences meeting ``[frm, to)``: freezes, blackouts, redundancy.

    ``config`` needs ``windows`` and ``tenants`` (a :class:`scheduler.model.Config`);
    ``guardrails`` defaults to :meth:`Guardrails.of` it. Cancelled windows never run and
    are left out; occurrences a freeze skips take no part in the other two checks.
    """
    g = guardrails if guardrails is not None else Guardrails.of(config)
    kept: dict[Window, list[Occurrence]] = {}
    found: list[Conflict] = []
    for window in config.windows:
        if window.cancelled:
            continue
        kept[window], hits = _freeze_conflicts(window, occurrences(window, frm, to), g)
        found += hits
    found += blackout_conflicts(kept, config.tenants, g.blackouts, frm, to, g.modes)
    found += redundancy_conflicts(kept, g.redundant)
    return sort_conflicts(found)
