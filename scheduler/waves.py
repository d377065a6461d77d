"""Rolling maintenance in waves (SPEC section 8) and tenant deferral (SPEC section 9).

Pure: no clock, disk or network; ``now`` is always a parameter. Instants are aware UTC,
intervals half-open ``[start, end)``.

Waves. A window with ``waves`` splits each of its occurrences (its *base*) into waves
numbered from 1; wave n starts at ``base + (n - 1) * every`` and lasts as long as the
occurrence. Each wave is an occurrence of its own: its key (:attr:`Wave.occurrence`) is
its start, so notices, history and calendars key on ``window id + wave start``.

Membership (:func:`assign`) is stored by the caller (tenant id -> wave number) and is
stable: once stored, a tenant keeps its wave; a tenant that joins later is appended to
the last wave. A recurring window reuses one membership for every occurrence.

Halting (:func:`halted_waves`) keeps the waves up to the failed one and cancels the rest;
:func:`resume` plans those again from a new instant. A resumed wave gets a NEW key (its
new start), on purpose: its tenants already got ``cancelled`` under the old key, and the
``scheduled`` notices for the new times must not be taken for the ones already sent.

Deferral (:func:`defer_target`, :func:`apply_deferrals`): a tenant moves to its next wave
of the same occurrence, or (a recurring window) skips to its slot in the next
occurrence. The caller stores one row per (window, base, tenant): the target wave number,
or the next occurrence's base instant, plus how often the tenant deferred.

The reason a halt's ``cancelled`` gives (:func:`halted_reason`) lives in
:mod:`scheduler.model.reasons`, with its translations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from scheduler.duration import format_duration
from scheduler.guardrails import Guardrails, blackout_intervals, freeze_for
from scheduler.model import HALT_ON as HALT_ON  # re-exported: the specs live in the model
from scheduler.model import UTC, DeferSpec, Occurrence, Tenant, WaveSpec, Window
from scheduler.model.sentences import halted_reason as halted_reason  # re-exported
from scheduler.recurrence import next_start_after

_SIZE = re.compile(r"(-?\d+(?:\.\d+)?)(%?)")


@dataclass(frozen=True, kw_only=True)
class Wave:
    """Wave ``number`` (1-based) of the occurrence of ``window`` that started at ``base``.

    ``occurrence`` is the wave's key: its start when it was planned (a resumed wave gets
    a new one). ``tenants`` are ids, sorted.
    """

    window: str
    number: int
    occurrence: datetime
    base: datetime
    start: datetime
    end: datetime
    tenants: tuple[str, ...]

    def __contains__(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def as_occurrence(self) -> Occurrence:
        """The wave as a model occurrence, for code that plans occurrences (guardrails, notices)."""
        return Occurrence(start=self.start, end=self.end, window=self.window, key=self.occurrence)


# ---------------------------------------------------------------- size and membership


def parse_size(value: object) -> tuple[int | None, float | None]:
    """``3`` or ``"3"`` -> ``(3, None)``; ``"25%"`` -> ``(None, 25.0)``. Raises ValueError."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    m = _SIZE.fullmatch(text) if text is not None else None
    if m is None:
        raise ValueError(f"wave size: expected a count like 3 or a percentage like 25%, got {value!r}")
    number, percent = m.groups()
    if percent:
        pct = float(number)
        if pct <= 0:
            raise ValueError(f"wave size must be more than 0%, got {value!r}")
        if pct > 100:
            raise ValueError(f"wave size must be at most 100%, got {value!r}")
        return None, pct
    if "." in number:
        raise ValueError(f"wave size: a count of tenants is a whole number, got {value!r}")
    if int(number) < 1:
        raise ValueError(f"wave size must be at least 1 tenant, got {value!r}")
    return int(number), None


def wave_size(spec: WaveSpec, count: int) -> int:
    """Tenants per wave for ``count`` tenants: the count, or the percentage rounded up (>= 1)."""
    if spec.size is not None:
        return spec.size
    assert spec.percent is not None  # WaveSpec guarantees one of the two
    # Exact arithmetic: 10% of 30 must be 3, not ceil(3.0000000000000004) = 4.
    return max(1, math.ceil(Fraction(str(spec.percent)) * count / 100))


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """A tenant matches a selector when every label of the selector matches."""
    return all(labels.get(k) == v for k, v in selector.items())


def _ordered(tenants: Iterable[Tenant], order: Sequence[Mapping[str, str]]) -> list[str]:
    def rank(t: Tenant) -> tuple[int, str]:
        first = next((i for i, sel in enumerate(order) if matches(t.labels, sel)), len(order))
        return first, t.id

    return [t.id for t in sorted(tenants, key=rank)]


