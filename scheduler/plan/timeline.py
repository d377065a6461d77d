"""What ``maintd plan`` prints: every notice, start and end over ``[frm, to)``, per tenant.

The same reasoning as the tick, laid out over a range: periods come from
:mod:`.periods`, the one late notice at ``frm`` from :func:`.leads.collapse_leads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from ..model import Config, Window, isoz
from .guardrails import screen
from .leads import collapse_leads
from .occurrences import candidates
from .periods import tenant_periods
from .records import Journal
from .waves import wave_numbers


class Event(NamedTuple):
    """One line of ``maintd plan``: a notice to, or the start/end of a period of, one tenant.

    A named tuple rather than a frozen dataclass: a 10,000-tenant plan has a million of
    these, and a tuple is built four times faster and takes a third of the memory.
    """

    at: datetime
    rank: int  # notice < start < end < skipped at the same instant
    tenant: str  # None only for an occurrence a freeze skips (it concerns every tenant of it)
    event: str  # "notice" | "start" | "end" | "skipped"
    window: str
    occurrence: datetime
    kind: str | None = None
    lead: str | None = None
    late: bool = False
    wave: int | None = None  # SPEC 8: the wave the occurrence is
    conflict: str | None = None  # "blackout": the tenant is in a blackout then (`blackouts: warn`)
    reason: str | None = None  # of a "skipped" event: "freeze <id>" | "blackout"

    def to_json(self) -> dict:
        """SPEC section 2's object for this event (a freeze's ``skipped`` event has no tenant)."""
        d: dict[str, object] = {
            "at": _iso(self.at),
            "event": self.event,
            "window": self.window,
            "occurrence": _iso(self.occurrence),
        }
        if self.tenant is not None:
            d["tenant"] = self.tenant
        if self.event == "notice":
            d.update(kind=self.kind, lead=self.lead, late=self.late)
        if self.wave is not None:
            d["wave"] = self.wave
        if self.reason is not None:
            d["reason"] = self.reason
        if self.conflict is not None:
            d["conflict"] = self.conflict
        return d


@lru_cache(maxsize=65536)
def _iso(ts: datetime) -> str:
    return isoz(ts) or ""


_EVENT_NAMES = ("notice", "start", "end", "skipped")


def _json_text(
    at: datetime,
    event: str,
    window: str,
    occurrence: datetime,
    kind: str | None,
    lead: str | None,
    late: bool,
    wave: int | None = None,
    conflict: str | None = None,
    reason: str | None = None,
) -> tuple[str, str]:
    """The JSON of an event before and after its tenant (``tenant`` sits in the middle)."""
    text = _JSON
    head = (
        f'{{"at": {text(_iso(at))}, "event": {text(event)}, "window": {text(window)}, '
        f'"occurrence": {text(_iso(occurrence))}, "tenant": '
    )
    tail = f', "kind": {text(kind)}, "lead": {text(lead)}, "late": {text(late)}' if event == "notice" else ""
    tail += f', "wave": {wave}' if wave is not None else ""
    tail += (f', "reason": {text(reason)}' if reason is not None else "") + (
        f', "conflict": {text(conflict)}' if conflict is not None else ""
    )
    return head, tail + "}"


def _line(head: str, name: str | None, tail: str) -> str:
    if name is None:  # a freeze's skipped event: the whole occurrence, no tenant
        return head.removesuffix(', "tenant": ') + tail
    return head + name + tail


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
        at, rank, tenant, event, window, occurrence, kind, lead, late, wave, conflict, reason = e
        key = (at, event, window, occurrence, kind, lead, late, wave, conflict, reason)
        if key != last:
            last = key
            head, tail = _json_text(*key)
        yield _line(head, None if tenant is None else text(tenant), tail)


class Timeline(Sequence):
    """The events of a plan, sorted by ``at``; a read-only sequence of :class:`Event`.

    Kept as batches (one notice, start or end and the sorted tenants it concerns) and laid
    out tenant by tenant only when read: a 10,000-tenant month is millions of events,
    and streaming them keeps ``maintd plan`` at the memory of the batches instead of
    gigabytes of tuples (whose allocation would also keep the garbage collector busy).
    """

    __slots__ = ("_batches", "_len", "_list", "_waves")

    def __init__(
        self, batches: list[tuple[tuple, list[str]]], waves: dict[tuple[str, datetime], int] | None = None
    ) -> None:
        self._batches = batches  # [((at, rank, window, occurrence, kind, lead, late, conflict, reason), tenants)]
        self._waves = waves or {}  # (window, occurrence) -> wave number (SPEC 8)
        self._len = sum(len(tenants) for _, tenants in batches)
        self._list: list[Event] | None = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Event]:
        if self._list is not None:
            yield from self._list
            return
        new = tuple.__new__
        for (at, rank, window, occurrence, kind, lead, late, conflict, reason), tenants in self._batches:
            name = _EVENT_NAMES[rank]
            wave = self._waves.get((window, occurrence))
            for t in tenants:
                yield new(Event, (at, rank, t, name, window, occurrence, kind, lead, late, wave, conflict, reason))

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
        for (at, rank, window, occurrence, kind, lead, late, conflict, reason), tenants in self._batches:
            wave = self._waves.get((window, occurrence))
            head, tail = _json_text(
                at, _EVENT_NAMES[rank], window, occurrence, kind, lead, late, wave, conflict, reason
            )
            for t in tenants:
                if t is None:
                    yield _line(head, None, tail)
                    continue
                name = names.get(t)
                if name is None:
                    name = names[t] = text(t)
                yield head + name + tail


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
    # SPEC 8: waves are occurrences of their own; SPEC 7: what freezes and blackouts do
    # (skipped occurrences, tenants left out or marked).
    screened = screen(config, candidates(config, journal, frm - timedelta(days=1), to + max_lead), marks=True)
    items, marked = screened.kept, screened.marked
    targets: dict[int, list[str]] = {}  # id(window record) -> its tenants in the plan, sorted

    def targets_of(w: Window) -> list[str]:
        # By record, not id: a wave and `blackouts: skip` narrow one occurrence's record (items keep it alive).
        found = targets.get(id(w))
        if found is None:
            found = sorted(w.tenants) if tenant is None else [tenant] if tenant in w.tenants else []
            targets[id(w)] = found
        return found

    # Events are gathered as batches (one notice, start or end and the tenants it concerns),
    # sorted, then laid out tenant by tenant: far fewer keys to sort than events.
    batches: dict[tuple, list] = {}

    def add(key: tuple, who: list[str], mark: frozenset[str] | None) -> None:
        if not mark:
            batches.setdefault((*key, None, None), []).extend(who)
            return
        for conflict, part in (("blackout", [t for t in who if t in mark]), (None, [t for t in who if t not in mark])):
            if part:
                batches.setdefault((*key, conflict, None), []).extend(part)

    for a in items:
        who = targets_of(a.window) if a.window.notify and a.occ.start > frm else []
        mark = marked.get((a.window.id, a.occ.key)) if marked else None
        for at, label, late in _notices(a.window, a.occ.start, frm, to) if who else ():
            add((at, 0, a.window.id, a.occ.key, "scheduled", label, late), who, mark)
    for tenants, periods in tenant_periods(items, targets_of):
        for p in periods:
            if frm <= p.start < to:
                add((p.start, 1, *p.opener, None, None, False), tenants, marked.get(p.opener) if marked else None)
            if frm <= p.end < to:
                add((p.end, 2, *p.closer, None, None, False), tenants, marked.get(p.closer) if marked else None)
    _skipped(screened.skipped, frm, to, tenant, batches)

    ordered = []
    for key in sorted(batches, key=lambda k: (k[0], k[1], k[2], k[3], k[5] or "", k[6], k[7] or "", k[8] or "")):
        tenants = batches[key]
        tenants.sort()
        ordered.append((key, tenants))
    return Timeline(ordered, wave_numbers(items))


def _skipped(skipped: list, frm: datetime, to: datetime, tenant: str | None, batches: dict[tuple, list]) -> None:
    """``skipped`` events of occurrences starting in ``[frm, to)``: one per occurrence a
    freeze skips (no tenant: it concerns all of them; with ``--tenant`` only if it is one),
    one per tenant ``blackouts: skip`` leaves out."""
    for a, reason, who in skipped:
        if not frm <= a.occ.start < to:
            continue
        key = (a.occ.start, 3, a.window.id, a.occ.key, None, None, False, None, reason)
        if who is None:
            if tenant is None or tenant in a.window.tenants:
                batches.setdefault(key, []).append(None)
            continue
        chosen = sorted(who) if tenant is None else [tenant] if tenant in who else []
        if chosen:
            batches.setdefault(key, []).extend(chosen)


def _notices(w: Window, start: datetime, frm: datetime, to: datetime) -> list[tuple[datetime, str, bool]]:
    """``(at, lead label, late)`` of the advance notices of an occurrence starting at
    ``start`` (after ``frm``) that fall in ``[frm, to)``: the passed leads collapsed into
    one at ``frm``, then each later lead at its instant."""
    sends = []
    due = collapse_leads(start, w.notify, frm)
    if due is not None:
        sends.append((frm, w.lead_label(due.lead), due.late))
    sends += [(start - lead, w.lead_label(lead), False) for lead in w.notify if frm < start - lead < to]
    return sends
