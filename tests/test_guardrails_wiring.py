"""Guardrails wired in (SPEC section 7): windows.yaml -> records, validation errors with
FILE:LINE:COL, and what ``maintd plan`` / the tick make of freezes and blackouts.

Intervals are half-open ``[start, end)``: every table has a touching case.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from textwrap import dedent, indent

import pytest

from scheduler import config, plan
from scheduler.errors import ConfigError
from scheduler.model import UTC
from scheduler.plan.guardrails import freeze_skipped, guard_of

HEAD = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  redundant: [[repo-1, repo-2]]
"""


def doc(*, freezes: str = "", tenants: str = "  - id: acme\n  - id: beta\n", windows: str = "") -> str:
    text = HEAD
    if freezes:
        text += "freezes:\n" + indent(dedent(freezes), "  ")
    text += "tenants:\n" + tenants + "windows:\n" + indent(dedent(windows), "  ")
    return text


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


YEAR_END = """\
- id: year-end
  start: 2026-12-20T00:00
  end: 2027-01-04T00:00
  reason: Year-end change freeze
"""

# ---------------------------------------------------------------- validation errors

ERRORS = [
    (
        "oneoff_inside_freeze",
        doc(freezes=YEAR_END, windows="- id: fw\n  start: 2026-12-21T22:00\n  duration: 2h\n"),
        [
            'w.yaml:15:5: window "fw" overlaps freeze "year-end" (2026-12-20 00:00 - 2027-01-04 00:00 '
            "Europe/Berlin: Year-end change freeze); move it or add override_freeze: REASON"
        ],
    ),
    (
        "oneoff_ending_as_freeze_starts_is_outside",  # half-open: [22:00, 00:00) does not meet [00:00, ...)
        doc(freezes=YEAR_END, windows="- id: fw\n  start: 2026-12-19T22:00\n  duration: 2h\n"),
        [],
    ),
    (
        "oneoff_starting_as_freeze_ends_is_outside",
        doc(freezes=YEAR_END, windows="- id: fw\n  start: 2027-01-04T00:00\n  duration: 2h\n"),
        [],
    ),
    (
        "oneoff_with_override_freeze",
        doc(freezes=YEAR_END, windows="- id: fw\n  start: 2026-12-21T22:00\n  duration: 2h\n  override_freeze: CVE\n"),
        [],
    ),
    (
        "cancelled_oneoff_inside_freeze",
        doc(freezes=YEAR_END, windows="- id: fw\n  start: 2026-12-21T22:00\n  duration: 2h\n  cancelled: true\n"),
        [],
    ),
    (
        "oneoffs_on_redundant_resources",
        doc(
            windows="""\
            - id: a
              start: 2027-02-01T22:00
              duration: 2h
              resources: [repo-1]
            - id: b
              start: 2027-02-01T23:00
              duration: 2h
              resources: [repo-2]
            """
        ),
        [
            'w.yaml:10:5: windows "a" and "b" overlap on redundant resources repo-1, repo-2 '
            "(2027-02-01 23:00 - 2027-02-02 00:00 Europe/Berlin)"
        ],
    ),
    (
        "oneoffs_on_redundant_resources_touching",
        doc(
            windows="""\
            - id: a
              start: 2027-02-01T22:00
              duration: 1h
              resources: [repo-1]
            - id: b
              start: 2027-02-01T23:00
              duration: 2h
              resources: [repo-2]
            """
        ),
        [],
    ),
    (
        "freeze_ends_before_it_starts",
        doc(freezes="- id: x\n  start: 2027-01-02T00:00\n  end: 2027-01-01T00:00\n"),
        [
            'w.yaml:9:10: end 2027-01-01T00:00 of freeze "x" is not after its start 2027-01-02T00:00; '
            "expected an end after the start"
        ],
    ),
    (
        "duplicate_freeze_id",
        doc(
            freezes="- {id: x, start: 2027-01-01T00:00, end: 2027-01-02T00:00}\n- {id: x, start: 2027-02-01, end: 2027-02-02}\n"
        ),
        ['w.yaml:8:10: duplicate freeze id "x" (first defined at line 7)'],
    ),
    (
        "blackout_without_end",
        doc(tenants="  - id: acme\n    blackouts:\n      - {start: 2027-03-31T18:00}\n"),
        ['w.yaml:9:9: blackouts[0] of tenant "acme": expected {start, end}, {start, duration} or {cron, duration}'],
    ),
    (
        "blackout_cron_without_duration",
        doc(tenants='  - id: acme\n    blackouts:\n      - {cron: "0 0 1 * *"}\n'),
        ['w.yaml:9:9: blackouts[0] of tenant "acme": a cron blackout takes duration (and no start or end)'],
    ),
    (
        "blackout_bad_cron",
        doc(tenants='  - id: acme\n    blackouts:\n      - {cron: "0 0 31 2 *", duration: 1d}\n'),
        [
            'w.yaml:9:16: invalid cron expression "0 0 31 2 *": day "31" never occurs in month "2"; '
            'expected 5 fields "minute hour day month weekday"'
        ],
    ),
    (
        "redundant_group_of_one",
        HEAD.replace("[[repo-1, repo-2]]", "[[repo-1, repo-1]]") + "windows: []\n",
        ["w.yaml:5:15: provider.redundant[0] names 1 resource(s); expected a group of at least two"],
    ),
    (
        "blackouts_mode_unknown",
        doc(windows="- id: w\n  cron: '0 1 * * *'\n  duration: 1h\n  blackouts: ignore\n"),
        ["w.yaml:13:16: blackouts: input should be 'warn' or 'skip', got 'ignore'"],
    ),
]