def assign(tenants: Sequence[Tenant], spec: WaveSpec, stored: Mapping[str, int]) -> dict[str, int]:
    """The wave of every tenant in ``tenants`` (all affected tenants of the window), to store.

    - Tenants in ``stored`` keep their wave; stored tenants no longer affected are dropped
      (their wave may end up empty; the others do not move up).
    - Tenants not in ``stored`` join the last wave, i.e. the highest number still held by
      an affected tenant, whatever its size: nobody else moves.
    - When no stored tenant is affected (first assignment, or everyone was replaced) it
      is a fresh assignment: by ``order``, the rest last, ties by id, in chunks of
      :func:`wave_size` of the number of tenants now.
    """
    affected = {t.id for t in tenants}
    if len(affected) != len(tenants):
        raise ValueError("assign: tenant ids must be unique")
    kept = {tid: n for tid, n in stored.items() if tid in affected}
    fresh = [t for t in tenants if t.id not in kept]
    if kept:
        last = max(kept.values())
        return kept | {tid: last for tid in _ordered(fresh, spec.order)}
    size = wave_size(spec, len(fresh))
    return {tid: i // size + 1 for i, tid in enumerate(_ordered(fresh, spec.order))}


# ---------------------------------------------------------------- waves of an occurrence


def _aware(name: str, ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {ts.isoformat()}")
    return ts.astimezone(UTC)


def waves_of(
    window: Window | str,
    occurrence_start: datetime,
    occurrence_end: datetime,
    membership: Mapping[str, int],
    spec: WaveSpec,
) -> list[Wave]:
    """The waves of one occurrence ``[occurrence_start, occurrence_end)``, by number.

    Wave n is ``[start + (n - 1) * every, that + (end - start))`` in absolute time (a DST
    change between waves shifts their local hour). Numbers nobody holds yield no wave.
    A recurring window's caller passes each occurrence with the same ``membership``.
    """
    wid = window if isinstance(window, str) else window.id
    base = _aware("occurrence_start", occurrence_start)
    length = _aware("occurrence_end", occurrence_end) - base
    by_number: dict[int, list[str]] = {}
    for tid, n in membership.items():
        if n < 1:
            raise ValueError(f"wave numbers start at 1; tenant {tid!r} has {n}")
        by_number.setdefault(n, []).append(tid)
    found = []
    for n in sorted(by_number):
        start = base + (n - 1) * spec.every
        found.append(
            Wave(
                window=wid,
                number=n,
                occurrence=start,
                base=base,
                start=start,
                end=start + length,
                tenants=tuple(sorted(by_number[n])),
            )
        )
    return found


def wave_of(waves: Iterable[Wave], tenant: str) -> Wave | None:
    """The wave ``tenant`` is in, or None."""
    return next((w for w in waves if tenant in w.tenants), None)


# ---------------------------------------------------------------- halting


def halted_waves(waves: Sequence[Wave], halted_after: int | None) -> tuple[list[Wave], list[Wave]]:
    """``(running, cancelled)`` of one occurrence's waves once wave ``halted_after`` halted.

    Waves numbered up to ``halted_after`` (the failed one included) are kept; the later
    ones do not start and their tenants get ``cancelled``. ``None``: not halted.
    """
    ordered = sorted(waves, key=lambda w: w.number)
    if halted_after is None:
        return ordered, []
    return [w for w in ordered if w.number <= halted_after], [w for w in ordered if w.number > halted_after]


def resume(waves_remaining: Sequence[Wave], at: datetime, every: timedelta) -> list[Wave]:
    """The cancelled waves planned again: the i-th of them (0-based, by number) at ``at + i * every``.

    Numbers, tenants, base and length are kept; the key becomes the new start (see the
    module docstring: the tenants get ``scheduled`` for it, late if its leads passed).
    """
    at = _aware("at", at)
    found = []
    for i, wave in enumerate(sorted(waves_remaining, key=lambda w: w.number)):
        start = at + i * every
        found.append(replace(wave, occurrence=start, start=start, end=start + (wave.end - wave.start)))
    return found


# ---------------------------------------------------------------- deferral


def next_slot(
    window: Window, current_base: datetime, tenant: str, membership: Mapping[str, int], spec: WaveSpec | None
) -> Wave | Occurrence | None:
    """The tenant's slot in the occurrence of recurring ``window`` after ``current_base``:
    its own wave there (``spec`` given), or that occurrence; None for a one-off or none
    within two years. Freezes are not consulted here: :func:`defer_target` refuses them."""
    if not window.recurring:
        return None
    occ = next_start_after(window, _aware("current_base", current_base))
    if occ is None or spec is None:
        return occ
    if tenant not in membership:
        return None
    return waves_of(window, occ.start, occ.end, {tenant: membership[tenant]}, spec)[0]


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _label(spec: DeferSpec) -> str:
    if spec.until_label:
        return spec.until_label
    seconds = int(spec.until.total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else format_duration(spec.until)


def _span(start: datetime, end: datetime, tenant: Tenant) -> str:
    zone = tenant.zone
    return f"{start.astimezone(zone):%Y-%m-%d %H:%M} - {end.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"


def _guard_reason(start: datetime, end: datetime, tenant: Tenant, guard: Guardrails | None) -> str | None:
    """Why ``[start, end)`` is no place to defer ``tenant`` to, or None.

    A window's ``override_freeze`` is not honoured here: it approved the scheduled time,
    not a time the tenant picks.
    """
    if guard is None:
        return None
    where = f"the new time ({_span(start, end, tenant)})"
    freeze = freeze_for(start, end, guard.freezes)
    if freeze is not None:
        why = f": {freeze.reason}" if freeze.reason else ""
        return f'{where} falls in the change freeze "{freeze.id}"{why}'
    for blackout in guard.blackouts.get(tenant.id, ()):
        for b_start, b_end in blackout_intervals(blackout, start, end):
            return f"{where} falls in your blackout {blackout.label} ({_span(b_start, b_end, tenant)})"
    return None


def defer_target(
    window: Window,
    tenant: Tenant,
    current: Wave | Occurrence,
    *,
    waves: Sequence[Wave] = (),
    next_occurrence: Wave | Occurrence | None = None,
    deferred_count: int,
    spec: DeferSpec | None,
    now: datetime,
    guard: Guardrails | None = None,
) -> Wave | Occurrence | str:
    """Where deferring ``tenant`` out of ``current`` moves it, or why it may not (a sentence).

    ``current`` is the tenant's wave (``waves`` then holds the waves of the same
    occurrence) or, for a window without waves, its occurrence. ``next_occurrence`` is the
    tenant's slot in the window's next occurrence (:func:`next_slot`), None when it has
    none. The target is the next wave of the same occurrence; when there is none and the
    window recurs, the next occurrence: the tenant skips this one. Refused: without
    ``defer``, once started or later than ``until`` before the start (at exactly
    ``start - until`` it is still allowed), after ``max`` deferrals, without a later
    slot, or when the target meets a freeze or the tenant's blackout (``guard``).
    """
    now = _aware("now", now)
    if spec is None:
        return "this window does not allow deferral"
    if isinstance(current, Occurrence) and not window.recurring:
        return "this window cannot be deferred"
    if now >= current.start:
        return "this maintenance has already started"
    if now > current.start - spec.until:
        return f"deferral closed {_label(spec)} before the start"
    if deferred_count >= spec.max:
        return f"already deferred {_times(deferred_count)}; the limit is {spec.max}"
    target: Wave | Occurrence | None = None
    if isinstance(current, Wave):
        later = [w for w in waves if w.base == current.base and w.number > current.number]
        target = min(later, key=lambda w: w.number) if later else None
    if target is None:
        if not window.recurring:
            return "this is the last wave of the window; it cannot be deferred further"
        if next_occurrence is None:
            return "this window has no later occurrence to defer to"
        target = next_occurrence
    return _guard_reason(target.start, target.end, tenant, guard) or target


def apply_deferrals(
    waves: Sequence[Wave], deferrals: Mapping[str, int | datetime], *, every: timedelta | None = None
) -> list[Wave]:
    """One occurrence's waves with deferred tenants moved, by number.

    ``deferrals``: tenant -> target wave number in this occurrence, or a datetime (the
    base of a later occurrence) when the tenant skips this occurrence: it then only
    leaves these waves, since its own membership places it in that one. A target number
    no wave holds any more is made as first planned, ``base + (n - 1) * every`` (ValueError without it). Waves left
    empty are dropped.
    """
    if not waves:
        return []
    numbers = {w.number: w for w in waves}
    moved = {tid: target for tid, target in deferrals.items() if any(tid in w.tenants for w in waves)}
    first = min(waves, key=lambda w: w.number)
    for target in {t for t in moved.values() if isinstance(t, int) and t not in numbers}:
        if every is None:
            raise ValueError(f"wave {target} of window {first.window!r} does not exist; pass every to create it")
        start = first.base + (target - 1) * every
        numbers[target] = replace(
            first, number=target, occurrence=start, start=start, end=start + (first.end - first.start), tenants=()
        )
    found = []
    for n in sorted(numbers):
        wave = numbers[n]
        stay = [t for t in wave.tenants if t not in moved]
        joined = [t for t, target in moved.items() if isinstance(target, int) and target == n]
        members = tuple(sorted(set(stay) | set(joined)))
        if members:
            found.append(replace(wave, tenants=members))
    return found
