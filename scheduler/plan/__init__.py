"""Planning, pure: the tick ``evaluate(config, journal, now)`` and the ``maintd plan`` timeline.

Parts: :mod:`.records` (journal snapshot in, evaluation out), :mod:`.occurrences`,
:mod:`.periods` (the one merge of overlapping or touching occurrences), :mod:`.leads`
(passed leads collapse into one late notice), :mod:`.evaluate` (the tick as named
phases) and :mod:`.timeline`. Every name other code used as ``plan.X`` is re-exported
here. Intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

from .evaluate import Ledger, Scope, evaluate, next_wakeup
from .leads import DueLead, collapse_leads
from .occurrences import _expand, effective, effective_of, next_occurrences, occurrences
from .periods import Period, boundaries, group_tenants, merge_periods, period_end, tenant_periods
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
    OpenOccurrence,
    Transition,
    WaveHalt,
    anchor,
)
from .timeline import Event, Timeline, json_lines, timeline

__all__ = [
    "CATCHUP",
    "EPOCH",
    "LATE_SLACK",
    "Active",
    "Announce",
    "Announcement",
    "DueLead",
    "Evaluation",
    "Event",
    "Journal",
    "Ledger",
    "NoticeAction",
    "OpenOccurrence",
    "Period",
    "Scope",
    "Timeline",
    "Transition",
    "WaveHalt",
    "_expand",
    "anchor",
    "boundaries",
    "collapse_leads",
    "effective",
    "effective_of",
    "evaluate",
    "group_tenants",
    "json_lines",
    "merge_periods",
    "next_occurrences",
    "next_wakeup",
    "occurrences",
    "period_end",
    "tenant_periods",
    "timeline",
]
