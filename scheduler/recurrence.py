"""When a window happens: its occurrences in UTC, following its zone through DST.

Pure (no clock, no disk) and the only croniter user in maintd. Intervals are
half-open, ``[start, end)``; every instant going in or out is aware, and out is UTC.

croniter is fed *naive local wall-clock* times on purpose: with a zoneinfo start
croniter 7 yields a repeated local time twice on a fall-back day (``30 2 * * *`` on
2027-10-31 in Europe/Berlin), while SPEC keeps only the first. Naive wall times have
no DST, so every fire time comes out once and :func:`resolve_local` alone applies
SPEC's gap and fold rules.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from scheduler.model import UTC, Occurrence, Window

# resolve_local never maps an earlier wall time to a later instant, so walking from
# the wall time of the first instant of interest is already enough; starting a day
# earlier is cheap insurance against odd zone histories (Pacific/Apia skipped a whole
# day in 2011) and costs a few extra cron steps that the filters drop.
_MARGIN = timedelta(days=1)
# next_start_after gives up here: a window that does not fire within two years is
# not "next" for anything maintd plans.
_HORIZON = timedelta(days=2 * 366)

_FIELDS = ("minute", "hour", "day", "month", "weekday")
_ALLOWED = (
    "0-59",
    "0-23",
    "1-31, L or nW",
    "1-12 or jan-dec",
    "0-7 or sun-sat, n#k for the k-th weekday n of the month",
)
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_SHAPE = 'expected 5 fields "minute hour day month weekday"'
# croniter's "R" picks a new random value on every evaluation, so the occurrence
# key (its start) would change between two plans of the same config.
_RANDOM = re.compile(r"(?:^|[,/])r(?:$|[(,/])", re.IGNORECASE)


def resolve_local(naive: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall time in ``zone`` as an aware UTC instant, by SPEC's DST rules.

    Ambiguous (fall back): the first occurrence, i.e. ``fold=0``, the earlier instant.
    Non-existent (spring forward): the first instant after the gap, e.g. Berlin
    2027-03-28 02:30 -> 03:00 CEST, not 03:30 as plain ``fold=0`` arithmetic gives.
    """
    before = naive.replace(tzinfo=zone, fold=0)
    utc = before.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc  # exists; for a fold, fold=0 already is the earlier instant
    # In a gap fold=0 applies the old offset (landing after the transition) and fold=1
    # the new one (landing before it); the transition lies between. Offsets say how
    # long the gap is but not where in it `naive` sits, so search for the instant.
    old = before.utcoffset()
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(microsecond=0)
    lo_s, hi_s = 0, int((utc - lo).total_seconds()) + 1
    while hi_s - lo_s > 1:  # invariant: lo+lo_s has the old offset, lo+hi_s not
        mid = (lo_s + hi_s) // 2
        if (lo + timedelta(seconds=mid)).astimezone(zone).utcoffset() == old:
            lo_s = mid
        else:
            hi_s = mid
    return lo + timedelta(seconds=hi_s)


def validate_cron(expr: str) -> str | None:
    """None when ``expr`` is a usable 5-field croniter expression, else what is wrong.

    Beyond croniter's own check this refuses seconds/years fields, ``R`` (random)
    values and day/month pairs that never occur ("0 0 31 2 *"), since such a window
    would silently never start.
    """
    if not isinstance(expr, str):
        return f"invalid cron expression {expr!r}: not a string; {_SHAPE}"
    head = f'invalid cron expression "{expr}"'
    fields = expr.split()
    if not fields:
        return f"{head}: empty; {_SHAPE}"
    if fields[0].startswith("@"):
        if len(fields) == 1 and fields[0].lower() in _ALIASES:
            return None
        return f"{head}: unknown alias; expected one of {', '.join(_ALIASES)} or {_SHAPE[9:]}"
    if len(fields) in (6, 7):
        return f"{head}: {len(fields)} fields, but seconds and years are not supported; {_SHAPE}"
    if len(fields) != 5:
        return f"{head}: {len(fields)} field{'s' if len(fields) != 1 else ''}; {_SHAPE}"
    # Check each field alone so the message can name the one that is wrong.
    for i, (name, value, allowed) in enumerate(zip(_FIELDS, fields, _ALLOWED)):
        if _RANDOM.search(value):
            return f'{head}: {name} "{value}": random (R) values are not supported; {_SHAPE}'
        probe = ["*"] * 5
        probe[i] = value
        try:
            croniter.expand(" ".join(probe))
        except CroniterError:
            return f'{head}: {name} "{value}" is not valid (allowed: {allowed}); {_SHAPE}'
    try:
        croniter.expand(" ".join(fields), strict=True)
    except CroniterError:
        return f'{head}: day "{fields[2]}" never occurs in month "{fields[3]}"; {_SHAPE}'
    return None


