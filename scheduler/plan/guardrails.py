"""Guardrails in the plan (SPEC section 7): what freezes and blackouts do to occurrences.

- A recurring occurrence overlapping a freeze is skipped everywhere (no notices, no gating,
  no start; calendars carry it as EXDATE), unless its window has ``override_freeze``. A
  one-off window inside a freeze never loads without ``override_freeze``, so it is kept.
- ``blackouts: skip``: the tenants in a blackout are left out of that occurrence (its
  window record is narrowed to the others for that occurrence only), so no notice, gating
  or period reaches them. ``blackouts: warn``: nobody is left out; :func:`screen` with
  ``marks=True`` tells whose events ``maintd plan`` marks ``"conflict": "blackout"``.

Both look at the occurrence as scheduled (``start`` + the window's duration), not at its
effective end, so an ``extend`` never drops a tenant from a running occurrence.

The rules are compiled once per config (:func:`guard_of`, keyed by the config object: one
per reload) and blackout intervals once per 30-day span, so a tick pays a few set lookups.
Pure: no clock, disk or network. Intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..guardrails import BlackoutIndex, Guardrails, blackout_tenants, freeze_for
from ..model import Config, Freeze, Occurrence, Window
from .records import EPOCH, Active

_SPAN = timedelta(days=30)  # blackout intervals are expanded per span of this length


class PlanGuard:
    """The guardrails of one config, compiled for the plan."""

    def __init__(self, config: Config) -> None:
        self.rules = Guardrails.of(config)
        self.freezes: tuple[Freeze, ...] = self.rules.freezes
        self.blackouts = bool(self.rules.blackouts)
        self.active = bool(self.freezes) or self.blackouts
        self._indexes: OrderedDict[tuple[int, int], BlackoutIndex] = OrderedDict()
        self._lock = threading.Lock()  # guards only the memo of indexes

    def index(self, start: datetime, end: datetime) -> BlackoutIndex:
        """A blackout index covering ``[start, end)``, built once per run of whole spans."""
        first, last = int((start - EPOCH) / _SPAN), int((end - EPOCH) / _SPAN)
        with self._lock:
            found = self._indexes.get((first, last))
            if found is not None:
                self._indexes.move_to_end((first, last))
                return found
        built = BlackoutIndex(self.rules.blackouts, EPOCH + first * _SPAN, EPOCH + (last + 1) * _SPAN)
        with self._lock:
            self._indexes[(first, last)] = built
            while len(self._indexes) > 16:
                self._indexes.popitem(last=False)
        return built

    def freeze_of(self, window: Window, start: datetime, end: datetime) -> Freeze | None:
        """The freeze that skips this occurrence of ``window``, or None."""
        if not self.freezes or not window.recurring or window.override_freeze or window.manual:
            return None
        return freeze_for(start, end, self.freezes)

    def in_blackout(self, window: Window, start: datetime, end: datetime) -> frozenset[str]:
        """Tenants of ``window`` whose blackout meets ``[start, end)`` (whatever the mode)."""
        if not self.blackouts or not window.tenants:
            return frozenset()
        occ = Occurrence(start=start, end=end, window=window.id, key=start)
        return blackout_tenants(occ, window.tenants, self.index(start, end))


_CACHE: OrderedDict[int, tuple[Config, PlanGuard]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def guard_of(config: Config) -> PlanGuard:
    """The compiled guardrails of ``config``; the same object for the same config."""
    with _CACHE_LOCK:
        hit = _CACHE.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
    guard = PlanGuard(config)
    with _CACHE_LOCK:
        _CACHE[id(config)] = (config, guard)
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    return guard


def planned(window: Window, occ: Occurrence) -> tuple[datetime, datetime]:
    """An occurrence as scheduled: its start plus the window's length (not its effective end)."""
    if window.duration is not None:
        return occ.start, occ.start + window.duration
    if not window.recurring and window.start is not None and window.end is not None:
        return occ.start, occ.start + (window.end - window.start)
    return occ.start, occ.end


@dataclass
class Screened:
    """Occurrences after the guardrails: those kept (narrowed by ``blackouts: skip``), those
    skipped (reason ``"freeze <id>"`` for the whole occurrence, or ``"blackout"`` with the
    tenants left out), and, when asked, the tenants a ``warn`` blackout marks."""

    kept: list[Active]
    skipped: list[tuple[Active, str, frozenset[str] | None]] = field(default_factory=list)
    marked: dict[tuple[str, datetime], frozenset[str]] = field(default_factory=dict)


def screen(config: Config, items: Iterable[Active], *, marks: bool = False) -> Screened:
    """Apply freezes and ``blackouts: skip`` to ``items`` (in order); ``marks``: also find
    the tenants whose events a ``warn`` blackout marks (``maintd plan`` only)."""
    guard = guard_of(config)
    if not guard.active:
        return Screened(kept=list(items))
    out = Screened(kept=[])
    for a in items:
        w = a.window
        start, end = planned(w, a.occ)
        fz = guard.freeze_of(w, start, end)
        if fz is not None:
            out.skipped.append((a, f"freeze {fz.id}", None))
            continue
        skip = w.blackouts == "skip"
        if guard.blackouts and (skip or marks) and not w.cancelled:
            hit = guard.in_blackout(w, start, end)
            if hit and skip:
                out.skipped.append((a, "blackout", hit))
                a = Active(window=replace(w, tenants=w.tenants - hit), occ=a.occ)
            elif hit:
                out.marked[(w.id, a.occ.key)] = hit
        out.kept.append(a)
    return out


def freeze_skipped(config: Config, window: Window, occurrences: Iterable[Occurrence]) -> list[Occurrence]:
    """The occurrences of ``window`` a freeze skips (for EXDATE in calendars)."""
    guard = guard_of(config)
    return [o for o in occurrences if guard.freeze_of(window, *planned(window, o)) is not None]


def blackout_skipped(
    config: Config, window: Window, tenant: str, occurrences: Iterable[Occurrence]
) -> list[Occurrence]:
    """The occurrences of ``window`` that ``blackouts: skip`` leaves ``tenant`` out of (for
    EXDATE in that tenant's calendar), by the same rule as :func:`screen`."""
    if window.blackouts != "skip" or window.cancelled or tenant not in window.tenants:
        return []
    guard = guard_of(config)
    return [o for o in occurrences if tenant in guard.in_blackout(window, *planned(window, o))]
