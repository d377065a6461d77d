"""recurrence: DST rules of SPEC section 1, cron occurrences, skip dates, validation.

Expected instants are written as isoformat strings in the window's own zone, so a
case checks both the wall time and the offset in force (e.g. ``+02:00`` for CEST).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler import recurrence
from scheduler.model import UTC, Window
from scheduler.recurrence import next_start_after, occurrences, resolve_local, validate_cron

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def recurring(cron: str, duration: timedelta, zone: ZoneInfo = BERLIN, skip=(), **kw) -> Window:
    return Window(
        id="w", title="w", zone=zone, tenants=frozenset(), cron=cron, duration=duration, skip=frozenset(skip), **kw
    )


def one_off(start: str, end: str | None = None, duration: timedelta | None = None, **kw) -> Window:
    return Window(
        id="once",
        title="once",
        zone=BERLIN,
        tenants=frozenset(),
        start=utc(start),
        end=utc(end) if end else None,
        duration=duration,
        **kw,
    )


# --- resolve_local -----------------------------------------------------------------

# Transitions used below (checked against zoneinfo):
#   Europe/Berlin     2027-03-28 02:00 CET -> 03:00 CEST (01:00Z); 2027-10-31 03:00 CEST -> 02:00 CET (01:00Z)
#   America/New_York  2027-03-14 02:00 EST -> 03:00 EDT (07:00Z); 2027-11-07 02:00 EDT -> 01:00 EST (06:00Z)
#   Australia/Lord_Howe (30-minute shift) 2027-04-04 02:00 +11:00 -> 01:30 +10:30 (2027-04-03 15:00Z);
#                                         2027-10-03 02:00 +10:30 -> 02:30 +11:00 (2027-10-02 15:30Z)
RESOLVE = [
    # id, wall time, zone, expected UTC
    ("berlin_spring_gap", datetime(2027, 3, 28, 2, 30), BERLIN, "2027-03-28T01:00:00+00:00"),
    ("berlin_spring_gap_start", datetime(2027, 3, 28, 2, 0), BERLIN, "2027-03-28T01:00:00+00:00"),
    (
        "berlin_spring_gap_last_microsecond",
        datetime(2027, 3, 28, 2, 59, 59, 999999),
        BERLIN,
        "2027-03-28T01:00:00+00:00",
    ),
    ("berlin_just_before_gap", datetime(2027, 3, 28, 1, 59, 59), BERLIN, "2027-03-28T00:59:59+00:00"),
    ("berlin_just_after_gap", datetime(2027, 3, 28, 3, 0), BERLIN, "2027-03-28T01:00:00+00:00"),
    ("berlin_fall_fold", datetime(2027, 10, 31, 2, 30), BERLIN, "2027-10-31T00:30:00+00:00"),
    ("berlin_fall_fold_input_fold1", datetime(2027, 10, 31, 2, 30, fold=1), BERLIN, "2027-10-31T00:30:00+00:00"),
    ("berlin_winter_plain", datetime(2027, 1, 15, 12, 0), BERLIN, "2027-01-15T11:00:00+00:00"),
    ("berlin_summer_plain", datetime(2027, 7, 15, 12, 0), BERLIN, "2027-07-15T10:00:00+00:00"),
    ("ny_spring_gap", datetime(2027, 3, 14, 2, 30), NEW_YORK, "2027-03-14T07:00:00+00:00"),
    ("ny_fall_fold", datetime(2027, 11, 7, 1, 30), NEW_YORK, "2027-11-07T05:30:00+00:00"),
    ("lord_howe_spring_gap", datetime(2027, 10, 3, 2, 15), LORD_HOWE, "2027-10-02T15:30:00+00:00"),
    ("lord_howe_fall_fold", datetime(2027, 4, 4, 1, 45), LORD_HOWE, "2027-04-03T14:45:00+00:00"),
    ("kolkata_no_dst", datetime(2027, 3, 28, 2, 30), KOLKATA, "2027-03-27T21:00:00+00:00"),
]


@pytest.mark.parametrize("wall, zone, expected", [c[1:] for c in RESOLVE], ids=[c[0] for c in RESOLVE])
def test_resolve_local(wall, zone, expected):
    got = resolve_local(wall, zone)
    assert got.isoformat() == expected
    assert got.utcoffset() == timedelta(0)


def test_resolve_local_transitions_in_the_table_are_real():
    # Guards the comment above: the gap walls really do not exist and the fold walls are
    # really ambiguous, so the cases test what their names say.
    def exists(wall, zone):
        return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall

    def ambiguous(wall, zone):
        return wall.replace(tzinfo=zone, fold=0).utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset()

    for name, wall, zone, _ in RESOLVE:
        if "gap" in name and "before" not in name and "after" not in name:
            assert not exists(wall, zone), name
        if "fold" in name:
            assert exists(wall, zone) and ambiguous(wall, zone), name


# --- occurrences -------------------------------------------------------------------

H = timedelta(hours=1)

OCCURRENCES = [
    # id, window, frm (UTC), to (UTC), expected [(start, end)] in the window's zone
    (
        "patch_tuesday_2nd_tue_across_spring_dst",
        recurring("0 1 * * 2#2", 3 * H),
        "2027-02-01T00:00",
        "2027-05-01T00:00",
        [
            ("2027-02-09T01:00:00+01:00", "2027-02-09T04:00:00+01:00"),
            ("2027-03-09T01:00:00+01:00", "2027-03-09T04:00:00+01:00"),
            ("2027-04-13T01:00:00+02:00", "2027-04-13T04:00:00+02:00"),
        ],
    ),
    (
        "patch_tuesday_2nd_tue_across_fall_dst",
        recurring("0 1 * * 2#2", 3 * H),
        "2027-09-01T00:00",
        "2027-12-01T00:00",
        [
            ("2027-09-14T01:00:00+02:00", "2027-09-14T04:00:00+02:00"),
            ("2027-10-12T01:00:00+02:00", "2027-10-12T04:00:00+02:00"),
            ("2027-11-09T01:00:00+01:00", "2027-11-09T04:00:00+01:00"),
        ],
    ),
    (
        "daily_0230_berlin_spring_gap_moves_to_0300",
        recurring("30 2 * * *", H),
        "2027-03-27T00:00",
        "2027-03-30T00:00",
        [
            ("2027-03-27T02:30:00+01:00", "2027-03-27T03:30:00+01:00"),
            ("2027-03-28T03:00:00+02:00", "2027-03-28T04:00:00+02:00"),
            ("2027-03-29T02:30:00+02:00", "2027-03-29T03:30:00+02:00"),
        ],
    ),
    (
        "daily_0230_berlin_fall_back_once_first",
        recurring("30 2 * * *", H),
        "2027-10-30T00:00",
        "2027-11-02T00:00",
        [
            ("2027-10-30T02:30:00+02:00", "2027-10-30T03:30:00+02:00"),
            ("2027-10-31T02:30:00+02:00", "2027-10-31T02:30:00+01:00"),  # 1h later, clocks went back
            ("2027-11-01T02:30:00+01:00", "2027-11-01T03:30:00+01:00"),
        ],
    ),
    (
        "two_walls_in_gap_same_instant_kept_once",
        recurring("0,30 2 * * *", 30 * timedelta(minutes=1)),
        "2027-03-28T00:00",
        "2027-03-28T12:00",
        [("2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00")],
    ),
    (
        "ny_daily_0230_spring_gap",
        recurring("30 2 * * *", H, NEW_YORK),
        "2027-03-14T00:00",
        "2027-03-15T00:00",
        [("2027-03-14T03:00:00-04:00", "2027-03-14T04:00:00-04:00")],
    ),
    (
        "lord_howe_daily_0215_spring_gap",
        recurring("15 2 * * *", H, LORD_HOWE),
        "2027-10-01T12:00",
        "2027-10-03T12:00",
        [
            ("2027-10-02T02:15:00+10:30", "2027-10-02T03:15:00+10:30"),
            ("2027-10-03T02:30:00+11:00", "2027-10-03T03:30:00+11:00"),
        ],
    ),
    (
        "lord_howe_daily_0145_fall_fold_first",
        recurring("45 1 * * *", 10 * timedelta(minutes=1), LORD_HOWE),
        "2027-04-03T00:00",
        "2027-04-04T00:00",
        [("2027-04-04T01:45:00+11:00", "2027-04-04T01:55:00+11:00")],
    ),
    (
        "weekly_sunday_0300_march_incl_dst_day",
        recurring("0 3 * * 0", 2 * H),
        "2027-03-01T00:00",
        "2027-04-01T00:00",
        [
            ("2027-03-07T03:00:00+01:00", "2027-03-07T05:00:00+01:00"),
            ("2027-03-14T03:00:00+01:00", "2027-03-14T05:00:00+01:00"),
            ("2027-03-21T03:00:00+01:00", "2027-03-21T05:00:00+01:00"),
            ("2027-03-28T03:00:00+02:00", "2027-03-28T05:00:00+02:00"),
        ],
    ),
    (
        "monthly_1st_0400",
        recurring("0 4 1 * *", H),
        "2027-01-15T00:00",
        "2027-05-15T00:00",
        [
            ("2027-02-01T04:00:00+01:00", "2027-02-01T05:00:00+01:00"),
            ("2027-03-01T04:00:00+01:00", "2027-03-01T05:00:00+01:00"),
            ("2027-04-01T04:00:00+02:00", "2027-04-01T05:00:00+02:00"),
            ("2027-05-01T04:00:00+02:00", "2027-05-01T05:00:00+02:00"),
        ],
    ),
    (
        "duration_8h_spans_spring_forward_local_end_shifts",
        recurring("0 22 * * 6", 8 * H),
        "2027-03-27T00:00",
        "2027-03-28T00:00",
        [("2027-03-27T22:00:00+01:00", "2027-03-28T07:00:00+02:00")],
    ),
    (
        "duration_4h_spans_fall_back_local_end_shifts",
        recurring("0 1 * * 0", 4 * H),
        "2027-10-30T00:00",
        "2027-10-31T12:00",
        [("2027-10-31T01:00:00+02:00", "2027-10-31T04:00:00+01:00")],
    ),
    (
        "skip_removes_exactly_those_days",
        recurring("0 3 * * *", H, skip=[date(2027, 12, 24), date(2027, 12, 26), date(2028, 1, 1)]),
        "2027-12-22T00:00",
        "2027-12-27T00:00",
        [
            ("2027-12-22T03:00:00+01:00", "2027-12-22T04:00:00+01:00"),
            ("2027-12-23T03:00:00+01:00", "2027-12-23T04:00:00+01:00"),
            ("2027-12-25T03:00:00+01:00", "2027-12-25T04:00:00+01:00"),
        ],
    ),
    (
        "skip_uses_local_date_not_utc_date",  # 00:30 Berlin is 23:30Z the day before
        recurring("30 0 * * *", H, skip=[date(2027, 12, 24)]),
        "2027-12-22T12:00",
        "2027-12-25T12:00",
        [
            ("2027-12-23T00:30:00+01:00", "2027-12-23T01:30:00+01:00"),
            ("2027-12-25T00:30:00+01:00", "2027-12-25T01:30:00+01:00"),
        ],
    ),
    (
        "skip_on_gap_day_removes_moved_occurrence",
        recurring("30 2 * * *", H, skip=[date(2027, 3, 28)]),
        "2027-03-27T00:00",
        "2027-03-30T00:00",
        [
            ("2027-03-27T02:30:00+01:00", "2027-03-27T03:30:00+01:00"),
            ("2027-03-29T02:30:00+02:00", "2027-03-29T03:30:00+02:00"),
        ],
    ),
    (
        "started_before_frm_still_running_included",
        recurring("0 22 * * *", 6 * H),
        "2027-06-02T00:00",
        "2027-06-02T12:00",
        [("2027-06-01T22:00:00+02:00", "2027-06-02T04:00:00+02:00")],
    ),
    (
        "started_3d_before_frm_still_running_included",
        recurring("0 0 * * 1", timedelta(days=3)),
        "2027-06-09T12:00",
        "2027-06-09T13:00",
        [("2027-06-07T00:00:00+02:00", "2027-06-10T00:00:00+02:00")],
    ),
    # 01:00 CEST daily for 1h is [23:00Z, 00:00Z).
    ("ends_exactly_at_frm_excluded", recurring("0 1 * * *", H), "2027-06-01T00:00", "2027-06-01T22:00", []),
    (
        "ends_1s_after_frm_included",
        recurring("0 1 * * *", H),
        "2027-05-31T23:59:59",
        "2027-06-01T22:00",
        [("2027-06-01T01:00:00+02:00", "2027-06-01T02:00:00+02:00")],
    ),
    ("starts_exactly_at_to_excluded", recurring("0 1 * * *", H), "2027-06-01T00:00", "2027-06-01T23:00", []),
    (
        "starts_exactly_at_frm_included",
        recurring("0 1 * * *", H),
        "2027-06-01T23:00",
        "2027-06-01T23:30",
        [("2027-06-02T01:00:00+02:00", "2027-06-02T02:00:00+02:00")],
    ),
    (
        "cancelled_recurring_still_listed",
        recurring("0 1 * * *", H, cancelled=True),
        "2027-06-01T12:00",
        "2027-06-02T12:00",
        [("2027-06-02T01:00:00+02:00", "2027-06-02T02:00:00+02:00")],
    ),
    ("empty_range", recurring("0 1 * * *", H), "2027-06-01T12:00", "2027-06-01T12:00", []),
    ("impossible_date_yields_nothing", recurring("0 0 30 2 *", H), "2027-01-01T00:00", "2029-01-01T00:00", []),
    (
        "one_off_with_end",
        one_off("2026-12-05T21:00", end="2026-12-06T01:00"),
        "2026-12-01T00:00",
        "2026-12-31T00:00",
        [("2026-12-05T22:00:00+01:00", "2026-12-06T02:00:00+01:00")],
    ),
    (
        "one_off_with_duration",
        one_off("2026-12-20T00:00", duration=2 * H),
        "2026-12-20T01:00",
        "2026-12-20T01:30",
        [("2026-12-20T01:00:00+01:00", "2026-12-20T03:00:00+01:00")],
    ),
    (
        "one_off_cancelled_still_listed",
        one_off("2026-12-20T00:00", duration=2 * H, cancelled=True),
        "2026-12-01T00:00",
        "2026-12-31T00:00",
        [("2026-12-20T01:00:00+01:00", "2026-12-20T03:00:00+01:00")],
    ),
    (
        "one_off_ends_at_frm_excluded",
        one_off("2026-12-05T21:00", end="2026-12-06T01:00"),
        "2026-12-06T01:00",
        "2026-12-31T00:00",
        [],
    ),
    (
        "one_off_starts_at_to_excluded",
        one_off("2026-12-05T21:00", end="2026-12-06T01:00"),
        "2026-12-01T00:00",
        "2026-12-05T21:00",
        [],
    ),
]


@pytest.mark.parametrize("window, frm, to, expected", [c[1:] for c in OCCURRENCES], ids=[c[0] for c in OCCURRENCES])
def test_occurrences(window, frm, to, expected):
    got = occurrences(window, utc(frm), utc(to))
    zone = window.zone
    assert [(o.start.astimezone(zone).isoformat(), o.end.astimezone(zone).isoformat()) for o in got] == expected
    for o in got:
        assert o.start.utcoffset() == timedelta(0) and o.end.utcoffset() == timedelta(0)
        assert o.key == o.start and o.window == window.id


def test_occurrences_key_and_utc_wire_values():
    (occ,) = occurrences(recurring("30 2 * * *", H), utc("2027-03-28T00:00"), utc("2027-03-28T12:00"))
    assert (occ.start.isoformat(), occ.end.isoformat(), occ.key.isoformat()) == (
        "2027-03-28T01:00:00+00:00",
        "2027-03-28T02:00:00+00:00",
        "2027-03-28T01:00:00+00:00",
    )


def test_occurrences_accepts_non_utc_bounds():
    # 2027-06-01T03:00+02:00 == 01:00Z: the 01:00 CEST occurrence (23:00Z-00:00Z) has ended.
    frm = datetime(2027, 6, 1, 3, 0, tzinfo=BERLIN)
    got = occurrences(recurring("0 1 * * *", H), frm, frm + timedelta(days=1))
    assert [o.start.isoformat() for o in got] == ["2027-06-01T23:00:00+00:00"]


def test_occurrences_refuses_naive_bounds():
    with pytest.raises(ValueError, match="aware"):
        occurrences(recurring("0 1 * * *", H), datetime(2027, 6, 1), utc("2027-06-02T00:00"))


def test_occurrences_walks_only_the_range(monkeypatch):
    # A weekly window over 30 days must not enumerate from some distant anchor.
    calls = []

    class Counting(recurrence.croniter):
        def get_next(self, *a, **kw):
            calls.append(1)
            return super().get_next(*a, **kw)

    monkeypatch.setattr(recurrence, "croniter", Counting)
    got = occurrences(recurring("0 3 * * 0", 2 * H), utc("2400-03-01T00:00"), utc("2400-03-31T00:00"))
    assert len(got) == 4
    assert len(calls) <= 6  # the margin before frm, 4 in range, one at/after `to`


# --- next_start_after --------------------------------------------------------------

NEXT = [
    # id, window, ts (UTC), expected start in the window's zone or None
    ("recurring_next_day", recurring("0 1 * * *", H), "2027-06-01T12:00", "2027-06-02T01:00:00+02:00"),
    ("recurring_strictly_after_a_start", recurring("0 1 * * *", H), "2027-06-01T23:00", "2027-06-03T01:00:00+02:00"),
    ("recurring_gap_day_moved", recurring("30 2 * * *", H), "2027-03-27T12:00", "2027-03-28T03:00:00+02:00"),
    (
        "recurring_skips_skip_dates",
        recurring("0 3 * * *", H, skip=[date(2027, 12, 24), date(2027, 12, 25)]),
        "2027-12-23T12:00",
        "2027-12-26T03:00:00+01:00",
    ),
    ("recurring_patch_tuesday", recurring("0 1 * * 2#2", 3 * H), "2027-03-09T00:00", "2027-04-13T01:00:00+02:00"),
    ("leap_day_within_two_years", recurring("0 0 29 2 *", H), "2027-03-01T00:00", "2028-02-29T00:00:00+01:00"),
    ("leap_day_beyond_two_years_none", recurring("0 0 29 2 *", H), "2028-03-01T00:00", None),
    ("impossible_date_none", recurring("0 0 31 4 *", H), "2027-01-01T00:00", None),
    (
        "one_off_ahead",
        one_off("2026-12-05T21:00", end="2026-12-06T01:00"),
        "2026-12-01T00:00",
        "2026-12-05T22:00:00+01:00",
    ),
    ("one_off_at_ts_none", one_off("2026-12-05T21:00", end="2026-12-06T01:00"), "2026-12-05T21:00", None),
    ("one_off_past_none", one_off("2026-12-05T21:00", end="2026-12-06T01:00"), "2026-12-07T00:00", None),
]


@pytest.mark.parametrize("window, ts, expected", [c[1:] for c in NEXT], ids=[c[0] for c in NEXT])
def test_next_start_after(window, ts, expected):
    got = next_start_after(window, utc(ts))
    if expected is None:
        assert got is None
        return
    assert got.start.astimezone(window.zone).isoformat() == expected
    assert got.end - got.start == (window.duration or window.end - window.start)
    assert got.key == got.start


# --- validate_cron -----------------------------------------------------------------

SHAPE = 'expected 5 fields "minute hour day month weekday"'
CRON = [
    ("second_tuesday", "0 1 * * 2#2", None),
    ("named_weekday_nth", "0 1 * * tue#2", None),
    ("daily", "30 2 * * *", None),
    ("weekday_range_names", "0 22 * * mon-fri", None),
    ("steps_and_lists", "*/15 0,12 1-7 */2 *", None),
    ("last_day_of_month", "0 4 L * *", None),
    ("nearest_weekday", "0 4 15W * *", None),
    ("leap_day", "0 0 29 2 *", None),
    ("sunday_as_7", "0 3 * * 7", None),
    ("alias_daily", "@daily", None),
    ("extra_whitespace", "  0  1 * *\t* ", None),
    (
        "hour_out_of_range",
        "0 25 * * *",
        f'invalid cron expression "0 25 * * *": hour "25" is not valid (allowed: 0-23); {SHAPE}',
    ),
    (
        "minute_out_of_range",
        "60 1 * * *",
        f'invalid cron expression "60 1 * * *": minute "60" is not valid (allowed: 0-59); {SHAPE}',
    ),
    (
        "zero_step",
        "*/0 1 * * *",
        f'invalid cron expression "*/0 1 * * *": minute "*/0" is not valid (allowed: 0-59); {SHAPE}',
    ),
    (
        "bad_month_name",
        "0 1 * foo *",
        f'invalid cron expression "0 1 * foo *": month "foo" is not valid (allowed: 1-12 or jan-dec); {SHAPE}',
    ),
    (
        "day_zero",
        "0 1 0 * *",
        f'invalid cron expression "0 1 0 * *": day "0" is not valid (allowed: 1-31, L or nW); {SHAPE}',
    ),
    (
        "sixth_weekday_of_month",
        "0 1 * * 2#6",
        f'invalid cron expression "0 1 * * 2#6": weekday "2#6" is not valid '
        f"(allowed: 0-7 or sun-sat, n#k for the k-th weekday n of the month); {SHAPE}",
    ),
    (
        "weekday_8",
        "0 1 * * 8",
        f'invalid cron expression "0 1 * * 8": weekday "8" is not valid '
        f"(allowed: 0-7 or sun-sat, n#k for the k-th weekday n of the month); {SHAPE}",
    ),
    (
        "feb_31_never_occurs",
        "0 0 31 2 *",
        f'invalid cron expression "0 0 31 2 *": day "31" never occurs in month "2"; {SHAPE}',
    ),
    (
        "hashed_unsupported",
        "H 1 * * *",
        f'invalid cron expression "H 1 * * *": minute "H" is not valid (allowed: 0-59); {SHAPE}',
    ),
    (
        "random_unsupported",
        "R 1 * * *",
        f'invalid cron expression "R 1 * * *": minute "R": random (R) values are not supported; {SHAPE}',
    ),
    ("three_fields", "0 1 *", f'invalid cron expression "0 1 *": 3 fields; {SHAPE}'),
    ("one_field", "daily", f'invalid cron expression "daily": 1 field; {SHAPE}'),
    (
        "six_fields_seconds",
        "0 0 1 * * *",
        f'invalid cron expression "0 0 1 * * *": 6 fields, but seconds and years are not supported; {SHAPE}',
    ),
    (
        "seven_fields_years",
        "0 0 1 * * * 2027",
        f'invalid cron expression "0 0 1 * * * 2027": 7 fields, but seconds and years are not supported; {SHAPE}',
    ),
    ("empty", "", f'invalid cron expression "": empty; {SHAPE}'),
    (
        "unknown_alias",
        "@reboot",
        'invalid cron expression "@reboot": unknown alias; expected one of @yearly, @annually, @monthly, '
        f"@weekly, @daily, @midnight, @hourly or {SHAPE[9:]}",
    ),
    ("not_a_string", 5, f"invalid cron expression 5: not a string; {SHAPE}"),
]


@pytest.mark.parametrize("expr, expected", [c[1:] for c in CRON], ids=[c[0] for c in CRON])
def test_validate_cron(expr, expected):
    assert validate_cron(expr) == expected


# --- property ----------------------------------------------------------------------


def _oracle(minute, hour, weekday, skip, duration, frm, to):
    """Brute force, independent of croniter: each local day's wall time, resolved by SPEC."""
    day = (frm - duration).astimezone(BERLIN).date() - timedelta(days=2)
    last = to.astimezone(BERLIN).date() + timedelta(days=1)
    starts = []
    while day <= last:
        if (weekday is None or day.isoweekday() % 7 == weekday) and day not in skip:
            start = resolve_local(datetime.combine(day, time(hour, minute)), BERLIN)
            if start + duration > frm and start < to:
                starts.append(start)
        day += timedelta(days=1)
    return starts


