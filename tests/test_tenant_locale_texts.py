"""Texts a tenant reads outside notices, in the tenant's language (SPEC 4.3): the message of
a refused admission (what ``maintd exec`` prints on the backup host) and the calendar feed's
SUMMARY and DESCRIPTION. maintd's default message is translated; a provider's own message
stays as written with its dates in the tenant's locale (Babel).

In process: ``create_app(Daemon(...))`` with an injected clock, a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from conftest import Clock
from fastapi.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon
from scheduler.model import Provider
from scheduler.notices import DEFAULT_MESSAGES
from scheduler.web import tenant_feed

TOKEN = "locale-texts-token-0123456789abcdef"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IN_FW = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)  # inside fw, 23:00 in Berlin

CONFIG = """\
version: 1
provider: {name: Example Cloud, timezone: Europe/Berlin}
tenants:
  - {id: acme, name: ACME Corp, timezone: Europe/Berlin}
  - {id: mueller, name: Müller AG, timezone: Europe/Berlin, locale: de}
  - {id: dupont, name: Dupont SA, timezone: Europe/Paris, locale: fr-FR}
windows:
  - id: fw
    title: Storage firmware
    start: 2026-12-05T21:00:00Z
    end: 2026-12-06T01:00:00Z
  - id: san
    title: SAN swap
    start: 2026-12-12T21:00:00Z
    duration: 2h
    tenants: [mueller, dupont]
    message: "Backups to {provider} pause until {end}."
  - id: gone
    title: Old plan
    start: 2026-12-20T21:00:00Z
    duration: 1h
    tenants: [mueller, dupont]
    cancelled: true
"""


@pytest.fixture
def daemon(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = Clock(T0)
    d = Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN})
    d.reconciler.tick("test")
    yield d, clock
    d.outbox.shutdown()
    d.store.close()


def test_the_default_message_is_the_models_default():
    assert Provider(name="x", zone=UTC).message == DEFAULT_MESSAGES["en"]  # type: ignore[arg-type]


REFUSALS = [
    ("en", "acme", "fw", IN_FW, "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET."),
    ("de", "mueller", "fw", IN_FW, "Example Cloud ist bis Sonntag, 6. Dezember 2026, 02:00 CET in geplanter Wartung."),
    (
        "fr",
        "dupont",
        "fw",
        IN_FW,
        "Example Cloud est en maintenance planifiée jusqu’au dimanche 6 décembre 2026 à 02:00 CET.",
    ),
    (
        "de_window_message",
        "mueller",
        "san",
        datetime(2026, 12, 12, 22, 0, tzinfo=UTC),
        "Backups to Example Cloud pause until Sonntag, 13. Dezember 2026, 00:00 CET.",
    ),
    (
        "fr_window_message",
        "dupont",
        "san",
        datetime(2026, 12, 12, 22, 0, tzinfo=UTC),
        "Backups to Example Cloud pause until dimanche 13 décembre 2026 à 00:00 CET.",
    ),
]


@pytest.mark.parametrize("tenant, window, at, message", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_refused_admission_answers_in_the_tenants_language(daemon, tenant, window, at, message):
    d, clock = daemon
    clock.now = at
    d.reconciler.tick("test")
    client = TestClient(create_app(d), headers={"Authorization": f"Bearer {TOKEN}"})
    answer = client.post("/v1/admissions", json={"tenant": tenant, "kind": "backup"})
    assert answer.status_code == 423, answer.text
    body = answer.json()
    assert (body["reason"], body["message"]) == ("maintenance", message)


def test_a_would_overlap_refusal_is_in_the_tenants_language_too(daemon):
    d, clock = daemon
    clock.now = IN_FW - timedelta(hours=2)
    d.reconciler.tick("test")
    answer = d.gate.admit("mueller", "backup", None, timedelta(hours=3))
    assert answer["reason"] == "would-overlap"
    assert answer["message"] == "Example Cloud ist bis Sonntag, 6. Dezember 2026, 02:00 CET in geplanter Wartung."


FEEDS = [
    (
        "en",
        "acme",
        "Example Cloud maintenance (ACME Corp)",
        {"fw": ("Example Cloud: Storage firmware", "Example Cloud is under scheduled maintenance until Sun 6 Dec")},
    ),
    (
        "de",
        "mueller",
        "Example Cloud: Wartung (Müller AG)",
        {
            "fw": (
                "Wartung Example Cloud: Storage firmware",
                "Example Cloud ist bis Sonntag, 6. Dezember 2026, 02:00 CET in geplanter Wartung.",
            ),
            "san": (
                "Wartung Example Cloud: SAN swap",
                "Backups to Example Cloud pause until Sonntag, 13. Dezember 2026, 00:00 CET.",
            ),
            "gone": (
                "Wartung Example Cloud: Old plan",
                "Abgesagt: Old plan von Example Cloud, geplant von Sonntag, 20. Dezember 2026, 22:00 CET bis "
                "Sonntag, 20. Dezember 2026, 23:00 CET, findet nicht statt.",
            ),
        },
    ),
    (
        "fr",
        "dupont",
        "Example Cloud : maintenance (Dupont SA)",
        {
            "fw": (
                "Maintenance Example Cloud : Storage firmware",
                "Example Cloud est en maintenance planifiée jusqu’au dimanche 6 décembre 2026 à 02:00 CET.",
            ),
            "gone": (
                "Maintenance Example Cloud : Old plan",
                "Annulée : Old plan de Example Cloud, prévue du dimanche 20 décembre 2026 à 22:00 CET au "
                "dimanche 20 décembre 2026 à 23:00 CET, n’aura pas lieu.",
            ),
        },
    ),
]


@pytest.mark.parametrize("tenant, name, events", [f[1:] for f in FEEDS], ids=[f[0] for f in FEEDS])
def test_the_calendar_feed_is_in_the_tenants_language(daemon, tenant, name, events):
    d, clock = daemon
    cal = icalendar.Calendar.from_ical(tenant_feed(d, d.config.tenants[tenant], clock()))
    assert str(cal["X-WR-CALNAME"]) == name
    by_window = {str(e["UID"]).split("@", 1)[0]: e for e in cal.walk("VEVENT")}
    for window, (summary, description) in events.items():
        event = by_window[window]
        assert str(event["SUMMARY"]) == summary
        assert str(event["DESCRIPTION"]).startswith(description)
