"""Durations as written in windows.yaml: ``30s``, ``10m``, ``4h``, ``7d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"^(?:\d+[wdhms])+$")
MAX_SECONDS = 3650 * 86400  # ten years: beyond that it is a typo, and timedelta overflows soon after


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` into a timedelta; units w, d, h, m, s, each at most once, largest first.

    Raises ValueError with a message that says what is expected.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 30s, 10m, 4h, 7d or 1h30m, got {text!r}")
    s = text.strip()
    if not s or not _WHOLE.match(s):
        raise ValueError(f"expected a duration like 30s, 10m, 4h, 7d or 1h30m, got {text!r}")
    seen: list[str] = []
    total = 0
    for number, unit in _PART.findall(s):
        if unit in seen:
            raise ValueError(f"duration {text!r} repeats the unit {unit!r}")
        if seen and list(_UNITS).index(unit) < list(_UNITS).index(seen[-1]):
            raise ValueError(f"duration {text!r}: write units from largest to smallest (e.g. 1h30m)")
        seen.append(unit)
        total += int(number) * _UNITS[unit]
    if total > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is too long; expected at most 3650d")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The shortest canonical text for a whole-second timedelta: 90 min -> ``1h30m``."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue  # "7d" reads better than "1w" in notices
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return sign + "".join(parts)