def _end(window: Window, start: datetime) -> datetime:
    if window.end is not None and not window.recurring:
        return window.end
    if window.duration is None:
        raise ValueError(f"window {window.id!r} has neither an end nor a duration")
    return start + window.duration  # absolute time: a DST change shifts the local end hour


def _starts(window: Window, wall_from: datetime, until: datetime):
    """UTC starts of the recurring ``window`` fired after wall time ``wall_from``, before ``until``.

    Ascending, one per instant, skip dates removed. resolve_local never decreases as
    wall time grows, so the first start at or past ``until`` ends the walk.
    """
    # Bounding croniter's search keeps an impossible or rare expression from scanning
    # 50 years; running out of years just means no more starts in range.
    years = max(1, (until.replace(tzinfo=None) - wall_from).days // 365 + 2)
    it = croniter(window.cron, wall_from, ret_type=datetime, max_years_between_matches=years)
    last = None
    while True:
        try:
            wall = it.get_next(datetime)
        except CroniterBadDateError:
            return
        start = resolve_local(wall, window.zone)
        if start >= until:
            return
        # SPEC: skip dates are local dates of the scheduled (wall-clock) fire time.
        if start == last or wall.date() in window.skip:
            continue  # two wall times in one gap move to the same instant: keep one
        last = start
        yield start


def _aware(name: str, ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {ts.isoformat()}")


def occurrences(window: Window, frm: datetime, to: datetime) -> list[Occurrence]:
    """Occurrences of ``window`` whose ``[start, end)`` intersects ``[frm, to)``, by start.

    ``cancelled`` is ignored on purpose: the planner decides what it means.
    """
    _aware("frm", frm)
    _aware("to", to)
    if window.start is not None and not window.recurring:
        occ = Occurrence(start=window.start, end=_end(window, window.start), window=window.id, key=window.start)
        return [occ] if occ.end > frm and occ.start < to else []
    if window.cron is None:
        raise ValueError(f"window {window.id!r} has neither a start nor a cron expression")
    if window.duration is None:
        raise ValueError(f"recurring window {window.id!r} has no duration")
    # Begin early enough to catch an occurrence that started before frm and still runs.
    wall_from = (frm - window.duration).astimezone(window.zone).replace(tzinfo=None) - _MARGIN
    result = []
    for start in _starts(window, wall_from, to.astimezone(UTC)):
        end = start + window.duration
        if end > frm:
            result.append(Occurrence(start=start, end=end, window=window.id, key=start))
    return result


def next_start_after(window: Window, ts: datetime) -> Occurrence | None:
    """The first occurrence starting strictly after ``ts``; None if none within two years."""
    _aware("ts", ts)
    if window.start is not None and not window.recurring:
        if window.start > ts:
            return Occurrence(start=window.start, end=_end(window, window.start), window=window.id, key=window.start)
        return None
    if window.cron is None or window.duration is None:
        raise ValueError(f"recurring window {window.id!r} needs a cron expression and a duration")
    wall_from = ts.astimezone(window.zone).replace(tzinfo=None) - _MARGIN
    for start in _starts(window, wall_from, (ts + _HORIZON).astimezone(UTC)):
        if start > ts:
            return Occurrence(start=start, end=start + window.duration, window=window.id, key=start)
    return None


def cron_intervals(
    cron: str, duration: timedelta, zone: ZoneInfo, frm: datetime, to: datetime
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` in UTC of every firing of ``cron`` in ``zone`` that intersects ``[frm, to)``.

    For things that recur but are not windows (a tenant's blackouts): the same rules as a
    recurring window's occurrences, i.e. SPEC's gap and fold rules on the local fire time
    and ``duration`` added in absolute time. Ascending by start.
    """
    # A throwaway window keeps one code path for cron walking instead of a second copy.
    probe = Window(id="", title="", zone=zone, tenants=frozenset(), cron=cron, duration=duration)
    return [(o.start, o.end) for o in occurrences(probe, frm, to)]
