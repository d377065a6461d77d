"""Waves in the plan (SPEC 8) and the config of waves and defer: tables with named cases."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest

from scheduler import config, plan
from scheduler.errors import ConfigError

HEAD = """\
version: 1
provider: {name: P, timezone: UTC}
tenants:
  - {id: a1, labels: {tier: gold}}
  - {id: b1, labels: {tier: bronze}}
  - {id: b2, labels: {tier: bronze}}
  - {id: c1}
  - {id: s1, labels: {tier: silver}}
windows:
"""
FROM, TO = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)


def load(windows: str, head: str = HEAD) -> config.Config:
    return config.parse(head + textwrap.indent(textwrap.dedent(windows), "  "), "windows.yaml", env={})


def starts(cfg, journal=None) -> list[tuple[str, int, str, list[str]]]:
    """(start, wave, occurrence, tenants) of every start event of the plan."""
    by: dict[tuple, list[str]] = {}
    for e in plan.timeline(cfg, FROM, TO, journal=journal):
        if e.event == "start":
            by.setdefault((e.at.isoformat(), e.wave, e.occurrence.isoformat()), []).append(e.tenant)
    return [(*k, sorted(v)) for k, v in sorted(by.items())]


ONE_OFF = """\
- id: up
  start: 2027-02-02T01:00
  duration: 2h
  waves: {size: %s, every: 1d, order: [{labels: {tier: bronze}}, {labels: {tier: silver}}]}
