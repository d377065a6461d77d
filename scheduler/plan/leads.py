"""Which advance notice is due: several passed leads collapse into one.

A window announced with leads ``[7d, 24h, 1h]`` that maintd learns of (or comes back
up for) 3 hours before its start owes the tenant one notice, not two: the most recent
lead that has passed (24h), sent at once and marked late. SPEC 1: "a notice whose
lead time has already passed ... is sent at once if the window has not started,
marked late".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple


class DueLead(NamedTuple):
    lead: timedelta
    due: datetime  # start - lead: when the notice was meant to go
    late: bool  # due more than ``slack`` before ``now``


def collapse_leads(
    start: datetime, leads: Iterable[timedelta], now: datetime, *, slack: timedelta = timedelta(0)
) -> DueLead | None:
    """The one notice owed at ``now`` for an occurrence starting at ``start``, or None.

    Of the leads whose instant ``start - lead`` is at or before ``now`` (a lead due
    exactly at ``now`` counts), the shortest: it is the latest news. It is late when
    ``now - due > slack`` (the tick allows a minute of slack; the timeline none, so
    one due exactly at ``--from`` is on time). None when no lead has passed.
    """
    passed = [lead for lead in leads if start - lead <= now]
    if not passed:
        return None
    lead = min(passed)
    due = start - lead
    return DueLead(lead=lead, due=due, late=now - due > slack)
