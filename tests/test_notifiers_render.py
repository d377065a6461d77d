"""Renderer and calendar: every kind renders, times are in the tenant's zone, tenant-facing
text is escaped, and a broken provider template is reported by check()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from notifiers import Renderer, build_feed, build_ics, build_notifiers, format_local
from notifiers.email import EmailNotifier
from notifiers.webhook import WebhookNotifier
from scheduler.model import NOTICE_KINDS, EmailSettings, Notifiers

try:
    from notifier_fixtures import END, START, make_notice, make_tenant
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import END, START, make_notice, make_tenant

UTC = UTC
PREFIX = {
    "scheduled": "Scheduled maintenance",
    "started": "Maintenance started",
    "extended": "Maintenance extended",
    "completed": "Maintenance completed",
    "rescheduled": "Rescheduled",
    "cancelled": "Cancelled",
}
assert set(PREFIX) == set(NOTICE_KINDS)


@pytest.mark.parametrize(
    "ts, zone, expected",
    [
        (datetime(2026, 12, 5, 21, 0, tzinfo=UTC), "Europe/Berlin", "Sat 5 Dec 2026 22:00 CET"),
        (datetime(2026, 12, 5, 22, 0, tzinfo=UTC), "America/New_York", "Sat 5 Dec 2026 17:00 EST"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/Berlin", "Sun 29 Mar 2026 03:00 CEST"),
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "America/New_York", "Sun 1 Nov 2026 01:30 EDT"),
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "America/New_York", "Sun 1 Nov 2026 01:30 EST"),
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "Asia/Kolkata", "Sun 1 Nov 2026 11:00 IST"),
        ("2026-12-05T21:00:00Z", "UTC", "Sat 5 Dec 2026 21:00 UTC"),
    ],
    ids=[
        "berlin_winter",
        "new_york_winter",
        "berlin_spring_forward",
        "ny_fall_fold_first",
        "ny_fall_fold_second",
        "kolkata_half_hour",
        "iso_string_utc",
    ],
)
def test_format_local(ts, zone, expected):
    assert format_local(ts, ZoneInfo(zone)) == expected


def _notice(kind):
    extra = {}
    if kind == "rescheduled":
        extra = dict(previous_start=START - timedelta(days=1), previous_end=END - timedelta(days=1), sequence=1)
    if kind == "completed":
        extra = dict(
            summary={
                "actual_start": "2026-12-05T21:02:00Z",
                "actual_end": END,
                "refused": {"backup": 3},
                "drained": 2,
                "stopped": 1,
            }
        )
    return make_notice(kind, link="https://maint.example.com/t/s3cr3t/", **extra)


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_every_kind_renders(kind):
    rendered = Renderer("Example Cloud").render(_notice(kind), make_tenant())
    # An extension's news is its new end, so that subject names the end, not the start.
    when = "until Sun 6 Dec 2026 02:00 CET" if kind == "extended" else "Sat 5 Dec 2026 22:00 CET"
    assert rendered.subject == f"[Example Cloud] {PREFIX[kind]}: Storage firmware update — {when}"
    for body in (rendered.text, rendered.html):
        assert "Storage firmware update" in body
        assert "Sat 5 Dec 2026 22:00 CET" in body
        assert "Sun 6 Dec 2026 02:00 CET" in body
        assert "Status page:" in body and "https://maint.example.com/t/s3cr3t/" in body
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    assert rendered.payload == _notice(kind).payload()
    cal = icalendar.Calendar.from_ical(rendered.ics)
    assert cal["METHOD"] == ("CANCEL" if kind == "cancelled" else "REQUEST")


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("scheduled", ["in 24 hours", "under scheduled maintenance"]),
        ("rescheduled", ["Fri 4 Dec 2026 22:00 CET", "Sat 5 Dec 2026 02:00 CET"]),
        ("completed", ["Sat 5 Dec 2026 22:02 CET", "backup: 3", "Jobs drained", "Jobs stopped"]),
        ("cancelled", ["cancelled"]),
        ("extended", ["longer than planned"]),
    ],
    ids=["scheduled_lead", "rescheduled_previous", "completed_summary", "cancelled", "extended"],
)
def test_kind_specific_content(kind, expected):
    rendered = Renderer("Example Cloud").render(_notice(kind), make_tenant())
    for snippet in expected:
        assert snippet in rendered.text
        assert snippet in rendered.html


def test_completed_summary_renders_only_what_is_present():
    notice = make_notice("completed", summary={"drained": 2})
    text = Renderer("Example Cloud").render(notice, make_tenant()).text
    assert "Jobs drained:  2" in text
    assert "Jobs refused" not in text and "Started:" not in text


def test_late_scheduled_notice_says_so():
    text = Renderer("Example Cloud").render(make_notice(late=True), make_tenant()).text
    assert "later than planned" in text
    assert "later than planned" not in Renderer("Example Cloud").render(make_notice(), make_tenant()).text


def test_tenant_zone_in_bodies():
    rendered = Renderer("Example Cloud").render(make_notice(), make_tenant(zone=ZoneInfo("America/New_York")))
    assert "Sat 5 Dec 2026 16:00 EST" in rendered.subject
    assert "America/New_York" in rendered.text


def test_markup_in_tenant_facing_text_is_escaped_in_html():
    notice = make_notice(title="<script>alert(1)</script>", message="a & b <b>bold</b>")
    rendered = Renderer("Example Cloud <NOC>").render(notice, make_tenant(name="<i>ACME</i>"))
    assert "<script>" not in rendered.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<b>bold</b>" not in rendered.html and "a &amp; b" in rendered.html
    assert "<i>ACME</i>" not in rendered.html and "<NOC>" not in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # plain text stays as written
    assert "<script>alert(1)</script>" in rendered.subject


def test_provider_templates_are_searched_first(tmp_path):
    (tmp_path / "subject.txt").write_text("{{ provider }} NOTICE {{ kind }}: {{ title }} at {{ start }}\n")
    (tmp_path / "_base.html").write_text("<html><body>{% block intro %}{% endblock %}CUSTOM</body></html>\n")
    renderer = Renderer("Example Cloud", str(tmp_path))
    assert renderer.check() == []
    rendered = renderer.render(make_notice(), make_tenant())
    assert rendered.subject == "Example Cloud NOTICE scheduled: Storage firmware update at Sat 5 Dec 2026 22:00 CET"
    assert "CUSTOM" in rendered.html and "has scheduled maintenance" in rendered.html
    assert "Hello ACME Corp" in rendered.text  # not overridden: the package's template


def test_check_is_clean_for_the_packaged_templates():
    assert Renderer("Example Cloud").check() == []


@pytest.mark.parametrize(
    "name, source, expected",
    [
        ("scheduled.txt", "Hello\n\n{% if title %}\n{{ title }\n", ":4: "),
        ("started.html", "{% extends '_base.html' %}\n{% block intro %}\n{% endblock %}\n{% block x %}\n", ":4: "),
        ("cancelled.txt", "line one\n{{ title | no_such_filter }}\n", ":2: "),
    ],
    ids=["unclosed_expression", "unclosed_block", "unknown_filter"],
)
def test_check_reports_syntax_errors_with_file_and_line(tmp_path, name, source, expected):
    (tmp_path / name).write_text(source)
    errors = Renderer("Example Cloud", str(tmp_path)).check()
    assert len(errors) == 1
    assert errors[0].startswith(str(tmp_path / name) + expected)


def test_check_reports_render_errors_with_file_and_line(tmp_path):
    (tmp_path / "extended.txt").write_text("Hello {{ tenant.name }}\nEnds {{ ends_at }}\n")
    errors = Renderer("Example Cloud", str(tmp_path)).check()
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'extended.txt'}:2: ")
    assert "ends_at" in errors[0]


def test_check_reports_a_missing_directory(tmp_path):
    assert Renderer("Example Cloud", str(tmp_path / "nope")).check() == [
        f"{tmp_path / 'nope'}: template directory does not exist"
    ]


# --- calendar ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_build_ics_method_per_kind(kind):
    cal = icalendar.Calendar.from_ical(build_ics(make_notice(kind, sequence=2)))
    (event,) = cal.walk("VEVENT")
    assert str(cal["PRODID"]) == "-//maintd//EN" and str(cal["VERSION"]) == "2.0"
    assert cal["METHOD"] == ("CANCEL" if kind == "cancelled" else "REQUEST")
    assert str(event["STATUS"]) == ("CANCELLED" if kind == "cancelled" else "CONFIRMED")
    assert int(event["SEQUENCE"]) == 2
    assert event.decoded("DTSTART") == START and event.decoded("DTEND") == END


def test_build_ics_fields():
    notice = make_notice(link="https://maint.example.com/t/x/", message="Restores keep working; backups pause.")
    now = datetime(2026, 12, 4, 21, 0, 30, 123456, tzinfo=UTC)
    raw = build_ics(
        notice, organizer="Example Cloud NOC <noc@example.com>", attendees=["ops@acme.example"], now=now
    ).decode()
    (event,) = icalendar.Calendar.from_ical(raw).walk("VEVENT")
    assert "DTSTART:20261205T210000Z" in raw and "DTEND:20261206T010000Z" in raw
    assert "DTSTAMP:20261204T210030Z" in raw
    assert str(event["UID"]) == "storage-firmware@maintd"
    assert str(event["SUMMARY"]) == "Storage firmware update"
    assert str(event["DESCRIPTION"]) == "Restores keep working; backups pause."
    assert str(event["URL"]) == "https://maint.example.com/t/x/"
    assert str(event["ORGANIZER"]) == "mailto:noc@example.com"
    assert event["ORGANIZER"].params["CN"] == "Example Cloud NOC"
    assert str(event["ATTENDEE"]) == "mailto:ops@acme.example"


def test_build_ics_uid_falls_back_to_the_window():
    (event,) = icalendar.Calendar.from_ical(build_ics(make_notice(uid=""))).walk("VEVENT")
    assert str(event["UID"]) == "storage-firmware@maintd"


def test_build_feed():
    weekly = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    raw = build_feed(
        [
            dict(
                uid="patch-20261208T000000Z@maintd",
                sequence=0,
                start=weekly,
                end=weekly + timedelta(hours=3),
                title="Monthly host patching",
                message="",
                cancelled=False,
                exdates=[weekly + timedelta(days=14)],
                rrule={"freq": "weekly"},
            ),
            dict(
                uid="storage-firmware@maintd",
                sequence=3,
                start=START,
                end=END,
                title="Storage firmware update",
                message="m",
                cancelled=True,
            ),
        ],
        name="ACME Corp maintenance",
        now=START,
    )
    cal = icalendar.Calendar.from_ical(raw)
    assert "METHOD" not in cal
    assert str(cal["X-WR-CALNAME"]) == "ACME Corp maintenance"
    first, second = cal.walk("VEVENT")
    assert b"EXDATE:20261222T000000Z" in raw and b"RRULE:FREQ=WEEKLY" in raw
    assert str(first["STATUS"]) == "CONFIRMED"
    assert str(second["STATUS"]) == "CANCELLED" and int(second["SEQUENCE"]) == 3
    assert str(second["UID"]) == "storage-firmware@maintd"


# --- wiring ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, channels",
    [
        (Notifiers(), ["webhook"]),
        (Notifiers(email=EmailSettings()), ["email", "webhook"]),
    ],
    ids=["webhook_only", "email_and_webhook"],
)
def test_build_notifiers(settings, channels):
    built = build_notifiers(settings, "Example Cloud")
    assert [n.channel for n in built] == channels
    assert all(isinstance(n, (EmailNotifier, WebhookNotifier)) for n in built)


def test_build_notifiers_passes_the_provider_template_dir(tmp_path):
    (tmp_path / "subject.txt").write_text("X {{ title }}")
    (email,) = [
        n
        for n in build_notifiers(Notifiers(email=EmailSettings(), templates=str(tmp_path)), "P")
        if n.channel == "email"
    ]
    assert email.build_message(make_notice(), make_tenant())["Subject"] == "X Storage firmware update"


def test_a_renderer_keeps_the_templates_it_was_made_with(tmp_path):
    """A reload checks the templates; sends must use exactly those, not a later edit."""
    (tmp_path / "subject.txt").write_text("GOOD {{ title }}\n")
    renderer = Renderer("Example Cloud", str(tmp_path))
    assert renderer.check() == []
    (tmp_path / "subject.txt").write_text("BROKEN {{ title }\n")
    assert renderer.render(make_notice(), make_tenant()).subject == "GOOD Storage firmware update"
    assert Renderer("Example Cloud", str(tmp_path)).check()[0].startswith(f"{tmp_path / 'subject.txt'}:1: ")


def test_build_notifiers_mails_with_the_checked_renderer(tmp_path):
    (tmp_path / "subject.txt").write_text("CHECKED {{ title }}")
    checked = Renderer("P", str(tmp_path))
    (tmp_path / "subject.txt").write_text("EDITED {{ title }}")
    (email,) = [
        n
        for n in build_notifiers(Notifiers(email=EmailSettings(), templates=str(tmp_path)), "P", checked)
        if n.channel == "email"
    ]
    assert email.build_message(make_notice(), make_tenant())["Subject"] == "CHECKED Storage firmware update"
