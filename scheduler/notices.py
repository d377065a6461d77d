"""Notices, pure: the table of notice kinds, composing a notice, the tenant message.

Everything that depends on a notice's kind is derived from :data:`KINDS`: adding a kind
is a row here, its templates, and when the plan sends it. The tenant-facing message is
a ``str.format`` template with a fixed set of named placeholders (checked at load by
:func:`check_template`, filled by :func:`render`). The message text lives here rather
than in a module of its own because composing a notice needs it and this module may
import only ground modules (model, errors, duration); ``scheduler.messages`` re-exports it.

Pure: no clock, no disk, no network; every instant is an argument.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from .leadtime import TimeLeft as TimeLeft  # re-exported
from .leadtime import time_left
from .model import (  # noqa: F401 - re-exported
    AFTER_MESSAGES,
    DEFAULT_MESSAGES,
    Config,
    Notice,
    Tenant,
    Window,
    calendar_uid,
    isoz,
    language,
    localized,
    notice_id,
    reason_sentence,
    reason_text,
)

# ---------------------------------------------------------------------------
# the table of kinds


@dataclass(frozen=True, kw_only=True)
class Kind:
    """What a notice kind means. SPEC 4 lists the kinds; SPEC 1 and 4.1 their rules."""

    name: str
    subject: str  # the English subject prefix (templates/subject.txt keys on the name)
    advance: bool = False  # news of a future start: a later rescheduled/cancelled makes it untrue
    superseded_at_start: bool = False  # never sent once the window started (SPEC 4.1)
    lead: bool = False  # carries the lead ("24h") it was sent for
    previous: bool = False  # carries ``previous: {start, end}``
    sequenced: bool = False  # a change: its SEQUENCE is part of its id, so each change is sent
    summary: bool = False  # carries what happened (jobs refused, drained, actual times)
    cancels: bool = False  # the calendar event is withdrawn (METHOD:CANCEL, STATUS:CANCELLED)

    @property
    def type(self) -> str:
        """The webhook ``type``."""
        return f"maintenance.{self.name}"

    @property
    def method(self) -> str:
        """The iTIP method of its calendar attachment."""
        return "CANCEL" if self.cancels else "REQUEST"


KINDS: Mapping[str, Kind] = {
    k.name: k
    for k in (
        Kind(name="scheduled", subject="Scheduled maintenance", advance=True, superseded_at_start=True, lead=True),
        Kind(name="started", subject="Maintenance started"),
        Kind(name="extended", subject="Maintenance extended", previous=True, sequenced=True),
        Kind(name="completed", subject="Maintenance completed", summary=True),
        Kind(name="rescheduled", subject="Rescheduled", advance=True, previous=True, sequenced=True),
        Kind(name="cancelled", subject="Cancelled", sequenced=True, cancels=True),
    )
}
NOTICE_KINDS = tuple(KINDS)
ADVANCE_KINDS = frozenset(k.name for k in KINDS.values() if k.advance)
SUPERSEDED_AT_START = frozenset(k.name for k in KINDS.values() if k.superseded_at_start)
PREVIOUS_KINDS = frozenset(k.name for k in KINDS.values() if k.previous)
SEQUENCED_KINDS = frozenset(k.name for k in KINDS.values() if k.sequenced)
CANCEL_KINDS = frozenset(k.name for k in KINDS.values() if k.cancels)


def kind(name: str) -> Kind:
    """The row of ``name``; ValueError naming the known kinds otherwise."""
    found = KINDS.get(name)
    if found is None:
        raise ValueError(f'unknown notice kind "{name}"; expected one of {", ".join(NOTICE_KINDS)}')
    return found


# ---------------------------------------------------------------------------
# composing a notice


class Action(Protocol):
    """What the plan decided to send (``scheduler.plan.NoticeAction`` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def occurrence(self) -> datetime: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def title(self) -> str: ...
    @property
    def lead(self) -> str | None: ...
    @property
    def late(self) -> bool: ...
    @property
    def sequence(self) -> int: ...
    @property
    def previous(self) -> tuple[datetime, datetime] | None: ...
    @property
    def recurring(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


def notice_seq(n: Notice | Action) -> int:
    """The sequence that is part of a notice's identity: 0 unless its kind is a change."""
    return n.sequence if kind(n.kind).sequenced else 0


FormatTime = Callable[[datetime, ZoneInfo], str]


def tenant_message(
    cfg: Config,
    window: Window | None,
    tenant: Tenant,
    start: datetime,
    end: datetime,
    title: str,
    window_id: str,
    *,
    format_time: FormatTime | None = None,
) -> str:
    """The tenant-facing message of a window (or the provider's), placeholders filled in;
    ``format_time(ts, zone)`` writes the dates (the runtime passes Babel's; English without)."""
    text = (window.message if window and window.message else None) or cfg.provider.message
    return fill_message(cfg, text, tenant, start, end, title, window_id, format_time=format_time)


def fill_message(
    cfg: Config,
    text: str,
    tenant: Tenant,
    start: datetime,
    end: datetime,
    title: str,
    window_id: str,
    *,
    format_time: FormatTime | None = None,
) -> str:
    """``text`` (maintd's default in the tenant's language) with its placeholders filled in."""
    return render(
        localized(text, tenant),
        provider=cfg.provider.name,
        title=title,
        start=start,
        end=end,
        window=window_id,
        tenant=tenant,
        zone=tenant.zone,
        format_time=format_time,
    )


def notice_message(
    cfg: Config, window: Window | None, tenant: Tenant, n: Action, *, format_time: FormatTime | None = None
) -> str:
    """The tenant-facing message of a notice: the window's (or provider's) message while the
    maintenance is ahead or running, a fixed sentence once it has ended or was cancelled
    (followed by its reason, when the plan gave one)."""
    texts = AFTER_MESSAGES.get(n.kind)
    if texts is None:
        return tenant_message(cfg, window, tenant, n.start, n.end, n.title, n.window, format_time=format_time)
    lang = language(tenant)
    why = reason_sentence(n.reason, lang) if n.reason else ""  # a literal: its braces are no placeholders
    text = texts.get(lang, texts["en"]) + (" " + why.replace("{", "{{").replace("}", "}}") if why else "")
    return render(
        text,
        provider=cfg.provider.name,
        title=n.title,
        start=n.start,
        end=n.end,
        window=n.window,
        tenant=tenant,
        zone=tenant.zone,
        format_time=format_time,
    )


def compose_notice(
    cfg: Config,
    n: Action,
    tenant: Tenant,
    *,
    window: Window | None = None,
    link: str | None = None,
    summary: Mapping | None = None,
    format_time: FormatTime | None = None,
    now: datetime | None = None,
) -> Notice:
    """The Notice a planned action means for one tenant. The daemon and ``maintd preview``
    build notices the same way, so a preview is what would be sent.

    ``now`` is when the notice is composed (the tick that enqueues it): a late notice
    states the time really left from then (``time_left``), not the lead it missed.
    Without ``now`` a late notice's time left is unknown and stays None.
    """
    k = kind(n.kind)
    lead = n.lead if k.lead else None
    previous = n.previous if k.previous else None
    left = None
    if lead is not None and (now is not None or not n.late):
        tl = time_left(start=n.start, sent_at=now or n.start, lead=lead, late=n.late)
        left = tl.left if tl else None
    return Notice(
        id=notice_id(n.window, n.occurrence, tenant.id, n.kind, lead, notice_seq(n)),
        kind=n.kind,
        window=n.window,
        occurrence=n.occurrence,
        tenant=tenant.id,
        title=n.title,
        start=n.start,
        end=n.end,
        message=notice_message(cfg, window, tenant, n, format_time=format_time),
        provider=cfg.provider.name,
        lead=lead,
        late=n.late,
        uid=calendar_uid(n.window, n.occurrence, n.recurring),
        sequence=n.sequence,
        previous_start=previous[0] if previous else None,
        previous_end=previous[1] if previous else None,
        summary=summary if k.summary else None,
        link=link,
        time_left=left,
        reason=reason_text(n.reason, getattr(tenant, "locale", None)) if n.reason else None,
    )


# ---------------------------------------------------------------------------
# the tenant message: checked at load, so render() only sees checked templates in
# practice; it still never raises, because it runs on the gate's deny path and a
# refused job must get *some* answer at 2 a.m.

PLACEHOLDERS = ("provider", "title", "start", "end", "window", "tenant")

_EXPECTED = "expected one of " + ", ".join("{%s}" % p for p in PLACEHOLDERS)

# English on purpose: strftime's %a/%b follow the process locale, and the daemon's
# locale must not change what tenants read.
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Every placeholder is filled with a string, and whether a format spec is valid for a
# str does not depend on the string, so one trial value per name proves the spec.
_TRIAL = {p: "x" for p in PLACEHOLDERS}

_HEAD = re.compile(r"[.\[]")
_FORMATTER = string.Formatter()


def _field_text(name: str, conversion: str | None, spec: str) -> str:
    return "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"


def _check(text: str) -> str | None:
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith(("Single", "expected '}'")):
            return 'unbalanced brace in message; write "{{" or "}}" for a literal brace'
        return f"invalid placeholder in message: {reason}"
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        field = _field_text(name, conversion, spec or "")
        head = _HEAD.split(name, 1)[0]
        if head == "" or head.isdigit():
            return f'positional placeholder "{field}" in message; {_EXPECTED}'
        if head != name:
            return f'attribute or index access "{field}" in message; {_EXPECTED}'
        if name not in PLACEHOLDERS:
            return f'unknown placeholder "{field}" in message; {_EXPECTED}'
        if spec and "{" in spec:
            # Legal in str.format, but a placeholder's text as a format spec is never
            # what the author meant.
            return f'placeholder inside a format spec "{field}" in message; {_EXPECTED}'
        try:
            field.format(**_TRIAL)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            return f'invalid format "{field}" in message: {exc}'
    return None


def check_template(text: str) -> str | None:
    """Return None if ``text`` is a valid template, else what is wrong with it.

    Valid means: ``str.format`` syntax using only the names in :data:`PLACEHOLDERS`;
    no positional fields (``{}``, ``{0}``), no attribute or index access
    (``{start.year}``), a conversion and format spec that work on a string. ``{{`` and
    ``}}`` are literal braces. The returned text is meant to follow ``file:line:col:``.
    """
    return _checked(text)


# Templates are few (one per rule, window and provider) and immutable: remember the
# verdict so render() can re-check on every call for free.
_checked = lru_cache(maxsize=512)(_check)


@lru_cache(maxsize=1024)
def _format_local(ts: datetime, zone: ZoneInfo) -> str:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"format_local needs an aware datetime, got {ts!r}")
    local = ts.astimezone(zone)
    return (
        f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year} "
        f"{local.hour:02d}:{local.minute:02d} {local.tzname()}"
    )


