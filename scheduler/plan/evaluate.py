"""The pure heart of maintd: ``evaluate(config, journal, now)``.

Level-triggered, not edge-triggered (DESIGN.md): given the config, what the journal
says already happened, and ``now``, it answers what is true now (active occurrences),
what must be recorded or sent now (actions, each idempotent by key), and the next
instant at which the answer changes. After a restart, a reload or a clock jump the
same call simply says what is true now.

One tick is a pipeline of named phases, each a small pure function:

1. :func:`scope`        the occurrences the tick looks at, ``[floor - 1 day, horizon)``;
2. :func:`transitions`  starts and ends at or before ``now`` the journal lacks;
3. :func:`released`     open occurrences the config no longer produces;
4. :func:`advance`      advance notices, reschedules and extensions;
5. :func:`withdrawn`    announced occurrences that vanished before their start;
6. :func:`next_wakeup`  the earliest instant after ``now`` at which the answer changes.

Phases 2 to 5 share a :class:`Ledger` of what tenants have been told, so a later
phase sees what an earlier one announced in the same tick. Intervals are half-open
``[start, end)``; periods (overlapping or touching occurrences of a tenant) come from
:mod:`.periods`, the one late notice for passed leads from :mod:`.leads`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import recurrence
from ..model import Config
from .guardrails import screen
from .leads import collapse_leads
from .occurrences import effective, effective_of
from .periods import boundaries
from .records import (
    CATCHUP,
    EPOCH,
    LATE_SLACK,
    Active,
    Announce,
    Announcement,
    Evaluation,
    Journal,
    NoticeAction,
    Transition,
    anchor,
)
from .waves import beyond, halt_reason

Actions = tuple[list[Transition], list[NoticeAction]]


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What one tick looks at."""

    now: datetime
    floor: datetime  # missed transitions at or after this are recorded (the last tick, at most CATCHUP back)
    horizon: datetime  # occurrences starting before this were expanded: now + longest lead + 1 day
    max_lead: timedelta
    items: list[Active]  # sorted by (start, window id)


class Ledger:
    """What tenants were told about each occurrence, as of this point of the tick: the
    journal's announcements overlaid with those this tick makes. Keyed by (window, anchor)."""

    def __init__(self, announced: Mapping[tuple[str, datetime], Announcement]) -> None:
        self.announced = announced
        self.updates: dict[tuple[str, datetime], Announcement] = {}

    def told(self, a: Active) -> Announcement | None:
        k = (a.window.id, anchor(a.window, a.occ, a.wave))
        return self.updates.get(k) or self.announced.get(k)

    def sequence(self, a: Active) -> int:
        prev = self.told(a)
        return prev.sequence if prev else 0

    def remember(
        self, a: Active, *, tenants: frozenset[str], sequence: int | None = None, replace: bool = False
    ) -> None:
        """Record that ``tenants`` (too, unless ``replace``) know ``a`` as it is now."""
        prev = self.told(a)
        known = prev.tenants if prev and not replace else frozenset()
        self.updates[(a.window.id, anchor(a.window, a.occ, a.wave))] = Announcement(
            start=a.occ.start,
            end=a.occ.end,
            title=a.window.title,
            sequence=sequence if sequence is not None else (prev.sequence if prev else 0),
            tenants=known | tenants,
            status="scheduled",
            occurrence=a.occ.key,
        )

    def announces(self) -> tuple[Announce, ...]:
        return tuple(Announce(window=k[0], anchor=k[1], announcement=v) for k, v in self.updates.items())


def notice(kind: str, a: Active, tenants: frozenset[str], **kw) -> list[NoticeAction]:
    """A notice of ``kind`` about ``a`` to ``tenants``; none when nobody is to be told."""
    if not tenants:
        return []
    return [
        NoticeAction(
            kind=kind,
            window=a.window.id,
            occurrence=a.occ.key,
            tenants=tenants,
            start=a.occ.start,
            end=a.occ.end,
            title=a.window.title,
            recurring=a.window.recurring or a.wave is not None,  # a wave's calendar UID follows its start
            **kw,
        )
    ]


# ---------------------------------------------------------------------------
# 1. occurrences


