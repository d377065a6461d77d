"""waves: rolling maintenance (SPEC section 8) and tenant deferral (SPEC section 9).

Expected instants are isoformat strings in a named zone, so the offset in force (CET
+01:00 vs CEST +02:00) is checked too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.guardrails import Blackout, Freeze, Guardrails
from scheduler.model import UTC, Occurrence, Tenant, Window
from scheduler.recurrence import occurrences, resolve_local
from scheduler.waves import (
    DeferSpec,
    Wave,
    WaveSpec,
    apply_deferrals,
    assign,
    defer_target,
    halted_waves,
    next_slot,
    parse_size,
    resume,
    wave_of,
    wave_size,
    waves_of,
)

BERLIN = ZoneInfo("Europe/Berlin")
DAY = timedelta(days=1)


def berlin(text: str) -> datetime:
    return resolve_local(datetime.fromisoformat(text), BERLIN)


def local(ts: datetime) -> str:
    return ts.astimezone(BERLIN).isoformat()


def tenant(tid: str, **labels: str) -> Tenant:
    return Tenant(id=tid, name=tid.upper(), zone=BERLIN, labels=labels)


def tenants(*ids: str) -> list[Tenant]:
    return [tenant(i) for i in ids]


def spec(size: int | str = 2, every: timedelta = DAY, order=()) -> WaveSpec:
    count, percent = parse_size(size)
    return WaveSpec(size=count, percent=percent, every=every, order=tuple(order))


def oneoff(start: str = "2027-02-02T01:00", hours: int = 2) -> Window:
    begin = berlin(start)
    return Window(
        id="agent-upgrade",
        title="Agent upgrade",
        zone=BERLIN,
        tenants=frozenset(),
        start=begin,
        end=begin + timedelta(hours=hours),
    )


def span(window: Window) -> tuple[datetime, datetime]:
    assert window.start is not None and window.end is not None
    return window.start, window.end


def weekly() -> Window:
    return Window(
        id="patch", title="Patching", zone=BERLIN, tenants=frozenset(), cron="0 1 * * 2", duration=timedelta(hours=2)
    )


def sizes(membership: dict[str, int]) -> list[int]:
    return [list(membership.values()).count(n) for n in range(1, max(membership.values()) + 1)]


# ---------------------------------------------------------------- parse_size

SIZES = [
    ("count_int", 3, (3, None)),
    ("count_text", " 3 ", (3, None)),
    ("percent", "25%", (None, 25.0)),
    ("percent_fraction", "12.5%", (None, 12.5)),
    ("percent_all", "100%", (None, 100.0)),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in SIZES], ids=[c[0] for c in SIZES])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


SIZE_ERRORS = [
    ("zero", 0, "wave size must be at least 1 tenant, got 0"),
    ("negative", -2, "wave size must be at least 1 tenant, got -2"),
    ("negative_text", "-2", "wave size must be at least 1 tenant, got '-2'"),
    ("zero_percent", "0%", "wave size must be more than 0%, got '0%'"),
    ("negative_percent", "-5%", "wave size must be more than 0%, got '-5%'"),
    ("over_100_percent", "150%", "wave size must be at most 100%, got '150%'"),
    ("fractional_count", "2.5", "wave size: a count of tenants is a whole number, got '2.5'"),
    ("junk", "lots", "wave size: expected a count like 3 or a percentage like 25%, got 'lots'"),
    ("percent_twice", "25%%", "wave size: expected a count like 3 or a percentage like 25%, got '25%%'"),
    ("float", 2.5, "wave size: expected a count like 3 or a percentage like 25%, got 2.5"),
    ("bool", True, "wave size: expected a count like 3 or a percentage like 25%, got True"),
    ("none", None, "wave size: expected a count like 3 or a percentage like 25%, got None"),
]


@pytest.mark.parametrize(("value", "message"), [c[1:] for c in SIZE_ERRORS], ids=[c[0] for c in SIZE_ERRORS])
def test_parse_size_errors(value, message):
    with pytest.raises(ValueError) as err:
        parse_size(value)
    assert str(err.value) == message


SPEC_ERRORS = [
    ("both", {"size": 2, "percent": 10.0}, "waves: give exactly one of a count (size) or a percentage"),
    ("neither", {}, "waves: give exactly one of a count (size) or a percentage"),
    ("zero_every", {"size": 2, "every": timedelta(0)}, "waves: every must be longer than 0s, got 0s"),
    ("unknown_halt_on", {"size": 2, "halt_on": "hook"}, "waves: halt_on must be one of end_check, got 'hook'"),
]


@pytest.mark.parametrize(("kw", "message"), [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS])
def test_wave_spec_errors(kw, message):
    with pytest.raises(ValueError) as err:
        WaveSpec(**{"every": DAY, **kw})
    assert str(err.value) == message


# ---------------------------------------------------------------- wave size and membership

WAVE_SIZES = [
    ("quarter_of_10_rounds_up", "25%", 10, 3),
    ("ten_percent_of_30_is_exact", "10%", 30, 3),
    ("tiny_percent_is_at_least_1", "1%", 5, 1),
    ("all_in_one", "100%", 7, 7),
    ("count_ignores_total", 4, 100, 4),
]


@pytest.mark.parametrize(("size", "count", "expected"), [c[1:] for c in WAVE_SIZES], ids=[c[0] for c in WAVE_SIZES])
def test_wave_size(size, count, expected):
    assert wave_size(spec(size), count) == expected


ORDER = ({"tier": "bronze"}, {"tier": "silver"})
MEMBERSHIP = [
    (
        "by_id_without_order",
        tenants("d", "b", "a", "c", "e"),
        2,
        (),
        {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3},
    ),
    (
        "order_then_rest_by_id",
        [
            tenant("gold1", tier="gold"),
            tenant("silver1", tier="silver"),
            tenant("bronze2", tier="bronze"),
            tenant("aaa"),
            tenant("bronze1", tier="bronze"),
        ],
        2,
        ORDER,
        {"bronze1": 1, "bronze2": 1, "silver1": 2, "aaa": 2, "gold1": 3},
    ),
    (
        "selector_needs_all_labels",
        [tenant("x", tier="bronze", region="us"), tenant("y", tier="bronze", region="eu"), tenant("a")],
        1,
        ({"tier": "bronze", "region": "eu"},),
        {"y": 1, "a": 2, "x": 3},
    ),
    (
        "first_matching_selector_wins",
        [tenant("b", tier="bronze", region="eu"), tenant("a", region="eu")],
        1,
        ({"region": "eu"}, {"tier": "bronze"}),
        {"a": 1, "b": 2},
    ),
]


@pytest.mark.parametrize(
    ("members", "size", "order", "expected"), [c[1:] for c in MEMBERSHIP], ids=[c[0] for c in MEMBERSHIP]
)
def test_assign_fresh(members, size, order, expected):
    got = assign(members, spec(size, order=order), {})
    assert got == expected
    assert list(got) == list(expected)  # in wave order: what a caller stores reads naturally


SPLITS = [
    ("quarter_of_10", "25%", 10, [3, 3, 3, 1]),
    ("half_of_5", "50%", 5, [3, 2]),
    ("count_3_of_7", 3, 7, [3, 3, 1]),
    ("count_larger_than_all", 20, 4, [4]),
]


@pytest.mark.parametrize(("size", "count", "expected"), [c[1:] for c in SPLITS], ids=[c[0] for c in SPLITS])
def test_assign_chunks(size, count, expected):
    got = assign(tenants(*(f"t{i:02}" for i in range(count))), spec(size), {})
    assert sizes(got) == expected


STABLE = [
    (
        "added_tenant_joins_last_wave",
        ["a", "b", "c", "d", "e", "zz"],
        {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3},
        {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3, "zz": 3},
    ),
    (
        "early_id_still_goes_last",
        ["0first", "a", "b", "c"],
        {"a": 1, "b": 1, "c": 2},
        {"a": 1, "b": 1, "c": 2, "0first": 2},
    ),
    (
        "dropped_tenant_leaves_a_gap",
        ["a", "b", "e"],
        {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3},
        {"a": 1, "b": 1, "e": 3},
    ),
    (
        "last_wave_emptied_new_joins_highest_held",
        ["a", "c", "new"],
        {"a": 1, "c": 2, "e": 3},
        {"a": 1, "c": 2, "new": 2},
    ),
    (
        "everyone_replaced_is_fresh",
        ["x", "y", "z"],
        {"a": 1, "b": 2},
        {"x": 1, "y": 1, "z": 2},
    ),
]


@pytest.mark.parametrize(("now_ids", "stored", "expected"), [c[1:] for c in STABLE], ids=[c[0] for c in STABLE])
def test_assign_is_stable(now_ids, stored, expected):
    assert assign(tenants(*now_ids), spec(2), stored) == expected


def test_assign_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="unique"):
        assign(tenants("a", "a"), spec(2), {})


# ---------------------------------------------------------------- wave times


def test_waves_of_one_off_across_dst():
    window = oneoff("2027-03-26T01:00")  # Friday: Berlin springs forward in the night to Sunday
    waves = waves_of(window, *span(window), {"a": 1, "b": 1, "c": 3, "d": 4}, spec(2))
    rows = [(w.number, local(w.occurrence), local(w.start), local(w.end), w.tenants) for w in waves]
    # `every` and the length are absolute time: wave 3 spans the change and still lasts
    # 2 h; wave 4, 72 h after the first start, begins at 02:00 CEST.
    assert rows == [
        (1, "2027-03-26T01:00:00+01:00", "2027-03-26T01:00:00+01:00", "2027-03-26T03:00:00+01:00", ("a", "b")),
        (3, "2027-03-28T01:00:00+01:00", "2027-03-28T01:00:00+01:00", "2027-03-28T04:00:00+02:00", ("c",)),
        (4, "2027-03-29T02:00:00+02:00", "2027-03-29T02:00:00+02:00", "2027-03-29T04:00:00+02:00", ("d",)),
    ]
    assert {w.base for w in waves} == {window.start}
    assert {w.window for w in waves} == {"agent-upgrade"}
    assert waves[1].as_occurrence() == Occurrence(
        start=waves[1].start, end=waves[1].end, window="agent-upgrade", key=waves[1].start
    )


def test_waves_of_skips_numbers_nobody_holds():
    window = oneoff()
    waves = waves_of(window, *span(window), {"a": 1, "e": 3}, spec(2, every=timedelta(hours=6)))
    assert [(w.number, local(w.start)) for w in waves] == [
        (1, "2027-02-02T01:00:00+01:00"),
        (3, "2027-02-02T13:00:00+01:00"),
    ]
    assert wave_of(waves, "e") is waves[1]
    assert wave_of(waves, "zz") is None


def test_waves_of_recurring_splits_each_occurrence_the_same_way():
    window = weekly()
    occs = occurrences(window, berlin("2027-02-01T00:00"), berlin("2027-02-14T00:00"))
    membership = assign(tenants("a", "b", "c"), spec(2), {})
    per = [waves_of(window, o.start, o.end, membership, spec(2)) for o in occs]
    assert [[(w.number, local(w.start), local(w.end), w.tenants) for w in ws] for ws in per] == [
        [
            (1, "2027-02-02T01:00:00+01:00", "2027-02-02T03:00:00+01:00", ("a", "b")),
            (2, "2027-02-03T01:00:00+01:00", "2027-02-03T03:00:00+01:00", ("c",)),
        ],
        [
            (1, "2027-02-09T01:00:00+01:00", "2027-02-09T03:00:00+01:00", ("a", "b")),
            (2, "2027-02-10T01:00:00+01:00", "2027-02-10T03:00:00+01:00", ("c",)),
        ],
    ]
    assert [w.base for w in per[1]] == [occs[1].start, occs[1].start]


def test_waves_of_refuses_naive_and_zero():
    window = oneoff()
    with pytest.raises(ValueError, match="aware"):
        waves_of(window, window.start.replace(tzinfo=None), window.end, {"a": 1}, spec(2))
    with pytest.raises(ValueError, match="start at 1"):
        waves_of(window, *span(window), {"a": 0}, spec(2))


# ---------------------------------------------------------------- halt and resume


def four_waves() -> list[Wave]:
    window = oneoff()
    return waves_of(window, *span(window), {"a": 1, "b": 2, "c": 3, "d": 3, "e": 4}, spec(2))


HALTS = [
    ("not_halted", None, [1, 2, 3, 4], []),
    ("halted_after_first", 1, [1], [2, 3, 4]),
    ("halted_after_third", 3, [1, 2, 3], [4]),
    ("halted_in_last", 4, [1, 2, 3, 4], []),
]


@pytest.mark.parametrize(("after", "running", "cancelled"), [c[1:] for c in HALTS], ids=[c[0] for c in HALTS])
def test_halted_waves(after, running, cancelled):
    kept, dropped = halted_waves(list(reversed(four_waves())), after)
    assert [w.number for w in kept] == running
    assert [w.number for w in dropped] == cancelled


def test_resume_replans_the_remaining_waves_from_at():
    _, cancelled = halted_waves(four_waves(), 1)
    at = berlin("2027-02-10T22:00")
    resumed = resume(cancelled, at, DAY)
    assert [(w.number, local(w.occurrence), local(w.start), local(w.end), w.tenants) for w in resumed] == [
        (2, "2027-02-10T22:00:00+01:00", "2027-02-10T22:00:00+01:00", "2027-02-11T00:00:00+01:00", ("b",)),
        (3, "2027-02-11T22:00:00+01:00", "2027-02-11T22:00:00+01:00", "2027-02-12T00:00:00+01:00", ("c", "d")),
        (4, "2027-02-12T22:00:00+01:00", "2027-02-12T22:00:00+01:00", "2027-02-13T00:00:00+01:00", ("e",)),
    ]
    # A new key per resumed wave (the old one carries the cancellation); same occurrence.
    assert {w.occurrence for w in resumed}.isdisjoint({w.occurrence for w in cancelled})
    assert {w.base for w in resumed} == {cancelled[0].base}
    assert resume([], at, DAY) == []


# ---------------------------------------------------------------- deferral

DEFER = DeferSpec(max=1, until=timedelta(hours=48))
GUARD = Guardrails(
    freezes=(
        Freeze(
            id="year-end",
            start=berlin("2027-02-05T00:00"),
            end=berlin("2027-02-06T00:00"),
            reason="Year-end change freeze",
            zone=BERLIN,
        ),
    ),
    blackouts={
        "c": (Blackout(tenant="c", zone=BERLIN, start=berlin("2027-02-04T00:00"), end=berlin("2027-02-04T06:00")),),
        "b": (Blackout(tenant="b", zone=BERLIN, cron="0 0 10 * *", duration=DAY, index=1),),
    },
)


def one_off_waves(membership: dict[str, int]) -> list[Wave]:
    window = oneoff()
    return waves_of(window, *span(window), membership, spec(2))


def defer(window, who, current, *, waves=(), nxt=None, count=0, now="2027-01-25T12:00", spec=DEFER):
    return defer_target(
        window,
        tenant(who),
        current,
        waves=waves,
        next_occurrence=nxt,
        deferred_count=count,
        spec=spec,
        now=berlin(now),
        guard=GUARD,
    )


def test_defer_moves_to_the_next_wave():
    waves = one_off_waves({"a": 1, "b": 2, "c": 2, "d": 5})
    target = defer(oneoff(), "a", waves[0], waves=waves)
    assert isinstance(target, Wave)
    assert (target.number, local(target.start), target.occurrence) == (2, "2027-02-03T01:00:00+01:00", target.start)


def test_defer_skips_to_the_next_occurrence_of_a_recurring_window_from_its_last_wave():
    window = weekly()
    membership = {"a": 1, "e": 2}
    first = occurrences(window, berlin("2027-02-01T00:00"), berlin("2027-02-03T00:00"))[0]
    waves = waves_of(window, first.start, first.end, membership, spec(2))
    nxt = next_slot(window, first.start, "e", membership, spec(2))
    assert isinstance(nxt, Wave)
    assert (nxt.number, local(nxt.start), local(nxt.base)) == (
        2,
        "2027-02-10T01:00:00+01:00",
        "2027-02-09T01:00:00+01:00",
    )
    assert defer(window, "e", waves[1], waves=waves, nxt=nxt) == nxt
    assert nxt.tenants == ("e",)  # only its own slot: the others are not deferred
    assert next_slot(window, first.start, "zz", membership, spec(2)) is None


def test_defer_recurring_window_without_waves_goes_to_the_next_occurrence():
    window = weekly()
    occs = occurrences(window, berlin("2027-02-01T00:00"), berlin("2027-02-10T00:00"))
    nxt = next_slot(window, occs[0].start, "a", {}, None)
    assert nxt == occs[1]
    assert defer(window, "a", occs[0], nxt=nxt) == occs[1]
    assert next_slot(oneoff(), occs[0].start, "a", {}, None) is None


def refusal_cases():
    waves = one_off_waves({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    w = {n: waves[n - 1] for n in range(1, 6)}
    once = Occurrence(start=oneoff().start, end=oneoff().end, window="agent-upgrade", key=oneoff().start)
    return [
        ("one_off_without_waves", dict(current=once), "this window cannot be deferred"),
        ("no_defer_configured", dict(current=w[1], spec=None), "this window does not allow deferral"),
        (
            "past_until",
            dict(current=w[1], now="2027-01-31T01:00:01"),
            "deferral closed 48h before the start",
        ),
        (
            "past_until_as_written",
            dict(
                current=w[1], now="2027-01-31T12:00", spec=DeferSpec(max=1, until=timedelta(days=2), until_label="2d")
            ),
            "deferral closed 2d before the start",
        ),
        (
            "already_started",
            dict(current=w[1], now="2027-02-02T01:00", spec=DeferSpec(max=1)),
            "this maintenance has already started",
        ),
        ("beyond_max", dict(current=w[1], count=1), "already deferred once; the limit is 1"),
        (
            "beyond_max_of_two",
            dict(current=w[1], count=2, spec=DeferSpec(max=2, until=DAY)),
            "already deferred twice; the limit is 2",
        ),
        (
            "into_a_freeze",
            dict(current=w[3]),
            'the new time (2027-02-05 01:00 - 2027-02-05 03:00 Europe/Berlin) falls in the change freeze "year-end": '
            "Year-end change freeze",
        ),
        (
            "into_the_tenants_blackout",
            dict(who="c", current=w[2]),
            "the new time (2027-02-04 01:00 - 2027-02-04 03:00 Europe/Berlin) falls in your blackout blackouts[0] "
            "(2027-02-04 00:00 - 2027-02-04 06:00 Europe/Berlin)",
        ),
        (
            "last_wave_of_one_off",
            dict(current=w[5]),
            "this is the last wave of the window; it cannot be deferred further",
        ),
        (
            "recurring_without_next",
            dict(window=weekly(), current=w[5]),
            "this window has no later occurrence to defer to",
        ),
    ], waves


CASES, ALL_WAVES = refusal_cases()


@pytest.mark.parametrize(("kw", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_defer_refusals(kw, reason):
    kw = dict(kw)
    window = kw.pop("window", oneoff())
    assert defer(window, kw.pop("who", "a"), kw.pop("current"), waves=ALL_WAVES, **kw) == reason


BOUNDARIES = [
    ("exactly_until_before_start_is_allowed", "2027-01-31T01:00", 2),
    ("one_second_later_is_closed", "2027-01-31T01:00:01", "deferral closed 48h before the start"),
]


@pytest.mark.parametrize(("now", "expected"), [c[1:] for c in BOUNDARIES], ids=[c[0] for c in BOUNDARIES])
def test_defer_until_boundary(now, expected):
    target = defer(oneoff(), "a", ALL_WAVES[0], waves=ALL_WAVES, now=now)
    assert (target.number if isinstance(target, Wave) else target) == expected


def test_defer_blackout_of_another_tenant_does_not_matter():
    # wave 3 (2027-02-04) meets c's blackout, not a's.
    target = defer(oneoff(), "a", ALL_WAVES[1], waves=ALL_WAVES)
    assert isinstance(target, Wave) and target.number == 3


def test_defer_recurring_blackout_of_the_tenant():
    window = weekly()
    occ = Occurrence(
        start=berlin("2027-02-09T01:00"), end=berlin("2027-02-09T03:00"), window="patch", key=berlin("2027-02-09T01:00")
    )
    earlier = Occurrence(
        start=berlin("2027-02-02T01:00"), end=berlin("2027-02-02T03:00"), window="patch", key=berlin("2027-02-02T01:00")
    )
    assert defer(window, "b", earlier, nxt=occ) == occ  # b's cron blackout is on the 10th
    shifted = Occurrence(
        start=berlin("2027-02-10T01:00"), end=berlin("2027-02-10T03:00"), window="patch", key=berlin("2027-02-10T01:00")
    )
    assert defer(window, "b", earlier, nxt=shifted) == (
        "the new time (2027-02-10 01:00 - 2027-02-10 03:00 Europe/Berlin) falls in your blackout blackouts[1] "
        "(2027-02-10 00:00 - 2027-02-11 00:00 Europe/Berlin)"
    )


# ---------------------------------------------------------------- applying deferrals


def test_apply_deferrals_moves_tenants_between_waves():
    waves = one_off_waves({"a": 1, "b": 1, "c": 2, "d": 3})
    moved = apply_deferrals(waves, {"a": 2, "d": berlin("2027-02-09T01:00"), "ghost": 2})
    assert [(w.number, w.tenants, local(w.start)) for w in moved] == [
        (1, ("b",), "2027-02-02T01:00:00+01:00"),
        (2, ("a", "c"), "2027-02-03T01:00:00+01:00"),
    ]
    assert apply_deferrals([], {"a": 2}) == []


def test_apply_deferrals_recreates_an_emptied_wave():
    waves = one_off_waves({"a": 1, "b": 1})
    moved = apply_deferrals(waves, {"a": 2}, every=DAY)
    assert [(w.number, w.tenants, local(w.start), local(w.end), local(w.occurrence)) for w in moved] == [
        (1, ("b",), "2027-02-02T01:00:00+01:00", "2027-02-02T03:00:00+01:00", "2027-02-02T01:00:00+01:00"),
        (2, ("a",), "2027-02-03T01:00:00+01:00", "2027-02-03T03:00:00+01:00", "2027-02-03T01:00:00+01:00"),
    ]
    with pytest.raises(ValueError, match="does not exist"):
        apply_deferrals(waves, {"a": 2})


def test_defer_then_apply_keeps_everyone_once():
    waves = one_off_waves({"a": 1, "b": 2, "c": 2})
    target = defer(oneoff(), "a", waves[0], waves=waves)
    assert isinstance(target, Wave)
    moved = apply_deferrals(waves, {"a": target.number})
    assert [(w.number, w.tenants) for w in moved] == [(2, ("a", "b", "c"))]
    assert UTC == moved[0].start.tzinfo
