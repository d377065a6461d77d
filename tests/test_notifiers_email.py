"""EmailNotifier against a real aiosmtpd server: what a tenant's mail client receives."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from notifiers import EmailNotifier, Renderer
from scheduler.errors import DeliveryError
from scheduler.model import EmailSettings, Tenant

try:
    from notifier_fixtures import (  # noqa: F401
        SMTP_PASSWORD,
        SMTP_USER,
        START,
        free_port,
        make_notice,
        make_tenant,
        renderer,
        smtp_auth_server,
        smtp_server,
    )
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import (  # noqa: F401
        SMTP_PASSWORD,
        SMTP_USER,
        START,
        free_port,
        make_notice,
        make_tenant,
        renderer,
        smtp_auth_server,
        smtp_server,
    )

UTC = UTC


def deliver(server, renderer, notice, tenant=None, **settings):
    tenant = tenant or make_tenant()
    EmailNotifier(server.settings(**settings), renderer).send(notice, tenant)
    return server.inbox.messages[-1]


def calendar_of(msg) -> tuple[icalendar.Calendar, object]:
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    return icalendar.Calendar.from_ical(parts[0].get_content()), parts[0]


def event_of(cal):
    (event,) = cal.walk("VEVENT")
    return event


@pytest.mark.parametrize(
    "zone, start, expected",
    [
        ("Europe/Berlin", datetime(2026, 12, 5, 21, 0, tzinfo=UTC), "Sat 5 Dec 2026 22:00 CET"),
        ("America/New_York", datetime(2026, 12, 5, 22, 0, tzinfo=UTC), "Sat 5 Dec 2026 17:00 EST"),
        ("Europe/Berlin", datetime(2026, 7, 4, 20, 0, tzinfo=UTC), "Sat 4 Jul 2026 22:00 CEST"),
        ("Asia/Tokyo", datetime(2026, 12, 5, 21, 0, tzinfo=UTC), "Sun 6 Dec 2026 06:00 JST"),
    ],
    ids=["berlin_winter", "new_york_winter", "berlin_summer", "tokyo_next_day"],
)
def test_subject_shows_start_in_tenant_zone(smtp_server, renderer, zone, start, expected):
    notice = make_notice(start=start, end=start + timedelta(hours=4), occurrence=start)
    msg = deliver(smtp_server, renderer, notice, make_tenant(zone=ZoneInfo(zone)))
    assert msg["Subject"] == f"[Example Cloud] Scheduled maintenance: Storage firmware update — {expected}"
    assert expected in msg.get_body(("plain",)).get_content()
    assert expected in msg.get_body(("html",)).get_content()


def test_message_is_text_html_and_invitation(smtp_server, renderer):
    notice = make_notice()
    tenant = make_tenant(email=("ops@acme.example", "noc@acme.example"))
    msg = deliver(smtp_server, renderer, notice, tenant)

    assert smtp_server.inbox.envelopes[-1][:2] == ("noc@example.com", ["ops@acme.example", "noc@acme.example"])
    assert msg["From"] == "Example Cloud NOC <noc@example.com>"
    assert msg["To"] == "ops@acme.example, noc@acme.example"
    assert msg["Message-ID"] == f"<{notice.id}@example.com>"
    assert msg.get_content_type() == "multipart/mixed"
    alternative = msg.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.get_payload()] == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    assert "Storage firmware update" in text and "in 24 hours" in text and notice.message in text

    cal, part = calendar_of(msg)
    assert part.get_filename() == "invite.ics"
    assert part.get_param("method") == "REQUEST"
    assert cal["METHOD"] == "REQUEST"
    assert str(cal["PRODID"]) == "-//maintd//EN"
    event = event_of(cal)
    assert str(event["UID"]) == "storage-firmware@maintd"
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == START and event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert event.decoded("DTEND") == START + timedelta(hours=4)
    assert "DTSTART:20261205T210000Z" in part.get_payload(decode=True).decode()
    assert str(event["SUMMARY"]) == "Storage firmware update"
    assert "mailto:noc@example.com" in str(event["ORGANIZER"])


def test_rescheduled_keeps_uid_and_raises_sequence(smtp_server, renderer):
    first = deliver(smtp_server, renderer, make_notice())
    new_start = START + timedelta(days=1)
    moved = make_notice(
        "rescheduled",
        start=new_start,
        end=new_start + timedelta(hours=4),
        occurrence=new_start,
        sequence=1,
        previous_start=START,
        previous_end=START + timedelta(hours=4),
    )
    second = deliver(smtp_server, renderer, moved)

    before, after = event_of(calendar_of(first)[0]), event_of(calendar_of(second)[0])
    assert str(after["UID"]) == str(before["UID"])
    assert int(after["SEQUENCE"]) == int(before["SEQUENCE"]) + 1
    assert calendar_of(second)[0]["METHOD"] == "REQUEST"
    assert after.decoded("DTSTART") == new_start
    assert second["Subject"].startswith("[Example Cloud] Rescheduled: Storage firmware update — Sun 6 Dec 2026")
    text = second.get_body(("plain",)).get_content()
    assert "Sat 5 Dec 2026 22:00 CET" in text  # where it was


def test_cancelled_is_a_calendar_cancel(smtp_server, renderer):
    msg = deliver(smtp_server, renderer, make_notice("cancelled", sequence=1))
    cal, part = calendar_of(msg)
    assert cal["METHOD"] == "CANCEL"
    assert part.get_param("method") == "CANCEL"
    assert part.get_filename() == "cancel.ics"
    assert str(event_of(cal)["STATUS"]) == "CANCELLED"
    assert msg["Subject"].startswith("[Example Cloud] Cancelled: Storage firmware update")


def test_message_id_is_stable_across_retries(renderer):
    notifier = EmailNotifier(EmailSettings(sender="noc@example.com"), renderer)
    notice, tenant = make_notice(), make_tenant()
    assert notifier.build_message(notice, tenant)["Message-ID"] == notifier.build_message(notice, tenant)["Message-ID"]
    other = make_notice("started")
    assert notifier.build_message(other, tenant)["Message-ID"] != notifier.build_message(notice, tenant)["Message-ID"]


def test_title_with_newline_cannot_inject_headers(smtp_server, renderer):
    msg = deliver(smtp_server, renderer, make_notice(title="Patch\nBcc: victim@example.com"))
    assert msg["Bcc"] is None
    assert "Patch Bcc: victim@example.com" in msg["Subject"]


def test_login_with_credentials(smtp_auth_server, renderer):
    deliver(smtp_auth_server, renderer, make_notice(), username=SMTP_USER, password=SMTP_PASSWORD)
    assert smtp_auth_server.inbox.envelopes[-1][2] is True


def test_wrong_password_is_permanent_and_not_echoed(smtp_auth_server, renderer):
    settings = smtp_auth_server.settings(username=SMTP_USER, password="wrong-password-123")
    with pytest.raises(DeliveryError) as info:
        EmailNotifier(settings, renderer).send(make_notice(), make_tenant())
    assert info.value.permanent is True
    assert "535" in info.value.message and "wrong-password-123" not in info.value.message
    assert smtp_auth_server.inbox.messages == []


@pytest.mark.parametrize(
    "rcpt_reply, data_reply, permanent",
    [
        ("550 5.1.1 No such mailbox", None, True),
        ("450 4.2.0 Greylisted, come back later", None, False),
        (None, "554 5.7.1 Rejected as spam", True),
        (None, "452 4.3.1 Insufficient storage", False),
    ],
    ids=["rcpt_5xx", "rcpt_4xx_greylisting", "data_5xx", "data_4xx"],
)
def test_smtp_replies_map_to_permanence(smtp_server, renderer, rcpt_reply, data_reply, permanent):
    smtp_server.inbox.rcpt_reply, smtp_server.inbox.data_reply = rcpt_reply, data_reply
    with pytest.raises(DeliveryError) as info:
        deliver(smtp_server, renderer, make_notice())
    assert info.value.permanent is permanent
    assert (rcpt_reply or data_reply).split()[0] in info.value.message


def test_connection_refused_is_temporary(renderer):
    settings = EmailSettings(host="127.0.0.1", port=free_port(), timeout=timedelta(seconds=1))
    with pytest.raises(DeliveryError) as info:
        EmailNotifier(settings, renderer).send(make_notice(), make_tenant())
    assert info.value.permanent is False
    assert f"127.0.0.1:{settings.port}" in info.value.message


def test_silent_server_times_out_temporarily(renderer):
    with socket.socket() as listener:  # accepts (kernel backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings = EmailSettings(host="127.0.0.1", port=listener.getsockname()[1], timeout=timedelta(seconds=0.3))
        with pytest.raises(DeliveryError) as info:
            EmailNotifier(settings, renderer).send(make_notice(), make_tenant())
    assert info.value.permanent is False
    assert "timed out" in info.value.message


def test_applies_to():
    notifier = EmailNotifier(EmailSettings(), None)
    assert notifier.applies_to(make_tenant())
    assert not notifier.applies_to(replace(make_tenant(), email=()))


def test_broken_provider_template_is_a_permanent_failure(smtp_server, tmp_path):
    (tmp_path / "scheduled.txt").write_text("{{ no_such_variable }}\n")
    with pytest.raises(DeliveryError) as info:
        EmailNotifier(smtp_server.settings(), Renderer("Example Cloud", str(tmp_path))).send(
            make_notice(), make_tenant()
        )
    assert info.value.permanent is True
    assert "no_such_variable" in info.value.message
    assert smtp_server.inbox.messages == []


@dataclass(frozen=True, kw_only=True)
class _LocaleTenant(Tenant):
    locale: str = "en"

    __hash__ = Tenant.__hash__


@pytest.mark.parametrize(
    "locale, subject, words",
    [
        (
            "de",
            "[Example Cloud] Geplante Wartung: Storage firmware update — Samstag, 5. Dezember 2026, 22:00 CET",
            ["Hallo ACME Corp,", "Beginn in 24 Stunden", "Sonntag, 6. Dezember 2026, 02:00 CET"],
        ),
        (
            "fr",
            "[Example Cloud] Maintenance planifiée : Storage firmware update — samedi 5 décembre 2026 à 22:00 CET",
            ["Bonjour ACME Corp,", "dans 24 heures", "dimanche 6 décembre 2026 à 02:00 CET"],
        ),
    ],
    ids=["de", "fr"],
)
def test_a_tenants_locale_reaches_the_mailbox(smtp_server, renderer, locale, subject, words):
    base = make_tenant()
    tenant = _LocaleTenant(id=base.id, name=base.name, zone=base.zone, email=base.email, locale=locale)
    msg = deliver(smtp_server, renderer, make_notice(), tenant)
    assert msg["Subject"] == subject
    for body in (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()):
        for word in words:
            assert word in body
    assert f'<html lang="{locale}">' in msg.get_body(("html",)).get_content()
    event = event_of(calendar_of(msg)[0])
    assert words[2] in str(event["DESCRIPTION"])