def scope(config: Config, journal: Journal, now: datetime) -> Scope:
    """The occurrences intersecting ``[floor - 1 day, horizon)``, plus announced one-off
    windows that moved beyond the horizon.

    ``floor`` is the last tick (never later than ``now``, never more than CATCHUP back);
    ``horizon`` is ``now`` + the longest lead + 1 day, so every notice due now is seen.
    """
    floor = now if journal.last_tick is None else max(min(journal.last_tick, now), now - CATCHUP)
    max_lead = max((lead for w in config.windows for lead in w.notify), default=timedelta(0))
    horizon = now + max_lead + timedelta(days=1)
    items = effective(config, journal, floor - timedelta(days=1), horizon)
    # A one-off window already announced is followed however far its start moves (or its
    # leads shrink): beyond the horizon it would otherwise look removed and be cancelled
    # instead of rescheduled.
    planned = {a.window.id for a in items}
    far = [
        w
        for w in config.windows
        if not w.recurring
        and not w.cancelled
        and w.waves is None  # waves: see beyond()
        and w.id not in planned
        and w.end is not None
        and w.end > horizon
        and (w.id, EPOCH) in journal.announced
    ]
    later = beyond(config, journal, horizon, {(a.window.id, a.wave) for a in items if a.wave is not None})
    if far:
        later += effective_of(far, journal, horizon, max(w.end for w in far if w.end) + timedelta(seconds=1))
    if later:
        items += screen(config, later).kept  # SPEC 7: `blackouts: skip` there too
        items.sort(key=lambda a: (a.occ.start, a.window.id))
    return Scope(now=now, floor=floor, horizon=horizon, max_lead=max_lead, items=items)


# ---------------------------------------------------------------------------
# 2. transitions


def transitions(s: Scope, journal: Journal, ledger: Ledger) -> Actions:
    """Starts and ends at or before ``now`` that the journal does not have.

    A start is due when it lies in ``[floor, now]``, or when the occurrence runs now
    (``start <= now < end``); an end is due once ``end <= now``. Each carries the
    tenants whose maintenance period it opens or closes (:func:`.periods.boundaries`)
    and their ``started`` / ``completed`` notice. An occurrence missed entirely gets
    its start and end but only the ``completed`` notice.
    """
    out: list[Transition] = []
    notes: list[NoticeAction] = []
    now = s.now
    for a in s.items:
        w, o = a.window, a.occ
        started = (w.id, o.key, "start") in journal.events
        if not started and (s.floor <= o.start <= now or o.start <= now < o.end):
            opened = boundaries(s.items, a)[0]
            late = now - o.start > LATE_SLACK
            out.append(_transition("start", a, at=o.start, late=late, period_tenants=opened))
            if o.end > now:
                notes += notice("started", a, opened, late=late, sequence=ledger.sequence(a))
                ledger.remember(a, tenants=opened)
            started = True
        if started and o.end <= now and (w.id, o.key, "end") not in journal.events:
            closed = boundaries(s.items, a)[1]
            late = now - o.end > LATE_SLACK
            out.append(_transition("end", a, at=o.end, late=late, period_tenants=closed))
            # Ended at another time than announced (``maintd exit``): the calendar event's
            # times change, so its SEQUENCE goes up (RFC 5546), as an extension's does.
            prev = ledger.told(a)
            seq = ledger.sequence(a) + (1 if prev and (prev.start, prev.end) != (o.start, o.end) else 0)
            notes += notice("completed", a, closed, late=late, sequence=seq)
            ledger.remember(a, tenants=closed, sequence=seq)
    return out, notes


def _transition(event: str, a: Active, *, at: datetime, late: bool, period_tenants: frozenset[str]) -> Transition:
    return Transition(
        event=event,
        window=a.window.id,
        occurrence=a.occ.key,
        at=at,
        late=late,
        tenants=a.window.tenants,
        period_tenants=period_tenants,
        start=a.occ.start,
        end=a.occ.end,
    )


# ---------------------------------------------------------------------------
# 3. released


