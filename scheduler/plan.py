"""The pure heart of maintd: ``evaluate(config, journal, now)``.

Level-triggered, not edge-triggered (DESIGN.md): given the config, what the journal
says already happened, and ``now``, it answers what is true now (active occurrences),
what must be recorded or sent now (actions, each idempotent by key), and the next
instant at which the answer changes. After a restart, a reload or a clock jump the
same call simply says what is true now.

``timeline(config, frm, to)`` is the same reasoning laid out over a range, for
``maintd plan``.

Intervals are half-open ``[start, end)``. A tenant's *maintenance period* is the union
of the occurrences that affect it, where overlapping **or touching** occurrences merge:
the tenant is not released in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from . import recurrence
from .model import UTC, Config, Occurrence, Window, isoz

CATCHUP = timedelta(days=7)  # how far back a restart records missed transitions
LATE_SLACK = timedelta(seconds=60)  # a notice sent within this of its due time is on time
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the anchor of a one-off window's announcement


def anchor(window: Window, occ: Occurrence) -> datetime:
    """What a notice series keys on: a one-off window keeps its identity when its times move."""
    return occ.key if window.recurring else EPOCH


# ---------------------------------------------------------------------------
# inputs and outputs


@dataclass(frozen=True, kw_only=True)
class Announcement:
    """What tenants were last told about one occurrence."""

    start: datetime
    end: datetime
    title: str
    sequence: int
    tenants: frozenset[str]
    status: str = "scheduled"  # "scheduled" | "cancelled"
    occurrence: datetime | None = None  # the occurrence key last announced


@dataclass(frozen=True, kw_only=True)
class OpenOccurrence:
    """A start recorded in the journal with no end yet."""

    window: str
    key: datetime
    start: datetime
    end: datetime
    tenants: frozenset[str]
    title: str = ""


@dataclass(frozen=True, kw_only=True)
class Journal:
    """The part of the store that planning depends on (a snapshot, read once per tick)."""

    last_tick: datetime | None = None
    events: frozenset = frozenset()  # {(window, key, "start"|"end")}
    open: Mapping[tuple[str, datetime], OpenOccurrence] = field(default_factory=dict)
    overrides: Mapping[tuple[str, datetime], datetime] = field(default_factory=dict)  # new effective end
    manual: tuple[Window, ...] = ()
    announced: Mapping[tuple[str, datetime], Announcement] = field(default_factory=dict)  # (window, anchor)
    sent_leads: frozenset = frozenset()  # {(window, key, lead)} scheduled notices already enqueued


@dataclass(frozen=True, kw_only=True)
class Active:
    """An occurrence with its window and effective end (after extend/exit/end-check)."""

    window: Window
    occ: Occurrence

    @property
    def tenants(self) -> frozenset[str]:
        return self.window.tenants


@dataclass(frozen=True, kw_only=True)
class Transition:
    event: str  # "start" | "end"
    window: str
    occurrence: datetime
    at: datetime  # when it took effect (the scheduled instant)
    late: bool
    tenants: frozenset[str]  # everyone the occurrence affects
    period_tenants: frozenset[str]  # those whose maintenance period it opens / closes
    reason: str = "scheduled"  # "scheduled" | "removed" | "cancelled"
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class NoticeAction:
    kind: str
    window: str
    occurrence: datetime
    tenants: frozenset[str]
    start: datetime
    end: datetime
    title: str
    lead: str | None = None
    late: bool = False
    sequence: int = 0
    previous: tuple[datetime, datetime] | None = None
    recurring: bool = False


@dataclass(frozen=True, kw_only=True)
class Announce:
    window: str
    anchor: datetime
    announcement: Announcement


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    now: datetime
    active: tuple[Active, ...]
    upcoming: tuple[Active, ...]  # occurrences starting after now, soonest first (within the horizon)
    transitions: tuple[Transition, ...]
    notices: tuple[NoticeAction, ...]
    announces: tuple[Announce, ...]
    next_wakeup: datetime | None

    def active_for(self, tenant: str) -> list[Active]:
        return [a for a in self.active if tenant in a.window.tenants]

    def period_end(self, tenant: str, at: datetime | None = None) -> datetime | None:
        """End of the tenant's merged maintenance period containing ``at`` (default now)."""
        return period_end(list(self.active) + list(self.upcoming), tenant, at or self.now)


