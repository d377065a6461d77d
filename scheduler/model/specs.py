"""Frozen records of the guardrails and rolling waves (SPEC 7, 8 and 9): change freezes,
tenant blackouts, a window's ``waves:`` and ``defer:``. Ground: imports nothing of ours.

Intervals are half-open, ``[start, end)``; instants are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, kw_only=True)
class Freeze:
    """A change freeze ``[start, end)``; local times were resolved in ``zone`` at load."""

    id: str
    start: datetime  # UTC
    end: datetime  # UTC
    reason: str = ""
    zone: ZoneInfo = ZoneInfo("UTC")  # where its times were written: messages show them there
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class Blackout:
    """A tenant's own no-maintenance time: one-off (``start`` + ``end``) or ``cron`` + ``duration``.

    ``zone`` is the tenant's: a cron fires on the tenant's wall clock. ``index`` is the
    blackout's position (0-based) in the tenant's ``blackouts`` list, for messages.
    """

    tenant: str
    zone: ZoneInfo
    start: datetime | None = None  # UTC
    end: datetime | None = None  # UTC
    cron: str | None = None
    duration: timedelta | None = None
    index: int = 0
    line: int = 0
    file: str = ""  # where it is declared: windows.yaml or its tenants_file

    @property
    def label(self) -> str:
        return f"blackouts[{self.index}]"


HALT_ON = ("end_check",)  # what may halt the later waves of a window


@dataclass(frozen=True, kw_only=True)
class WaveSpec:
    """A window's ``waves:``. Exactly one of ``size`` (tenants per wave) and ``percent``.

    ``order``: label selectors (each a mapping of labels that must all match); tenants
    matching an earlier one go first, the rest last, ties by id.
    """

    size: int | None = None
    percent: float | None = None
    every: timedelta
    order: tuple[Mapping[str, str], ...] = ()
    halt_on: str | None = None

    def __post_init__(self) -> None:
        if (self.size is None) == (self.percent is None):
            raise ValueError("waves: give exactly one of a count (size) or a percentage")
        if self.size is not None and self.size < 1:
            raise ValueError(f"wave size must be at least 1 tenant, got {self.size}")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise ValueError(f"wave size must be more than 0% and at most 100%, got {self.percent}%")
        if self.every <= timedelta(0):
            raise ValueError(f"waves: every must be longer than 0s, got {int(self.every.total_seconds())}s")
        if self.halt_on is not None and self.halt_on not in HALT_ON:
            raise ValueError(f"waves: halt_on must be one of {', '.join(HALT_ON)}, got {self.halt_on!r}")


@dataclass(frozen=True, kw_only=True)
class DeferSpec:
    """A window's ``defer:``: at most ``max`` deferrals per tenant and occurrence, and none
    later than ``until`` before the start. ``until_label`` is ``until`` as written ("48h")."""

    max: int = 1
    until: timedelta = timedelta(0)
    until_label: str | None = None

    def __post_init__(self) -> None:
        if self.max < 1:
            raise ValueError(f"defer: max must be at least 1, got {self.max}")
        if self.until < timedelta(0):
            raise ValueError("defer: until must not be negative")