def released(s: Scope, journal: Journal) -> Actions:
    """Occurrences the journal has open that the config no longer produces (removed,
    cancelled, cron edited, or an effective end now earlier): they end at ``now``.

    Tenants still inside another running occurrence (``start <= now < end``) stay in
    maintenance; one whose start is after ``now`` (the clock went back) is left alone.
    """
    out: list[Transition] = []
    notes: list[NoticeAction] = []
    if not journal.open:
        return out, notes
    live = {(a.window.id, a.occ.key) for a in s.items}
    still: frozenset[str] | None = None  # tenants of running occurrences, once needed
    for (wid, key), op in journal.open.items():
        if (wid, key, "end") in journal.events or (wid, key) in live or op.start > s.now:
            continue
        if still is None:
            still = frozenset().union(*(a.window.tenants for a in s.items if s.now in a.occ))
        leaving = op.tenants - still
        out.append(
            Transition(
                event="end",
                window=wid,
                occurrence=key,
                at=s.now,
                late=False,
                tenants=op.tenants,
                period_tenants=leaving,
                reason="removed",
                start=op.start,
                end=s.now,
            )
        )
        notes.append(
            NoticeAction(
                kind="completed",
                window=wid,
                occurrence=key,
                tenants=leaving,
                start=op.start,
                end=s.now,
                title=op.title or wid,
            )
        )
    return out, notes


# ---------------------------------------------------------------------------
# 4. advance notices, reschedules, extensions


def advance(s: Scope, journal: Journal, ledger: Ledger) -> list[NoticeAction]:
    """Notices about occurrences that still exist: for one starting after ``now`` a
    ``rescheduled`` when its times changed since announced, then the ``scheduled`` due
    (several passed leads collapse into one, late); for one running now (``start <=
    now < end``) whose end moved later, ``extended``."""
    notes: list[NoticeAction] = []
    for a in s.items:
        if a.occ.start > s.now:
            notes += _rescheduled(a, ledger)
            notes += _scheduled(a, journal, s.now, ledger)
        elif s.now in a.occ:
            notes += _extended(a, journal, ledger)
    return notes


def _rescheduled(a: Active, ledger: Ledger) -> list[NoticeAction]:
    """``rescheduled`` to those told who still are affected, ``cancelled`` to those dropped."""
    prev = ledger.told(a)
    if prev is None or prev.status != "scheduled" or (prev.start, prev.end) == (a.occ.start, a.occ.end):
        return []
    seq = prev.sequence + 1
    notes = notice("rescheduled", a, prev.tenants & a.tenants, sequence=seq, previous=(prev.start, prev.end))
    ledger.remember(a, tenants=frozenset(), sequence=seq)
    return notes + notice("cancelled", a, prev.tenants - a.tenants, sequence=seq)


def _scheduled(a: Active, journal: Journal, now: datetime, ledger: Ledger) -> list[NoticeAction]:
    """The ``scheduled`` notice owed now, if any: the due lead once (late ones only to
    tenants not told yet); tenants added to the window get it late; tenants dropped
    from it get ``cancelled``."""
    w, o = a.window, a.occ
    due = collapse_leads(o.start, w.notify, now, slack=LATE_SLACK)
    if due is None:
        return []
    prev = ledger.told(a)
    label = w.lead_label(due.lead)
    # told of it as cancelled is not told of it: a resumed wave (SPEC 8) is announced again
    told = prev.tenants if prev and prev.status == "scheduled" else frozenset()
    seq = prev.sequence if prev else 0
    if (w.id, o.key, label) not in journal.sent_leads and (not due.late or not told):
        ledger.remember(a, tenants=w.tenants)
        return notice("scheduled", a, w.tenants, lead=label, late=due.late, sequence=seq)
    # subset tests first: in a steady tick everyone was told, and a difference of
    # 10,000 tenants per occurrence would cost more than the rest of the tick
    if told and not w.tenants <= told:
        ledger.remember(a, tenants=w.tenants)
        return notice("scheduled", a, w.tenants - told, lead=label, late=True, sequence=seq)
    if told and not told <= w.tenants:
        ledger.remember(a, tenants=told & w.tenants, sequence=seq + 1, replace=True)
        return notice("cancelled", a, told - w.tenants, sequence=seq + 1)
    return []