# ---------------------------------------------------------------------------
# occurrences


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
    return _effective(
        list(config.windows) + list(journal.manual), journal, frm, to, include_cancelled=include_cancelled
    )


def _effective(
    windows: Iterable[Window], journal: Journal, frm: datetime, to: datetime, *, include_cancelled: bool = False
) -> list[Active]:
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


def period_end(items: list[Active], tenant: str, at: datetime) -> datetime | None:
    """End of the tenant's merged (overlapping or touching) period containing ``at``."""
    mine = sorted((a.occ for a in items if tenant in a.window.tenants), key=lambda o: o.start)
    end: datetime | None = None
    for o in mine:
        if end is None:
            if o.start <= at < o.end:
                end = o.end
        elif o.start <= end:
            end = max(end, o.end)
    return end


def _covered(items: list[Active], me: Active, instant: datetime, *, opening: bool) -> frozenset[str]:
    """Tenants of other occurrences that keep a tenant in maintenance across ``instant``.

    Opening at ``instant``: someone else already started (or starts at the same instant and
    sorts first) and has not ended before ``instant`` (touching counts).
    Closing at ``instant``: someone else covers the instant after (starts at or before it
    and ends later, or ends at the same instant and sorts last).
    """
    out: set[str] = set()
    my_order = (me.occ.start, me.window.id)
    for other in items:
        if other is me:
            continue
        o = other.occ
        if opening:
            if (o.start < instant <= o.end) or (o.start == instant and (o.start, other.window.id) < my_order):
                out |= other.window.tenants
        else:
            if (o.start <= instant < o.end) or (o.end == instant and (o.start, other.window.id) > my_order):
                out |= other.window.tenants
    return frozenset(out)


# ---------------------------------------------------------------------------
# the tick


