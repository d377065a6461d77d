"""The phases of the tick (scheduler.plan.evaluate), each called alone with a fixed ``now``.

evaluate() is scope -> transitions -> released -> advance -> withdrawn -> next_wakeup,
sharing a Ledger of what tenants were told. Windows are model records built directly
(tests/test_plan.py's helpers); instants are UTC. Intervals are ``[start, end)``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_plan import FW, E, S, T, config, hm, told, window

from scheduler.plan import EPOCH, Journal, OpenOccurrence
from scheduler.plan.evaluate import Ledger, advance, next_wakeup, released, scope, transitions, withdrawn

MIN = timedelta(minutes=1)


def kinds(notes) -> list[tuple]:
    return [(n.kind, n.window, "".join(sorted(n.tenants)), n.lead, n.late, n.sequence) for n in notes]


def moves(trans) -> list[tuple]:
    return [(t.event, t.window, hm(t.at), t.late, "".join(sorted(t.period_tenants)), t.reason) for t in trans]


# ---------------------------------------------------------------------------
# 1. scope: floor, horizon and the occurrences looked at

NOW = T("2027-01-09T00:00")
SCOPE = [
    # id, journal, expected floor, expected window ids in scope
    ("first_tick_floor_is_now", Journal(), NOW, ["fw"]),
    ("floor_is_the_last_tick", Journal(last_tick=NOW - timedelta(hours=5)), NOW - timedelta(hours=5), ["fw"]),
    ("floor_is_capped_at_catchup", Journal(last_tick=NOW - timedelta(days=30)), NOW - timedelta(days=7), ["fw"]),
    ("last_tick_after_now_clock_went_back", Journal(last_tick=NOW + timedelta(hours=1)), NOW, ["fw"]),
    (
        "announced_one_off_beyond_the_horizon_is_followed",
        Journal(announced={("far", EPOCH): told(["a"], T("2027-03-01T00:00"), T("2027-03-01T01:00"))}),
        NOW,
        ["fw", "far"],
    ),
]
FAR = window("far", "2027-03-01T00:00", "2027-03-01T01:00")
NOT_TOLD = window("quiet", "2027-03-02T00:00", "2027-03-02T01:00")


@pytest.mark.parametrize("journal, floor, ids", [c[1:] for c in SCOPE], ids=[c[0] for c in SCOPE])
def test_scope(journal, floor, ids):
    s = scope(config(FW, FAR, NOT_TOLD), journal, NOW)
    assert (s.floor, s.max_lead, s.horizon) == (floor, timedelta(hours=24), NOW + timedelta(days=2))
    assert [a.window.id for a in s.items] == ids


# ---------------------------------------------------------------------------
# 2. transitions: starts and ends at or before now the journal lacks

ONE = window("one", "2027-01-10T10:00", "2027-01-10T11:00", tenants=["a"])
TWO = window("two", "2027-01-10T11:00", "2027-01-10T12:00", tenants=["a", "b"])
TRANSITIONS = [
    # id, windows, journal, now, expected transitions, expected notices
    ("before_the_start_nothing", [FW], Journal(last_tick=S - MIN), S - MIN, [], []),
    (
        "start_is_inside_its_own_interval",
        [FW],
        Journal(last_tick=S - MIN),
        S,
        [("start", "fw", "2027-01-10T10:00", False, "ab", "scheduled")],
        [("started", "fw", "ab", None, False, 0)],
    ),
    (
        "end_is_outside_its_interval",
        [FW],
        Journal(last_tick=E - MIN, events=frozenset({("fw", S, "start")})),
        E,
        [("end", "fw", "2027-01-10T12:00", False, "ab", "scheduled")],
        [("completed", "fw", "ab", None, False, 0)],
    ),
    (
        "missed_entirely_gets_only_completed",
        [FW],
        Journal(last_tick=S - MIN),
        E + MIN,
        [
            ("start", "fw", "2027-01-10T10:00", True, "ab", "scheduled"),
            ("end", "fw", "2027-01-10T12:00", False, "ab", "scheduled"),
        ],
        [("completed", "fw", "ab", None, False, 0)],
    ),
    (
        "touching_start_opens_only_for_the_new_tenant",
        [ONE, TWO],
        Journal(last_tick=T("2027-01-10T10:59"), events=frozenset({("one", T("2027-01-10T10:00"), "start")})),
        T("2027-01-10T11:00"),
        [
            ("end", "one", "2027-01-10T11:00", False, "", "scheduled"),
            ("start", "two", "2027-01-10T11:00", False, "b", "scheduled"),
        ],
        [("started", "two", "b", None, False, 0)],
    ),
]


@pytest.mark.parametrize(
    "windows, journal, now, expected_moves, expected_notes",
    [c[1:] for c in TRANSITIONS],
    ids=[c[0] for c in TRANSITIONS],
)
def test_transitions(windows, journal, now, expected_moves, expected_notes):
    cfg = config(*windows)
    ledger = Ledger(journal.announced)
    trans, notes = transitions(scope(cfg, journal, now), journal, ledger)
    assert sorted(moves(trans), key=lambda m: (m[2], m[0] != "end")) == expected_moves
    assert kinds(notes) == expected_notes


def test_transitions_tell_the_ledger_who_knows():
    j = Journal(last_tick=S - MIN, announced={("fw", EPOCH): told(["a"], sequence=3)})
    ledger = Ledger(j.announced)
    transitions(scope(config(FW), j, S), j, ledger)
    (ann,) = ledger.updates.values()
    assert (ann.tenants, ann.sequence, ann.status) == ({"a", "b"}, 3, "scheduled")


# ---------------------------------------------------------------------------
# 3. released: open occurrences the config no longer produces

OPEN = {("gone", S): OpenOccurrence(window="gone", key=S, start=S, end=E, tenants=frozenset({"a", "b"}), title="Gone")}
RELEASED = [
    # id, windows, journal, now, expected transitions
    (
        "removed_window_ends_now",
        [],
        Journal(open=OPEN),
        S + MIN,
        [("end", "gone", "2027-01-10T10:01", False, "ab", "removed")],
    ),
    (
        "tenant_inside_another_running_window_stays",
        [window("other", "2027-01-10T09:00", "2027-01-10T13:00", tenants=["b"])],
        Journal(open=OPEN),
        S + MIN,
        [("end", "gone", "2027-01-10T10:01", False, "a", "removed")],
    ),
    ("clock_went_back_before_its_start", [], Journal(open=OPEN), S - MIN, []),
    ("end_already_recorded", [], Journal(open=OPEN, events=frozenset({("gone", S, "end")})), S + MIN, []),
    (
        "still_produced_is_not_released",
        [window("gone", "2027-01-10T10:00", "2027-01-10T12:00", tenants=["a", "b"])],
        Journal(open=OPEN),
        S + MIN,
        [],
    ),
]


@pytest.mark.parametrize("windows, journal, now, expected", [c[1:] for c in RELEASED], ids=[c[0] for c in RELEASED])
def test_released(windows, journal, now, expected):
    trans, notes = released(scope(config(*windows), journal, now), journal)
    assert moves(trans) == expected
    assert [(n.kind, n.title, n.end) for n in notes] == [("completed", "Gone", now)] * len(expected)


# ---------------------------------------------------------------------------
# 4. advance: scheduled, rescheduled, extended

DAY_BEFORE = T("2027-01-09T10:00")
ADVANCE = [
    # id, windows, journal, now, expected notices
    ("lead_due_exactly_is_on_time", [FW], Journal(), DAY_BEFORE, [("scheduled", "fw", "ab", "24h", False, 0)]),
    (
        "lead_within_a_minute_is_on_time",
        [FW],
        Journal(),
        DAY_BEFORE + MIN,
        [("scheduled", "fw", "ab", "24h", False, 0)],
    ),
    ("passed_leads_collapse_late", [FW], Journal(), S - 30 * MIN, [("scheduled", "fw", "ab", "1h", True, 0)]),
    ("lead_already_sent", [FW], Journal(sent_leads=frozenset({("fw", S, "24h")})), DAY_BEFORE, []),
    (
        "added_tenant_gets_it_late",
        [FW],
        Journal(sent_leads=frozenset({("fw", S, "24h")}), announced={("fw", EPOCH): told(["a"])}),
        DAY_BEFORE + timedelta(hours=2),
        [("scheduled", "fw", "b", "24h", True, 0)],
    ),
    (
        "dropped_tenant_gets_cancelled",
        [FW],
        Journal(sent_leads=frozenset({("fw", S, "24h")}), announced={("fw", EPOCH): told(["a", "b", "c"])}),
        DAY_BEFORE + timedelta(hours=2),
        [("cancelled", "fw", "c", None, False, 1)],
    ),
    (
        "moved_is_rescheduled_then_due_lead",
        [FW],
        Journal(announced={("fw", EPOCH): told(["a", "b"], S - timedelta(days=1), E - timedelta(days=1))}),
        DAY_BEFORE,
        [("rescheduled", "fw", "ab", None, False, 1), ("scheduled", "fw", "ab", "24h", False, 1)],
    ),
    (
        "running_and_longer_is_extended",
        [FW],
        Journal(
            events=frozenset({("fw", S, "start")}),
            announced={("fw", EPOCH): told(["a", "b"], S, E - timedelta(hours=1))},
        ),
        S + MIN,
        [("extended", "fw", "ab", None, False, 1)],
    ),
    (
        "running_but_not_started_in_journal_is_not_extended",
        [FW],
        Journal(announced={("fw", EPOCH): told(["a", "b"], S, E - timedelta(hours=1))}),
        S + MIN,
        [],
    ),
]


@pytest.mark.parametrize("windows, journal, now, expected", [c[1:] for c in ADVANCE], ids=[c[0] for c in ADVANCE])
def test_advance(windows, journal, now, expected):
    assert kinds(advance(scope(config(*windows), journal, now), journal, Ledger(journal.announced))) == expected


def test_dropped_tenant_leaves_the_ledger():
    # After its cancel, c no longer counts as told: a later re-add sends it a fresh notice.
    j = Journal(sent_leads=frozenset({("fw", S, "24h")}), announced={("fw", EPOCH): told(["a", "b", "c"])})
    ledger = Ledger(j.announced)
    advance(scope(config(FW), j, DAY_BEFORE + timedelta(hours=2)), j, ledger)
    (ann,) = ledger.updates.values()
    assert (ann.tenants, ann.sequence, ann.status) == ({"a", "b"}, 1, "scheduled")


# ---------------------------------------------------------------------------
# 5. withdrawn: announced occurrences that vanished before their start

WEEKLY = window("weekly", cron="0 1 * * 2", duration="2h", notify=["3d"])
WITHDRAWN = [
    # id, windows, announced, now, expected notices
    (
        "removed_before_its_start",
        [],
        {("fw", EPOCH): told(["a"], sequence=2)},
        S - MIN,
        [("cancelled", "fw", "a", None, False, 3)],
    ),
    ("removed_after_its_start_is_not_cancelled", [], {("fw", EPOCH): told(["a"])}, S, []),
    ("nobody_told", [], {("fw", EPOCH): told([])}, S - MIN, []),
    ("still_declared", [FW], {("fw", EPOCH): told(["a"])}, S - MIN, []),
    (
        "recurring_beyond_the_horizon_was_not_expanded",
        [WEEKLY],
        {("weekly", T("2027-02-02T01:00")): told(["a"], T("2027-02-02T01:00"), T("2027-02-02T03:00"))},
        S,
        [],
    ),
]


@pytest.mark.parametrize("windows, announced, now, expected", [c[1:] for c in WITHDRAWN], ids=[c[0] for c in WITHDRAWN])
def test_withdrawn(windows, announced, now, expected):
    cfg, j = config(*windows), Journal(announced=announced)
    ledger = Ledger(j.announced)
    notes = withdrawn(scope(cfg, j, now), cfg, j, ledger)
    assert kinds(notes) == expected
    assert [a.status for a in ledger.updates.values()] == ["cancelled"] * len(expected)


# ---------------------------------------------------------------------------
# 6. next_wakeup

NEXT = [
    # id, windows, now, expected
    ("next_lead", [FW], T("2027-01-08T00:00"), "2027-01-09T10:00"),
    ("start_when_no_lead_left", [FW], S - MIN, "2027-01-10T10:00"),
    ("end_while_running", [FW], S, "2027-01-10T12:00"),
    ("at_the_end_nothing_left", [FW], E, None),
    (
        "beyond_the_horizon_looks_further",
        [window("later", "2027-03-01T00:00", "2027-03-01T01:00", notify=["1h"])],
        S,
        "2027-02-28T23:00",
    ),
]


@pytest.mark.parametrize("windows, now, expected", [c[1:] for c in NEXT], ids=[c[0] for c in NEXT])
def test_next_wakeup(windows, now, expected):
    cfg, j = config(*windows), Journal(last_tick=now)
    got = next_wakeup(scope(cfg, j, now), cfg, j)
    assert (hm(got) if got else None) == expected


def test_case_names_are_unique():
    for table in (SCOPE, TRANSITIONS, RELEASED, ADVANCE, WITHDRAWN, NEXT):
        assert len({c[0] for c in table}) == len(table)
