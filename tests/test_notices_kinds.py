"""notices: the table of notice kinds and what derives from it, composing a notice for
a tenant, the outbox JSON codec, and what a late notice says about the time left.

Pure: records are built directly; every instant is fixed.
"""

from __future__ import annotations

import ast
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler import model, notices
from scheduler.model import UTC, Config, Notice, Provider, Tenant, Window, calendar_uid, notice_id
from scheduler.notices import (
    ADVANCE_KINDS,
    CANCEL_KINDS,
    KINDS,
    NOTICE_KINDS,
    PREVIOUS_KINDS,
    SEQUENCED_KINDS,
    SUPERSEDED_AT_START,
    compose_notice,
    kind,
    notice_from_json,
    notice_seq,
    notice_to_json,
    tenant_message,
    time_left,
)
from scheduler.plan import NoticeAction

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
END = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
BEFORE = (START - timedelta(days=1), END - timedelta(days=1))

# ---------------------------------------------------------------------------
# the table

# kind: (webhook type, calendar method, advance, superseded at start, lead, previous, sequenced, summary, subject)
TABLE = [
    ("scheduled", "maintenance.scheduled", "REQUEST", True, True, True, False, False, False, "Scheduled maintenance"),
    ("started", "maintenance.started", "REQUEST", False, False, False, False, False, False, "Maintenance started"),
    ("extended", "maintenance.extended", "REQUEST", False, False, False, True, True, False, "Maintenance extended"),
    ("completed", "maintenance.completed", "REQUEST", False, False, False, False, False, True, "Maintenance completed"),
    ("rescheduled", "maintenance.rescheduled", "REQUEST", True, False, False, True, True, False, "Rescheduled"),
    ("cancelled", "maintenance.cancelled", "CANCEL", False, False, False, False, True, False, "Cancelled"),
]


@pytest.mark.parametrize(
    "name, type_, method, advance, superseded, lead, previous, sequenced, summary, subject",
    TABLE,
    ids=[c[0] for c in TABLE],
)
def test_kind_rows(name, type_, method, advance, superseded, lead, previous, sequenced, summary, subject):
    k = kind(name)
    assert (
        k.type,
        k.method,
        k.advance,
        k.superseded_at_start,
        k.lead,
        k.previous,
        k.sequenced,
        k.summary,
        k.subject,
    ) == (type_, method, advance, superseded, lead, previous, sequenced, summary, subject)


def test_derived_sets_and_order():
    assert NOTICE_KINDS == model.NOTICE_KINDS == tuple(c[0] for c in TABLE)  # SPEC 4's order
    assert ADVANCE_KINDS == {"scheduled", "rescheduled"}
    assert SUPERSEDED_AT_START == {"scheduled"}
    assert PREVIOUS_KINDS == {"rescheduled", "extended"}
    assert SEQUENCED_KINDS == {"rescheduled", "extended", "cancelled"}
    assert CANCEL_KINDS == {"cancelled"}
    assert set(KINDS) == set(NOTICE_KINDS)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match='unknown notice kind "ended"; expected one of scheduled, started, '):
        kind("ended")


def test_webhook_type_matches_the_notice_payload():
    for name in NOTICE_KINDS:
        n = compose_notice(CFG, action(name), ACME)
        assert n.payload()["type"] == kind(name).type


# ---------------------------------------------------------------------------
# composing

ACME = Tenant(id="acme", name="Acme GmbH", zone=BERLIN)
FW = Window(
    id="fw",
    title="Firmware",
    zone=UTC,
    tenants=frozenset({"acme"}),
    start=START,
    end=END,
    message="{title} for {tenant}: {start} - {end}",
)
CFG = Config(
    path="windows.yaml",
    provider=Provider(name="Example Cloud", zone=UTC),
    tenants={"acme": ACME},
    windows=(FW,),
    policies={},
)


def action(name: str, *, sequence: int = 2, recurring: bool = False) -> NoticeAction:
    return NoticeAction(
        kind=name,
        window="fw",
        occurrence=START,
        tenants=frozenset({"acme"}),
        start=START,
        end=END,
        title="Firmware",
        lead="24h",
        late=True,
        sequence=sequence,
        previous=BEFORE,
        recurring=recurring,
    )


# kind: (lead kept, id's sequence, previous kept, summary kept)
COMPOSE = [
    ("scheduled", "24h", 0, False, False),
    ("started", None, 0, False, False),
    ("extended", None, 2, True, False),
    ("completed", None, 0, False, True),
    ("rescheduled", None, 2, True, False),
    ("cancelled", None, 2, False, False),
]