def evaluate(config: Config, journal: Journal, now: datetime) -> Evaluation:
    """What is true at ``now`` and what must happen now. Pure; ``now`` is aware."""
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
        and w.id not in planned
        and w.end is not None
        and w.end > horizon
        and (w.id, EPOCH) in journal.announced
    ]
    if far:
        items += _effective(far, journal, horizon, max(w.end for w in far) + timedelta(seconds=1))
        items.sort(key=lambda a: (a.occ.start, a.window.id))
    by_key = {(a.window.id, a.occ.key): a for a in items}

    transitions: list[Transition] = []
    notices: list[NoticeAction] = []
    announces: dict[tuple[str, datetime], Announcement] = {}
    active = tuple(a for a in items if now in a.occ)
    upcoming = tuple(a for a in items if a.occ.start > now)

    def told(a: Active) -> Announcement | None:
        k = (a.window.id, anchor(a.window, a.occ))
        return announces.get(k) or journal.announced.get(k)

    def remember(a: Active, *, tenants: frozenset[str], sequence: int | None = None, status: str = "scheduled") -> None:
        prev = told(a)
        announces[(a.window.id, anchor(a.window, a.occ))] = Announcement(
            start=a.occ.start,
            end=a.occ.end,
            title=a.window.title,
            sequence=sequence if sequence is not None else (prev.sequence if prev else 0),
            tenants=(prev.tenants if prev else frozenset()) | tenants,
            status=status,
            occurrence=a.occ.key,
        )

    def notice(kind: str, a: Active, tenants: frozenset[str], **kw) -> None:
        if tenants:
            notices.append(
                NoticeAction(
                    kind=kind,
                    window=a.window.id,
                    occurrence=a.occ.key,
                    tenants=tenants,
                    start=a.occ.start,
                    end=a.occ.end,
                    title=a.window.title,
                    recurring=a.window.recurring,
                    **kw,
                )
            )

    # Transitions: starts and ends at or before now that the journal does not have.
    for a in items:
        w, o = a.window, a.occ
        started = (w.id, o.key, "start") in journal.events
        if not started and floor <= o.start <= now or (not started and o.start <= now < o.end):
            opened = w.tenants - _covered(items, a, o.start, opening=True)
            ends_too = o.end <= now
            transitions.append(
                Transition(
                    event="start",
                    window=w.id,
                    occurrence=o.key,
                    at=o.start,
                    late=now - o.start > LATE_SLACK,
                    tenants=w.tenants,
                    period_tenants=opened,
                    start=o.start,
                    end=o.end,
                )
            )
            if not ends_too:  # a window missed entirely gets only its `completed`
                prev = told(a)
                seq = prev.sequence if prev else 0
                notice("started", a, opened, late=now - o.start > LATE_SLACK, sequence=seq)
                remember(a, tenants=opened)
            started = True
        if started and o.end <= now and (w.id, o.key, "end") not in journal.events:
            closed = w.tenants - _covered(items, a, o.end, opening=False)
            transitions.append(
                Transition(
                    event="end",
                    window=w.id,
                    occurrence=o.key,
                    at=o.end,
                    late=now - o.end > LATE_SLACK,
                    tenants=w.tenants,
                    period_tenants=closed,
                    start=o.start,
                    end=o.end,
                )
            )
            prev = told(a)
            notice("completed", a, closed, late=now - o.end > LATE_SLACK, sequence=prev.sequence if prev else 0)
            remember(a, tenants=closed)

    # Occurrences the journal has open that the config no longer produces (removed,
    # cancelled, cron edited) or whose effective end is now earlier: release them now.
    for (wid, key), op in journal.open.items():
        if (wid, "end") and (wid, key, "end") in journal.events:
            continue
        a = by_key.get((wid, key))
        if a is not None:
            continue  # handled above (still active, or ended normally)
        if op.start > now:
            continue  # the clock went back before its start: it is simply not active now
        others = [x for x in items if x.occ.start <= now < x.occ.end]
        still = frozenset().union(*(x.window.tenants for x in others)) if others else frozenset()
        transitions.append(
            Transition(
                event="end",
                window=wid,
                occurrence=key,
                at=now,
                late=False,
                tenants=op.tenants,
                period_tenants=op.tenants - still,
                reason="removed",
                start=op.start,
                end=now,
            )
        )
        notices.append(
            NoticeAction(
                kind="completed",
                window=wid,
                occurrence=key,
                tenants=op.tenants - still,
                start=op.start,
                end=now,
                title=op.title or wid,
            )
        )

    # Advance notices, reschedules and extensions of what is known.
    for a in items:
        w, o = a.window, a.occ
        prev = told(a)
        if o.start > now:
            if prev is not None and prev.status == "scheduled" and (prev.start, prev.end) != (o.start, o.end):
                notice(
                    "rescheduled",
                    a,
                    prev.tenants & w.tenants,
                    sequence=prev.sequence + 1,
                    previous=(prev.start, prev.end),
                )
                remember(a, tenants=frozenset(), sequence=prev.sequence + 1)
                gone = prev.tenants - w.tenants
                if gone:
                    notice("cancelled", a, gone, sequence=prev.sequence + 1)
                prev = told(a)
            due = [(o.start - lead, lead) for lead in w.notify if o.start - lead <= now]
            if due:
                at, lead = max(due)  # several passed leads collapse into the most recent one
                label = w.lead_label(lead)
                told_now = prev.tenants if prev else frozenset()
                late = now - at > LATE_SLACK
                if (w.id, o.key, label) not in journal.sent_leads and (not late or not told_now):
                    notice("scheduled", a, w.tenants, lead=label, late=late, sequence=prev.sequence if prev else 0)
                    remember(a, tenants=w.tenants)
                elif told_now and w.tenants - told_now:
                    notice(
                        "scheduled",
                        a,
                        w.tenants - told_now,
                        lead=label,
                        late=True,
                        sequence=prev.sequence if prev else 0,
                    )
                    remember(a, tenants=w.tenants)
                elif prev is not None and prev.tenants - w.tenants:
                    notice("cancelled", a, prev.tenants - w.tenants, sequence=prev.sequence + 1)
                    announces[(w.id, anchor(w, o))] = Announcement(
                        start=o.start,
                        end=o.end,
                        title=w.title,
                        sequence=prev.sequence + 1,
                        tenants=prev.tenants & w.tenants,
                        status="scheduled",
                        occurrence=o.key,
                    )
        elif (
            now in o
            and prev is not None
            and prev.status == "scheduled"
            and o.end > prev.end
            and (w.id, o.key, "start") in journal.events
        ):
            notice("extended", a, prev.tenants & w.tenants, sequence=prev.sequence + 1, previous=(prev.start, prev.end))
            remember(a, tenants=frozenset(), sequence=prev.sequence + 1)

    # Announced occurrences that no longer exist (window removed, cancelled: true, cron
    # edited) and had not started: tell those already told.
    live = {(a.window.id, anchor(a.window, a.occ)) for a in items}
    declared = {w.id: w for w in config.windows}
    for (wid, anc), ann in journal.announced.items():
        if ann.status != "scheduled" or (wid, anc) in live or not ann.tenants:
            continue
        if ann.start <= now:
            continue  # it ran (or should have): its end is handled by the journal, not a cancel
        w = declared.get(wid)
        if w is not None and not w.cancelled and w.recurring and anc > horizon:
            continue  # beyond what this tick expanded
        key = ann.occurrence or anc
        notices.append(
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
            )
        )
        announces[(wid, anc)] = Announcement(
            start=ann.start,
            end=ann.end,
            title=ann.title,
            sequence=ann.sequence + 1,
            tenants=ann.tenants,
            status="cancelled",
            occurrence=key,
        )

    # The next instant at which any answer above changes.
    candidates: list[datetime] = []
    for a in items:
        o = a.occ
        candidates += [o.start, o.end]
        candidates += [o.start - lead for lead in a.window.notify]
    future = [c for c in candidates if c > now]
    next_wakeup = min(future) if future else None
    # Only occurrences starting before the horizon were expanded; one starting later has
    # its notices after horizon - max_lead = now + 1 day. When nothing happens before
    # that, look past the horizon: the first later occurrence of each window (its
    # notices come before those of its successors).
    if next_wakeup is None or next_wakeup > horizon - max_lead:
        for w in list(config.windows) + list(journal.manual):
            if w.cancelled:
                continue
            nxt = recurrence.next_start_after(w, horizon - timedelta(microseconds=1))
            if nxt is not None:
                later = [t for t in [nxt.start] + [nxt.start - lead for lead in w.notify] if t > now]
                if later and (next_wakeup is None or min(later) < next_wakeup):
                    next_wakeup = min(later)
    return Evaluation(
        now=now,
        active=active,
        upcoming=upcoming,
        transitions=tuple(transitions),
        notices=tuple(notices),
        announces=tuple(Announce(window=k[0], anchor=k[1], announcement=v) for k, v in announces.items()),
        next_wakeup=next_wakeup,
    )


