"""Occurrences of declared and manual windows over a range, with journal overrides.

Every range is half-open ``[frm, to)``; an occurrence is in it when it intersects it
(``end > frm and start < to``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from .. import recurrence
from ..model import Config, Occurrence, Window
from .guardrails import screen
from .records import EPOCH, Active, Journal
from .waves import split, splits

_BUCKET = timedelta(days=8)


@lru_cache(maxsize=4096)
def _expand(window: Window, bucket: int) -> tuple[Occurrence, ...]:
    # Cron expansion is the expensive part of a tick; cache it in 8-day buckets so a
    # tick re-uses it (Window is frozen, so the cache is keyed by value).
    frm = EPOCH + bucket * _BUCKET
    return tuple(recurrence.occurrences(window, frm, frm + _BUCKET))


def occurrences(window: Window, frm: datetime, to: datetime) -> list[Occurrence]:
    """Occurrences of ``window`` intersecting ``[frm, to)`` (cached for recurring windows)."""
    if not window.recurring:
        return recurrence.occurrences(window, frm, to)
    first = int((frm - (window.duration or timedelta(0)) - EPOCH) / _BUCKET)
    last = int((to - EPOCH) / _BUCKET)
    seen: dict[datetime, Occurrence] = {}
    for b in range(first, last + 1):
        for o in _expand(window, b):
            if o.end > frm and o.start < to:
                seen[o.key] = o
    return [seen[k] for k in sorted(seen)]


def effective(
    config: Config, journal: Journal, frm: datetime, to: datetime, *, include_cancelled: bool = False
) -> list[Active]:
    """Occurrences of every window (declared and manual) intersecting ``[frm, to)``, with
    journal overrides applied to their ends; sorted by (start, window id)."""
    return screen(config, candidates(config, journal, frm, to, include_cancelled=include_cancelled)).kept


def candidates(
    config: Config, journal: Journal, frm: datetime, to: datetime, *, include_cancelled: bool = False
) -> list[Active]:
    """Occurrences overlapping ``[frm, to)`` before the guardrails screen them: each wave of
    a window with ``waves`` an occurrence of its own (SPEC 8 and 9)."""
    windows = list(config.windows) + list(journal.manual)
    waved = [w for w in windows if splits(w, journal)]
    if not waved:
        return effective_of(windows, journal, frm, to, include_cancelled=include_cancelled)
    ids = {w.id for w in waved}
    plain = [w for w in windows if w.id not in ids]
    out = effective_of(plain, journal, frm, to, include_cancelled=include_cancelled)
    out += split(config, journal, waved, frm, to, include_cancelled)
    out.sort(key=lambda a: (a.occ.start, a.window.id))
    return out


def effective_of(
    windows: Iterable[Window], journal: Journal, frm: datetime, to: datetime, *, include_cancelled: bool = False
) -> list[Active]:
    """:func:`effective` for the given windows only."""
    out: list[Active] = []
    for w in windows:
        if w.cancelled and not include_cancelled:
            continue
        # an override may lengthen an occurrence that would otherwise end before frm
        lookback = frm - timedelta(days=2) if journal.overrides else frm
        for o in occurrences(w, lookback, to):
            new_end = journal.overrides.get((w.id, o.key))
            if new_end is not None:
                o = Occurrence(start=o.start, end=max(new_end, o.start), window=o.window, key=o.key)
            if o.end > frm and o.start < to and o.end > o.start:
                out.append(Active(window=w, occ=o))
    out.sort(key=lambda a: (a.occ.start, a.window.id))
    return out


def next_occurrences(
    config: Config, journal: Journal, now: datetime, *, limit: int = 5, within: timedelta = timedelta(days=60)
) -> list[Active]:
    """The next occurrences that start after ``now`` (for status), soonest first."""
    items = [a for a in effective(config, journal, now, now + within) if a.occ.start > now]
    return items[:limit]
