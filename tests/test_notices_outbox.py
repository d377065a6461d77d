"""The outbox worker and the completed summary, in-process with an injected clock: a real
Daemon on a SQLite file and a real webhook receiver (pytest-httpserver), no sleeping.

The end-to-end file (test_notices_e2e.py) runs the same paths through a `maintd run`
subprocess; here the clock is ours, so the rules about time are checked exactly.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock

from scheduler.daemon import Daemon

UTC = UTC
START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def write(tmp_path: Path, url: str, *, then: str = "stop", extra: str = "") -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(f"""\
version: 1
provider: {{name: Example Cloud, timezone: UTC}}
tenants:
  - {{id: acme, webhook: {{url: "{url}", secret: "{SECRET}"}}}}
  - {{id: beta, webhook: {{url: "{url}", secret: "{SECRET}"}}}}
notifiers:
  retry_base: 10s
  max_attempts: 5
  max_age: 2h
{extra}
policies:
  standard:
    default: deny
    rules:
      - allow: {{kind: [restore]}}
windows:
  - id: fw
    start: 2026-12-05T21:00:00Z
    duration: 4h
    notify: [1h]
    policy: standard
    drain: {{grace: 10m, then: {then}}}
daemon: {{database: maintd.db}}
""")
    return path


@pytest.fixture
def make(tmp_path, httpserver):
    made = []

    def _make(status: int = 204, **kw) -> tuple[Daemon, Clock]:
        httpserver.expect_request("/hook", method="POST").respond_with_data("", status=status)
        clock = Clock(START - timedelta(minutes=30))
        d = Daemon(str(write(tmp_path, httpserver.url_for("/hook"), **kw)), clock=clock, env={})
        made.append(d)
        return d, clock

    yield _make
    for d in made:
        d.stop()


def by_tenant(d: Daemon, kind: str) -> dict[str, dict]:
    return {r["tenant"]: r for r in d.store.notices() if r["kind"] == kind}


def test_a_failed_send_is_retried_at_the_backoff_with_the_same_id(make, httpserver):
    d, clock = make(status=503)
    d.reconciler.tick()
    assert d.outbox.deliver_due() == 2
    rows = by_tenant(d, "scheduled")
    for r in rows.values():
        assert r["status"] == "pending" and r["attempts"] == 1 and "HTTP 503" in r["last_error"]
        # retry_base 10s as a schedule (SPEC 4.1): the first wait is 10s, within ±10 % jitter
        assert clock.now + timedelta(seconds=9) <= r["next_attempt_at"] <= clock.now + timedelta(seconds=11)
    assert d.outbox.deliver_due() == 0  # not due yet
    clock.now += timedelta(seconds=11)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    assert d.outbox.deliver_due() == 2
    assert {r["status"] for r in by_tenant(d, "scheduled").values()} == {"sent"}
    ids = [req.headers["webhook-id"] for req, _ in httpserver.log]
    assert len(ids) == 4 and len(set(ids)) == 2  # one id per notice, on every try


def test_a_delivery_older_than_max_age_fails_without_being_sent(make, httpserver):
    d, clock = make(status=503)
    d.reconciler.tick()
    d.outbox.deliver_due()
    clock.now += timedelta(hours=2)  # notifiers.max_age
    httpserver.clear_log()
    assert d.outbox.deliver_due() == 2
    for r in by_tenant(d, "scheduled").values():
        assert r["status"] == "failed" and "max_age" in r["last_error"]
    assert httpserver.log == []


def test_a_scheduled_notice_is_never_sent_after_the_start(make, httpserver):
    d, clock = make(status=503)
    d.reconciler.tick()
    d.outbox.deliver_due()
    clock.now = START + timedelta(seconds=1)
    rows = d.store.claim_batch(clock.now, worker=d.presence.instance_id, limit=10, lease=timedelta(minutes=2))
    for row in rows:  # claimed just before the start's tick could supersede them
        d.outbox.deliver(row)
    d.outbox.results.write()
    assert {r["status"] for r in by_tenant(d, "scheduled").values()} == {"superseded"}
    assert len(httpserver.log) == 2  # only the first, failed, tries


def test_the_start_supersedes_undelivered_scheduled_notices(make):
    d, clock = make(status=503)
    d.reconciler.tick()
    d.outbox.deliver_due()
    clock.now = START + timedelta(seconds=1)
    d.reconciler.tick()
    assert {r["status"] for r in by_tenant(d, "scheduled").values()} == {"superseded"}
    assert {r["status"] for r in by_tenant(d, "started").values()} == {"pending"}


@pytest.mark.parametrize(
    "then, expected",
    [
        ("stop", {"drained": 1, "stopped": 1}),
        ("keep", {"drained": 2, "stopped": 0}),
    ],
    ids=["then_stop", "then_keep"],
)
def test_completed_summary_is_per_tenant(make, httpserver, then, expected):
    d, clock = make(then=then)
    d.reconciler.tick()
    assert d.outbox.deliver_due() == 2  # scheduled
    clock.now = START - timedelta(seconds=10)
    finishes = d.gate.admit("acme", "backup")["lease"]
    overruns = d.gate.admit("acme", "backup")["lease"]
    restore = d.gate.admit("beta", "restore")["lease"]
    running = {finishes, overruns, restore}

    def advance(to: datetime) -> None:  # the jobs heartbeat as `maintd exec` would
        while clock.now < to:
            clock.now = min(to, clock.now + timedelta(seconds=20))
            for lease in running:
                d.gate.heartbeat(lease)

    advance(START + timedelta(seconds=1))
    d.reconciler.tick()  # started: acme's backups are told to drain, beta's restore may run
    for tenant, kind in [("acme", "backup"), ("acme", "agent-backup"), ("acme", "backup"), ("beta", "backup")]:
        assert d.gate.admit(tenant, kind)["admitted"] is False
    advance(START + timedelta(minutes=5))
    d.gate.release(finishes)  # within the 10 min grace
    running.discard(finishes)
    advance(START + timedelta(minutes=12))  # `overruns` runs past its deadline
    d.gate.release(restore)
    running.discard(restore)
    clock.now = START + timedelta(hours=4, seconds=1)
    d.reconciler.tick()  # completed
    done = by_tenant(d, "completed")
    acme, beta = done["acme"]["payload"]["summary"], done["beta"]["payload"]["summary"]
    assert acme == {
        "actual_start": "2026-12-05T21:00:00Z",
        "actual_end": "2026-12-06T01:00:00Z",
        "refused": {"agent-backup": 1, "backup": 2},
        **expected,
    }
    assert beta == {
        "actual_start": "2026-12-05T21:00:00Z",
        "actual_end": "2026-12-06T01:00:00Z",
        "refused": {"backup": 1},
        "drained": 0,
        "stopped": 0,
    }
    assert d.outbox.deliver_due() == 2 + 2  # started and completed, to both
    bodies = [req.get_json() for req, _ in httpserver.log if req.get_json()["type"] == "maintenance.completed"]
    assert {b["tenant"]: b["summary"]["refused"] for b in bodies} == {
        "acme": {"agent-backup": 1, "backup": 2},
        "beta": {"backup": 1},
    }


def test_a_late_start_reports_when_maintenance_really_began(make):
    d, clock = make()
    d.reconciler.tick()
    clock.now = START + timedelta(minutes=20)  # maintd was down at the start
    d.reconciler.tick()
    clock.now = START + timedelta(hours=4, minutes=30)  # and at the end
    d.reconciler.tick()
    summary = by_tenant(d, "completed")["acme"]["payload"]["summary"]
    assert summary["actual_start"] == "2026-12-05T21:20:00Z"
    assert summary["actual_end"] == "2026-12-06T01:30:00Z"
