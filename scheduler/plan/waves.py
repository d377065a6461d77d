"""Windows split into waves (SPEC 8) and tenants' deferrals (SPEC 9), as planning sees them.

:func:`split` turns the windows that have ``waves`` (or stored deferrals) into
:class:`~.records.Active` items: one per wave, whose ``window.tenants`` are the wave's
tenants and whose occurrence key is the wave's start, so notices, periods, gating, hooks
and calendars treat each wave as an occurrence of its own. Membership comes from
:func:`scheduler.waves.assign` over the stored one (``journal.wave_members``); a halted
occurrence keeps its waves up to the failed one, and the later ones come back only when
resumed. Intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from .. import recurrence
from ..model import Config, Occurrence, Window
from ..waves import Wave, apply_deferrals, assign, halted_reason, halted_waves, resume, waves_of
from .records import Active, Journal, is_wave_anchor


def splits(window: Window, journal: Journal) -> bool:
    """Whether ``window`` is planned here rather than as one plain occurrence."""
    return window.waves is not None or (window.defer is not None and any(k[0] == window.id for k in journal.deferrals))


def membership(config: Config, journal: Journal, window: Window) -> dict[str, int]:
    """The wave of every tenant ``window`` affects: the stored ones keep theirs, new ones join the last."""
    if window.waves is None:
        return {}
    tenants = [config.tenants[t] for t in sorted(window.tenants) if t in config.tenants]
    return assign(tenants, window.waves, journal.wave_members.get(window.id, {}))


def memberships(config: Config, journal: Journal) -> dict[str, dict[str, int]]:
    """:func:`membership` of every window with waves (what the daemon stores)."""
    return {w.id: membership(config, journal, w) for w in config.windows if w.waves is not None and not w.cancelled}


def waves_at(config: Config, journal: Journal, window: Window, base: Occurrence) -> list[Wave]:
    """The waves of the occurrence ``base`` of ``window`` as they run: deferrals applied,
    halted ones left out (or planned again from their resume instant)."""
    spec = window.waves
    if spec is None:
        return []
    waves = waves_of(window, base.start, base.end, membership(config, journal, window), spec)
    moved = journal.deferrals.get((window.id, base.key))
    if moved:
        waves = apply_deferrals(waves, moved, every=spec.every)
    halt = journal.wave_halts.get((window.id, base.key))
    if halt is not None:
        running, cancelled = halted_waves(waves, halt.after)
        waves = running + (resume(cancelled, halt.resume_at, spec.every) if halt.resume_at else [])
    return waves


def split(
    config: Config, journal: Journal, windows: Iterable[Window], frm: datetime, to: datetime, include_cancelled: bool
) -> list[Active]:
    """The waves (or the occurrences less their deferred tenants) of ``windows`` intersecting ``[frm, to)``."""
    out: list[Active] = []
    for w in windows:
        if w.cancelled and not include_cancelled:
            continue
        for base in recurrence.occurrences(w, frm - _reach(config, journal, w), to):
            out += _items(config, journal, w, base, frm, to)
    return out


def _reach(config: Config, journal: Journal, w: Window) -> timedelta:
    """How long before ``frm`` an occurrence may start and still have a wave in range."""
    reach = timedelta(days=2) if journal.overrides else timedelta(0)
    if w.waves is not None:
        top = max(membership(config, journal, w).values(), default=1)
        reach += (top - 1) * w.waves.every
        resumed = [h.resume_at - base for (wid, base), h in journal.wave_halts.items() if wid == w.id and h.resume_at]
        reach += max(resumed, default=timedelta(0))
    return reach


def _items(config: Config, journal: Journal, w: Window, base: Occurrence, frm: datetime, to: datetime) -> list[Active]:
    if w.waves is None:  # a window without waves: deferred tenants skip this occurrence
        moved = journal.deferrals.get((w.id, base.key), {})
        occ = _overridden(journal, w, base)
        items = (
            [Active(window=replace(w, tenants=w.tenants - set(moved)), occ=occ)]
            if moved
            else [Active(window=w, occ=occ)]
        )
        return [a for a in items if a.occ.end > frm and a.occ.start < to and a.occ.end > a.occ.start]
    out = []
    for wave in waves_at(config, journal, w, base):
        occ = _overridden(journal, w, wave.as_occurrence())
        if occ.end > frm and occ.start < to and occ.end > occ.start:
            out.append(
                Active(window=replace(w, tenants=frozenset(wave.tenants)), occ=occ, wave=wave.number, base=base.key)
            )
    return out


def _overridden(journal: Journal, w: Window, o: Occurrence) -> Occurrence:
    new_end = journal.overrides.get((w.id, o.key))
    return o if new_end is None else replace(o, end=max(new_end, o.start))


def wave_numbers(items: Sequence[Active]) -> dict[tuple[str, datetime], int]:
    """(window, occurrence key) -> wave number, for what shows the wave (``plan``, status)."""
    return {(a.window.id, a.occ.key): a.wave for a in items if a.wave is not None}


def halt_reason(journal: Journal, w: Window | None, key: datetime) -> str | None:
    """Why the wave first planned to start at ``key`` is gone, when a halt cancelled it: the
    tenant-facing reason of its ``cancelled`` (SPEC 8), else None.

    A wave's first key is ``base + (n - 1) * every``; n must lie past the halted one and
    within the waves the stored membership holds (a recurring window's next occurrence is
    not one of this one's waves).
    """
    if w is None or w.waves is None or w.waves.every <= timedelta(0):
        return None
    top = max(journal.wave_members.get(w.id, {}).values(), default=0)
    for (wid, base), h in journal.wave_halts.items():
        if wid != w.id or key < base:
            continue
        steps, rest = divmod(key - base, w.waves.every)
        if not rest and h.after < steps + 1 <= max(top, h.after + 1):
            return halted_reason(h.after)
    return None


def beyond(config: Config, journal: Journal, horizon: datetime, planned: set[tuple[str, int]]) -> list[Active]:
    """The waves starting at or after ``horizon`` of one-off windows whose waves were
    announced and are not in ``planned`` (window, wave) yet: followed however far the
    window's start moves, so they are rescheduled rather than withdrawn (as a one-off
    window without waves is)."""
    out: list[Active] = []
    told = {wid for (wid, anc), ann in journal.announced.items() if is_wave_anchor(anc) and ann.status == "scheduled"}
    for w in config.windows:
        if w.id not in told or w.recurring or w.cancelled or w.waves is None or w.start is None:
            continue
        base = next(iter(recurrence.occurrences(w, w.start, w.start + timedelta(seconds=1))), None)
        if base is None:
            continue
        for a in _items(config, journal, w, base, horizon, datetime.max.replace(tzinfo=horizon.tzinfo)):
            if a.occ.start >= horizon and (w.id, a.wave) not in planned:
                out.append(a)
    return out