# ---------------------------------------------------------------------------
# the timeline for `maintd plan`


class Event(NamedTuple):
    """One line of ``maintd plan``: a notice to, or the start/end of a period of, one tenant.

    A named tuple rather than a frozen dataclass: a 10,000-tenant plan has a million of
    these, and a tuple is built four times faster and takes a third of the memory.
    """

    at: datetime
    rank: int  # notice < start < end at the same instant
    tenant: str
    event: str  # "notice" | "start" | "end"
    window: str
    occurrence: datetime
    kind: str | None = None
    lead: str | None = None
    late: bool = False

    def to_json(self) -> dict:
        """SPEC section 2's object for this event."""
        d = {
            "at": _iso(self.at),
            "event": self.event,
            "window": self.window,
            "occurrence": _iso(self.occurrence),
            "tenant": self.tenant,
        }
        if self.event == "notice":
            d.update(kind=self.kind, lead=self.lead, late=self.late)
        return d


@lru_cache(maxsize=65536)
def _iso(ts: datetime) -> str:
    return isoz(ts)


_EVENT_NAMES = ("notice", "start", "end")


def _json_text(
    at: datetime, event: str, window: str, occurrence: datetime, kind: str | None, lead: str | None, late: bool
) -> tuple[str, str]:
    """The JSON of an event before and after its tenant (``tenant`` sits in the middle)."""
    text = _JSON
    head = (
        f'{{"at": {text(_iso(at))}, "event": {text(event)}, "window": {text(window)}, '
        f'"occurrence": {text(_iso(occurrence))}, "tenant": '
    )
    tail = f', "kind": {text(kind)}, "lead": {text(lead)}, "late": {text(late)}}}' if event == "notice" else "}"
    return head, tail


