"""Maintenance periods: the one place where occurrences are merged.

SPEC 1: overlapping **or touching** windows that affect the same tenant form one
continuous maintenance period; the tenant is not released in between. Every
occurrence is ``[start, end)``, so two of them merge when the later one starts at or
before the earlier one's end; a merged period is again ``[start, end)``.

Ties are settled by one order, ``(start, window id, key)``: the first occurrence of a
period in that order *opens* it, and the last one in that order that reaches the
period's end *closes* it. The tick (which tenants a start or end moves), the
timeline of ``maintd plan``, the gate (how long a refused job waits) and the ops
page all ask this module, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..model import Window
    from .records import Active

Span = tuple[datetime, datetime, str, datetime]  # (start, end, window id, occurrence key)


class Period(NamedTuple):
    """A merged maintenance period ``[start, end)`` and the occurrences that open and close it."""

    start: datetime
    end: datetime
    opener: tuple[str, datetime]  # (window id, occurrence key)
    closer: tuple[str, datetime]


def _order(span: Span) -> tuple[datetime, str, datetime]:
    return span[0], span[2], span[3]


def merge_periods(spans: Iterable[Span]) -> list[Period]:
    """Merge ``(start, end, window, key)`` spans that overlap or touch into periods.

    Spans are ordered by ``(start, window, key)`` first (any input order gives the same
    answer). A span joins the current period when ``start <= period.end``; it becomes
    the closer when ``end >= period.end``, so of several spans ending together the last
    in that order closes.
    """
    return _merge_ordered(sorted(spans, key=_order))


def _merge_ordered(spans: Iterable[Span]) -> list[Period]:
    # merge_periods() for spans already in (start, window, key) order, as effective() gives them.
    periods: list[list] = []
    for start, end, wid, key in spans:
        if periods and start <= periods[-1][1]:
            p = periods[-1]
            if end >= p[1]:
                p[1], p[3] = end, (wid, key)
        else:
            periods.append([start, end, (wid, key), (wid, key)])
    return [Period(*p) for p in periods]


def span(a: Active) -> Span:
    return a.occ.start, a.occ.end, a.window.id, a.occ.key


def _all_tenants(w: Window) -> Iterable[str]:
    return w.tenants


def group_tenants(
    items: Sequence[Active], tenants_of: Callable[[Window], Iterable[str]] = _all_tenants
) -> dict[tuple[int, ...], list[str]]:
    """Tenants grouped by the indexes of ``items`` that affect them.

    Tenants with the same occurrences have the same periods, so a caller merges once
    per group instead of once per tenant (10,000 tenants share a few dozen groups).
    """
    membership: dict[str, list[int]] = {}
    for i, a in enumerate(items):
        for t in tenants_of(a.window):
            membership.setdefault(t, []).append(i)
    groups: dict[tuple[int, ...], list[str]] = {}
    for t, idx in membership.items():
        groups.setdefault(tuple(idx), []).append(t)
    return groups


def tenant_periods(
    items: Sequence[Active], tenants_of: Callable[[Window], Iterable[str]] = _all_tenants
) -> list[tuple[list[str], list[Period]]]:
    """Each group of tenants (see :func:`group_tenants`) with its merged periods.

    ``items`` must be in ``(start, window id)`` order, as :func:`.effective` returns them.
    """
    return [
        (tenants, _merge_ordered([span(items[i]) for i in idx]))
        for idx, tenants in group_tenants(items, tenants_of).items()
    ]


def period_end(items: Iterable[Active], tenant: str, at: datetime) -> datetime | None:
    """End of ``tenant``'s merged period containing ``at`` (``start <= at < end``), or None."""
    for p in merge_periods(span(a) for a in items if tenant in a.window.tenants):
        if p.start <= at < p.end:
            return p.end
    return None


def boundaries(items: Sequence[Active], me: Active) -> tuple[frozenset[str], frozenset[str]]:
    """(tenants whose period ``me`` opens, tenants whose period ``me`` closes).

    Whether ``me`` opens or closes a tenant's period depends only on the occurrences
    that overlap or touch it (``start <= me.end`` and ``end >= me.start``), so only
    those are merged, once per group of ``me``'s tenants that they affect alike.
    ``items`` must be in ``(start, window id)`` order and contain ``me``.
    """
    o = me.occ
    near = [a for a in items if a is me or (a.occ.start <= o.end and a.occ.end >= o.start)]
    key = (me.window.id, o.key)
    opened: set[str] = set()
    closed: set[str] = set()
    for tenants, idx in _partition(near, me.window.tenants):
        periods = _merge_ordered([span(near[i]) for i in idx])
        if any(p.opener == key for p in periods):
            opened |= tenants
        if any(p.closer == key for p in periods):
            closed |= tenants
    return frozenset(opened), frozenset(closed)


def _partition(items: Sequence[Active], tenants: frozenset[str]) -> list[tuple[frozenset[str], list[int]]]:
    # group_tenants() restricted to ``tenants``, by splitting sets rather than visiting each
    # tenant: a window of 10,000 tenants starts within a tick's budget.
    blocks: list[tuple[frozenset[str], list[int]]] = [(tenants, [])]
    for i, a in enumerate(items):
        split: list[tuple[frozenset[str], list[int]]] = []
        for block, idx in blocks:
            inside = block & a.window.tenants
            if inside:
                split.append((inside, [*idx, i]))
            if len(inside) < len(block):
                split.append((block - inside, idx))
        blocks = split
    return blocks
