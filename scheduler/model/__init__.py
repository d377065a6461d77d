"""Frozen domain records. Nothing here imports anything else of ours.

All instants are timezone-aware UTC datetimes unless a name says ``local``.
Intervals are half-open: ``[start, end)``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from .sentences import (  # noqa: F401 - re-exported
    AFTER_MESSAGES,
    DEFAULT_MESSAGES,
    halted_reason,
    language,
    language_of,
    localized,
    reason_sentence,
    reason_text,
)
from .specs import HALT_ON as HALT_ON  # re-exported: the records live in model.specs
from .specs import Blackout, DeferSpec, Freeze, WaveSpec

UTC = UTC

NOTICE_KINDS = ("scheduled", "started", "extended", "completed", "rescheduled", "cancelled")


class Mode(str, Enum):
    NORMAL = "normal"
    DRAINING = "draining"
    MAINTENANCE = "maintenance"


def isoz(ts: datetime | None) -> str | None:
    """UTC ISO-8601 with a ``Z``, seconds precision: the wire format of every instant."""
    if ts is None:
        return None
    return ts.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# control, format (zero-width, bidi overrides, BOM), line and paragraph separators: they make
# two ids that look the same differ, or one that looks harmless mean something else
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def normalise_id(s: str) -> str:
    """An id as compared everywhere: NFKC. Raises ValueError on control or invisible characters.

    Pure; the config loader applies it to tenant ids and label values, and the API should
    apply it to the ids in incoming requests so both sides compare the same text.
    """
    if s.isascii() and s.isprintable():  # the common case: NFKC leaves it as it is, nothing is invisible
        return s
    s = unicodedata.normalize("NFKC", s)
    for ch in s:
        if unicodedata.category(ch) in _INVISIBLE:
            name = unicodedata.name(ch, "")
            what = f"U+{ord(ch):04X} {name}".rstrip()
            kind = "a control character" if unicodedata.category(ch) == "Cc" else "an invisible character"
            raise ValueError(f"contains {what}, {kind}; expected visible characters only")
    return s


def normalise_kind(s: str) -> str:
    """A job kind as compared everywhere: NFKC and casefolded ("Backup" is "backup").

    Raises ValueError on control or invisible characters (``backup\u200b``, ``back\x00up``).
    """
    return unicodedata.normalize("NFKC", normalise_id(s).casefold())


# ---------------------------------------------------------------- guardrails (SPEC 7)


@dataclass(frozen=True, kw_only=True)
class Webhook:
    url: str
    secret: str  # "whsec_" + base64; never logged or printed


@dataclass(frozen=True, kw_only=True)
class Tenant:
    id: str
    name: str
    zone: ZoneInfo
    labels: Mapping[str, str] = field(default_factory=dict)
    email: tuple[str, ...] = ()
    webhook: Webhook | None = None
    line: int = 0  # where it is declared, for messages
    blackouts: tuple[Blackout, ...] = ()  # SPEC 7: its own no-maintenance times
    notify_urls: tuple[str, ...] = ()  # Apprise URLs (SPEC 4.2); secrets: show only masked
    locale: str = "en"  # template language (SPEC 4.3), checked at load

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, kw_only=True)
class Rule:
    effect: str  # "allow" | "deny"
    kinds: frozenset[str] | None = None  # None: any kind
    resources: frozenset[str] | None = None  # None: any resource
    labels: Mapping[str, str] = field(default_factory=dict)  # tenant labels that must all match
    message: str | None = None  # tenant-facing text for a deny (placeholders allowed)


@dataclass(frozen=True, kw_only=True)
class Policy:
    name: str
    default: str = "deny"  # "allow" | "deny"
    rules: tuple[Rule, ...] = ()


# A window without a policy and without provider.policy denies every new job kind.
DENY_ALL = Policy(name="deny-all", default="deny", rules=())


@dataclass(frozen=True, kw_only=True)
class Drain:
    grace: timedelta = timedelta(minutes=10)
    then: str = "stop"  # "stop" | "keep"


@dataclass(frozen=True, kw_only=True)
class Hooks:
    on_start: tuple[str, ...] | None = None
    on_end: tuple[str, ...] | None = None
    timeout: timedelta = timedelta(minutes=2)


@dataclass(frozen=True, kw_only=True)
class EndCheck:
    run: tuple[str, ...] | None = None
    url: str | None = None
    every: timedelta = timedelta(minutes=10)
    max: timedelta = timedelta(hours=2)


@dataclass(frozen=True, kw_only=True)
class Window:
    """A declared maintenance window: one-off (``start``) or recurring (``cron``)."""

    id: str
    title: str
    zone: ZoneInfo
    tenants: frozenset[str]  # resolved at load from all | [ids] | {labels: ...}
    start: datetime | None = None  # one-off: UTC instant (local times resolved at load)
    end: datetime | None = None  # one-off with explicit end
    duration: timedelta | None = None  # recurring always; one-off when given
    cron: str | None = None
    resources: frozenset[str] | None = None
    notify: tuple[timedelta, ...] = ()  # lead times, longest first
    lead_labels: Mapping[timedelta, str] = field(default_factory=dict)  # as written: "24h" stays "24h"
    policy: str | None = None
    drain: Drain = field(default_factory=Drain)
    message: str | None = None
    cancelled: bool = False
    hooks: Hooks | None = None
    skip: frozenset[date] = frozenset()
    end_check: EndCheck | None = None
    waves: WaveSpec | None = None  # SPEC 8: rolling maintenance
    defer: DeferSpec | None = None  # SPEC 9: tenant self-service
    manual: bool = False  # created by `maintd enter`, not declared in windows.yaml
    line: int = 0
    override_freeze: str | None = None  # SPEC 7: runs inside a freeze, for this reason (journaled)
    blackouts: str = "warn"  # SPEC 7: "warn" | "skip" (leave a tenant in a blackout out)
    # SPEC 6: (target name, settings merged over the target's) or None: provider.integrations
    integrations: tuple[tuple[str, Mapping[str, Any]], ...] | None = None

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    def lead_label(self, lead: timedelta) -> str:
        """The lead as the provider wrote it ("24h" stays "24h"), else whole hours/minutes."""
        label = self.lead_labels.get(lead)
        if label is None:
            seconds = int(lead.total_seconds())
            label = (
                f"{seconds // 3600}h"
                if seconds % 3600 == 0
                else f"{seconds // 60}m"
                if seconds % 60 == 0
                else f"{seconds}s"
            )
        return label


@dataclass(frozen=True, kw_only=True, order=True)
class Occurrence:
    """One concrete interval of a window, ``[start, end)`` in UTC.

    ``key`` is the occurrence's identity on the wire (``"occurrence"``): its start as
    first scheduled. For a one-off window it follows the start when that is edited (the
    window id alone identifies it); for a recurring one it is the cron instant.
    """

    start: datetime
    end: datetime
    window: str
    key: datetime  # the scheduled start (UTC)

    def __contains__(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def __hash__(self) -> int:
        return hash((self.window, self.key))


@dataclass(frozen=True, kw_only=True)
class Provider:
    name: str
    zone: ZoneInfo
    message: str = "{provider} is under scheduled maintenance until {end}."
    policy: str | None = None
    redundant: tuple[frozenset[str], ...] = ()  # SPEC 7: resources never in maintenance together
    ops: OpsSettings | None = None  # the provider's own room (SPEC 4.2)
    integrations: tuple[str, ...] = ()  # SPEC 6: the targets of windows that list none


@dataclass(frozen=True, kw_only=True)
class OpsSettings:
    urls: tuple[str, ...] = ()  # Apprise URLs; secrets: show only masked
    events: tuple[str, ...] = ()  # which ops events the room hears


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "maintd <maintd@localhost>"
    timeout: timedelta = timedelta(seconds=10)
    rate: float | None = None  # messages per second the relay accepts (notifiers.email.rate); None: unlimited
    connections: int = 16  # SMTP connections open at once to the relay, reused (notifiers.email.connections)


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    timeout: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, kw_only=True)
class Retry:
    """SPEC section 4.1: the wait after each failed try; no try later than ``max_age`` after due."""

    schedule: tuple[timedelta, ...] = tuple(timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 36000))
    max_age: timedelta = timedelta(hours=72)


@dataclass(frozen=True, kw_only=True)
class Notifiers:
    email: EmailSettings | None = None
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    templates: str | None = None  # a provider's own template directory (absolute)
    retry: Retry = field(default_factory=Retry)
    # Before notifiers.retry; kept while the outbox still reads them. Old keys in the file
    # set them as before; with notifiers.retry they follow it (tries = waits + 1).
    max_attempts: int = 8
    max_age: timedelta = timedelta(hours=24)
    retry_base: timedelta = timedelta(seconds=30)  # first retry delay; doubles per attempt, up to 1h


@dataclass(frozen=True, kw_only=True)
class DaemonSettings:
    listen: str = "127.0.0.1:8787"
    database: str = "maintd.db"  # resolved: absolute SQLite path or a SQLAlchemy URL
    token_file: str | None = None  # scope admin; MAINTD_TOKEN wins
    public_url: str | None = None
    gate_token_file: str | None = None  # scope gate (admissions, heartbeats); MAINTD_GATE_TOKEN wins
    read_token_file: str | None = None  # scope read (status, windows, metrics); MAINTD_READ_TOKEN wins
    socket: str | None = None  # unix socket serving the API, mode 0660, no token
    show_resources: bool = False  # whether tenant pages list internal resource names


@dataclass(frozen=True, kw_only=True)
class IntegrationTarget:
    """A named target of ``integrations:`` (SPEC 6); ``settings`` without ``type`` (token is a secret)."""

    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class Config:
    path: str
    provider: Provider
    tenants: Mapping[str, Tenant]
    windows: tuple[Window, ...]
    policies: Mapping[str, Policy]
    notifiers: Notifiers = field(default_factory=Notifiers)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    hooks: Hooks | None = None
    warnings: tuple[str, ...] = ()
    freezes: tuple[Freeze, ...] = ()  # SPEC 7: change freezes
    integrations: Mapping[str, IntegrationTarget] = field(default_factory=dict)

    def window(self, window_id: str) -> Window | None:
        for w in self.windows:
            if w.id == window_id:
                return w
        return None

    def policy_for(self, window: Window) -> Policy:
        name = window.policy or self.provider.policy
        if name is None:
            return DENY_ALL
        return self.policies[name]

    def hooks_for(self, window: Window) -> Hooks | None:
        return window.hooks if window.hooks is not None else self.hooks


def notice_id(window: str, occurrence: datetime, tenant: str, kind: str, lead: str | None = None, seq: int = 0) -> str:
    """Deterministic notice id: the same on every retry and on every instance."""
    raw = f"{window}|{isoz(occurrence)}|{tenant}|{kind}|{lead or ''}|{seq}"
    return "ntc_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def calendar_uid(window: str, occurrence_key: datetime | None, recurring: bool, domain: str = "maintd") -> str:
    """iCalendar UID: a one-off keeps it across reschedules; a recurring occurrence by its cron start."""
    if recurring and occurrence_key is not None:
        stamp = occurrence_key.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{window}-{stamp}@{domain}"
    return f"{window}@{domain}"


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One notice to one tenant (delivered over each of the tenant's channels)."""

    id: str
    kind: str  # one of NOTICE_KINDS
    window: str
    occurrence: datetime  # the occurrence key (UTC)
    tenant: str
    title: str
    start: datetime
    end: datetime
    message: str  # tenant-facing, placeholders already filled in
    provider: str
    lead: str | None = None  # "24h" for scheduled notices
    late: bool = False
    uid: str = ""
    sequence: int = 0
    previous_start: datetime | None = None  # for rescheduled
    previous_end: datetime | None = None
    summary: Mapping | None = None  # for completed: jobs refused/drained, actual times
    link: str | None = None  # tenant page when daemon.public_url is set
    # "10m": how long before the start the notice was composed, when it is late (its lead
    # passed); the lead itself when on time. None for notices without a lead.
    time_left: str | None = None
    reason: str | None = None  # why, in the tenant's language: a halt's ``cancelled`` (SPEC 8)

    def payload(self) -> dict:
        """The webhook JSON body of SPEC section 4."""
        body: dict[str, Any] = {
            "type": f"maintenance.{self.kind}",
            "id": self.id,
            "window": self.window,
            "occurrence": isoz(self.occurrence),
            "tenant": self.tenant,
            "title": self.title,
            "start": isoz(self.start),
            "end": isoz(self.end),
            "message": self.message,
            "lead": self.lead,
            "late": self.late,
        }
        if self.time_left is not None:  # advance notices: "10m" left when late, else the lead
            body["time_left"] = self.time_left
        if self.previous_start is not None:
            body["previous"] = {"start": isoz(self.previous_start), "end": isoz(self.previous_end)}
        if self.summary is not None:
            body["summary"] = dict(self.summary)
        if self.link:
            body["link"] = self.link
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True, kw_only=True)
class Decision:
    admitted: bool
    reason: str | None = None  # "maintenance" | "would-overlap"
    message: str | None = None
    retry_after: datetime | None = None  # when to ask again (end of the merged period)
    window: str | None = None
    occurrence: datetime | None = None
