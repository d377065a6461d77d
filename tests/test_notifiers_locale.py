"""Tenant languages (SPEC 4.3): every tenant-facing text in the tenant's locale, dates by
Babel, provider overrides per locale, and the list of locales config validation offers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from notifiers import Renderer, available_locales, template_locale
from notifiers.i18n import format_local, humanize_span, lead_text
from scheduler.model import NOTICE_KINDS, Tenant

try:
    from notifier_fixtures import END, PROVIDER, START, make_notice, make_tenant
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import END, PROVIDER, START, make_notice, make_tenant


@dataclass(frozen=True, kw_only=True)
class LocaleTenant(Tenant):
    locale: str = "en"

    __hash__ = Tenant.__hash__


def tenant(locale: str) -> LocaleTenant:
    base = make_tenant()
    return LocaleTenant(id=base.id, name=base.name, zone=base.zone, email=base.email, locale=locale)


def notice(kind: str):
    extra: dict = {"link": "https://maint.example.com/t/x/"}
    if kind == "rescheduled":
        extra.update(previous_start=START - timedelta(days=1), previous_end=END - timedelta(days=1), sequence=1)
    if kind == "completed":
        extra.update(summary={"actual_start": "2026-12-05T21:02:00Z", "refused": {"backup": 3}, "drained": 2})
    return make_notice(kind, **extra)


# What each language must show, and English phrases that must not leak into it.
LANGUAGES = {
    "de": {
        "dates": ["Samstag, 5. Dezember 2026, 22:00 CET", "Sonntag, 6. Dezember 2026, 02:00 CET"],
        "words": ["Wartung"],
        "greeting": "Hallo ACME Corp,",
        "subject": {
            "scheduled": "Geplante Wartung",
            "started": "Wartung begonnen",
            "extended": "Wartung verlängert",
            "completed": "Wartung abgeschlossen",
            "rescheduled": "Verschoben",
            "cancelled": "Abgesagt",
        },
    },
    "fr": {
        "dates": ["samedi 5 décembre 2026 à 22:00 CET", "dimanche 6 décembre 2026 à 02:00 CET"],
        "words": ["Maintenance"],
        "greeting": "Bonjour ACME Corp,",
        "subject": {
            "scheduled": "Maintenance planifiée",
            "started": "Maintenance commencée",
            "extended": "Maintenance prolongée",
            "completed": "Maintenance terminée",
            "rescheduled": "Reportée",
            "cancelled": "Annulée",
        },
    },
}
ENGLISH = ["Hello", "Sat 5 Dec", "Status page", "Times are shown", "Scheduled maintenance", "has been", "Was:"]


@pytest.mark.parametrize("kind", NOTICE_KINDS)
@pytest.mark.parametrize("locale", sorted(LANGUAGES))
def test_email_is_in_the_tenants_language(locale, kind):
    lang = LANGUAGES[locale]
    rendered = Renderer(PROVIDER).render(notice(kind), tenant(locale))
    until = {"de": "bis ", "fr": "jusqu’au "}[locale] + lang["dates"][1] if kind == "extended" else lang["dates"][0]
    assert rendered.subject == f"[{PROVIDER}] {lang['subject'][kind]}{' :' if locale == 'fr' else ':'} " + (
        f"Storage firmware update — {until}"
    )
    for body in (rendered.text, rendered.html):
        assert lang["greeting"] in body
        for snippet in [lang["dates"][0], *lang["words"]]:
            assert snippet in body
        for phrase in ENGLISH:
            assert phrase not in body.replace(notice(kind).message, "")  # the provider's message is its own
    assert f'<html lang="{locale}">' in rendered.html


@pytest.mark.parametrize("locale", sorted(LANGUAGES))
def test_chat_body_is_in_the_tenants_language(locale):
    lang = LANGUAGES[locale]
    title, body = Renderer(PROVIDER).render_chat(notice("started"), tenant(locale))
    assert title.startswith(f"[{PROVIDER}] {lang['subject']['started']}")
    assert lang["dates"][0] in body and lang["dates"][1] in body
    assert not [p for p in ENGLISH if p in body.replace(notice("started").message, "")]


@pytest.mark.parametrize(
    "locale, summary, description",
    [
        ("en", "Storage firmware update", "Example Cloud is under scheduled maintenance"),
        ("de", "Storage firmware update", "Wartung von Samstag, 5. Dezember 2026, 22:00 CET bis Sonntag"),
        ("fr", "Storage firmware update", "Maintenance du samedi 5 décembre 2026 à 22:00 CET au dimanche"),
    ],
    ids=["en", "de", "fr"],
)
def test_ics_in_the_tenants_language(locale, summary, description):
    rendered = Renderer(PROVIDER).render(notice("scheduled"), tenant(locale))
    (event,) = icalendar.Calendar.from_ical(rendered.ics).walk("VEVENT")
    assert str(event["SUMMARY"]) == summary
    assert str(event["DESCRIPTION"]).startswith(description)


@pytest.mark.parametrize(
    "kind, locale, snippets",
    [
        ("scheduled", "de", ["Beginn in 24 Stunden", "(4 Stunden)"]),
        ("scheduled", "fr", ["qui commence dans 24 heures", "(4\u00a0heures)"]),  # Babel: no-break space
        ("completed", "de", ["Tatsächlicher Beginn:", "Samstag, 5. Dezember 2026, 22:02 CET", "Abgelehnte Jobs"]),
        ("completed", "fr", ["Début effectif\u00a0:", "samedi 5 décembre 2026 à 22:02 CET", "Tâches refusées"]),
        ("rescheduled", "de", ["Bisher:", "Freitag, 4. Dezember 2026, 22:00 CET bis Samstag"]),
        ("rescheduled", "fr", ["Auparavant\u00a0:", "du vendredi 4 décembre 2026 à 22:00 CET au samedi"]),
    ],
    ids=["de_lead", "fr_lead", "de_summary", "fr_summary", "de_previous", "fr_previous"],
)
def test_kind_specific_content_is_translated(kind, locale, snippets):
    text = Renderer(PROVIDER).render(notice(kind), tenant(locale)).text
    for snippet in snippets:
        assert snippet in text


def test_english_is_the_default_and_unchanged():
    renderer = Renderer(PROVIDER)
    plain = renderer.render(notice("scheduled"), make_tenant())  # today's Tenant: no locale field
    explicit = renderer.render(notice("scheduled"), tenant("en"))
    assert (
        plain.subject
        == explicit.subject
        == (f"[{PROVIDER}] Scheduled maintenance: Storage firmware update — Sat 5 Dec 2026 22:00 CET")
    )
    assert plain.text == explicit.text and "Hello ACME Corp," in plain.text


def test_locale_argument_wins_over_the_tenant():
    rendered = Renderer(PROVIDER).render(notice("started"), tenant("de"), locale="fr")
    assert "Bonjour" in rendered.text


def test_a_regional_tag_uses_its_language_templates():
    rendered = Renderer(PROVIDER).render(notice("started"), tenant("de-AT"))
    assert "Hallo ACME Corp," in rendered.text and "Samstag, 5. Dezember 2026" in rendered.text


# --- provider overrides -------------------------------------------------------------------


def test_provider_locale_override_wins_for_that_locale_only(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "subject.txt").write_text("DE-OVERRIDE {{ title }} {{ start }}\n")
    renderer = Renderer(PROVIDER, str(tmp_path))
    assert renderer.check() == []
    assert renderer.render(notice("scheduled"), tenant("de")).subject == (
        "DE-OVERRIDE Storage firmware update Samstag, 5. Dezember 2026, 22:00 CET"
    )
    assert renderer.render(notice("scheduled"), tenant("fr")).subject.startswith(f"[{PROVIDER}] Maintenance planifiée")
    assert renderer.render(notice("scheduled"), tenant("en")).subject.startswith(f"[{PROVIDER}] Scheduled maintenance")


def test_override_order_locale_then_unlocalised_then_shipped(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "subject.txt").write_text("ALL {{ title }}\n")
    (tmp_path / "de" / "subject.txt").write_text("DE {{ title }}\n")
    (tmp_path / "de" / "_base.txt").write_text("DE-BASE {% block intro %}{% endblock %}\n")
    renderer = Renderer(PROVIDER, str(tmp_path))
    assert renderer.check() == []
    assert renderer.render(notice("scheduled"), tenant("de")).subject == "DE Storage firmware update"
    assert renderer.render(notice("scheduled"), tenant("fr")).subject == "ALL Storage firmware update"
    assert renderer.render(notice("scheduled"), tenant("en")).subject == "ALL Storage firmware update"
    german = renderer.render(notice("started"), tenant("de")).text
    assert german.startswith("DE-BASE Die Wartung hat begonnen")  # shipped de/started.txt extends the override
    assert "DE-BASE" not in renderer.render(notice("started"), tenant("fr")).text


def test_check_reports_a_broken_locale_override_with_file_and_line(tmp_path):
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "started.txt").write_text("ok\n{{ title }\n")
    errors = Renderer(PROVIDER, str(tmp_path)).check()
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'fr' / 'started.txt'}:2: ")


def test_check_renders_every_locale(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "extended.txt").write_text("{{ no_such_value }}\n")
    errors = Renderer(PROVIDER, str(tmp_path)).check()
    assert errors and errors[0].startswith(f"{tmp_path / 'de' / 'extended.txt'}:1: ")
    assert Renderer(PROVIDER).check() == []


# --- locales, dates and durations ---------------------------------------------------------


def test_available_locales():
    assert available_locales() == ["de", "en", "fr"]


@pytest.mark.parametrize(
    "tag, expected",
    [("de", "de"), ("DE", "de"), ("de-AT", "de"), ("fr_CA", "fr"), ("en-GB", "en"), (None, "en"), ("", "en")],
    ids=["de", "upper", "de_at", "fr_ca_underscore", "en_gb", "none", "empty"],
)
def test_template_locale(tag, expected):
    assert template_locale(tag) == expected


@pytest.mark.parametrize("tag", ["es", "xx", "de-", "zh-Hant"], ids=["es", "xx", "dangling", "zh"])
def test_unknown_locale_names_the_ones_maintd_has(tag):
    with pytest.raises(ValueError) as info:
        template_locale(tag)
    assert str(info.value) == f'unknown locale "{tag}"; maintd has: de, en, fr'


@pytest.mark.parametrize(
    "locale, zone, expected",
    [
        ("en", "Europe/Berlin", "Sat 5 Dec 2026 22:00 CET"),
        ("de", "Europe/Berlin", "Samstag, 5. Dezember 2026, 22:00 CET"),
        ("fr", "America/New_York", "samedi 5 décembre 2026 à 16:00 EST"),
        ("de", "Asia/Kolkata", "Sonntag, 6. Dezember 2026, 02:30 IST"),
        ("es", "Europe/Berlin", "sábado, 5 de diciembre de 2026, 22:00 CET"),
    ],
    ids=["en", "de", "fr_new_york", "de_kolkata_next_day", "es_babel_fallback"],
)
def test_format_local_in_a_locale(locale, zone, expected):
    assert format_local(datetime(2026, 12, 5, 21, 0, tzinfo=UTC), ZoneInfo(zone), locale) == expected


@pytest.mark.parametrize(
    "lead, locale, expected",
    [
        ("24h", "en", "in 24 hours"),
        ("24h", "de", "in 24 Stunden"),
        ("10m", "fr", "dans 10 minutes"),
        ("7d", "de", "in 7 Tagen"),
        ("1h30m", "en", "in 1 hour 30 minutes"),
        ("1h30m", "de", "in 90 Minuten"),
        ("soon", "de", "soon"),
        (None, "fr", ""),
    ],
    ids=["en", "de_hours", "fr_minutes", "de_days", "en_mixed", "de_mixed_in_minutes", "unparsed", "none"],
)
def test_lead_text(lead, locale, expected):
    assert lead_text(lead, locale) == expected


@pytest.mark.parametrize(
    "span, locale, expected",
    [
        (timedelta(hours=4), "en", "4 hours"),
        (timedelta(hours=4), "de", "4 Stunden"),
        (timedelta(days=1, hours=2), "fr", "1\u00a0jour et 2\u00a0heures"),
        (timedelta(minutes=1), "de", "1 Minute"),
    ],
    ids=["en", "de", "fr_two_units", "de_singular"],
)
def test_humanize_span(span, locale, expected):
    assert humanize_span(span, locale) == expected


def test_french_rows_put_a_no_break_space_before_the_colon():
    """French typography: "Début :" with a no-break space (never a line break before the
    colon); English and German keep "Start:"."""
    from notifiers.base import _row_helper
    from notifiers.i18n import label_colon

    assert _row_helper(False, label_colon("fr"))("Début", "x") == "  Début\u00a0:" + " " * 8 + "x"
    assert _row_helper(True, label_colon("fr-CA"))("Fin", "y") == "- **Fin\u00a0:** y"
    assert _row_helper(False, label_colon("de"))("Beginn", "z") == "  Beginn:" + " " * 8 + "z"
    assert label_colon(None) == ":"