"""


@pytest.mark.parametrize(
    "size, expected",
    [
        (
            "2",
            [
                ("2027-02-02T01:00:00+00:00", 1, "2027-02-02T01:00:00+00:00", ["b1", "b2"]),
                ("2027-02-03T01:00:00+00:00", 2, "2027-02-03T01:00:00+00:00", ["a1", "s1"]),
                ("2027-02-04T01:00:00+00:00", 3, "2027-02-04T01:00:00+00:00", ["c1"]),
            ],
        ),
        (
            "25%",  # 25 % of 5 rounded up: 2 per wave
            [
                ("2027-02-02T01:00:00+00:00", 1, "2027-02-02T01:00:00+00:00", ["b1", "b2"]),
                ("2027-02-03T01:00:00+00:00", 2, "2027-02-03T01:00:00+00:00", ["a1", "s1"]),
                ("2027-02-04T01:00:00+00:00", 3, "2027-02-04T01:00:00+00:00", ["c1"]),
            ],
        ),
        (
            "60%",  # 3 per wave: bronze, then silver, then the rest by id
            [
                ("2027-02-02T01:00:00+00:00", 1, "2027-02-02T01:00:00+00:00", ["b1", "b2", "s1"]),
                ("2027-02-03T01:00:00+00:00", 2, "2027-02-03T01:00:00+00:00", ["a1", "c1"]),
            ],
        ),
        ("100%", [("2027-02-02T01:00:00+00:00", 1, "2027-02-02T01:00:00+00:00", ["a1", "b1", "b2", "c1", "s1"])]),
    ],
    ids=["count_2_by_order_then_id", "percent_25_rounded_up", "percent_60", "percent_100_one_wave"],
)
def test_membership_and_wave_times(size: str, expected: list) -> None:
    assert starts(load(ONE_OFF % size)) == expected


def test_plan_json_and_events_carry_the_wave() -> None:
    cfg = load(ONE_OFF % "2" + "  notify: [1d]\n")
    events = list(plan.timeline(cfg, FROM, TO, tenant="c1"))
    assert [(e.event, e.wave, e.occurrence.isoformat()) for e in events] == [
        ("notice", 3, "2027-02-04T01:00:00+00:00"),
        ("start", 3, "2027-02-04T01:00:00+00:00"),
        ("end", 3, "2027-02-04T01:00:00+00:00"),
    ]
    lines = list(plan.json_lines(plan.timeline(cfg, FROM, TO, tenant="c1")))
    assert lines[0].endswith('"late": false, "wave": 3}') and lines[1].endswith('"tenant": "c1", "wave": 3}')


def test_a_recurring_window_is_split_per_occurrence() -> None:
    cfg = load("""\
    - id: weekly
      cron: "0 1 * * 1"
      duration: 1h
      waves: {size: 3, every: 2d}
    """)
    got = [s for s in starts(cfg) if s[0] < "2027-01-12"]
    assert got == [
        ("2027-01-04T01:00:00+00:00", 1, "2027-01-04T01:00:00+00:00", ["a1", "b1", "b2"]),
        ("2027-01-06T01:00:00+00:00", 2, "2027-01-06T01:00:00+00:00", ["c1", "s1"]),
        ("2027-01-11T01:00:00+00:00", 1, "2027-01-11T01:00:00+00:00", ["a1", "b1", "b2"]),
    ]


def test_a_tenant_added_later_joins_the_last_wave_and_nobody_moves() -> None:
    cfg = load(ONE_OFF % "2")
    stored = plan.Journal(wave_members={"up": {"a1": 2, "b1": 1, "b2": 1, "s1": 2}})  # c1 is new
    assert starts(cfg, stored) == [
        ("2027-02-02T01:00:00+00:00", 1, "2027-02-02T01:00:00+00:00", ["b1", "b2"]),
        ("2027-02-03T01:00:00+00:00", 2, "2027-02-03T01:00:00+00:00", ["a1", "c1", "s1"]),
    ]


def test_halted_waves_drop_out_and_come_back_when_resumed() -> None:
    cfg = load(ONE_OFF % "2")
    base = datetime(2027, 2, 2, 1, tzinfo=UTC)
    halted = plan.WaveHalt(after=1, reason="end check", at=base)
    assert [s[1] for s in starts(cfg, plan.Journal(wave_halts={("up", base): halted}))] == [1]
    at = datetime(2027, 2, 10, 1, tzinfo=UTC)
    resumed = plan.Journal(wave_halts={("up", base): plan.WaveHalt(after=1, reason="x", at=base, resume_at=at)})
    assert starts(cfg, resumed)[1:] == [
        ("2027-02-10T01:00:00+00:00", 2, "2027-02-10T01:00:00+00:00", ["a1", "s1"]),
        ("2027-02-11T01:00:00+00:00", 3, "2027-02-11T01:00:00+00:00", ["c1"]),
    ]


def test_a_deferred_tenant_moves_to_its_target_wave() -> None:
    cfg = load(ONE_OFF % "2")
    base = datetime(2027, 2, 2, 1, tzinfo=UTC)
    got = starts(cfg, plan.Journal(deferrals={("up", base): {"b1": 3}}))
    assert [(s[1], s[3]) for s in got] == [(1, ["b2"]), (2, ["a1", "s1"]), (3, ["b1", "c1"])]


@pytest.mark.parametrize(
    "window, message",
    [
        (
            "- {id: w, start: 2027-02-02T01:00, duration: 1h, waves: {size: 0, every: 1d}}\n",
            'windows.yaml:10:66: wave size must be at least 1 tenant, got 0 in window "w"',
        ),
        (
            "- {id: w, start: 2027-02-02T01:00, duration: 1h, waves: {size: 120%, every: 1d}}\n",
            "windows.yaml:10:66: wave size must be at most 100%, got '120%' in window \"w\"",
        ),
        (
            "- {id: w, start: 2027-02-02T01:00, duration: 1h, waves: {size: lots, every: 1d}}\n",
            "windows.yaml:10:66: wave size: expected a count like 3 or a percentage like 25%, got 'lots' in window \"w\"",
        ),
        (
            "- {id: w, start: 2027-02-02T01:00, duration: 1h, waves: {size: 1, every: 1d, halt_on: end_check}}\n",
            'windows.yaml:10:89: halt_on: end_check needs an end_check on window "w"',
        ),
        (
            "- {id: w, cron: '0 1 * * 1', duration: 1h, defer: {max: 0}}\n",
            'windows.yaml:10:59: defer: max must be at least 1 in window "w", got 0',
        ),
    ],
    ids=["size_zero", "percent_over_100", "size_not_a_number", "halt_on_without_end_check", "defer_max_zero"],
)
def test_config_errors_name_file_line_col(window: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(window)
    assert str(err.value).splitlines()[0] == message


def test_config_builds_the_specs() -> None:
    cfg = load("""\
    - id: w
      cron: "0 1 * * 1"
      duration: 1h
      end_check: {run: ["true"]}
      waves: {size: 25%, every: 1d, order: [{labels: {tier: gold}}], halt_on: end_check}
      defer: {max: 2, until: 48h}
    """)
    w = cfg.windows[0]
    assert (w.waves.percent, w.waves.size, w.waves.every.days, w.waves.order, w.waves.halt_on) == (
        25.0,
        None,
        1,
        ({"tier": "gold"},),
        "end_check",
    )
    assert (w.defer.max, w.defer.until.days, w.defer.until_label) == (2, 2, "48h")