@settings(max_examples=150, deadline=None)
@example(
    minute=30,
    hour=2,
    weekday=None,
    duration=timedelta(hours=1),
    frm=datetime(2027, 3, 26),
    span=timedelta(days=4),
    skip=frozenset(),
)  # spring gap
@example(
    minute=30,
    hour=2,
    weekday=0,
    duration=timedelta(hours=2),
    frm=datetime(2027, 10, 20),
    span=timedelta(days=20),
    skip=frozenset({date(2027, 11, 7)}),
)  # fall fold, skip
@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    weekday=st.none() | st.integers(0, 6),
    duration=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(hours=30)),
    frm=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)),
    span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=45)),
    skip=st.frozensets(st.dates(min_value=date(2025, 12, 25), max_value=date(2029, 2, 20)), max_size=5),
)
def test_property_daily_weekly_berlin(minute, hour, weekday, duration, frm, span, skip):
    frm = frm.replace(tzinfo=UTC)
    to = frm + span
    cron = f"{minute} {hour} * * {'*' if weekday is None else weekday}"
    window = recurring(cron, duration, skip=skip)
    got = occurrences(window, frm, to)
    starts = [o.start for o in got]
    assert starts == sorted(set(starts))
    for o in got:
        assert o.end > frm and o.start < to
        assert o.end - o.start == duration
        local = o.start.astimezone(BERLIN)
        wall = datetime.combine(local.date(), time(hour, minute))
        moved_by_gap = resolve_local(wall, BERLIN) != wall.replace(tzinfo=BERLIN).astimezone(UTC)
        assert (local.hour, local.minute) == (hour, minute) or moved_by_gap
    assert starts == _oracle(minute, hour, weekday, skip, duration, frm, to)


