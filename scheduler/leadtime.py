"""How long until a window starts, as an advance notice says it (pure).

On time, a notice states its lead; late (SPEC 1: a notice whose lead has passed is sent at
once, marked late), the real time left and that it is short notice.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import NamedTuple

from .duration import format_duration


class TimeLeft(NamedTuple):
    left: str  # "10m", "24h": the lead when on time, the real time left when late (duration syntax)
    text: str  # "in 10 minutes"
    short_notice: bool  # late: the tenant gets less warning than the lead promised


_UNIT_NAMES = {"d": "day", "h": "hour", "m": "minute", "s": "second"}
_SPOKEN_PART = re.compile(r"(\d+)([dhms])")


def _spoken(left: str) -> str:
    parts = _SPOKEN_PART.findall(left)
    return " ".join(f"{n} {_UNIT_NAMES[u]}{'' if n == '1' else 's'}" for n, u in parts) or left


def time_left(*, start: datetime, sent_at: datetime, lead: str | None, late: bool) -> TimeLeft | None:
    """What an advance notice should say about when the window starts.

    On time, the lead it was sent for (``24h`` -> "in 24 hours"). Late (SPEC 1: a notice
    whose lead has passed is sent at once, marked late), the real time from ``sent_at``
    to ``start``, in whole minutes rounded down (seconds under a minute), with
    ``short_notice`` set: "in 10 minutes", never the 24 hours the lead promised. None
    for a notice without a lead (not an advance notice).
    """
    if lead is None:
        return None
    if not late:
        return TimeLeft(left=lead, text=f"in {_spoken(lead)}", short_notice=False)
    seconds = max(0, int((start - sent_at).total_seconds()))
    if seconds == 0:
        return TimeLeft(left="0s", text="now", short_notice=True)
    rounded = seconds if seconds < 60 else seconds - seconds % 60
    left = format_duration(timedelta(seconds=rounded))
    return TimeLeft(left=left, text=f"in {_spoken(left)}", short_notice=True)
