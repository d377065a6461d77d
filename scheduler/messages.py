"""Tenant-facing text: ``str.format`` templates with a fixed set of named placeholders.

Pure: no clock, no disk, no network. The config loader calls :func:`check_template`
on every message at load, so :func:`render` only ever sees checked templates in
practice; it still never raises, because it runs on the gate's deny path and a
refused job must get *some* answer at 2 a.m.
"""

from __future__ import annotations

import re
import string
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.model import Tenant

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
) -> str:
    """Fill the placeholders of ``text``; ``{start}``/``{end}`` are shown in ``zone``.

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
    try:
        return text.format(
            provider=provider,
            title=title,
            start=format_local(start, zone),
            end=format_local(end, zone),
            window=window,
            tenant=who,
        )
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return text
