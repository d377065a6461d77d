"""Spans and lead times in a tenant's language (SPEC 4.3): one, two and three units in
every shipped locale. Babel's ``de`` and ``fr`` data has no three-item unit list, which
once raised KeyError("start") for "1 day 2 hours 3 minutes"."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notifiers.i18n import humanize_lead, humanize_span

NBSP = "\u00a0"  # Babel's French units: "4 heures" with a no-break space

SPANS = [
    ("en_one", "en", timedelta(hours=4), "4 hours"),
    ("en_two", "en", timedelta(days=1, hours=2), "1 day 2 hours"),
    ("en_three", "en", timedelta(days=1, hours=2, minutes=3), "1 day 2 hours 3 minutes"),
    ("en_zero", "en", timedelta(0), "0 minutes"),
    ("de_one", "de", timedelta(hours=4), "4 Stunden"),
    ("de_two", "de", timedelta(days=1, hours=2), "1 Tag, 2 Stunden"),
    ("de_three", "de", timedelta(days=1, hours=2, minutes=3), "1 Tag, 2 Stunden und 3 Minuten"),
    ("de_three_plural", "de", timedelta(days=2, hours=5, minutes=1), "2 Tage, 5 Stunden und 1 Minute"),
    ("de_AT_three", "de-AT", timedelta(days=1, hours=2, minutes=3), "1 Tag, 2 Stunden und 3 Minuten"),
    ("fr_one", "fr", timedelta(hours=4), f"4{NBSP}heures"),
    ("fr_two", "fr", timedelta(days=1, hours=2), f"1{NBSP}jour et 2{NBSP}heures"),
    ("fr_three", "fr", timedelta(days=1, hours=2, minutes=3), f"1{NBSP}jour, 2{NBSP}heures et 3 minutes"),
    ("fr_CA_three", "fr-CA", timedelta(days=3, hours=1, minutes=30), f"3{NBSP}jours, 1{NBSP}heure et 30{NBSP}minutes"),
]


@pytest.mark.parametrize("locale, span, expected", [c[1:] for c in SPANS], ids=[c[0] for c in SPANS])
def test_humanize_span(locale, span, expected):
    assert humanize_span(span, locale) == expected


LEADS = [
    ("en_three", "en", "1d2h3m", "1 day 2 hours 3 minutes"),
    ("de_three", "de", "1d2h3m", "1 Tag, 2 Stunden und 3 Minuten"),
    ("de_four", "de", "1w1d2h3m", "1 Woche, 1 Tag, 2 Stunden und 3 Minuten"),
    ("fr_three", "fr", "1d2h3m", f"1{NBSP}jour, 2{NBSP}heures et 3 minutes"),
    ("de_one", "de", "24h", "24 Stunden"),
]


@pytest.mark.parametrize("locale, lead, expected", [c[1:] for c in LEADS], ids=[c[0] for c in LEADS])
def test_humanize_lead(locale, lead, expected):
    assert humanize_lead(lead, locale) == expected
