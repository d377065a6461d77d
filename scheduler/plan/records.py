"""What planning reads (the journal snapshot) and what it answers (the evaluation).

Frozen records only; the arithmetic lives in the modules beside this one. Intervals
are half-open ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..model import UTC, Occurrence, Window
from .periods import period_end

CATCHUP = timedelta(days=7)  # how far back a restart records missed transitions
LATE_SLACK = timedelta(seconds=60)  # a notice sent within this of its due time is on time
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the anchor of a one-off window's announcement


WAVE_ANCHOR = timedelta(seconds=1)  # wave n of a one-off window: EPOCH + n * this


def anchor(window: Window, occ: Occurrence, wave: int | None = None) -> datetime:
    """What a notice series keys on: a one-off window keeps its identity when its times move.

    So does each wave of a one-off window (SPEC 8): old and new waves are matched by number
    (``EPOCH + wave`` seconds), so moving the window's start tells its tenants
    ``rescheduled`` rather than ``cancelled`` and ``scheduled``. A recurring window's
    occurrences and waves key on their own start.
    """
    if window.recurring or (window.waves is not None and wave is None):
        return occ.key
    return EPOCH + wave * WAVE_ANCHOR if wave is not None else EPOCH


def is_wave_anchor(key: datetime) -> bool:
    """Whether an announcement's anchor is that of a one-off window's wave."""
    return EPOCH < key < EPOCH + timedelta(days=1)


# ---------------------------------------------------------------------------
# inputs


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
class WaveHalt:
    """The waves after ``after`` of one occurrence are halted; planned again from ``resume_at``."""

    after: int
    reason: str
    at: datetime
    resume_at: datetime | None = None


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
    # SPEC 8 and 9 (plan/waves.py): stored wave membership, halted occurrences, tenants' deferrals
    wave_members: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # window -> tenant -> wave
    wave_halts: Mapping[tuple[str, datetime], WaveHalt] = field(default_factory=dict)  # (window, base)
    deferrals: Mapping[tuple[str, datetime], Mapping[str, int | datetime]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# outputs


@dataclass(frozen=True, kw_only=True)
class Active:
    """An occurrence with its window and effective end (after extend/exit/end-check)."""

    window: Window
    occ: Occurrence
    wave: int | None = None  # SPEC 8: the wave number; ``window.tenants`` are then its tenants
    base: datetime | None = None  # the key of the window occurrence the wave belongs to

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
    reason: str | None = None  # why (English; notices.reason_text translates): a halt's ``cancelled``


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
    # what it was evaluated from: a part that plans further ahead (the gate's long
    # ``expected_duration``) must see the same waves, halts, deferrals and manual windows
    journal: Journal | None = field(default=None, compare=False, repr=False)

    def active_for(self, tenant: str) -> list[Active]:
        return [a for a in self.active if tenant in a.window.tenants]

    def period_end(self, tenant: str, at: datetime | None = None) -> datetime | None:
        """End of the tenant's merged maintenance period containing ``at`` (default now)."""
        return period_end(list(self.active) + list(self.upcoming), tenant, at or self.now)
