"""A tenant's calendar feed and the guardrails (SPEC 7): an occurrence that ``blackouts: skip``
leaves a tenant out of is an EXDATE in that tenant's feed, as a freeze-skipped one is;
other tenants, and ``blackouts: warn`` windows, keep the occurrence as an event.

A real daemon on a SQLite file, the real feed route, the feed parsed with icalendar.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest
from starlette.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TOKEN = "guard-feed-token-0123456789abcdefghij"
# Sunday 2026-12-13 03:00 Berlin = 02:00Z: inside acme's blackout, not beta's (beta has none).
SUNDAY = datetime(2026, 12, 13, 2, 0, tzinfo=UTC)
NEXT_SUNDAY = datetime(2026, 12, 20, 2, 0, tzinfo=UTC)
FROZEN_SUNDAY = datetime(2026, 12, 27, 2, 0, tzinfo=UTC)

CONFIG = """\
version: 1
provider: {name: Example Cloud, timezone: Europe/Berlin}
freezes:
  - {id: year-end, start: 2026-12-26T00:00, end: 2026-12-28T00:00}
tenants:
  - id: acme
    blackouts:
      - {start: 2026-12-12T18:00, end: 2026-12-14T06:00}
  - id: beta
windows:
  - id: sunday-skip
    cron: "0 3 * * 0"
    duration: 1h
    blackouts: skip
  - id: sunday-warn
    cron: "0 3 * * 0"
    duration: 1h
"""


@pytest.fixture
def client(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    d = Daemon(str(path), clock=lambda: NOW, env={"MAINTD_TOKEN": TOKEN})
    d.reconciler.tick("test")
    yield d, TestClient(create_app(d), headers={"Authorization": f"Bearer {TOKEN}"})
    d.store.close()


def feed(client, tenant: str, window: str) -> tuple[set[datetime], set[datetime]]:
    """(DTSTARTs, EXDATEs) of ``window``'s events in ``tenant``'s feed, in UTC."""
    daemon, http = client
    resp = http.get(f"/t/{daemon.store.tenant_secret(tenant)}/calendar.ics")
    assert resp.status_code == 200
    events = [e for e in icalendar.Calendar.from_ical(resp.content).walk("VEVENT") if str(e["UID"]).startswith(window)]
    assert events, f"no {window} events in {tenant}'s feed"
    starts = {e.decoded("DTSTART").astimezone(UTC) for e in events}
    exdates: set[datetime] = set()
    for e in events:
        ex = e.get("EXDATE")
        for item in ex if isinstance(ex, list) else [ex] if ex else []:
            exdates |= {d.dt.astimezone(UTC) for d in item.dts}
    return starts, exdates


@pytest.mark.parametrize(
    ("tenant", "window", "listed", "excluded"),
    [
        ("acme", "sunday-skip", {NEXT_SUNDAY}, {SUNDAY, FROZEN_SUNDAY}),  # blackout and freeze: EXDATE
        ("beta", "sunday-skip", {SUNDAY, NEXT_SUNDAY}, {FROZEN_SUNDAY}),  # no blackout: only the freeze
        ("acme", "sunday-warn", {SUNDAY, NEXT_SUNDAY}, {FROZEN_SUNDAY}),  # warn leaves nobody out
    ],
    ids=["skipped_tenant_gets_exdate", "other_tenant_keeps_event", "warn_keeps_event"],
)
def test_blackout_skip_is_an_exdate_in_that_tenants_feed(client, tenant, window, listed, excluded):
    starts, exdates = feed(client, tenant, window)
    assert listed <= starts
    assert not (excluded & starts)
    assert exdates & {SUNDAY, FROZEN_SUNDAY} == excluded
