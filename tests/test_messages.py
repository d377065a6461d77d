"""Tenant-facing message templates: the load-time check, local times, rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.messages import PLACEHOLDERS, check_template, format_local, render
from scheduler.model import Tenant

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
UTC = UTC

EXPECTED = "expected one of {provider}, {title}, {start}, {end}, {window}, {tenant}"
UNBALANCED = 'unbalanced brace in message; write "{{" or "}}" for a literal brace'

CHECK_CASES = [
    ("{provider} is under scheduled maintenance until {end}.", None),
    ("{title} ({window}) for {tenant}: {start} - {end}", None),
    ("no placeholders at all", None),
    ("", None),
    ("{{literal}} braces, then {end}", None),
    ("{{end}}", None),
    ("ends at {end:>30}", None),
    ("{foo}", f'unknown placeholder "{{foo}}" in message; {EXPECTED}'),
    ("until {End}", f'unknown placeholder "{{End}}" in message; {EXPECTED}'),
    ("until { end }", f'unknown placeholder "{{ end }}" in message; {EXPECTED}'),
    ("until {}", f'positional placeholder "{{}}" in message; {EXPECTED}'),
    ("until {0}", f'positional placeholder "{{0}}" in message; {EXPECTED}'),
    ("in {start.year}", f'attribute or index access "{{start.year}}" in message; {EXPECTED}'),
    ("{tenant[0]}", f'attribute or index access "{{tenant[0]}}" in message; {EXPECTED}'),
    ("until {end", UNBALANCED),
    ("until end}", UNBALANCED),
    ("{ alone", UNBALANCED),
    ("{end:d}", "invalid format \"{end:d}\" in message: Unknown format code 'd' for object of type 'str'"),
    ("{end!x}", 'invalid format "{end!x}" in message: Unknown conversion specifier x'),
    ("{end!}", "invalid placeholder in message: unmatched '{' in format spec"),
    ("{end:{title}}", f'placeholder inside a format spec "{{end:{{title}}}}" in message; {EXPECTED}'),
]


@pytest.mark.parametrize(
    "text, expected",
    CHECK_CASES,
    ids=[
        "provider_default",
        "every_placeholder",
        "plain_text",
        "empty",
        "escaped_braces",
        "escaped_placeholder_name",
        "format_spec_on_string",
        "unknown",
        "unknown_wrong_case",
        "unknown_spaces",
        "positional_empty",
        "positional_index",
        "attribute_access",
        "index_access",
        "unbalanced_open",
        "unbalanced_close",
        "unbalanced_lone_open",
        "bad_format_code",
        "bad_conversion",
        "empty_conversion",
        "nested_placeholder_in_spec",
    ],
)
def test_check_template(text, expected):
    assert check_template(text) == expected


def test_placeholders_are_the_documented_names():
    assert PLACEHOLDERS == ("provider", "title", "start", "end", "window", "tenant")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "ts, zone, expected",
    [
        (utc("2026-12-05T21:00"), BERLIN, "Sat 5 Dec 2026 22:00 CET"),
        (utc("2026-12-05T21:00"), NEW_YORK, "Sat 5 Dec 2026 16:00 EST"),
        (utc("2026-12-06T01:00"), NEW_YORK, "Sat 5 Dec 2026 20:00 EST"),
        (utc("2026-07-04T08:05"), BERLIN, "Sat 4 Jul 2026 10:05 CEST"),
        (utc("2026-07-04T08:05"), NEW_YORK, "Sat 4 Jul 2026 04:05 EDT"),
        (utc("2027-03-28T00:59"), BERLIN, "Sun 28 Mar 2027 01:59 CET"),
        (utc("2027-03-28T01:00"), BERLIN, "Sun 28 Mar 2027 03:00 CEST"),
        (utc("2026-12-05T21:00"), KOLKATA, "Sun 6 Dec 2026 02:30 IST"),
        (utc("2026-12-05T21:00"), ZoneInfo("UTC"), "Sat 5 Dec 2026 21:00 UTC"),
        (datetime(2026, 12, 5, 16, 0, tzinfo=NEW_YORK), BERLIN, "Sat 5 Dec 2026 22:00 CET"),
    ],
    ids=[
        "berlin_winter",
        "ny_winter",
        "ny_previous_local_day",
        "berlin_summer",
        "ny_summer",
        "berlin_spring_before_gap",
        "berlin_spring_after_gap",
        "kolkata_half_hour",
        "utc",
        "aware_non_utc_input",
    ],
)
def test_format_local(ts, zone, expected):
    assert format_local(ts, zone) == expected


def test_format_local_refuses_naive():
    with pytest.raises(ValueError, match="aware"):
        format_local(datetime(2026, 12, 5, 21, 0), BERLIN)


ACME = Tenant(id="acme", name="ACME Corp", zone=NEW_YORK)
NAMELESS = Tenant(id="beta", name="", zone=BERLIN)
START = utc("2026-12-05T21:00")
END = utc("2026-12-06T01:00")


def fill(text: str, tenant: Tenant | None, zone: ZoneInfo) -> str:
    return render(
        text,
        provider="Example Cloud",
        title="Storage firmware update",
        start=START,
        end=END,
        window="storage-firmware",
        tenant=tenant,
        zone=zone,
    )


@pytest.mark.parametrize(
    "text, tenant, zone, expected",
    [
        (
            "{provider} is under scheduled maintenance until {end}.",
            ACME,
            NEW_YORK,
            "Example Cloud is under scheduled maintenance until Sat 5 Dec 2026 20:00 EST.",
        ),
        (
            "{provider} is under scheduled maintenance until {end}.",
            ACME,
            BERLIN,
            "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET.",
        ),
        (
            "{title} ({window}) for {tenant}: {start} to {end}",
            ACME,
            NEW_YORK,
            "Storage firmware update (storage-firmware) for ACME Corp: Sat 5 Dec 2026 16:00 EST to "
            "Sat 5 Dec 2026 20:00 EST",
        ),
        ("Dear {tenant}", NAMELESS, BERLIN, "Dear beta"),
        ("Dear {tenant}.", None, BERLIN, "Dear ."),
        ("{{end}} is {end}", ACME, BERLIN, "{end} is Sun 6 Dec 2026 02:00 CET"),
        ("no placeholders", ACME, BERLIN, "no placeholders"),
        # Unchecked bad templates come back unchanged instead of raising.
        ("until {foo}", ACME, BERLIN, "until {foo}"),
        ("until {end", ACME, BERLIN, "until {end"),
        ("until {}", ACME, BERLIN, "until {}"),
        ("in {start.year}", ACME, BERLIN, "in {start.year}"),
        ("{end:d}", ACME, BERLIN, "{end:d}"),
    ],
    ids=[
        "provider_message_new_york",
        "provider_message_berlin",
        "every_placeholder",
        "tenant_without_name",
        "no_tenant",
        "escaped_braces",
        "plain_text",
        "bad_unknown_unchanged",
        "bad_unbalanced_unchanged",
        "bad_positional_unchanged",
        "bad_attribute_unchanged",
        "bad_format_spec_unchanged",
    ],
)
def test_render(text, tenant, zone, expected):
    assert fill(text, tenant, zone) == expected


def test_render_does_not_reinterpret_braces_in_values():
    out = render(
        "{provider}: {title}", provider="{end}", title="{0}", start=START, end=END, window="w", tenant=None, zone=BERLIN
    )
    assert out == "{end}: {0}"


@given(text=st.text(), tenant_name=st.text(), offset=st.integers(min_value=-(10**6), max_value=10**6))
def test_render_never_raises(text, tenant_name, offset):
    start = START + timedelta(minutes=offset)
    tenant = Tenant(id="t", name=tenant_name, zone=NEW_YORK)
    out = render(
        text,
        provider="P",
        title="T",
        start=start,
        end=start + timedelta(hours=1),
        window="w",
        tenant=tenant,
        zone=NEW_YORK,
    )
    assert isinstance(out, str)
    if check_template(text) is not None:
        assert out == text
