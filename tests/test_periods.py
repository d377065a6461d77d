"""plan.periods and plan.leads: the one merge of occurrences into maintenance periods,
and the one collapse of passed leads into a single late notice.

Occurrences are ``[start, end)``; two merge when they overlap or touch (SPEC 1).
Instants are written ``HH:MM`` on 2027-01-10 in UTC; no clock is read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.model import UTC, Occurrence, Window
from scheduler.plan import (
    Active,
    Period,
    boundaries,
    collapse_leads,
    group_tenants,
    merge_periods,
    period_end,
    tenant_periods,
)


def T(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return datetime(2027, 1, 10, int(h), int(m), tzinfo=UTC)


def occ(wid: str, start: str, end: str, tenants: str = "a") -> Active:
    """An occurrence of window ``wid`` over ``[start, end)`` affecting the letters of ``tenants``."""
    w = Window(id=wid, title=wid, zone=UTC, tenants=frozenset(tenants), start=T(start), end=T(end))
    return Active(window=w, occ=Occurrence(start=T(start), end=T(end), window=wid, key=T(start)))


def spans(*items: Active) -> list[tuple]:
    return [(a.occ.start, a.occ.end, a.window.id, a.occ.key) for a in items]


def shown(periods: list[Period]) -> list[tuple[str, str, str, str]]:
    return [(p.start.strftime("%H:%M"), p.end.strftime("%H:%M"), p.opener[0], p.closer[0]) for p in periods]


# ---------------------------------------------------------------------------
# merge_periods: (start, end, opener, closer) of each period

MERGE = [
    ("empty", [], []),
    ("one", [occ("x", "01:00", "02:00")], [("01:00", "02:00", "x", "x")]),
    (
        "apart",
        [occ("x", "01:00", "02:00"), occ("y", "03:00", "04:00")],
        [("01:00", "02:00", "x", "x"), ("03:00", "04:00", "y", "y")],
    ),
    (
        "one_minute_gap_stays_apart",
        [occ("x", "01:00", "02:00"), occ("y", "02:01", "03:00")],
        [("01:00", "02:00", "x", "x"), ("02:01", "03:00", "y", "y")],
    ),
    ("touching_merge", [occ("x", "01:00", "02:00"), occ("y", "02:00", "03:00")], [("01:00", "03:00", "x", "y")]),
    ("overlapping_merge", [occ("x", "01:00", "02:30"), occ("y", "02:00", "03:00")], [("01:00", "03:00", "x", "y")]),
    (
        "nested_keeps_outer_closer",
        [occ("x", "01:00", "04:00"), occ("y", "02:00", "03:00")],
        [("01:00", "04:00", "x", "x")],
    ),
    (
        "chain_of_three",
        [occ("x", "01:00", "02:00"), occ("y", "02:00", "03:00"), occ("z", "02:30", "05:00")],
        [("01:00", "05:00", "x", "z")],
    ),
    (
        "same_start_opens_by_window_id",
        [occ("b", "01:00", "02:00"), occ("a", "01:00", "03:00")],
        [("01:00", "03:00", "a", "a")],
    ),
    (
        "same_end_closes_by_last_in_order",
        [occ("a", "01:00", "03:00"), occ("b", "02:00", "03:00")],
        [("01:00", "03:00", "a", "b")],
    ),
]


@pytest.mark.parametrize("items, expected", [c[1:] for c in MERGE], ids=[c[0] for c in MERGE])
def test_merge_periods(items, expected):
    assert shown(merge_periods(spans(*items))) == expected
    assert shown(merge_periods(reversed(spans(*items)))) == expected  # input order does not matter


# ---------------------------------------------------------------------------
# tenant_periods: each tenant merges only its own occurrences

TENANTS = [
    (
        "different_tenants_do_not_merge",
        [occ("x", "01:00", "02:00", "a"), occ("y", "02:00", "03:00", "b")],
        {"a": [("01:00", "02:00", "x", "x")], "b": [("02:00", "03:00", "y", "y")]},
    ),
    (
        "shared_tenant_merges_across_windows",
        [occ("x", "01:00", "02:00", "ab"), occ("y", "02:00", "03:00", "b")],
        {"a": [("01:00", "02:00", "x", "x")], "b": [("01:00", "03:00", "x", "y")]},
    ),
    (
        "a_bridge_of_another_tenant_joins_nothing",
        [occ("x", "01:00", "02:00", "a"), occ("bridge", "01:30", "03:30", "b"), occ("y", "03:00", "04:00", "a")],
        {
            "a": [("01:00", "02:00", "x", "x"), ("03:00", "04:00", "y", "y")],
            "b": [("01:30", "03:30", "bridge", "bridge")],
        },
    ),
]


@pytest.mark.parametrize("items, expected", [c[1:] for c in TENANTS], ids=[c[0] for c in TENANTS])
def test_tenant_periods(items, expected):
    got = {t: shown(periods) for tenants, periods in tenant_periods(items) for t in tenants}
    assert got == expected


def test_group_tenants_shares_one_merge_per_membership():
    items = [occ("x", "01:00", "02:00", "abc"), occ("y", "03:00", "04:00", "bc")]
    assert {k: sorted(v) for k, v in group_tenants(items).items()} == {(0,): ["a"], (0, 1): ["b", "c"]}
    only_b = group_tenants(items, lambda w: w.tenants & {"b"})
    assert only_b == {(0, 1): ["b"]}


# ---------------------------------------------------------------------------
# period_end: the end of the period containing an instant, [start, end)

ITEMS = [occ("x", "01:00", "02:00", "ab"), occ("y", "02:00", "03:00", "a"), occ("z", "05:00", "06:00", "a")]
PERIOD_END = [
    ("before_any", "a", "00:59", None),
    ("at_start_inside", "a", "01:00", "03:00"),
    ("touching_boundary_inside", "a", "02:00", "03:00"),
    ("at_end_outside", "a", "03:00", None),
    ("later_period", "a", "05:30", "06:00"),
    ("other_tenant_ends_with_its_own", "b", "01:30", "02:00"),
    ("unknown_tenant", "q", "01:30", None),
]


@pytest.mark.parametrize("tenant, at, expected", [c[1:] for c in PERIOD_END], ids=[c[0] for c in PERIOD_END])
def test_period_end(tenant, at, expected):
    assert period_end(ITEMS, tenant, T(at)) == (T(expected) if expected else None)


# ---------------------------------------------------------------------------
# boundaries: the tenants whose period an occurrence opens / closes

BOUNDARIES = [
    ("alone_opens_and_closes", [occ("x", "01:00", "02:00", "ab")], "x", ("ab", "ab")),
    (
        "touching_before_keeps_it_open",
        [occ("w", "00:00", "01:00", "a"), occ("x", "01:00", "02:00", "ab")],
        "x",
        ("b", "ab"),
    ),
    (
        "touching_after_keeps_it_closed",
        [occ("x", "01:00", "02:00", "ab"), occ("y", "02:00", "03:00", "b")],
        "x",
        ("ab", "a"),
    ),
    ("nested_inside_moves_nobody", [occ("w", "00:00", "04:00", "ab"), occ("x", "01:00", "02:00", "ab")], "x", ("", "")),
    (
        "same_start_first_window_opens",
        [occ("a1", "01:00", "02:00", "a"), occ("x", "01:00", "03:00", "a")],
        "x",
        ("", "a"),
    ),
    ("same_end_last_window_closes", [occ("x", "01:00", "03:00", "a"), occ("z", "02:00", "03:00", "a")], "x", ("a", "")),
    (
        "other_tenants_neighbour_does_not_count",
        [occ("w", "00:00", "05:00", "b"), occ("x", "01:00", "02:00", "a")],
        "x",
        ("a", "a"),
    ),
]


@pytest.mark.parametrize("items, me, expected", [c[1:] for c in BOUNDARIES], ids=[c[0] for c in BOUNDARIES])
def test_boundaries(items, me, expected):
    mine = next(a for a in items if a.window.id == me)
    opened, closed = boundaries(items, mine)
    assert ("".join(sorted(opened)), "".join(sorted(closed))) == expected


@st.composite
def occurrence_sets(draw):
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        start = draw(st.integers(0, 20))
        length = draw(st.integers(1, 8))
        tenants = draw(st.sets(st.sampled_from("abc"), min_size=1))
        out.append(occ(f"w{i}", f"{start // 2:02d}:{start % 2 * 30:02d}", "00:00", "".join(tenants)))
        a = out[-1]
        end = a.occ.start + timedelta(minutes=30 * length)
        out[-1] = Active(window=a.window, occ=Occurrence(start=a.occ.start, end=end, window=a.window.id, key=a.occ.key))
    return sorted(out, key=lambda a: (a.occ.start, a.window.id))


@settings(max_examples=200, deadline=None)
@given(occurrence_sets())
def test_boundaries_agree_with_each_tenants_own_merge(items):
    # The neighbours-only shortcut of boundaries() against merging every occurrence of each tenant.
    for me in items:
        opened, closed = boundaries(items, me)
        for t in me.window.tenants:
            periods = merge_periods(spans(*(a for a in items if t in a.window.tenants)))
            key = (me.window.id, me.occ.key)
            assert (t in opened) == any(p.opener == key for p in periods)
            assert (t in closed) == any(p.closer == key for p in periods)


# ---------------------------------------------------------------------------
# collapse_leads: passed leads collapse into the most recent one

H = timedelta(hours=1)
LEADS = (timedelta(days=7), 24 * H, H)  # longest first, as a Window keeps them
COLLAPSE = [
    ("none_passed", "2027-01-01T00:00", 0, None),
    ("longest_due_exactly_is_on_time", "2027-01-03T12:00", 0, (7 * 24, False)),
    ("two_passed_collapse_into_the_later", "2027-01-09T13:00", 0, (24, True)),
    ("all_passed_collapse_into_the_shortest", "2027-01-10T11:30", 0, (1, True)),
    ("within_slack_is_on_time", "2027-01-10T11:00:30", 60, (1, False)),
    ("past_slack_is_late", "2027-01-10T11:01:01", 60, (1, True)),
]


@pytest.mark.parametrize("now, slack, expected", [c[1:] for c in COLLAPSE], ids=[c[0] for c in COLLAPSE])
def test_collapse_leads(now, slack, expected):
    start = T("12:00")
    got = collapse_leads(start, LEADS, datetime.fromisoformat(now).replace(tzinfo=UTC), slack=timedelta(seconds=slack))
    if expected is None:
        assert got is None
    else:
        hours, late = expected
        assert (got.lead, got.due, got.late) == (hours * H, start - hours * H, late)


def test_case_names_are_unique():
    for table in (MERGE, TENANTS, PERIOD_END, BOUNDARIES, COLLAPSE):
        assert len({c[0] for c in table}) == len(table)