def format_local(ts: datetime, zone: ZoneInfo) -> str:
    """``ts`` as a tenant reads it in ``zone``: ``Sat 5 Dec 2026 22:00 CET``.

    The abbreviation is the zone's at that instant (CET in winter, CEST in summer).
    ``ts`` must be aware; a naive datetime raises ValueError rather than be guessed.
    """
    return _format_local(ts, zone)


def render(
    text: str,
    *,
    provider: str,
    title: str,
    start: datetime,
    end: datetime,
    window: str,
    tenant: Tenant | None,
    zone: ZoneInfo,
    format_time: FormatTime | None = None,
) -> str:
    """Fill the placeholders of ``text``; ``{start}``/``{end}`` are shown in ``zone``
    (through ``format_time`` when given: the tenant's language).

    ``{tenant}`` is the tenant's name, or its id when it has no name, or "" when there
    is no tenant. A template that :func:`check_template` rejects is returned unchanged
    instead of raising: the loader refuses such templates, and if one slips through
    (a caller that skipped the check) a tenant reading raw braces beats a gate that
    crashes in the middle of the night.
    """
    if _checked(text) is not None:
        return text
    if tenant is None:
        who = ""
    else:
        who = tenant.name or tenant.id
    fmt = format_time or format_local
    try:
        return text.format(
            provider=provider,
            title=title,
            start=fmt(start, zone),
            end=fmt(end, zone),
            window=window,
            tenant=who,
        )
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return text


