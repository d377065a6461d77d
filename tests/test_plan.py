"""plan: the timeline of `maintd plan` and the daemon's pure tick, evaluate(config, journal, now).

Every instant is fixed in the test (no clock is read). Windows are built directly as
model records, in UTC unless a case names a zone; instants in the tables are written
``YYYY-MM-DDTHH:MM`` in UTC. Intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import plan
from scheduler.duration import parse_duration
from scheduler.model import UTC, Config, Provider, Tenant, Window
from scheduler.plan import EPOCH, Announcement, Journal, OpenOccurrence, evaluate, timeline
from scheduler.recurrence import occurrences

BERLIN = ZoneInfo("Europe/Berlin")
TENANTS = ("a", "b", "c")


def T(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(
    id: str,
    start: str | None = None,
    end: str | None = None,
    *,
    duration: str | None = None,
    cron: str | None = None,
    tenants: Iterable[str] = ("a",),
    notify: Iterable[str] = (),
    zone: ZoneInfo = UTC,
    skip: Iterable[date] = (),
    cancelled: bool = False,
) -> Window:
    """What config.load would build: one-off windows always carry their end."""
    leads = {parse_duration(n): n for n in reversed(list(notify))}
    dur = parse_duration(duration) if duration else None
    begin = T(start) if start else None
    finish = T(end) if end else (begin + dur if begin is not None and dur is not None else None)
    return Window(
        id=id,
        title=id.title(),
        zone=zone,
        tenants=frozenset(tenants),
        start=begin,
        end=finish,
        duration=dur,
        cron=cron,
        notify=tuple(sorted(leads, reverse=True)),
        lead_labels=leads,
        skip=frozenset(skip),
        cancelled=cancelled,
    )


def config(*windows: Window, tenants: Iterable[str] = TENANTS) -> Config:
    return Config(
        path="windows.yaml",
        provider=Provider(name="Example Cloud", zone=UTC),
        tenants={t: Tenant(id=t, name=t.upper(), zone=UTC) for t in tenants},
        windows=tuple(windows),
        policies={},
    )


def hm(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def rows(events) -> list[tuple]:
    out = []
    for e in events:
        if e.event == "notice":
            out.append((hm(e.at), "notice", e.window, e.tenant, e.lead, e.late))
        else:
            out.append((hm(e.at), e.event, e.window, e.tenant))
    return out


# ---------------------------------------------------------------------------
# timeline

FIRMWARE = window("fw", "2027-01-10T10:00", "2027-01-10T11:00", notify=["7d", "24h", "1h"])
ALPHA_BC = window("alpha", "2027-01-10T10:00", "2027-01-10T12:00", tenants=["a", "b"])
BETA_BC = window("beta", "2027-01-10T12:00", "2027-01-10T14:00", tenants=["b", "c"])

TIMELINE = [
    # id, windows, from, to, tenant filter, expected rows
    (
        "notices_at_each_lead",
        [FIRMWARE],
        "2027-01-01T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-03T10:00", "notice", "fw", "a", "7d", False),
            ("2027-01-09T10:00", "notice", "fw", "a", "24h", False),
            ("2027-01-10T09:00", "notice", "fw", "a", "1h", False),
            ("2027-01-10T10:00", "start", "fw", "a"),
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "passed_lead_listed_late_at_from",
        [FIRMWARE],
        "2027-01-09T12:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-09T12:00", "notice", "fw", "a", "24h", True),
            ("2027-01-10T09:00", "notice", "fw", "a", "1h", False),
            ("2027-01-10T10:00", "start", "fw", "a"),
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "several_passed_leads_collapse_into_the_latest",
        [FIRMWARE],
        "2027-01-10T09:30",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T09:30", "notice", "fw", "a", "1h", True),
            ("2027-01-10T10:00", "start", "fw", "a"),
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "lead_due_exactly_at_from_is_on_time_and_alone",
        [FIRMWARE],
        "2027-01-09T10:00",
        "2027-01-09T11:00",
        None,
        [
            ("2027-01-09T10:00", "notice", "fw", "a", "24h", False),
        ],
    ),
    (
        "late_notice_for_a_window_after_to",
        [FIRMWARE],
        "2027-01-09T12:00",
        "2027-01-09T13:00",
        None,
        [
            ("2027-01-09T12:00", "notice", "fw", "a", "24h", True),
        ],
    ),
    (
        "no_notice_once_started",
        [FIRMWARE],
        "2027-01-10T10:30",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "no_notice_at_the_start_instant",
        [FIRMWARE],
        "2027-01-10T10:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "fw", "a"),
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "to_is_exclusive",
        [FIRMWARE],
        "2027-01-10T08:00",
        "2027-01-10T10:00",
        None,
        [
            ("2027-01-10T08:00", "notice", "fw", "a", "24h", True),
            ("2027-01-10T09:00", "notice", "fw", "a", "1h", False),
        ],
    ),
    (
        "from_is_inclusive",
        [FIRMWARE],
        "2027-01-10T11:00",
        "2027-01-10T12:00",
        None,
        [
            ("2027-01-10T11:00", "end", "fw", "a"),
        ],
    ),
    (
        "cancelled_window_produces_nothing",
        [window("fw", "2027-01-10T10:00", "2027-01-10T11:00", notify=["1h"], cancelled=True)],
        "2027-01-01T00:00",
        "2027-02-01T00:00",
        None,
        [],
    ),
    (
        "window_without_tenants_produces_nothing",
        [window("fw", "2027-01-10T10:00", "2027-01-10T11:00", notify=["1h"], tenants=[])],
        "2027-01-01T00:00",
        "2027-02-01T00:00",
        None,
        [],
    ),
    (
        "skip_dates_are_local",  # 02:00 Berlin is 01:00Z in winter; 2027-01-05 is skipped
        [window("nightly", cron="0 2 * * *", duration="1h", zone=BERLIN, skip=[date(2027, 1, 5)])],
        "2027-01-04T00:00",
        "2027-01-07T00:00",
        None,
        [
            ("2027-01-04T01:00", "start", "nightly", "a"),
            ("2027-01-04T02:00", "end", "nightly", "a"),
            ("2027-01-06T01:00", "start", "nightly", "a"),
            ("2027-01-06T02:00", "end", "nightly", "a"),
        ],
    ),
    (
        "overlapping_windows_merge",
        [window("one", "2027-01-10T10:00", "2027-01-10T12:00"), window("two", "2027-01-10T11:00", "2027-01-10T13:00")],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "one", "a"),
            ("2027-01-10T13:00", "end", "two", "a"),
        ],
    ),
    (
        "touching_windows_merge",
        [window("one", "2027-01-10T10:00", "2027-01-10T12:00"), window("two", "2027-01-10T12:00", "2027-01-10T14:00")],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "one", "a"),
            ("2027-01-10T14:00", "end", "two", "a"),
        ],
    ),
    (
        "a_minute_apart_do_not_merge",
        [window("one", "2027-01-10T10:00", "2027-01-10T12:00"), window("two", "2027-01-10T12:01", "2027-01-10T14:00")],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "one", "a"),
            ("2027-01-10T12:00", "end", "one", "a"),
            ("2027-01-10T12:01", "start", "two", "a"),
            ("2027-01-10T14:00", "end", "two", "a"),
        ],
    ),
    (
        "contained_window_is_absorbed",
        [
            window("outer", "2027-01-10T10:00", "2027-01-10T14:00"),
            window("inner", "2027-01-10T11:00", "2027-01-10T12:00"),
        ],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "outer", "a"),
            ("2027-01-10T14:00", "end", "outer", "a"),
        ],
    ),
    (
        "same_start_names_the_first_by_id",
        [
            window("zulu", "2027-01-10T10:00", "2027-01-10T13:00"),
            window("alpha", "2027-01-10T10:00", "2027-01-10T12:00"),
        ],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "alpha", "a"),
            ("2027-01-10T13:00", "end", "zulu", "a"),
        ],
    ),
    (
        "merging_is_per_tenant",
        [ALPHA_BC, BETA_BC],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        None,
        [
            ("2027-01-10T10:00", "start", "alpha", "a"),
            ("2027-01-10T10:00", "start", "alpha", "b"),
            ("2027-01-10T12:00", "start", "beta", "c"),  # starts before ends at the same instant
            ("2027-01-10T12:00", "end", "alpha", "a"),
            ("2027-01-10T14:00", "end", "beta", "b"),
            ("2027-01-10T14:00", "end", "beta", "c"),
        ],
    ),
    (
        "tenant_filter",
        [ALPHA_BC, BETA_BC],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        "b",
        [
            ("2027-01-10T10:00", "start", "alpha", "b"),
            ("2027-01-10T14:00", "end", "beta", "b"),
        ],
    ),
    (
        "tenant_filter_other_tenant",
        [ALPHA_BC, BETA_BC],
        "2027-01-10T00:00",
        "2027-01-11T00:00",
        "c",
        [
            ("2027-01-10T12:00", "start", "beta", "c"),
            ("2027-01-10T14:00", "end", "beta", "c"),
        ],
    ),
    (
        "period_begun_before_from_shows_its_end_only",
        [ALPHA_BC, BETA_BC],
        "2027-01-10T11:00",
        "2027-01-11T00:00",
        "b",
        [("2027-01-10T14:00", "end", "beta", "b")],
    ),
    (
        "notices_come_before_starts_at_the_same_instant",
        [
            window("w1", "2027-01-10T10:00", "2027-01-10T10:30"),
            window("w2", "2027-01-10T11:00", "2027-01-10T12:00", notify=["1h"], tenants=["a", "b"]),
        ],
        "2027-01-10T09:30",
        "2027-01-10T11:00",
        None,
        [
            ("2027-01-10T10:00", "notice", "w2", "a", "1h", False),
            ("2027-01-10T10:00", "notice", "w2", "b", "1h", False),
            ("2027-01-10T10:00", "start", "w1", "a"),
            ("2027-01-10T10:30", "end", "w1", "a"),
        ],
    ),
    (
        "recurring_overlapping_itself_is_one_period",  # every 6 hours for 8 hours
        [window("rolling", cron="0 */6 * * *", duration="8h")],
        "2027-01-10T00:00",
        "2027-01-10T12:00",
        None,
        [],
    ),
    (
        "recurring_notices",
        [window("weekly", cron="0 1 * * 2", duration="2h", notify=["3d"])],
        "2027-01-08T00:00",
        "2027-01-13T00:00",
        None,
        [
            ("2027-01-09T01:00", "notice", "weekly", "a", "3d", False),
            ("2027-01-12T01:00", "start", "weekly", "a"),
            ("2027-01-12T03:00", "end", "weekly", "a"),
        ],
    ),
]


@pytest.mark.parametrize("windows, frm, to, tenant, expected", [c[1:] for c in TIMELINE], ids=[c[0] for c in TIMELINE])
def test_timeline(windows, frm, to, tenant, expected):
    assert rows(timeline(config(*windows), T(frm), T(to), tenant=tenant)) == expected


def test_timeline_case_names_are_unique():
    assert len({c[0] for c in TIMELINE}) == len(TIMELINE)


def test_occurrence_is_the_scheduled_start():
    cfg = config(window("weekly", cron="0 1 * * 2", duration="2h", notify=["3d"]), FIRMWARE)
    events = timeline(cfg, T("2027-01-08T00:00"), T("2027-01-13T00:00"))
    assert {(e.window, hm(e.occurrence)) for e in events} == {
        ("weekly", "2027-01-12T01:00"),
        ("fw", "2027-01-10T10:00"),
    }


def test_timeline_json_is_specs_shape():
    cfg = config(window("fw", "2027-01-10T10:00", "2027-01-10T11:00", notify=["24h"]))
    events = timeline(cfg, T("2027-01-09T12:00"), T("2027-01-11T00:00"))
    assert [e.to_json() for e in events] == [
        {
            "at": "2027-01-09T12:00:00Z",
            "event": "notice",
            "window": "fw",
            "occurrence": "2027-01-10T10:00:00Z",
            "tenant": "a",
            "kind": "scheduled",
            "lead": "24h",
            "late": True,
        },
        {
            "at": "2027-01-10T10:00:00Z",
            "event": "start",
            "window": "fw",
            "occurrence": "2027-01-10T10:00:00Z",
            "tenant": "a",
        },
        {
            "at": "2027-01-10T11:00:00Z",
            "event": "end",
            "window": "fw",
            "occurrence": "2027-01-10T10:00:00Z",
            "tenant": "a",
        },
    ]


def test_json_lines_match_json_dumps():
    cfg = config(
        ALPHA_BC,
        BETA_BC,
        FIRMWARE,
        window('wé"ird', "2027-01-10T13:00", duration="1h", tenants=["a", "c"], notify=["2d", "1h"]),
    )
    events = timeline(cfg, T("2027-01-08T00:00"), T("2027-01-11T00:00"))
    expected = [json.dumps(e.to_json(), ensure_ascii=False, separators=(", ", ": ")) for e in events]
    assert list(plan.json_lines(events)) == expected
    assert list(plan.json_lines(list(events))) == expected  # any iterable of events
    assert [json.loads(line) for line in expected] == [e.to_json() for e in events]


def test_timeline_is_a_sequence_of_events():
    events = timeline(config(ALPHA_BC, BETA_BC), T("2027-01-10T00:00"), T("2027-01-11T00:00"))
    assert len(events) == 6 and bool(events)
    assert events[0] == list(events)[0] and events[-1].event == "end"
    assert events == list(events)
    assert not timeline(config(), T("2027-01-10T00:00"), T("2027-01-11T00:00"))


# ---------------------------------------------------------------------------
# timeline properties

START = T("2027-03-20T00:00")  # Berlin's spring-forward (2027-03-28) falls inside the range
CRONS = ("0 */6 * * *", "30 2 * * *", "0 3 * * 1", "15 1 * * 2#1", "0 0,12 * * *")
ZONES = (UTC, BERLIN, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("America/New_York"))


@st.composite
def windows_st(draw, index: int) -> Window:
    tenants = draw(st.sets(st.sampled_from(TENANTS), min_size=1))
    leads = draw(st.lists(st.sampled_from(["30m", "1h", "24h", "3d"]), max_size=2, unique=True))
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        begin = START + timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 14)))
        minutes = 15 * draw(st.integers(1, 4 * 48))
        return window(
            f"once{index}", hm(begin), hm(begin + timedelta(minutes=minutes)), tenants=tenants, notify=leads, zone=zone
        )
    return window(
        f"cron{index}",
        cron=draw(st.sampled_from(CRONS)),
        duration=f"{draw(st.integers(1, 36))}h",
        tenants=tenants,
        notify=leads,
        zone=zone,
    )


@st.composite
def scenario(draw):
    windows = [draw(windows_st(i)) for i in range(draw(st.integers(1, 5)))]
    frm = START + timedelta(minutes=30 * draw(st.integers(-48, 48 * 14)))
    to = frm + timedelta(hours=draw(st.integers(1, 24 * 10)))
    return config(*windows), frm, to


def periods(events, tenant: str, busy: bool = False) -> list[tuple[datetime, datetime]]:
    """A tenant's maintenance periods from its start/end events, open-ended where they begin
    before or end after the range; ``busy``: some occurrence of the tenant meets the range."""
    mine = [e for e in events if e.tenant == tenant and e.event in ("start", "end")]
    out: list[tuple[datetime, datetime]] = []
    opened: datetime | None = None
    for i, e in enumerate(mine):
        if e.event == "start":
            assert opened is None, f"{tenant}: two starts in a row at {e.at}"
            opened = e.at
        else:
            if opened is None:
                assert i == 0, f"{tenant}: end without start at {e.at}"
                opened = datetime.min.replace(tzinfo=UTC)  # began before frm
            out.append((opened, e.at))
            opened = None
    if opened is not None:
        out.append((opened, datetime.max.replace(tzinfo=UTC)))  # still open at `to`
    if not mine and busy:
        # no boundary inside [frm, to), yet maintenance happens in it: all of it is one period
        out.append((datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)))
    return out


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenario())
def test_timeline_is_deterministic_and_sorted(case):
    cfg, frm, to = case
    first = list(timeline(cfg, frm, to))
    assert first == list(timeline(cfg, frm, to))
    shuffled = Config(**{**cfg.__dict__, "windows": tuple(reversed(cfg.windows))})
    assert first == list(timeline(shuffled, frm, to))  # the order windows are declared in does not matter
    assert [e.at for e in first] == sorted(e.at for e in first)
    assert all(frm <= e.at < to for e in first)


@PROPERTY_SETTINGS
@given(scenario())
def test_no_tenant_has_overlapping_or_touching_periods(case):
    cfg, frm, to = case
    events = list(timeline(cfg, frm, to))
    for t in TENANTS:
        ps = periods(events, t)
        for (s1, e1), (s2, e2) in zip(ps, ps[1:]):
            assert s1 < e1 < s2 < e2, f"{t}: {s1}..{e1} and {s2}..{e2} touch or overlap"


@PROPERTY_SETTINGS
@given(scenario())
def test_every_occurrence_lies_inside_a_period_of_each_of_its_tenants(case):
    cfg, frm, to = case
    events = list(timeline(cfg, frm, to))
    occs = [(w, o) for w in cfg.windows for o in occurrences(w, frm, to)]
    for w, o in occs:
        for t in w.tenants:
            ps = periods(events, t, busy=True)
            assert any(s <= max(o.start, frm) and min(o.end, to) <= e for s, e in ps), (
                f"{w.id} {o.start}..{o.end} is outside every period of {t}: {ps}"
            )
    # ... and every start and end is the start or end of the occurrence it names
    bounds = {
        (w.id, o.key, "start"): (o.start, w.tenants)
        for w in cfg.windows
        for o in occurrences(w, frm - timedelta(days=3), to)
    }
    bounds.update(
        {
            (w.id, o.key, "end"): (o.end, w.tenants)
            for w in cfg.windows
            for o in occurrences(w, frm - timedelta(days=3), to)
        }
    )
    for e in events:
        if e.event != "notice":
            at, tenants = bounds[(e.window, e.occurrence, e.event)]
            assert e.at == at and e.tenant in tenants, e


@PROPERTY_SETTINGS
@given(scenario(), st.sampled_from(TENANTS))
def test_tenant_filter_is_a_subset(case, tenant):
    cfg, frm, to = case
    everything = list(timeline(cfg, frm, to))
    assert list(timeline(cfg, frm, to, tenant=tenant)) == [e for e in everything if e.tenant == tenant]


@PROPERTY_SETTINGS
@given(scenario())
def test_notices_only_before_their_start(case):
    cfg, frm, to = case
    for e in timeline(cfg, frm, to):
        if e.event == "notice":
            assert e.at < e.occurrence  # the occurrence key is its (scheduled) start
            assert e.late == (e.at == frm and e.lead is not None and e.at > e.occurrence - parse_duration(e.lead))


# ---------------------------------------------------------------------------
# evaluate: the daemon's tick

S, E = T("2027-01-10T10:00"), T("2027-01-10T12:00")
FW = window("fw", "2027-01-10T10:00", "2027-01-10T12:00", tenants=["a", "b"], notify=["24h", "1h"])


def transitions(ev) -> list[tuple]:
    return [(t.event, t.window, hm(t.at), t.late, tuple(sorted(t.period_tenants))) for t in ev.transitions]


def notices(ev) -> list[tuple]:
    return [(n.kind, n.window, tuple(sorted(n.tenants)), n.lead, n.late) for n in ev.notices]


def told(
    tenants: Iterable[str],
    start: datetime = S,
    end: datetime = E,
    sequence: int = 0,
    occurrence: datetime | None = None,
    title: str = "Fw",
) -> Announcement:
    return Announcement(
        start=start, end=end, title=title, sequence=sequence, tenants=frozenset(tenants), occurrence=occurrence or start
    )


def after(ev, journal: Journal) -> Journal:
    """The journal a daemon would write after applying ``ev``."""
    events = set(journal.events) | {(t.window, t.occurrence, t.event) for t in ev.transitions}
    announced = dict(journal.announced)
    announced.update({(a.window, a.anchor): a.announcement for a in ev.announces})
    sent = set(journal.sent_leads) | {(n.window, n.occurrence, n.lead) for n in ev.notices if n.kind == "scheduled"}
    return Journal(
        last_tick=ev.now,
        events=frozenset(events),
        announced=announced,
        sent_leads=frozenset(sent),
        overrides=journal.overrides,
    )


EVALUATE = [
    # id, windows, journal, now, expected transitions, expected notices
    (
        "scheduled_notice_on_time",
        [FW],
        Journal(last_tick=T("2027-01-09T09:59")),
        T("2027-01-09T10:00"),
        [],
        [("scheduled", "fw", ("a", "b"), "24h", False)],
    ),
    (
        "scheduled_notice_late_after_a_restart",
        [FW],
        Journal(last_tick=T("2027-01-09T08:00")),
        T("2027-01-09T13:00"),
        [],
        [("scheduled", "fw", ("a", "b"), "24h", True)],
    ),
    (
        "passed_leads_collapse",
        [FW],
        Journal(last_tick=T("2027-01-01T00:00")),
        T("2027-01-10T09:30"),
        [],
        [("scheduled", "fw", ("a", "b"), "1h", True)],
    ),
    (
        "lead_already_sent",
        [FW],
        Journal(last_tick=T("2027-01-09T09:59"), sent_leads=frozenset({("fw", S, "24h")})),
        T("2027-01-09T10:00"),
        [],
        [],
    ),
    ("nothing_due_yet", [FW], Journal(last_tick=T("2027-01-01T00:00")), T("2027-01-05T00:00"), [], []),
    (
        "start_at_the_instant",
        [FW],
        Journal(last_tick=S - timedelta(seconds=30)),
        S,
        [("start", "fw", "2027-01-10T10:00", False, ("a", "b"))],
        [("started", "fw", ("a", "b"), None, False)],
    ),
    (
        "end_at_the_instant",
        [FW],
        Journal(last_tick=E - timedelta(seconds=30), events=frozenset({("fw", S, "start")})),
        E,
        [("end", "fw", "2027-01-10T12:00", False, ("a", "b"))],
        [("completed", "fw", ("a", "b"), None, False)],
    ),
    (
        "late_start_after_a_restart",
        [FW],
        Journal(last_tick=S - timedelta(hours=1)),
        S + timedelta(minutes=30),
        [("start", "fw", "2027-01-10T10:00", True, ("a", "b"))],
        [("started", "fw", ("a", "b"), None, True)],
    ),
    (
        "late_start_already_recorded",
        [FW],
        Journal(last_tick=S - timedelta(hours=1), events=frozenset({("fw", S, "start")})),
        S + timedelta(minutes=30),
        [],
        [],
    ),
    (
        "missed_entirely_while_down",
        [FW],
        Journal(last_tick=S - timedelta(hours=1)),
        E + timedelta(hours=1),
        [("start", "fw", "2027-01-10T10:00", True, ("a", "b")), ("end", "fw", "2027-01-10T12:00", True, ("a", "b"))],
        [("completed", "fw", ("a", "b"), None, True)],
    ),
    ("first_start_does_not_replay_the_past", [FW], Journal(), E + timedelta(hours=1), [], []),
    (
        "first_start_inside_a_window_enters_it",
        [FW],
        Journal(),
        S + timedelta(minutes=30),
        [("start", "fw", "2027-01-10T10:00", True, ("a", "b"))],
        [("started", "fw", ("a", "b"), None, True)],
    ),
    ("catch_up_is_capped", [FW], Journal(last_tick=S - timedelta(days=30)), E + timedelta(days=8), [], []),
    (
        "merged_windows_open_once",
        [
            window("one", "2027-01-10T10:00", "2027-01-10T12:00", tenants=["a"]),
            window("two", "2027-01-10T11:00", "2027-01-10T13:00", tenants=["a", "b"]),
        ],
        Journal(last_tick=T("2027-01-10T10:59"), events=frozenset({("one", S, "start")})),
        T("2027-01-10T11:00"),
        [("start", "two", "2027-01-10T11:00", False, ("b",))],
        [("started", "two", ("b",), None, False)],
    ),
]


@pytest.mark.parametrize(
    "windows, journal, now, expected_transitions, expected_notices",
    [c[1:] for c in EVALUATE],
    ids=[c[0] for c in EVALUATE],
)
def test_evaluate(windows, journal, now, expected_transitions, expected_notices):
    ev = evaluate(config(*windows), journal, now)
    assert transitions(ev) == expected_transitions
    assert notices(ev) == expected_notices


def test_evaluate_case_names_are_unique():
    assert len({c[0] for c in EVALUATE}) == len(EVALUATE)


def test_applying_a_tick_then_ticking_again_does_nothing():
    cfg = config(FW)
    j = Journal(last_tick=S - timedelta(hours=1))
    for now in (S - timedelta(hours=1), S + timedelta(minutes=30), E + timedelta(hours=1)):
        ev = evaluate(cfg, j, now)
        j = after(ev, j)
        again = evaluate(cfg, j, now)
        assert (again.transitions, again.notices) == ((), ()), now


def test_a_simulated_week_sends_each_notice_once():
    cfg = config(FW, window("weekly", cron="0 1 * * 2", duration="2h", notify=["3d", "1h"], tenants=["a", "c"]))
    now = T("2027-01-06T00:00")
    j = Journal(last_tick=now)
    sent: list[tuple] = []
    moves: list[tuple] = []
    while now < T("2027-01-14T00:00"):
        ev = evaluate(cfg, j, now)
        sent += [(n.kind, n.window, hm(n.occurrence), n.lead, n.late) for n in ev.notices]
        moves += [(t.event, t.window, hm(t.at), t.late) for t in ev.transitions]
        j = after(ev, j)
        now = (
            ev.next_wakeup
            if ev.next_wakeup and ev.next_wakeup <= now + timedelta(hours=6)
            else now + timedelta(hours=6)
        )
    assert sent == [
        ("scheduled", "weekly", "2027-01-12T01:00", "3d", False),
        ("scheduled", "fw", "2027-01-10T10:00", "24h", False),
        ("scheduled", "fw", "2027-01-10T10:00", "1h", False),
        ("started", "fw", "2027-01-10T10:00", None, False),
        ("completed", "fw", "2027-01-10T10:00", None, False),
        ("scheduled", "weekly", "2027-01-12T01:00", "1h", False),
        ("started", "weekly", "2027-01-12T01:00", None, False),
        ("completed", "weekly", "2027-01-12T01:00", None, False),
    ]
    assert moves == [
        ("start", "fw", "2027-01-10T10:00", False),
        ("end", "fw", "2027-01-10T12:00", False),
        ("start", "weekly", "2027-01-12T01:00", False),
        ("end", "weekly", "2027-01-12T03:00", False),
    ]


def test_extension_sends_extended_to_those_told():
    later = E + timedelta(minutes=30)
    j = Journal(
        last_tick=S + timedelta(minutes=59),
        events=frozenset({("fw", S, "start")}),
        announced={("fw", EPOCH): told(["a", "b"])},
        overrides={("fw", S): later},
    )
    ev = evaluate(config(FW), j, S + timedelta(hours=1))
    assert ev.transitions == ()
    (n,) = ev.notices
    assert (n.kind, n.tenants, n.sequence, n.previous, n.start, n.end) == ("extended", {"a", "b"}, 1, (S, E), S, later)
    assert [a.occ.end for a in ev.active] == [later]
    assert ev.next_wakeup == later
    # ... once: the journal now has the new end
    assert evaluate(config(FW), after(ev, j), S + timedelta(hours=1)).notices == ()


def test_extended_occurrence_ends_at_its_new_end():
    later = E + timedelta(minutes=30)
    j = Journal(last_tick=E, events=frozenset({("fw", S, "start")}), overrides={("fw", S): later})
    assert evaluate(config(FW), j, E).transitions == ()
    assert transitions(evaluate(config(FW), j, later)) == [("end", "fw", "2027-01-10T12:30", False, ("a", "b"))]


def test_moved_one_off_window_is_rescheduled():
    old_start, old_end = T("2027-01-09T10:00"), T("2027-01-09T12:00")
    j = Journal(last_tick=T("2027-01-05T00:00"), announced={("fw", EPOCH): told(["a", "b"], old_start, old_end)})
    ev = evaluate(config(FW), j, T("2027-01-05T00:01"))
    (n,) = ev.notices
    assert (n.kind, n.window, n.occurrence, n.start, n.end, n.previous, n.sequence, n.tenants) == (
        "rescheduled",
        "fw",
        S,
        S,
        E,
        (old_start, old_end),
        1,
        {"a", "b"},
    )
    # and not again once the daemon has recorded it
    again = evaluate(config(FW), after(ev, j), T("2027-01-05T00:02"))
    assert again.notices == ()


def test_rescheduled_window_that_dropped_a_tenant_cancels_for_it():
    j = Journal(
        last_tick=T("2027-01-05T00:00"),
        announced={("fw", EPOCH): told(["a", "b", "c"], T("2027-01-09T10:00"), T("2027-01-09T12:00"))},
    )
    ev = evaluate(config(FW), j, T("2027-01-05T00:01"))
    assert notices(ev) == [("rescheduled", "fw", ("a", "b"), None, False), ("cancelled", "fw", ("c",), None, False)]


@pytest.mark.parametrize(
    "cfg",
    [config(), config(window("fw", "2027-01-10T10:00", "2027-01-10T12:00", tenants=["a", "b"], cancelled=True))],
    ids=["removed", "cancelled_true"],
)
def test_removed_or_cancelled_window_is_cancelled_to_those_told_only(cfg):
    j = Journal(last_tick=T("2027-01-05T00:00"), announced={("fw", EPOCH): told(["a"])})
    ev = evaluate(cfg, j, T("2027-01-05T00:01"))
    (n,) = ev.notices
    assert (n.kind, n.window, n.tenants, n.sequence, n.start, n.end) == ("cancelled", "fw", {"a"}, 1, S, E)
    assert evaluate(cfg, after(ev, j), T("2027-01-05T00:02")).notices == ()


def test_cancelled_window_nobody_was_told_of_sends_nothing():
    cfg = config(window("fw", "2027-01-10T10:00", "2027-01-10T12:00", notify=["24h"], cancelled=True))
    assert evaluate(cfg, Journal(last_tick=T("2027-01-09T09:00")), T("2027-01-09T10:00")).notices == ()


def test_cron_edit_that_drops_an_announced_occurrence_cancels_it():
    tuesday, wednesday = T("2027-01-12T01:00"), T("2027-01-13T01:00")
    j = Journal(
        last_tick=T("2027-01-10T11:59"),
        announced={("pt", tuesday): told(["a"], tuesday, tuesday + timedelta(hours=2), title="Pt")},
        sent_leads=frozenset({("pt", tuesday, "3d")}),
    )
    edited = config(window("pt", cron="0 1 * * 3", duration="2h", notify=["3d"]))
    ev = evaluate(edited, j, T("2027-01-10T12:00"))
    got = [(n.kind, hm(n.occurrence), tuple(sorted(n.tenants)), n.lead, n.late, n.recurring) for n in ev.notices]
    assert sorted(got) == [
        ("cancelled", "2027-01-12T01:00", ("a",), None, False, True),
        ("scheduled", hm(wednesday), ("a",), "3d", True, True),
    ]


def test_duration_change_of_a_recurring_window_is_a_reschedule():
    tuesday = T("2027-01-12T01:00")
    j = Journal(
        last_tick=T("2027-01-10T11:59"),
        announced={("pt", tuesday): told(["a"], tuesday, tuesday + timedelta(hours=2), title="Pt")},
        sent_leads=frozenset({("pt", tuesday, "3d")}),
    )
    longer = config(window("pt", cron="0 1 * * 2", duration="3h", notify=["3d"]))
    ev = evaluate(longer, j, T("2027-01-10T12:00"))
    got = [(n.kind, n.occurrence, n.end, n.previous, n.sequence) for n in ev.notices]
    assert got == [("rescheduled", tuesday, tuesday + timedelta(hours=3), (tuesday, tuesday + timedelta(hours=2)), 1)]


def test_removed_window_still_open_is_released_now():
    now = S + timedelta(minutes=30)
    j = Journal(
        last_tick=now - timedelta(seconds=30),
        events=frozenset({("fw", S, "start")}),
        open={("fw", S): OpenOccurrence(window="fw", key=S, start=S, end=E, tenants=frozenset({"a", "b"}), title="Fw")},
    )
    ev = evaluate(config(), j, now)
    assert [(t.event, t.window, t.at, t.reason, t.period_tenants) for t in ev.transitions] == [
        ("end", "fw", now, "removed", {"a", "b"})
    ]
    assert notices(ev) == [("completed", "fw", ("a", "b"), None, False)]


NEXT_WAKEUP = [
    # id, now, expected next wake-up
    ("next_notice", "2027-01-08T00:00", "2027-01-09T10:00"),
    ("second_notice", "2027-01-09T10:00", "2027-01-10T09:00"),
    ("start", "2027-01-10T09:30", "2027-01-10T10:00"),
    ("end", "2027-01-10T10:00", "2027-01-10T12:00"),
    ("other_window", "2027-01-10T12:00", "2027-01-11T08:00"),
    ("nothing_left", "2027-01-11T10:00", None),
]


@pytest.mark.parametrize("now, expected", [c[1:] for c in NEXT_WAKEUP], ids=[c[0] for c in NEXT_WAKEUP])
def test_next_wakeup_is_the_earliest_future_instant(now, expected):
    cfg = config(FW, window("late", "2027-01-11T09:00", "2027-01-11T10:00", notify=["1h"]))
    ev = evaluate(cfg, Journal(last_tick=T(now)), T(now))
    assert (hm(ev.next_wakeup) if ev.next_wakeup else None) == expected


def test_next_wakeup_of_a_recurring_window():
    cfg = config(window("weekly", cron="0 1 * * 2", duration="2h", notify=["3d"]))
    ev = evaluate(cfg, Journal(last_tick=T("2027-01-12T03:00")), T("2027-01-12T03:00"))
    assert ev.next_wakeup == T("2027-01-16T01:00")  # 3 days before Tuesday the 19th


def test_active_and_upcoming():
    cfg = config(FW, window("late", "2027-01-11T09:00", "2027-01-11T10:00", notify=["1h"]))
    ev = evaluate(cfg, Journal(last_tick=S), S + timedelta(hours=1))
    assert [(a.window.id, a.occ.start) for a in ev.active] == [("fw", S)]
    assert [a.window.id for a in ev.upcoming] == ["late"]
    assert ev.period_end("a") == E and ev.period_end("c") is None


def test_evaluate_does_not_read_the_clock():
    # Far past and far future instants give answers about those instants, not about today.
    cfg = config(FW)
    assert transitions(evaluate(cfg, Journal(last_tick=S - timedelta(minutes=1)), S))[0][0] == "start"
    assert evaluate(cfg, Journal(last_tick=T("2031-01-01T00:00")), T("2031-01-01T00:00")).active == ()
