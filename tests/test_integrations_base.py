"""The integration base: placeholders, the registry, settings refused by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import integrations
from integrations import Occurrence, build
from integrations.base import as_timedelta

START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
OCC = Occurrence(
    window="fw",
    title="Firmware",
    occurrence=START,
    start=START + timedelta(hours=1),  # rescheduled: the key stays the original start
    end=START + timedelta(hours=5),
    tenants=("acme", "beta.eu", "c+d"),
)


@pytest.mark.parametrize(
    "text, filled",
    [
        ("{window}/{title}", "fw/Firmware"),
        ("{occurrence}", "2026-12-05T21:00:00Z"),
        ("{start}..{end}", "2026-12-05T22:00:00Z..2026-12-06T02:00:00Z"),
        ("{tenants_regex}", r"acme|beta\.eu|c\+d"),
        ("x{2,3}{unknown}", "x{2,3}{unknown}"),
    ],
    ids=["window_title", "occurrence_is_the_original_start", "start_end", "tenants_regex_escaped", "other_braces"],
)
def test_placeholders(text, filled):
    assert OCC.fill(text) == filled


def test_registry_lists_types_and_their_keys():
    assert set(integrations.TYPES) == {"alertmanager", "pagerduty", "statuspage"}
    assert integrations.SETTINGS == {
        "alertmanager": {"url", "token", "matchers", "ahead"},
        "pagerduty": {"url", "token", "from", "services"},
        "statuspage": {"url", "token", "page", "components"},
    }


def test_unknown_type_is_refused_by_name():
    with pytest.raises(ValueError, match="integration 'x': unknown type 'opsgenie' \\(known: alertmanager, "):
        build("x", {"type": "opsgenie"})


@pytest.mark.parametrize(
    "value, expected",
    [
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(minutes=90)),
        (30, timedelta(seconds=30)),
        (timedelta(1), timedelta(1)),
    ],
    ids=["minutes", "compound", "seconds_number", "timedelta"],
)
def test_as_timedelta(value, expected):
    assert as_timedelta(value, name="ahead") == expected