# ---------------------------------------------------------------------------
# the notice JSON codec (the outbox payload)


def parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def notice_to_json(n: Notice) -> dict:
    """A Notice as the JSON an outbox row keeps (instants in UTC with ``Z``)."""
    return {
        "id": n.id,
        "kind": n.kind,
        "window": n.window,
        "occurrence": isoz(n.occurrence),
        "tenant": n.tenant,
        "title": n.title,
        "start": isoz(n.start),
        "end": isoz(n.end),
        "message": n.message,
        "provider": n.provider,
        "lead": n.lead,
        "late": n.late,
        "uid": n.uid,
        "sequence": n.sequence,
        "previous_start": isoz(n.previous_start),
        "previous_end": isoz(n.previous_end),
        "summary": dict(n.summary) if n.summary else None,
        "link": n.link,
        "time_left": n.time_left,
        "reason": n.reason,
    }


def notice_from_json(d: Mapping) -> Notice:
    """The inverse of :func:`notice_to_json`; optional fields may be absent."""
    return Notice(
        id=d["id"],
        kind=d["kind"],
        window=d["window"],
        occurrence=parse_time(d["occurrence"]),  # type: ignore[arg-type]
        tenant=d["tenant"],
        title=d["title"],
        start=parse_time(d["start"]),  # type: ignore[arg-type]
        end=parse_time(d["end"]),  # type: ignore[arg-type]
        message=d["message"],
        provider=d["provider"],
        lead=d.get("lead"),
        late=bool(d.get("late")),
        uid=d.get("uid", ""),
        sequence=int(d.get("sequence") or 0),
        previous_start=parse_time(d.get("previous_start")),
        previous_end=parse_time(d.get("previous_end")),
        summary=d.get("summary"),
        link=d.get("link"),
        time_left=d.get("time_left"),
        reason=d.get("reason"),
    )