_JSON = json.JSONEncoder(ensure_ascii=False).encode


def json_lines(events: Iterable[Event]) -> Iterator[str]:
    """``json.dumps(e.to_json(), ensure_ascii=False, separators=(", ", ": "))`` of each event,
    several times faster: events that differ only in the tenant share the text around it."""
    if isinstance(events, Timeline):
        yield from events.json_lines()
        return
    text = _JSON
    last: tuple | None = None
    head = tail = ""
    for e in events:
        at, rank, tenant, event, window, occurrence, kind, lead, late = e
        key = (at, event, window, occurrence, kind, lead, late)
        if key != last:
            last = key
            head, tail = _json_text(*key)
        yield head + text(tenant) + tail


class Timeline(Sequence):
    """The events of a plan, sorted by ``at``; a read-only sequence of :class:`Event`.

    Kept as batches (one notice, start or end and the sorted tenants it concerns) and laid
    out tenant by tenant only when read: a 10,000-tenant month is millions of events,
    and streaming them keeps ``maintd plan`` at the memory of the batches instead of
    gigabytes of tuples (whose allocation would also keep the garbage collector busy).
    """

    __slots__ = ("_batches", "_len", "_list")

    def __init__(self, batches: list[tuple[tuple, list[str]]]) -> None:
        self._batches = batches  # [((at, rank, window, occurrence, kind, lead, late), tenants)]
        self._len = sum(len(tenants) for _, tenants in batches)
        self._list: list[Event] | None = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Event]:
        if self._list is not None:
            yield from self._list
            return
        new = tuple.__new__
        for (at, rank, window, occurrence, kind, lead, late), tenants in self._batches:
            name = _EVENT_NAMES[rank]
            for t in tenants:
                yield new(Event, (at, rank, t, name, window, occurrence, kind, lead, late))

    def __getitem__(self, index):  # type: ignore[override]
        if self._list is None:
            self._list = list(self)
        return self._list[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Timeline, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Timeline of {self._len} events>"

    def json_lines(self) -> Iterator[str]:
        """Each event as SPEC's JSON object text (see :func:`json_lines`)."""
        text = _JSON
        names: dict[str, str] = {}  # tenant id -> its JSON string; each recurs in many batches
        for (at, rank, window, occurrence, kind, lead, late), tenants in self._batches:
            head, tail = _json_text(at, _EVENT_NAMES[rank], window, occurrence, kind, lead, late)
            for t in tenants:
                name = names.get(t)
                if name is None:
                    name = names[t] = text(t)
                yield head + name + tail


def merge_periods(occs: list[tuple[datetime, datetime, str, datetime]]) -> list[tuple]:
    """Merge overlapping or touching ``(start, end, window, key)`` tuples (sorted by start
    then window) into periods ``(start, end, opener, closer)``, opener/closer being the
    (window, key) that opened / closed each one."""
    periods: list[list] = []
    for start, end, wid, key in occs:
        if periods and start <= periods[-1][1]:
            p = periods[-1]
            if end >= p[1]:
                p[1], p[3] = end, (wid, key)
        else:
            periods.append([start, end, (wid, key), (wid, key)])
    return [tuple(p) for p in periods]


def timeline(
    config: Config, frm: datetime, to: datetime, *, tenant: str | None = None, journal: Journal | None = None
) -> Timeline:
    """Every notice, start and end in ``[frm, to)``, per tenant, sorted by ``at``.

    At the same instant notices come first, then starts, then ends; then by window,
    occurrence and tenant, so the order is fully determined by the config.

    A notice whose lead has passed at ``frm`` for a window that starts later is listed at
    ``frm`` marked late; several leads due by ``frm`` collapse into the most recent one,
    as the daemon sends them (one due exactly at ``frm`` is that one, on time). Cancelled
    windows produce nothing.
    """
    journal = journal or Journal()
    max_lead = max((lead for w in config.windows for lead in w.notify), default=timedelta(0))
    items = effective(config, journal, frm - timedelta(days=1), to + max_lead)
    targets: dict[str, list[str]] = {}  # window id -> its tenants in the plan, sorted

    def targets_of(w: Window) -> list[str]:
        found = targets.get(w.id)
        if found is None:
            found = sorted(w.tenants) if tenant is None else [tenant] if tenant in w.tenants else []
            targets[w.id] = found
        return found

    # Events are gathered as batches (one notice, start or end and the tenants it concerns),
    # sorted, then laid out tenant by tenant: far fewer keys to sort than events.
    batches: dict[tuple, list[str]] = {}

    # Notices: per occurrence, then fanned out to its tenants.
    for a in items:
        w, o = a.window, a.occ
        if not w.notify or o.start <= frm:
            continue
        who = targets_of(w)
        if not who:
            continue
        due = [lead for lead in w.notify if o.start - lead <= frm]
        sends = []
        if due:
            lead = min(due)
            sends.append((frm, lead, o.start - lead < frm))
        sends += [(o.start - lead, lead, False) for lead in w.notify if frm < o.start - lead < to]
        for at, lead, late in sends:
            batches.setdefault((at, 0, w.id, o.key, "scheduled", w.lead_label(lead), late), []).extend(who)

    # Periods: group tenants with the same set of occurrences, merge once per group.
    membership: dict[str, list[int]] = {}
    for i, a in enumerate(items):
        for t in targets_of(a.window):
            membership.setdefault(t, []).append(i)
    groups: dict[tuple[int, ...], list[str]] = {}
    for t, idx in membership.items():
        groups.setdefault(tuple(idx), []).append(t)
    for idx, tenants in groups.items():
        occs = [(items[i].occ.start, items[i].occ.end, items[i].window.id, items[i].occ.key) for i in idx]
        for start, end, opener, closer in merge_periods(occs):
            if frm <= start < to:
                batches.setdefault((start, 1, opener[0], opener[1], None, None, False), []).extend(tenants)
            if frm <= end < to:
                batches.setdefault((end, 2, closer[0], closer[1], None, None, False), []).extend(tenants)

    ordered = []
    for key in sorted(batches, key=lambda k: (k[0], k[1], k[2], k[3], k[5] or "", k[6])):
        tenants = batches[key]
        tenants.sort()
        ordered.append((key, tenants))
    return Timeline(ordered)


def next_occurrences(
    config: Config, journal: Journal, now: datetime, *, limit: int = 5, within: timedelta = timedelta(days=60)
) -> list[Active]:
    """The next occurrences that start after ``now`` (for status), soonest first."""
    items = [a for a in effective(config, journal, now, now + within) if a.occ.start > now]
    return items[:limit]
