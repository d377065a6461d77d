"""What notices say about time: a late notice states the real time left and that it is
short notice, in every channel and language; an extension's subject names the new end;
completed and cancelled notices no longer say maintenance is under way (issue 14)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from notifier_fixtures import make_tenant

from notifiers import Renderer
from scheduler import plan
from scheduler.daemon import Daemon
from scheduler.model import Tenant
from scheduler.notices import compose_notice, notice_from_json, notice_to_json

NOW = datetime(2026, 12, 5, 20, 50, tzinfo=UTC)
START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)  # 10 minutes after NOW
END = START + timedelta(hours=1)  # 23:00 in Berlin

CONFIG = """\
version: 1
provider: {name: Example Cloud, timezone: Europe/Berlin}
tenants:
  - id: acme
    name: ACME Corp
    timezone: Europe/Berlin
    webhook: {url: "http://127.0.0.1:9/hook", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
windows:
  - id: hotfix
    title: Storage hotfix
    start: 2026-12-05T21:00:00Z
    duration: 1h
    notify: [2h]
    tenants: [acme]
"""


@dataclass(frozen=True, kw_only=True)
class LocaleTenant(Tenant):
    locale: str = "en"

    __hash__ = Tenant.__hash__


def tenant(locale: str) -> Tenant:
    base = make_tenant()
    return LocaleTenant(id=base.id, name=base.name, zone=base.zone, email=base.email, locale=locale)


def action(kind: str = "scheduled", *, late: bool = True, lead: str | None = "2h") -> plan.NoticeAction:
    return plan.NoticeAction(
        kind=kind,
        window="hotfix",
        occurrence=START,
        tenants=frozenset({"acme"}),
        start=START,
        end=END,
        title="Storage hotfix",
        lead=lead if kind == "scheduled" else None,
        late=late,
        sequence=1 if kind in ("extended", "cancelled") else 0,
        previous=(START, END - timedelta(minutes=30)) if kind == "extended" else None,
    )


@pytest.fixture
def daemon(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    d = Daemon(str(path), clock=lambda: NOW, env={"MAINTD_TOKEN": "notice-texts-token-0123456789abcdef"})
    yield d
    d.store.close()


LATE = {
    "en": "in 10 minutes (short notice)",
    "de": "in 10 Minuten (kurzfristig)",
    "fr": "dans 10 minutes (préavis court)",
}
SENTENCE = {"en": "that starts in 10 minutes", "de": "sie beginnt in 10 Minuten", "fr": "qui commence dans 10 minutes"}
LEAD_WORDS = {"en": "2 hours", "de": "2 Stunden", "fr": "2 heures"}


def test_a_late_notice_composed_by_the_daemon_carries_the_real_time_left(daemon):
    daemon.reconciler.tick("test")
    rows = [r for r in daemon.store.notices() if r["kind"] == "scheduled"]
    assert rows, "the late scheduled notice was not enqueued"
    payload = rows[0]["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    notice = notice_from_json(payload)
    assert notice.late and notice.lead == "2h" and notice.time_left == "10m"
    assert notice.payload()["time_left"] == "10m"


@pytest.mark.parametrize("locale", ["en", "de", "fr"])
def test_late_notice_says_the_time_left_and_short_notice_in_every_channel(daemon, locale):
    notice = compose_notice(daemon.config, action(), daemon.config.tenants["acme"], now=NOW)
    rendered = Renderer("Example Cloud").render(notice, tenant(locale))
    title, chat = Renderer("Example Cloud").render_chat(notice, tenant(locale))
    for text in (rendered.subject, rendered.text, rendered.html, title, chat):
        assert LATE[locale] in text, text
        assert LEAD_WORDS[locale] not in text, text
    assert SENTENCE[locale] in rendered.text
    body = notice.payload()
    assert body["late"] is True and body["time_left"] == "10m" and body["lead"] == "2h"


def test_on_time_notice_says_its_lead_and_no_short_notice(daemon):
    notice = compose_notice(daemon.config, action(late=False), daemon.config.tenants["acme"], now=NOW)
    assert notice.time_left == "2h"
    rendered = Renderer("Example Cloud").render(notice, tenant("en"))
    assert "starting in 2 hours." in rendered.text
    assert "short notice)" not in rendered.subject + rendered.text


@pytest.mark.parametrize(
    "now, left, words",
    [
        (START - timedelta(minutes=10, seconds=59), "10m", "in 10 minutes (short notice)"),
        (START - timedelta(seconds=30), "30s", "in 30 seconds (short notice)"),
        (START, "0s", "now (short notice)"),
        (START - timedelta(hours=5, minutes=5), "5h5m", "in 5 hours 5 minutes (short notice)"),
    ],
    ids=["rounded_down", "under_a_minute", "at_the_start", "hours_and_minutes"],
)
def test_time_left_is_measured_from_composition(daemon, now, left, words):
    notice = compose_notice(daemon.config, action(lead="1d"), daemon.config.tenants["acme"], now=now)
    assert notice.time_left == left
    assert words in Renderer("Example Cloud").render(notice, tenant("en")).text


def test_time_left_survives_the_outbox_codec(daemon):
    notice = compose_notice(daemon.config, action(), daemon.config.tenants["acme"], now=NOW)
    assert notice_to_json(notice)["time_left"] == "10m"
    assert notice_from_json(json.loads(json.dumps(notice_to_json(notice)))) == notice


@pytest.mark.parametrize(
    "locale, expected",
    [
        ("en", "Maintenance extended: Storage hotfix — until Sat 5 Dec 2026 "),
        ("de", "Wartung verlängert: Storage hotfix — bis Samstag, 5. Dezember 2026, 23:00"),
        ("fr", "Maintenance prolongée : Storage hotfix — jusqu’au samedi 5 décembre 2026 à 23:00"),
    ],
    ids=["en", "de", "fr"],
)
def test_extended_subject_names_the_new_end(daemon, locale, expected):
    notice = compose_notice(daemon.config, action("extended"), daemon.config.tenants["acme"], now=NOW)
    subject = Renderer("Example Cloud").render(notice, tenant(locale)).subject
    assert expected in subject
    assert subject.endswith("23:00 CET")  # the start was 22:00


@pytest.mark.parametrize(
    "kind, locale, expected",
    [
        ("completed", "en", "Maintenance Storage hotfix by Example Cloud has ended at Sat 5 Dec 2026 23:00 CET."),
        ("completed", "de", "Die Wartung Storage hotfix von Example Cloud ist seit Sat 5 Dec 2026 23:00 CET beendet."),
        ("completed", "fr", "La maintenance Storage hotfix de Example Cloud est terminée depuis Sat 5 Dec 2026 23:00"),
        ("cancelled", "en", "Maintenance Storage hotfix by Example Cloud, planned for Sat 5 Dec 2026 22:00 CET, is"),
    ],
    ids=["completed_en", "completed_de", "completed_fr", "cancelled_en"],
)
def test_after_the_fact_messages_do_not_say_maintenance_is_under_way(daemon, kind, locale, expected):
    notice = compose_notice(daemon.config, action(kind), tenant(locale), now=END)
    body = notice.payload()
    assert body["message"].startswith(expected)
    assert "under scheduled maintenance" not in body["message"]
    assert "until" not in body["message"]


def test_started_keeps_the_windows_message(daemon):
    notice = compose_notice(daemon.config, action("started"), daemon.config.tenants["acme"], now=START)
    assert "under scheduled maintenance until" in notice.message
    assert "time_left" not in notice.payload()


# ---------------------------------------------------------------------------
# the calendar after an early exit, and what the feed says of cancelled and one-off events


def _feed_events(daemon, tid: str = "acme") -> dict:
    import icalendar

    from scheduler.web import tenant_feed

    cal = icalendar.Calendar.from_ical(tenant_feed(daemon, daemon.config.tenants[tid], daemon.clock()))
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_exit_raises_the_sequence_in_the_feed_and_the_emailed_ics(tmp_path: Path):
    import icalendar

    from notifiers.calendar import build_ics

    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    early = NOW - timedelta(hours=4)  # clear of the hotfix: the exit ends acme's maintenance
    clock = {"now": early}
    d = Daemon(str(path), clock=lambda: clock["now"], env={"MAINTD_TOKEN": "notice-texts-token-0123456789abcdef"})
    try:
        entered = d.manual.enter(reason="disk swap", duration=timedelta(hours=2))
        wid = entered["window"]
        (uid,) = [u for u in _feed_events(d) if u.startswith(wid)]
        assert int(_feed_events(d)[uid]["SEQUENCE"]) == 0
        clock["now"] = early + timedelta(minutes=30)
        d.manual.exit(window=wid)
        event = _feed_events(d)[uid]
        assert event.decoded("DTEND") == early + timedelta(minutes=30)
        assert int(event["SEQUENCE"]) == 1
        rows = [r for r in d.store.notices(window=wid) if r["kind"] == "completed"]
        assert rows, "no completed notice after exit"
        payload = rows[0]["payload"]
        notice = notice_from_json(json.loads(payload) if isinstance(payload, str) else payload)
        invite = next(iter(icalendar.Calendar.from_ical(build_ics(notice)).walk("VEVENT")))
        assert invite.decoded("DTEND") == early + timedelta(minutes=30)
        assert int(invite["SEQUENCE"]) == 1
    finally:
        d.store.close()


def test_an_extension_raises_the_sequence_in_the_feed(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = {"now": START + timedelta(minutes=5)}
    d = Daemon(str(path), clock=lambda: clock["now"], env={"MAINTD_TOKEN": "notice-texts-token-0123456789abcdef"})
    try:
        d.reconciler.tick("test")
        before = int(_feed_events(d)["hotfix@maintd"]["SEQUENCE"])
        d.manual.extend("hotfix", timedelta(minutes=30))
        event = _feed_events(d)["hotfix@maintd"]
        assert event.decoded("DTEND") == END + timedelta(minutes=30)
        assert int(event["SEQUENCE"]) == before + 1
    finally:
        d.store.close()


def test_feed_one_off_has_no_exdate_and_cancelled_says_cancelled(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = {"now": NOW - timedelta(hours=3)}
    d = Daemon(str(path), clock=lambda: clock["now"], env={"MAINTD_TOKEN": "notice-texts-token-0123456789abcdef"})
    try:
        d.reconciler.tick("test")  # 3h ahead: the 2h notice is not due yet
        clock["now"] = NOW - timedelta(hours=1)
        d.reconciler.tick("test")  # the 2h notice goes out: acme was told
        event = _feed_events(d)["hotfix@maintd"]
        assert "EXDATE" not in event
        path.write_text(CONFIG.replace("    notify: [2h]\n", "    notify: [2h]\n    cancelled: true\n"))
        d.reload()
        d.reconciler.tick("test")
        event = _feed_events(d)["hotfix@maintd"]
        assert str(event["STATUS"]) == "CANCELLED"
        description = str(event.get("DESCRIPTION", ""))
        assert "cancelled" in description.lower() and "under scheduled maintenance" not in description
        assert "EXDATE" not in event
    finally:
        d.store.close()