def _extended(a: Active, journal: Journal, ledger: Ledger) -> list[NoticeAction]:
    """``extended`` when a started occurrence now ends later than announced."""
    prev = ledger.told(a)
    if (
        prev is None
        or prev.status != "scheduled"
        or a.occ.end <= prev.end
        or (a.window.id, a.occ.key, "start") not in journal.events
    ):
        return []
    seq = prev.sequence + 1
    ledger.remember(a, tenants=frozenset(), sequence=seq)
    return notice("extended", a, prev.tenants & a.tenants, sequence=seq, previous=(prev.start, prev.end))


# ---------------------------------------------------------------------------
# 5. withdrawn


def withdrawn(s: Scope, config: Config, journal: Journal, ledger: Ledger) -> list[NoticeAction]:
    """``cancelled`` to those told of an occurrence that no longer exists (window removed,
    ``cancelled: true``, cron edited) and had not started (``start > now``). A recurring
    occurrence beyond the horizon was simply not expanded, so it is not withdrawn."""
    notes: list[NoticeAction] = []
    live = {(a.window.id, anchor(a.window, a.occ, a.wave)) for a in s.items}
    declared = {w.id: w for w in config.windows}
    for (wid, anc), ann in journal.announced.items():
        if ann.status != "scheduled" or (wid, anc) in live or not ann.tenants or ann.start <= s.now:
            continue
        w = declared.get(wid)
        if w is not None and not w.cancelled and w.recurring and anc > s.horizon:
            continue
        key = ann.occurrence or anc
        notes.append(
            NoticeAction(
                kind="cancelled",
                window=wid,
                occurrence=key,
                tenants=ann.tenants,
                start=ann.start,
                end=ann.end,
                title=ann.title,
                sequence=ann.sequence + 1,
                recurring=anc != EPOCH,
                reason=halt_reason(journal, w, key),
            )
        )
        ledger.updates[(wid, anc)] = Announcement(
            start=ann.start,
            end=ann.end,
            title=ann.title,
            sequence=ann.sequence + 1,
            tenants=ann.tenants,
            status="cancelled",
            occurrence=key,
        )
    return notes


# ---------------------------------------------------------------------------
# 6. next wake-up


def next_wakeup(s: Scope, config: Config, journal: Journal) -> datetime | None:
    """The earliest instant after ``now`` at which a start, an end or a lead falls due.

    Only occurrences starting before the horizon were expanded; one starting later has
    its notices after ``horizon - max_lead`` (= now + 1 day). When nothing happens
    before that, look past the horizon: the first later occurrence of each window (its
    notices come before those of its successors).
    """
    candidates = [t for a in s.items for t in _instants(a.occ.start, a.occ.end, a.window.notify)]
    future = [c for c in candidates if c > s.now]
    wake = min(future) if future else None
    if wake is not None and wake <= s.horizon - s.max_lead:
        return wake
    for w in list(config.windows) + list(journal.manual):
        if w.cancelled:
            continue
        nxt = recurrence.next_start_after(w, s.horizon - timedelta(microseconds=1))
        if nxt is None:
            continue
        later = [t for t in _instants(nxt.start, None, w.notify) if t > s.now]
        if later and (wake is None or min(later) < wake):
            wake = min(later)
    return wake


def _instants(start: datetime, end: datetime | None, leads: tuple[timedelta, ...]) -> list[datetime]:
    return [start, *([end] if end is not None else []), *(start - lead for lead in leads)]


# ---------------------------------------------------------------------------
# the tick


def evaluate(config: Config, journal: Journal, now: datetime) -> Evaluation:
    """What is true at ``now`` and what must happen now. Pure; ``now`` is aware."""
    s = scope(config, journal, now)
    ledger = Ledger(journal.announced)
    moved, told = transitions(s, journal, ledger)
    gone, told_gone = released(s, journal)
    notices = told + told_gone + advance(s, journal, ledger) + withdrawn(s, config, journal, ledger)
    return Evaluation(
        now=now,
        active=tuple(a for a in s.items if now in a.occ),
        upcoming=tuple(a for a in s.items if a.occ.start > now),
        transitions=tuple(moved + gone),
        notices=tuple(notices),
        announces=ledger.announces(),
        next_wakeup=next_wakeup(s, config, journal),
        journal=journal,
    )