# cron_intervals: a (cron, duration, zone) that is not a window, e.g. a tenant blackout.
CRON_INTERVALS = [
    (
        "new_york_first_of_month_across_spring_forward",
        ("0 0 1 * *", timedelta(days=1), NEW_YORK, utc("2027-02-15T00:00"), utc("2027-04-15T00:00")),
        [
            ("2027-03-01T00:00:00-05:00", "2027-03-02T00:00:00-05:00"),
            ("2027-04-01T00:00:00-04:00", "2027-04-02T00:00:00-04:00"),
        ],
    ),
    (
        "kolkata_first_of_month_running_at_frm",
        ("0 0 1 * *", timedelta(days=1), KOLKATA, utc("2027-03-01T12:00"), utc("2027-03-02T00:00")),
        [("2027-03-01T00:00:00+05:30", "2027-03-02T00:00:00+05:30")],
    ),
    (
        "ends_exactly_at_frm_left_out",
        ("0 0 1 * *", timedelta(days=1), KOLKATA, utc("2027-03-01T18:30"), utc("2027-03-20T00:00")),
        [],
    ),
    (
        "starts_exactly_at_to_left_out",
        ("0 0 1 * *", timedelta(days=1), NEW_YORK, utc("2027-02-15T00:00"), utc("2027-03-01T05:00")),
        [],
    ),
    (
        "berlin_spring_gap_moves_to_0300",
        ("30 2 * * *", timedelta(hours=1), BERLIN, utc("2027-03-28T00:00"), utc("2027-03-28T02:00")),
        [("2027-03-28T03:00:00+02:00", "2027-03-28T04:00:00+02:00")],
    ),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CRON_INTERVALS], ids=[c[0] for c in CRON_INTERVALS])
def test_cron_intervals(args, expected):
    zone = args[2]
    got = recurrence.cron_intervals(*args)
    assert [(s.astimezone(zone).isoformat(), e.astimezone(zone).isoformat()) for s, e in got] == expected
    assert all(s.tzinfo is UTC and e.tzinfo is UTC for s, e in got)
