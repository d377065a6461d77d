"""guardrails: freezes, tenant blackouts, redundant resources (SPEC section 7).

Intervals are half-open, so every table has a touching case that must not conflict.
Instants in expectations are isoformat strings in a named zone, so the offset in force
(CET +01:00 vs CEST +02:00, EST vs EDT) is checked too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from scheduler.guardrails import (
    Blackout,
    BlackoutIndex,
    Conflict,
    Freeze,
    Guardrails,
    blackout_conflicts,
    blackout_intervals,
    blackout_tenants,
    conflicts,
    freeze_for,
    oneoff_freeze_errors,
    redundancy_conflicts,
    skipped_by_freeze,
    tenants_excluded,
)
from scheduler.model import UTC, Config, Occurrence, Provider, Tenant, Window
from scheduler.recurrence import occurrences, resolve_local

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def berlin(text: str) -> datetime:
    return resolve_local(datetime.fromisoformat(text), BERLIN)


def once(wid: str, start: str, end: str, *, resources=None, tenants=("kol", "ny"), line=0, **kw) -> Window:
    return Window(
        id=wid,
        title=wid,
        zone=BERLIN,
        tenants=frozenset(tenants),
        start=utc(start),
        end=utc(end),
        resources=None if resources is None else frozenset(resources),
        line=line,
        **kw,
    )


def recurring(wid: str, cron: str, hours: int, *, resources=None, tenants=("kol", "ny"), line=0) -> Window:
    return Window(
        id=wid,
        title=wid,
        zone=BERLIN,
        tenants=frozenset(tenants),
        cron=cron,
        duration=timedelta(hours=hours),
        resources=None if resources is None else frozenset(resources),
        line=line,
    )


def occ(start: str, end: str, window: str = "w") -> Occurrence:
    return Occurrence(start=utc(start), end=utc(end), window=window, key=utc(start))


def in_zone(items, zone: ZoneInfo) -> list[str]:
    return [o.start.astimezone(zone).isoformat() for o in items]


# Berlin is on CET in both December and January: 2026-12-19T23:00Z .. 2027-01-03T23:00Z.
YEAR_END = Freeze(
    id="year-end",
    start=berlin("2026-12-20T00:00"),
    end=berlin("2027-01-04T00:00"),
    reason="Year-end change freeze",
    zone=BERLIN,
    line=3,
)
SPRING = Freeze(id="spring", start=utc("2027-03-01T00:00"), end=utc("2027-03-02T00:00"), line=8)

# ---------------------------------------------------------------- freeze_for

FREEZE_FOR = [
    ("ends_at_freeze_start_ok", "2026-12-19T22:00", "2026-12-19T23:00", [YEAR_END], None),
    ("starts_at_freeze_end_ok", "2027-01-03T23:00", "2027-01-04T01:00", [YEAR_END], None),
    ("one_second_inside", "2026-12-19T22:00", "2026-12-19T23:00:01", [YEAR_END], "year-end"),
    ("one_second_inside_at_the_end", "2027-01-03T22:59:59", "2027-01-04T01:00", [YEAR_END], "year-end"),
    ("covers_the_whole_freeze", "2026-12-01T00:00", "2027-02-01T00:00", [YEAR_END], "year-end"),
    ("earliest_of_two_overlapping", "2026-12-01T00:00", "2027-04-01T00:00", [SPRING, YEAR_END], "year-end"),
    ("no_freezes", "2026-12-25T00:00", "2026-12-26T00:00", [], None),
]


@pytest.mark.parametrize("start, end, freezes, expected", [c[1:] for c in FREEZE_FOR], ids=[c[0] for c in FREEZE_FOR])
def test_freeze_for(start, end, freezes, expected):
    hit = freeze_for(utc(start), utc(end), freezes)
    assert (hit.id if hit else None) == expected


def test_year_end_freeze_resolves_in_berlin():
    assert YEAR_END.start.isoformat() == "2026-12-19T23:00:00+00:00"
    assert YEAR_END.end.isoformat() == "2027-01-03T23:00:00+00:00"


# ---------------------------------------------------------------- skipped_by_freeze

# Daily 02:30 Berlin, 1h. On 2027-03-28 02:30 does not exist (spring forward at 02:00
# CET -> 03:00 CEST), so that occurrence starts at 03:00 CEST = 01:00Z.
SKIPPED = [
    (
        "berlin_spring_forward_occurrence_inside_freeze_skipped",
        ("2027-03-28T00:00", "2027-03-28T04:00"),
        ("2027-03-28T00:00:00+01:00", "2027-03-28T04:00:00+02:00"),
        ["2027-03-27T02:30:00+01:00", "2027-03-29T02:30:00+02:00"],
        ["2027-03-28T03:00:00+02:00"],
    ),
    (
        "berlin_gap_start_moved_onto_freeze_end_kept",
        ("2027-03-28T00:00", "2027-03-28T03:00"),
        ("2027-03-28T00:00:00+01:00", "2027-03-28T03:00:00+02:00"),
        ["2027-03-27T02:30:00+01:00", "2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"],
        [],
    ),
    (
        "berlin_freeze_ending_in_the_gap_ends_at_0300_cest",
        ("2027-03-27T12:00", "2027-03-28T02:30"),
        ("2027-03-27T12:00:00+01:00", "2027-03-28T03:00:00+02:00"),
        ["2027-03-27T02:30:00+01:00", "2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"],
        [],
    ),
]


@pytest.mark.parametrize(
    "local, freeze_iso, kept_iso, skipped_iso", [c[1:] for c in SKIPPED], ids=[c[0] for c in SKIPPED]
)
def test_skipped_by_freeze_across_dst(local, freeze_iso, kept_iso, skipped_iso):
    freeze = Freeze(id="dst", start=berlin(local[0]), end=berlin(local[1]), zone=BERLIN)
    assert (freeze.start.astimezone(BERLIN).isoformat(), freeze.end.astimezone(BERLIN).isoformat()) == freeze_iso
    window = recurring("nightly", "30 2 * * *", 1)
    occs = occurrences(window, utc("2027-03-26T12:00"), utc("2027-03-29T12:00"))
    kept, skipped = skipped_by_freeze(window, occs, [freeze])
    assert in_zone(kept, BERLIN) == kept_iso
    assert in_zone([o for o, _ in skipped], BERLIN) == skipped_iso
    assert all(f is freeze for _, f in skipped)


def test_recurring_window_loses_only_the_occurrence_inside_the_freeze():
    window = recurring("monthly", "0 1 1 * *", 3)
    occs = occurrences(window, utc("2026-11-01T00:00"), utc("2027-03-01T00:00"))
    kept, skipped = skipped_by_freeze(window, occs, [YEAR_END])
    assert in_zone(kept, BERLIN) == [
        "2026-11-01T01:00:00+01:00",
        "2026-12-01T01:00:00+01:00",
        "2027-02-01T01:00:00+01:00",
    ]
    assert [(o.start.astimezone(BERLIN).isoformat(), f.id) for o, f in skipped] == [
        ("2027-01-01T01:00:00+01:00", "year-end")
    ]


def test_override_and_one_off_windows_are_never_skipped():
    monthly = recurring("monthly", "0 1 1 * *", 3)
    occs = occurrences(monthly, utc("2026-12-15T00:00"), utc("2027-01-15T00:00"))
    assert skipped_by_freeze(monthly, occs, [YEAR_END], override="CAB-17") == (occs, [])
    one_off = once("cve-fix", "2026-12-22T00:00", "2026-12-22T02:00")
    one_occs = occurrences(one_off, utc("2026-12-01T00:00"), utc("2027-01-15T00:00"))
    assert skipped_by_freeze(one_off, one_occs, [YEAR_END]) == (one_occs, [])


# ---------------------------------------------------------------- oneoff_freeze_errors

YEAR_END_ERROR = (
    'window "cve-fix" overlaps freeze "year-end" (2026-12-20 00:00 - 2027-01-04 00:00 Europe/Berlin: '
    "Year-end change freeze); move it or add override_freeze: REASON"
)
ONEOFF = [
    ("overlap_is_an_error", {}, {}, [(12, None, YEAR_END_ERROR)]),
    ("override_allows_it", {}, {"cve-fix": "CVE-2027-1234, approved by CAB"}, []),
    ("empty_override_does_not", {}, {"cve-fix": None}, [(12, None, YEAR_END_ERROR)]),
    ("cancelled_never_runs", {"cancelled": True}, {}, []),
]


@pytest.mark.parametrize("kw, override, expected", [c[1:] for c in ONEOFF], ids=[c[0] for c in ONEOFF])
def test_oneoff_freeze_errors(kw, override, expected):
    windows = [
        once("cve-fix", "2026-12-22T00:00", "2026-12-22T02:00", line=12, **kw),
        once("before", "2026-12-19T21:00", "2026-12-19T23:00", line=20),  # ends at the freeze start
        recurring("weekly", "0 1 * * 2", 3, line=30),  # recurring: skipped, not an error
    ]
    assert oneoff_freeze_errors(windows, [YEAR_END], override) == expected


def test_oneoff_freeze_error_without_reason():
    bare = Freeze(id="bare", start=utc("2027-03-01T00:00"), end=utc("2027-03-02T00:00"))
    window = once("x", "2027-03-01T23:00", "2027-03-02T01:00", line=4)
    assert oneoff_freeze_errors([window], [bare], {}) == [
        (
            4,
            None,
            'window "x" overlaps freeze "bare" (2027-03-01 00:00 - 2027-03-02 00:00 UTC); '
            "move it or add override_freeze: REASON",
        )
    ]


# ---------------------------------------------------------------- blackouts

TENANTS = {
    "kol": Tenant(id="kol", name="Kolkata Co", zone=KOLKATA),
    "ny": Tenant(id="ny", name="New York Co", zone=NEW_YORK),
}
MONTHLY_KOL = Blackout(tenant="kol", zone=KOLKATA, cron="0 0 1 * *", duration=timedelta(days=1), line=40)
MONTHLY_NY = Blackout(tenant="ny", zone=NEW_YORK, cron="0 0 1 * *", duration=timedelta(days=1), index=1, line=50)
BLACKOUTS = {"kol": [MONTHLY_KOL], "ny": [MONTHLY_NY]}

INTERVALS = [
    (
        "kolkata_first_of_month",
        MONTHLY_KOL,
        ("2027-02-15T00:00", "2027-03-15T00:00"),
        [("2027-03-01T00:00:00+05:30", "2027-03-02T00:00:00+05:30")],
    ),
    (
        "new_york_first_of_month_est_then_edt",
        MONTHLY_NY,
        ("2027-02-15T00:00", "2027-04-15T00:00"),
        [
            ("2027-03-01T00:00:00-05:00", "2027-03-02T00:00:00-05:00"),
            ("2027-04-01T00:00:00-04:00", "2027-04-02T00:00:00-04:00"),
        ],
    ),
    (
        "one_off_inside",
        Blackout(tenant="ny", zone=NEW_YORK, start=utc("2027-03-31T22:00"), end=utc("2027-04-01T10:00")),
        ("2027-03-01T00:00", "2027-05-01T00:00"),
        [("2027-03-31T18:00:00-04:00", "2027-04-01T06:00:00-04:00")],
    ),
    (
        "one_off_by_duration",
        Blackout(tenant="kol", zone=KOLKATA, start=utc("2027-03-31T18:30"), duration=timedelta(hours=12)),
        ("2027-03-01T00:00", "2027-05-01T00:00"),
        [("2027-04-01T00:00:00+05:30", "2027-04-01T12:00:00+05:30")],
    ),
    (
        "one_off_ending_at_range_start_left_out",
        Blackout(tenant="ny", zone=NEW_YORK, start=utc("2027-03-31T22:00"), end=utc("2027-04-01T10:00")),
        ("2027-04-01T10:00", "2027-05-01T00:00"),
        [],
    ),
]


@pytest.mark.parametrize("blackout, rng, expected", [c[1:] for c in INTERVALS], ids=[c[0] for c in INTERVALS])
def test_blackout_intervals(blackout, rng, expected):
    got = blackout_intervals(blackout, utc(rng[0]), utc(rng[1]))
    zone = blackout.zone
    assert [(s.astimezone(zone).isoformat(), e.astimezone(zone).isoformat()) for s, e in got] == expected


# Kolkata's first of the month is [prev day 18:30Z, 18:30Z); New York's (EST) is
# [05:00Z, next day 05:00Z), and from April (EDT) [04:00Z, next day 04:00Z).
IN_ZONE = [
    ("mar1_0300z_hits_kolkata_not_new_york", "2027-03-01T03:00", "2027-03-01T04:00", {"kol"}),
    ("mar1_2000z_hits_new_york_not_kolkata", "2027-03-01T20:00", "2027-03-01T21:00", {"ny"}),
    ("mar1_0430z_hits_both", "2027-03-01T04:30", "2027-03-01T05:30", {"kol", "ny"}),
    ("mar1_1830z_kolkata_just_ended", "2027-03-01T18:30", "2027-03-01T19:00", {"ny"}),
    ("feb28_1800z_ends_at_kolkata_start_neither", "2027-02-28T18:00", "2027-02-28T18:30", set()),
    ("mar1_0400z_ends_at_new_york_est_start_kolkata_only", "2027-03-01T04:00", "2027-03-01T05:00", {"kol"}),
    ("apr2_0400z_new_york_edt_day_just_ended", "2027-04-02T04:00", "2027-04-02T04:30", set()),
    ("apr2_0330z_still_new_york_edt_first", "2027-04-02T03:30", "2027-04-02T04:00", {"ny"}),
]


@pytest.mark.parametrize("start, end, expected", [c[1:] for c in IN_ZONE], ids=[c[0] for c in IN_ZONE])
def test_blackout_by_cron_in_the_tenants_zone(start, end, expected):
    o = occ(start, end)
    assert blackout_tenants(o, {"kol", "ny"}, BLACKOUTS) == expected
    index = BlackoutIndex(BLACKOUTS, utc("2027-02-01T00:00"), utc("2027-05-01T00:00"))
    assert blackout_tenants(o, {"kol", "ny"}, index) == expected
    window = once("w", start, end)
    found = blackout_conflicts({window: [o]}, TENANTS, BLACKOUTS, o.start, o.end)
    assert {c.tenant for c in found} == expected


def test_blackout_of_a_tenant_outside_the_window_is_no_conflict():
    o = occ("2027-03-01T04:30", "2027-03-01T05:30")
    assert blackout_tenants(o, {"ny"}, BLACKOUTS) == {"ny"}
    window = once("w", "2027-03-01T04:30", "2027-03-01T05:30", tenants=("ny",))
    found = blackout_conflicts({window: [o]}, TENANTS, BLACKOUTS, o.start, o.end)
    assert [c.tenant for c in found] == ["ny"]


def test_multi_day_blackout_is_reported_once():
    long = {"kol": [Blackout(tenant="kol", zone=KOLKATA, start=utc("2027-03-01T00:00"), end=utc("2027-03-04T00:00"))]}
    index = BlackoutIndex(long, utc("2027-02-01T00:00"), utc("2027-04-01T00:00"))
    hits = index.hits(utc("2027-02-28T12:00"), utc("2027-03-05T00:00"))
    assert [(b.tenant, s.isoformat(), e.isoformat()) for b, s, e in hits] == [
        ("kol", "2027-03-01T00:00:00+00:00", "2027-03-04T00:00:00+00:00")
    ]
    assert index.hits(utc("2027-03-02T00:00"), utc("2027-03-02T01:00"), {"kol"})[0][0].tenant == "kol"
    assert index.hits(utc("2027-03-04T00:00"), utc("2027-03-05T00:00")) == []


def test_blackout_without_times_is_refused():
    with pytest.raises(ValueError, match="has a cron but no duration"):
        blackout_intervals(
            Blackout(tenant="kol", zone=KOLKATA, cron="0 0 1 * *"), utc("2027-03-01T00:00"), utc("2027-04-01T00:00")
        )
    with pytest.raises(ValueError, match="neither a start nor a cron"):
        blackout_intervals(Blackout(tenant="kol", zone=KOLKATA), utc("2027-03-01T00:00"), utc("2027-04-01T00:00"))


def test_index_refuses_lookups_outside_its_range():
    index = BlackoutIndex(BLACKOUTS, utc("2027-03-01T00:00"), utc("2027-04-01T00:00"))
    with pytest.raises(ValueError, match="outside the index"):
        index.hits(utc("2027-02-28T23:00"), utc("2027-03-01T01:00"))


MODES = [
    ("warn_keeps_the_tenant", "warn", frozenset(), False, ""),
    ("skip_leaves_it_out", "skip", frozenset({"kol"}), True, "; the tenant is left out (blackouts: skip)"),
]


@pytest.mark.parametrize("mode, excluded, skipped, suffix", [c[1:] for c in MODES], ids=[c[0] for c in MODES])
def test_blackouts_warn_vs_skip(mode, excluded, skipped, suffix):
    window = once("fw", "2027-03-01T03:00", "2027-03-01T04:00", line=7)
    o = occurrences(window, utc("2027-03-01T00:00"), utc("2027-03-02T00:00"))[0]
    assert tenants_excluded(window, o, window.tenants, BLACKOUTS, mode=mode) == excluded
    assert blackout_tenants(o, window.tenants, BLACKOUTS) == {"kol"}  # the plan's conflict mark
    (found,) = blackout_conflicts({window: [o]}, TENANTS, BLACKOUTS, o.start, o.end, {"fw": mode})
    assert (found.kind, found.severity, found.tenant, found.other, found.skipped) == (
        "blackout",
        "warning",
        "kol",
        "blackouts[0]",
        skipped,
    )
    assert (found.line, found.other_line) == (7, 40)
    assert found.message == (
        'occurrence 2027-03-01 04:00 Europe/Berlin of window "fw" overlaps blackouts[0] of tenant "kol" '
        "(2027-03-01 00:00 - 2027-03-02 00:00 Asia/Kolkata)" + suffix
    )


def test_tenants_excluded_defaults_to_warn():
    window = once("fw", "2027-03-01T03:00", "2027-03-01T04:00")
    o = occurrences(window, utc("2027-03-01T00:00"), utc("2027-03-02T00:00"))[0]
    assert tenants_excluded(window, o, window.tenants, BLACKOUTS) == frozenset()


# ---------------------------------------------------------------- redundancy

GROUPS = [frozenset({"repo-eu-1", "repo-eu-2"}), frozenset({"repo-us-1", "repo-us-2"})]
EU_PAIR = ("repo-eu-1", "repo-eu-2")
REDUNDANCY = [
    (
        "one_offs_overlapping_on_the_pair_error",
        [
            once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1"]),
            once("b", "2027-05-01T01:00", "2027-05-01T03:00", resources=["repo-eu-2"]),
        ],
        [("a", "b", "error", EU_PAIR)],
    ),
    (
        "touching_one_offs_no_conflict",
        [
            once("a", "2027-05-01T00:00", "2027-05-01T01:00", resources=["repo-eu-1"]),
            once("b", "2027-05-01T01:00", "2027-05-01T02:00", resources=["repo-eu-2"]),
        ],
        [],
    ),
    (
        "recurring_with_one_off_warning",
        [
            recurring("nightly", "0 1 * * *", 2, resources=["repo-eu-2"]),
            once("b", "2027-05-01T23:30", "2027-05-02T00:30", resources=["repo-eu-1"]),
        ],
        [("nightly", "b", "warning", EU_PAIR)],
    ),
    (
        "same_resource_no_conflict",
        [
            once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1"]),
            once("b", "2027-05-01T01:00", "2027-05-01T03:00", resources=["repo-eu-1"]),
        ],
        [],
    ),
    (
        "window_without_resources_no_conflict",
        [
            once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1"]),
            once("b", "2027-05-01T01:00", "2027-05-01T03:00"),
        ],
        [],
    ),
    (
        "pair_from_two_groups_no_conflict",
        [
            once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1"]),
            once("b", "2027-05-01T01:00", "2027-05-01T03:00", resources=["repo-us-1"]),
        ],
        [],
    ),
    (
        "one_window_on_both_members_error",
        [once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1", "repo-eu-2", "other"])],
        [("a", None, "error", EU_PAIR)],
    ),
    (
        # Hourly for 2h, so occurrences overlap each other: each conflicts alone, none in pairs.
        # 36 start in the 36 h range, plus the one started at 23:00Z the day before.
        "overlapping_occurrences_of_one_window_not_paired",
        [recurring("hourly", "0 * * * *", 2, resources=["repo-eu-1", "repo-eu-2"])],
        [("hourly", None, "warning", EU_PAIR)] * 37,
    ),
]


@pytest.mark.parametrize("windows, expected", [c[1:] for c in REDUNDANCY], ids=[c[0] for c in REDUNDANCY])
def test_redundancy_conflicts(windows, expected):
    frm, to = utc("2027-05-01T00:00"), utc("2027-05-02T12:00")
    found = redundancy_conflicts({w: occurrences(w, frm, to) for w in windows}, GROUPS)
    assert [(c.window, c.other, c.severity, c.resources) for c in found] == expected
    assert all(c.kind == "redundancy" for c in found)


def test_redundancy_message_shows_the_overlap():
    a = once("a", "2027-05-01T00:00", "2027-05-01T02:00", resources=["repo-eu-1"], line=5)
    b = once("b", "2027-05-01T01:00", "2027-05-01T03:00", resources=["repo-eu-2"], line=9)
    (found,) = redundancy_conflicts({a: occurrences(a, a.start, b.end), b: occurrences(b, a.start, b.end)}, GROUPS)
    assert (found.line, found.other_line) == (5, 9)
    assert found.message == (
        'windows "a" and "b" overlap on redundant resources repo-eu-1, repo-eu-2 '
        "(2027-05-01 03:00 - 2027-05-01 04:00 Europe/Berlin)"
    )


# ---------------------------------------------------------------- conflicts()


def _config(windows) -> Config:
    provider = Provider(name="P", zone=BERLIN)
    return Config(path="windows.yaml", provider=provider, tenants=TENANTS, windows=tuple(windows), policies={})


def test_conflicts_collects_all_three_sorted_by_start_then_kind():
    windows = [
        # 2027-01-01 01:00 CET falls in the freeze: skipped, so its overlap with "store" is no conflict.
        recurring("monthly", "0 1 1 * *", 3, resources=["repo-eu-1"], line=10),
        once("store", "2027-01-01T00:00", "2027-01-01T01:00", resources=["repo-eu-2"], tenants=(), line=20),
        once("mirror", "2027-02-01T02:00", "2027-02-01T04:00", resources=["repo-eu-2"], tenants=(), line=25),
        # Touches monthly's 2027-03-01 occurrence [00:00Z, 03:00Z) on the pair: no redundancy conflict.
        once("cve-fix", "2027-03-01T03:00", "2027-03-01T04:00", resources=["repo-eu-2"], line=30),
        once("gone", "2027-03-01T03:00", "2027-03-01T04:00", resources=["repo-eu-1"], cancelled=True),
    ]
    g = Guardrails(freezes=(YEAR_END,), blackouts=BLACKOUTS, redundant=tuple(GROUPS), modes={"monthly": "skip"})
    found = conflicts(_config(windows), utc("2026-12-15T00:00"), utc("2027-03-15T00:00"), g)
    got = [(c.kind, c.severity, c.window, c.tenant, c.other, c.skipped, c.start.isoformat()) for c in found]
    assert got == [
        ("freeze", "warning", "monthly", None, "year-end", True, "2027-01-01T00:00:00+00:00"),
        ("freeze", "error", "store", None, "year-end", False, "2027-01-01T00:00:00+00:00"),
        ("blackout", "warning", "monthly", "kol", "blackouts[0]", True, "2027-02-01T00:00:00+00:00"),
        ("redundancy", "warning", "monthly", None, "mirror", False, "2027-02-01T00:00:00+00:00"),
        ("blackout", "warning", "monthly", "kol", "blackouts[0]", True, "2027-03-01T00:00:00+00:00"),
        ("blackout", "warning", "cve-fix", "kol", "blackouts[0]", False, "2027-03-01T03:00:00+00:00"),
    ]
    assert found[0].message == (
        'occurrence 2027-01-01 01:00 Europe/Berlin of window "monthly" is skipped: inside freeze "year-end" '
        "(2026-12-20 00:00 - 2027-01-04 00:00 Europe/Berlin: Year-end change freeze)"
    )
    assert found[1].message == YEAR_END_ERROR.replace("cve-fix", "store")


def test_conflict_to_json_has_stable_keys():
    window = once("cve-fix", "2027-03-01T03:00", "2027-03-01T04:00", line=30)
    g = Guardrails(blackouts=BLACKOUTS)
    (found,) = conflicts(_config([window]), utc("2027-03-01T00:00"), utc("2027-03-02T00:00"), g)
    assert found.to_json() == {
        "kind": "blackout",
        "severity": "warning",
        "window": "cve-fix",
        "occurrence": "2027-03-01T03:00:00Z",
        "start": "2027-03-01T03:00:00Z",
        "end": "2027-03-01T04:00:00Z",
        "tenant": "kol",
        "other": "blackouts[0]",
        "other_start": "2027-02-28T18:30:00Z",
        "other_end": "2027-03-01T18:30:00Z",
        "resources": [],
        "skipped": False,
        "line": 30,
        "other_line": 40,
        "message": found.message,
    }
    assert list(found.to_json()) == list(Conflict.__dataclass_fields__)


def test_no_guardrails_no_conflicts():
    window = once("cve-fix", "2027-03-01T03:00", "2027-03-01T04:00")
    assert conflicts(_config([window]), utc("2027-03-01T00:00"), utc("2027-03-02T00:00")) == []


def test_guardrails_of_reads_the_config_fields():
    windows = [
        SimpleNamespace(id="cve-fix", override_freeze="CAB-17", blackouts="skip"),
        SimpleNamespace(id="plain", override_freeze=None, blackouts="warn"),
    ]
    config = SimpleNamespace(
        freezes=[YEAR_END],
        provider=SimpleNamespace(redundant=[["repo-eu-1", "repo-eu-2"]]),
        tenants={"kol": SimpleNamespace(id="kol", blackouts=[MONTHLY_KOL]), "ny": SimpleNamespace(id="ny")},
        windows=windows,
    )
    assert Guardrails.of(config) == Guardrails(
        freezes=(YEAR_END,),
        blackouts={"kol": (MONTHLY_KOL,)},
        redundant=(frozenset({"repo-eu-1", "repo-eu-2"}),),
        overrides={"cve-fix": "CAB-17"},
        modes={"cve-fix": "skip", "plain": "warn"},
    )