def _issues(text: str) -> list[str]:
    try:
        config.parse(text, "w.yaml")
    except ConfigError as exc:
        return [str(i) for i in exc.issues if i.severity == "error"]
    return []


@pytest.mark.parametrize("text,expected", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_validation_errors(text, expected):
    assert _issues(text) == expected


def test_records_carry_the_guardrails():
    text = doc(
        freezes=YEAR_END,
        tenants=(
            "  - id: acme\n    timezone: America/New_York\n    blackouts:\n"
            "      - {start: 2027-03-31T18:00, end: 2027-04-01T06:00}\n"
            '      - {cron: "0 0 1 * *", duration: 1d}\n'
        ),
        windows="- id: w\n  cron: '0 1 * * *'\n  duration: 1h\n  blackouts: skip\n  override_freeze: approved\n",
    )
    cfg = config.parse(text, "w.yaml")
    (fz,) = cfg.freezes
    assert (fz.id, fz.start.isoformat(), fz.end.isoformat(), fz.line) == (
        "year-end",
        "2026-12-19T23:00:00+00:00",  # Berlin midnight, CET
        "2027-01-03T23:00:00+00:00",
        7,
    )
    assert cfg.provider.redundant == (frozenset({"repo-1", "repo-2"}),)
    one, monthly = cfg.tenants["acme"].blackouts
    assert one.start.astimezone(one.zone).isoformat() == "2027-03-31T18:00:00-04:00"  # EDT
    assert (monthly.cron, monthly.duration, monthly.zone.key, monthly.label) == (
        "0 0 1 * *",
        timedelta(days=1),
        "America/New_York",
        "blackouts[1]",
    )
    (w,) = cfg.windows
    assert (w.blackouts, w.override_freeze) == ("skip", "approved")


def test_freeze_across_dst_resolves_each_end_in_its_own_offset():
    text = doc(freezes="- {id: spring, start: 2027-03-27T12:00, end: 2027-03-28T12:00, timezone: Europe/Berlin}\n")
    (fz,) = config.parse(text, "w.yaml").freezes
    assert fz.start.astimezone(fz.zone).isoformat() == "2027-03-27T12:00:00+01:00"
    assert fz.end.astimezone(fz.zone).isoformat() == "2027-03-28T12:00:00+02:00"
    assert fz.end - fz.start == timedelta(hours=23)


# ---------------------------------------------------------------- plan --json


def plan_json(text: str, frm: str, to: str, tenant: str | None = None) -> list[dict]:
    cfg = config.parse(text, "w.yaml")
    events = plan.timeline(cfg, utc(frm), utc(to), tenant=tenant)
    return [json.loads(line) for line in plan.json_lines(events)]


DAILY = "- id: nightly\n  cron: '0 1 * * *'\n  duration: 2h\n  notify: [1h]\n"


def test_occurrence_in_a_freeze_is_skipped_with_one_event():
    # Freeze [2027-01-10 00:00, 2027-01-11 00:00) Berlin: only the 10th's 01:00 occurrence.
    text = doc(freezes="- {id: patch-stop, start: 2027-01-10T00:00, end: 2027-01-11T00:00}\n", windows=DAILY)
    events = plan_json(text, "2027-01-09T12:00", "2027-01-11T12:00")
    assert [e for e in events if e["event"] == "skipped"] == [
        {
            "at": "2027-01-10T00:00:00Z",
            "event": "skipped",
            "window": "nightly",
            "occurrence": "2027-01-10T00:00:00Z",
            "reason": "freeze patch-stop",
        }
    ]
    kept = sorted({(e["occurrence"], e["event"]) for e in events if e["event"] != "skipped"})
    assert kept == [
        ("2027-01-11T00:00:00Z", "end"),
        ("2027-01-11T00:00:00Z", "notice"),
        ("2027-01-11T00:00:00Z", "start"),
    ]


FREEZE_EDGES = [
    # (freeze start, end) in Berlin; the occurrence is [01:00, 03:00) Berlin on 2027-01-10
    ("ends_at_occurrence_start", "2027-01-09T12:00", "2027-01-10T01:00", False),
    ("starts_at_occurrence_end", "2027-01-10T03:00", "2027-01-10T12:00", False),
    ("covers_last_minute", "2027-01-10T02:59", "2027-01-10T12:00", True),
    ("covers_first_minute", "2027-01-09T12:00", "2027-01-10T01:01", True),
]


@pytest.mark.parametrize("start,end,skipped", [c[1:] for c in FREEZE_EDGES], ids=[c[0] for c in FREEZE_EDGES])
def test_freeze_edges_are_half_open(start, end, skipped):
    text = doc(freezes=f"- {{id: f, start: {start}, end: {end}}}\n", windows=DAILY)
    events = plan_json(text, "2027-01-09T23:30", "2027-01-10T06:00")
    assert any(e["event"] == "skipped" for e in events) is skipped
    assert any(e["event"] == "start" for e in events) is not skipped


def test_freeze_override_keeps_recurring_occurrences():
    text = doc(freezes=YEAR_END, windows=DAILY + "  override_freeze: CAB 42\n")
    events = plan_json(text, "2026-12-21T00:00", "2026-12-22T00:00")
    assert [e["event"] for e in events] == ["start", "start", "end", "end", "notice", "notice"]
    assert {e["occurrence"] for e in events} == {"2026-12-21T00:00:00Z", "2026-12-22T00:00:00Z"}


BLACKOUT_TENANTS = (
    "  - id: acme\n    timezone: America/New_York\n    blackouts:\n"
    '      - {cron: "0 0 1 * *", duration: 1d}\n'  # every first of the month, New York's day
    "  - id: beta\n"
)


def test_blackout_warn_marks_that_tenants_events():
    # 2027-02-01 01:00 Berlin = 2027-01-31 19:00 New York: not acme's 1st yet; 02-02 01:00
    # Berlin = 02-01 19:00 New York: inside acme's blackout.
    text = doc(tenants=BLACKOUT_TENANTS, windows=DAILY)
    events = plan_json(text, "2027-02-01T00:30", "2027-02-02T06:00")
    marked = sorted({(e["occurrence"], e["tenant"], e["event"]) for e in events if e.get("conflict") == "blackout"})
    assert marked == [
        ("2027-02-02T00:00:00Z", "acme", "end"),
        ("2027-02-02T00:00:00Z", "acme", "notice"),
        ("2027-02-02T00:00:00Z", "acme", "start"),
    ]
    assert all("conflict" not in e for e in events if e["tenant"] == "beta")
    assert not any(e["event"] == "skipped" for e in events)


def test_blackout_skip_leaves_the_tenant_out_with_a_skipped_event():
    text = doc(tenants=BLACKOUT_TENANTS, windows=DAILY + "  blackouts: skip\n")
    events = plan_json(text, "2027-02-01T23:30", "2027-02-02T06:00")
    assert [(e["event"], e["tenant"]) for e in events] == [
        ("notice", "beta"),
        ("start", "beta"),
        ("skipped", "acme"),
        ("end", "beta"),
    ]
    skipped = next(e for e in events if e["event"] == "skipped")
    assert skipped == {
        "at": "2027-02-02T00:00:00Z",
        "event": "skipped",
        "window": "nightly",
        "occurrence": "2027-02-02T00:00:00Z",
        "tenant": "acme",
        "reason": "blackout",
    }
    only_acme = plan_json(text, "2027-02-01T23:30", "2027-02-02T06:00", tenant="acme")
    assert [e["event"] for e in only_acme] == ["skipped"]


# ---------------------------------------------------------------- the tick


def test_tick_never_starts_or_announces_a_frozen_occurrence():
    text = doc(freezes="- {id: f, start: 2027-01-10T00:00, end: 2027-01-11T00:00}\n", windows=DAILY)
    cfg = config.parse(text, "w.yaml")
    for at in ("2027-01-09T23:30", "2027-01-10T00:30"):  # lead due, then the start
        ev = plan.evaluate(cfg, plan.Journal(last_tick=utc(at) - timedelta(minutes=1)), utc(at))
        assert ev.notices == () and ev.transitions == () and ev.active == ()
    assert guard_of(cfg) is guard_of(cfg)  # compiled once per config


def test_tick_leaves_a_skipped_tenant_out_of_the_start_and_the_gate():
    text = doc(tenants=BLACKOUT_TENANTS, windows=DAILY + "  blackouts: skip\n")
    cfg = config.parse(text, "w.yaml")
    now = utc("2027-02-02T00:30")
    ev = plan.evaluate(cfg, plan.Journal(last_tick=now - timedelta(hours=1)), now)
    (start,) = ev.transitions
    assert (start.event, start.tenants, start.period_tenants) == ("start", {"beta"}, {"beta"})
    assert [(n.kind, set(n.tenants)) for n in ev.notices] == [("started", {"beta"})]
    assert ev.active_for("acme") == [] and len(ev.active_for("beta")) == 1


def test_calendar_exdates_of_frozen_occurrences():
    text = doc(freezes="- {id: f, start: 2027-01-10T00:00, end: 2027-01-12T00:00}\n", windows=DAILY)
    cfg = config.parse(text, "w.yaml")
    w = cfg.windows[0]
    occs = plan.occurrences(w, utc("2027-01-08T00:00"), utc("2027-01-14T00:00"))
    assert [o.start.isoformat() for o in freeze_skipped(cfg, w, occs)] == [
        "2027-01-10T00:00:00+00:00",
        "2027-01-11T00:00:00+00:00",
    ]