@pytest.mark.parametrize("name, lead, seq, previous, summary", COMPOSE, ids=[c[0] for c in COMPOSE])
def test_compose_notice_keeps_what_the_kind_carries(name, lead, seq, previous, summary):
    n = compose_notice(CFG, action(name), ACME, window=FW, link="https://x/t/s/", summary={"refused": {}})
    assert n.id == notice_id("fw", START, "acme", name, lead, seq)
    assert (n.kind, n.lead, notice_seq(n), n.sequence, n.late) == (name, lead, seq, 2, True)
    assert (n.previous_start, n.previous_end) == (BEFORE if previous else (None, None))
    assert n.summary == ({"refused": {}} if summary else None)
    assert n.uid == calendar_uid("fw", START, recurring=False) and n.link == "https://x/t/s/"
    # The window's message speaks of maintenance under way; once over or called off it is untrue.
    after = {
        "completed": "Maintenance Firmware by Example Cloud has ended at Sun 6 Dec 2026 02:00 CET.",
        "cancelled": "Maintenance Firmware by Example Cloud, planned for Sat 5 Dec 2026 22:00 CET, is cancelled.",
    }
    during = "Firmware for Acme GmbH: Sat 5 Dec 2026 22:00 CET - Sun 6 Dec 2026 02:00 CET"
    assert n.message == after.get(name, during)


def test_recurring_uid_follows_the_occurrence():
    n = compose_notice(CFG, action("started", recurring=True), ACME)
    assert n.uid == calendar_uid("fw", START, recurring=True) != calendar_uid("fw", None, recurring=False)


MESSAGE = [
    ("window_message", FW, "Firmware for Acme GmbH: Sat 5 Dec 2026 22:00 CET - Sun 6 Dec 2026 02:00 CET"),
    (
        "provider_message_without_window",
        None,
        "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET.",
    ),
    (
        "provider_message_when_window_has_none",
        Window(id="fw", title="F", zone=UTC, tenants=frozenset()),
        "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET.",
    ),
]


@pytest.mark.parametrize("window, expected", [c[1:] for c in MESSAGE], ids=[c[0] for c in MESSAGE])
def test_tenant_message(window, expected):
    assert tenant_message(CFG, window, ACME, START, END, "Firmware", "fw") == expected


# ---------------------------------------------------------------------------
# the outbox codec


@pytest.mark.parametrize("name", NOTICE_KINDS)
def test_json_round_trip(name):
    n = compose_notice(CFG, action(name), ACME, window=FW, link="https://x/t/s/", summary={"refused": {"backup": 2}})
    d = notice_to_json(n)
    assert d["start"] == "2026-12-05T21:00:00Z" and d["kind"] == name
    assert notice_from_json(d) == n


def test_from_json_fills_absent_optional_fields():
    d = {
        "id": "ntc_1",
        "kind": "started",
        "window": "fw",
        "occurrence": "2026-12-05T21:00:00Z",
        "tenant": "acme",
        "title": "F",
        "start": "2026-12-05T21:00:00Z",
        "end": "2026-12-06T01:00:00Z",
        "message": "m",
        "provider": "P",
    }
    n = notice_from_json(d)
    assert n == Notice(
        id="ntc_1",
        kind="started",
        window="fw",
        occurrence=START,
        tenant="acme",
        title="F",
        start=START,
        end=END,
        message="m",
        provider="P",
    )


# ---------------------------------------------------------------------------
# time_left: a late notice states the real time left, not the passed lead

M = timedelta(minutes=1)
TIME_LEFT = [
    ("on_time_says_the_lead", "24h", False, 24 * 60 * M, ("24h", "in 24 hours", False)),
    ("on_time_compound_lead", "1h30m", False, 90 * M, ("1h30m", "in 1 hour 30 minutes", False)),
    ("late_says_ten_minutes_not_24h", "24h", True, 10 * M, ("10m", "in 10 minutes", True)),
    ("late_rounds_down_to_minutes", "24h", True, 10 * M + timedelta(seconds=59), ("10m", "in 10 minutes", True)),
    ("late_one_minute_is_singular", "1h", True, M, ("1m", "in 1 minute", True)),
    ("late_under_a_minute_in_seconds", "1h", True, timedelta(seconds=45), ("45s", "in 45 seconds", True)),
    ("late_hours_and_minutes", "7d", True, 5 * 60 * M + 3 * M, ("5h3m", "in 5 hours 3 minutes", True)),
    ("late_days", "7d", True, 2 * 24 * 60 * M, ("2d", "in 2 days", True)),
    ("late_at_the_start_says_now", "1h", True, timedelta(0), ("0s", "now", True)),
    ("late_after_the_start_says_now", "1h", True, -M, ("0s", "now", True)),
]


@pytest.mark.parametrize("lead, late, before, expected", [c[1:] for c in TIME_LEFT], ids=[c[0] for c in TIME_LEFT])
def test_time_left(lead, late, before, expected):
    got = time_left(start=START, sent_at=START - before, lead=lead, late=late)
    assert got is not None and tuple(got) == expected


def test_time_left_of_a_notice_without_lead_is_none():
    assert time_left(start=START, sent_at=START - M, lead=None, late=True) is None


def test_case_names_are_unique():
    for table in (TABLE, COMPOSE, MESSAGE, TIME_LEFT):
        assert len({c[0] for c in table}) == len(table)


def test_notices_imports_only_ground_modules():
    # Pure: from it no clock, store or network can be reached (DESIGN.md layers).
    tree = ast.parse(Path(notices.__file__).read_text())
    ours = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert ours <= {"model", "errors", "duration", "leadtime"}
    assert not any(isinstance(node, ast.Import) and "scheduler" in ast.dump(node) for node in ast.walk(tree))
