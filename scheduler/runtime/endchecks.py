"""End checks (SPEC section 5), the tick's side: which ends wait for a check, and the
evaluation without them.

At a scheduled end, a window with ``end_check`` stays until the service is healthy,
extended by ``every`` up to ``max`` past its planned end. The tick never runs a check: it
records a check run as due (a durable hook run, event ``c<offset>``), holds the end back,
and the effects worker runs the check off the tick lock; a failing check writes an
override (the extension), then marks the run done; the next tick acts on the result.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from .. import plan
from ..model import Config, Occurrence, Window

CHECK_PREFIX = "c"  # hook-run events "start"/"end" are hooks; "c<hex seconds>" an end check


def is_check(event: str) -> bool:
    return event.startswith(CHECK_PREFIX)


def check_event(offset: timedelta) -> str:
    """The run's event: the checked end as seconds past the planned end (fits the column's 8 characters)."""
    return f"{CHECK_PREFIX}{int(offset.total_seconds()):x}"


def check_offset(event: str) -> timedelta:
    return timedelta(seconds=int(event[len(CHECK_PREFIX) :], 16))


def planned_end(w: Window, key: datetime) -> datetime | None:
    if w.waves is not None and not w.recurring and w.start is not None and w.end is not None:
        return key + (w.end - w.start)  # a wave is keyed by its own start and lasts as the window
    if w.recurring:
        return key + w.duration if w.duration else None
    return w.end


def checks_due(ev: plan.Evaluation, cfg: Config) -> list[tuple[str, datetime, str]]:
    """The (window, occurrence, event) check runs the ends of ``ev`` wait for."""
    due = []
    for t in ev.transitions:
        if t.event != "end" or t.reason != "scheduled":
            continue
        w = cfg.window(t.window)
        if w is None or w.end_check is None:
            continue
        planned = planned_end(w, t.occurrence)
        if planned is None or t.end is None or t.end - planned >= w.end_check.max:
            continue
        due.append((t.window, t.occurrence, check_event(t.end - planned)))
    return due


def hold(ev: plan.Evaluation, held: list[tuple[str, datetime, str]], cfg: Config | None = None) -> plan.Evaluation:
    """``ev`` without the ends waiting for a check: no end transition, no ``completed``
    notice, no announcement of the window (the next tick plans them again). The held
    occurrences stay active until the check answers (one ``every`` ahead, as a failing
    check would extend them): the gate keeps refusing and status keeps showing them while
    the check runs, however long it takes."""
    if not held:
        return ev
    occurrences = {(w, o) for w, o, _ in held}
    windows = {w for w, _ in occurrences}
    return replace(
        ev,
        active=ev.active + _still_active(ev, occurrences, cfg),
        transitions=tuple(
            t for t in ev.transitions if not (t.event == "end" and (t.window, t.occurrence) in occurrences)
        ),
        notices=tuple(n for n in ev.notices if not (n.kind == "completed" and (n.window, n.occurrence) in occurrences)),
        announces=tuple(a for a in ev.announces if a.window not in windows),
    )


def _still_active(ev: plan.Evaluation, held: set[tuple[str, datetime]], cfg: Config | None) -> tuple[plan.Active, ...]:
    out = []
    present = {(a.window.id, a.occ.key) for a in ev.active}
    for t in ev.transitions:
        if t.event != "end" or (t.window, t.occurrence) not in held or (t.window, t.occurrence) in present:
            continue
        w = cfg.window(t.window) if cfg is not None else None
        if w is None or w.end_check is None or t.start is None or t.end is None:
            continue
        occ = Occurrence(start=t.start, end=max(t.end, ev.now) + w.end_check.every, window=w.id, key=t.occurrence)
        out.append(plan.Active(window=replace(w, tenants=t.tenants), occ=occ))
    return tuple(out)
