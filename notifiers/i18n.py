"""Tenant languages: which locales maintd ships, and dates, durations and labels in them.

Sentences live in per-locale template folders (``templates/<locale>/``); this module only
formats what Python computes -- instants, lead times, durations, summary labels -- through
Babel, so a tenant reads "Samstag, 5. Dezember 2026, 22:00 CET" and "in 24 Stunden".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_timedelta
from babel.units import format_unit

DEFAULT_LOCALE = "en"
SHIPPED_TEMPLATES = Path(__file__).parent / "templates"

# English keeps the short form maintd always printed; others spell weekday and month out.
_DATETIME_PATTERNS = {
    "en": "EEE d MMM y HH:mm",
    "de": "EEEE, d. MMMM y, HH:mm",
    "fr": "EEEE d MMMM y 'à' HH:mm",
}
_UNITS = {"w": ("week", 604800), "d": ("day", 86400), "h": ("hour", 3600), "m": ("minute", 60), "s": ("second", 1)}
_EN_UNITS = {"w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second"}

SUMMARY_LABELS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "actual_start": "Started",
        "actual_end": "Ended",
        "refused": "Jobs refused",
        "drained": "Jobs drained",
        "stopped": "Jobs stopped",
    },
    "de": {
        "actual_start": "Tatsächlicher Beginn",
        "actual_end": "Tatsächliches Ende",
        "refused": "Abgelehnte Jobs",
        "drained": "Zu Ende gelaufene Jobs",
        "stopped": "Gestoppte Jobs",
    },
    "fr": {
        "actual_start": "Début effectif",
        "actual_end": "Fin effective",
        "refused": "Tâches refusées",
        "drained": "Tâches menées à terme",
        "stopped": "Tâches arrêtées",
    },
}


def available_locales() -> list[str]:
    """The locales maintd has templates for: ``en`` plus every shipped ``templates/<locale>/``."""
    return list(_shipped_locales())


@functools.cache
def _shipped_locales() -> tuple[str, ...]:
    # The package's own folders: they cannot change while the process runs.
    folders = {p.name for p in SHIPPED_TEMPLATES.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    return tuple(sorted(folders | {DEFAULT_LOCALE}))


def template_locale(tag: str | None) -> str:
    """The shipped folder for a BCP 47 tag: ``de-AT`` -> ``de``, ``fr_CA`` -> ``fr``, None -> ``en``.

    Raises ``ValueError('unknown locale "xx"; maintd has: de, en, fr')`` for a language maintd
    has no templates for; config validation calls this to report the tenant's line.
    """
    if not tag:
        return DEFAULT_LOCALE
    have = _shipped_locales()
    norm = tag.strip().replace("_", "-").lower()
    if norm in have:
        return norm
    language = norm.split("-", 1)[0]
    if language in have and re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", norm):
        return language
    raise ValueError(f'unknown locale "{tag}"; maintd has: {", ".join(have)}')


@functools.lru_cache(maxsize=64)
def babel_locale(tag: str | None) -> Locale:
    """Babel's locale for dates: the tenant's full tag when Babel knows it (``de-AT`` writes
    "Jänner"), else the template language."""
    try:
        return Locale.parse((tag or DEFAULT_LOCALE).replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale.parse(template_locale(tag))


def format_local(ts: datetime | str | None, zone: ZoneInfo, locale: str | None = None) -> str:
    """``Sat 5 Dec 2026 22:00 CET`` (en), ``Samstag, 5. Dezember 2026, 22:00 CET`` (de).

    Names come from Babel for the tenant's locale, never from the process locale.
    """
    if ts is None:
        return ""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return _format_local(ts, zone, locale)


@functools.lru_cache(maxsize=4096)
def _format_local(ts: datetime, zone: ZoneInfo, locale: str | None) -> str:
    # Cached: a fan-out composes the same few instants for thousands of tenants, and Babel's
    # formatting was the largest cost of enqueueing them (benchmarks/notify_bench.py).
    local = ts.astimezone(zone)
    loc = babel_locale(locale)
    pattern = _DATETIME_PATTERNS.get(str(loc)) or _DATETIME_PATTERNS.get(loc.language)
    if pattern:
        text = format_datetime(local, pattern, tzinfo=zone, locale=loc)
    else:  # a locale without a hand-picked pattern: its own long date and a short time
        text = format_datetime(local, text_pattern(loc), tzinfo=zone, locale=loc)
    return f"{text} {local.tzname()}"


def text_pattern(loc: Locale) -> str:
    """Date (long, with weekday) and time (HH:mm) joined the way the locale joins them."""
    joiner = str(loc.datetime_formats.get("long", "{1} {0}"))
    date = "EEEE, " + str(loc.date_formats["long"].pattern)
    return joiner.replace("{1}", date).replace("{0}", "HH:mm")


def _lead_parts(lead: str) -> list[tuple[int, str]] | None:
    parts = re.findall(r"(\d+)([wdhms])", lead)
    if not parts or "".join(n + u for n, u in parts) != lead.strip():
        return None
    return [(int(n), u) for n, u in parts]


def humanize_lead(lead: str | None, locale: str | None = None) -> str:
    """``24h`` -> ``24 hours`` / ``24 Stunden``; ``1h30m`` -> ``1 hour 30 minutes``; unknown text passes through."""
    if not lead:
        return ""
    parts = _lead_parts(lead)
    if parts is None:
        return lead
    if template_locale_or_default(locale) == DEFAULT_LOCALE:
        return " ".join(f"{n} {_EN_UNITS[u]}{'' if n == 1 else 's'}" for n, u in parts)
    loc = babel_locale(locale)
    words = [format_unit(n, f"duration-{_UNITS[u][0]}", length="long", locale=loc) for n, u in parts]
    return unit_list(words, loc)


def lead_text(lead: str | None, locale: str | None = None) -> str:
    """``in 24 hours`` / ``in 24 Stunden`` / ``dans 24 heures``: the lead time from now, exact.

    Babel's ``format_timedelta`` would round 24 hours up to "1 day"; asking it for the lead's
    own smallest unit with no threshold keeps the number the provider wrote.
    """
    if not lead:
        return ""
    parts = _lead_parts(lead)
    if parts is None:
        return lead
    if template_locale_or_default(locale) == DEFAULT_LOCALE:
        return f"in {humanize_lead(lead)}"
    seconds = sum(n * _UNITS[u][1] for n, u in parts)
    unit: Any = _UNITS[parts[-1][1]][0]  # one of Babel's granularity literals
    return format_timedelta(
        timedelta(seconds=seconds),
        granularity=unit,
        threshold=float("inf"),
        add_direction=True,
        locale=babel_locale(locale),
    )


_SHORT_NOTICE = {"en": "short notice", "de": "kurzfristig", "fr": "préavis court"}
_NOW = {"en": "now", "de": "jetzt", "fr": "maintenant"}


def starts_text(lead: str | None, time_left: str | None, late: bool, locale: str | None = None) -> str:
    """When an advance notice says the window starts, from when it was composed.

    On time: the lead, ``in 24 hours``. Late: the real time left, marked as short notice:
    ``in 10 minutes (short notice)`` / ``in 10 Minuten (kurzfristig)`` / ``dans 10 minutes
    (préavis court)``. A late notice whose time left is unknown says only that it is short
    notice; it never repeats the lead it missed.
    """
    if not late:
        return lead_text(time_left or lead, locale)
    language = template_locale_or_default(locale)
    mark = _SHORT_NOTICE.get(language, _SHORT_NOTICE[DEFAULT_LOCALE])
    if not time_left:
        return ""  # the template's late paragraph still says it is short notice
    parts = _lead_parts(time_left)
    if parts is not None and sum(n for n, _u in parts) == 0:
        return f"{_NOW.get(language, _NOW[DEFAULT_LOCALE])} ({mark})"
    return f"{lead_text(time_left, locale)} ({mark})"


def humanize_span(span: timedelta, locale: str | None = None) -> str:
    """``4 hours``, ``1 day 2 hours`` (en); ``4 Stunden``, ``1 Tag, 2 Stunden`` (de)."""
    days, rest = divmod(int(span.total_seconds() // 60), 1440)
    bits = [(n, name) for n, name in ((days, "day"), (rest // 60, "hour"), (rest % 60, "minute")) if n]
    if template_locale_or_default(locale) == DEFAULT_LOCALE:
        return " ".join(f"{n} {name}{'' if n == 1 else 's'}" for n, name in bits) or "0 minutes"
    loc = babel_locale(locale)
    words = [format_unit(n, f"duration-{name}", length="long", locale=loc) for n, name in bits or [(0, "minute")]]
    return unit_list(words, loc)


def unit_list(words: list[str], loc: Locale) -> str:
    """``1 Tag, 2 Stunden und 3 Minuten``: amounts joined as the locale joins units.

    Babel's data for ``de`` and ``fr`` holds no wide ``unit`` list and only the two-item
    pattern of ``unit-short``, so ``format_list(style="unit")`` raises KeyError("start") for
    three amounts. CLDR fills a missing pattern from the wider style, then ``standard``:
    do that here (standard, overlaid with unit-short, overlaid with unit).
    """
    if len(words) < 2:
        return words[0] if words else ""
    patterns: dict[str, str] = {}
    for style in ("standard", "unit-short", "unit"):
        patterns.update(dict(loc.list_patterns.get(style) or {}))
    if len(words) == 2:
        return patterns["2"].format(*words)
    text = patterns["start"].format(words[0], words[1])
    for word in words[2:-1]:
        text = patterns["middle"].format(text, word)
    return patterns["end"].format(text, words[-1])


def label_colon(locale: str | None = None) -> str:
    """What follows a label ("Start:"): French typography puts a no-break space before the colon."""
    return "\u00a0:" if template_locale_or_default(locale) == "fr" else ":"


def summary_label(key: str, locale: str | None = None) -> str:
    labels = SUMMARY_LABELS.get(template_locale_or_default(locale), SUMMARY_LABELS[DEFAULT_LOCALE])
    return labels.get(key) or SUMMARY_LABELS[DEFAULT_LOCALE].get(key) or key.replace("_", " ").capitalize()


def template_locale_or_default(tag: str | None) -> str:
    """Like ``template_locale`` but never raises: a locale validation let through renders in English."""
    try:
        return template_locale(tag)
    except ValueError:
        return DEFAULT_LOCALE
