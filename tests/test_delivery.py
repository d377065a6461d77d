"""Delivery you can count on (SPEC 4.1): the retry schedule, 410 Gone, resends, superseded
vs in flight at the start, a slow tenant beside a healthy one, and crash recovery.

In-process parts run a real Daemon on a SQLite file with an injected clock against real
receivers on loopback (pytest-httpserver, http.server); the crash test kills a real
`maintd run` subprocess with SIGKILL and restarts it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import TOKEN, Clock
from fastapi.testclient import TestClient
from werkzeug import Request, Response

from scheduler.api import create_app
from scheduler.daemon import Daemon
from scheduler.runtime.settings import Settings

START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"j" * 32).decode()


def config(tmp_path: Path, urls: dict[str, str], *, notifiers: str = "", windows: str = "", secret=SECRET) -> Path:
    tenants = "\n".join(f'  - {{id: {t}, webhook: {{url: "{u}", secret: "{secret}"}}}}' for t, u in urls.items())
    path = tmp_path / "windows.yaml"
    path.write_text(f"""\
version: 1
provider: {{name: Example Cloud, timezone: UTC}}
tenants:
{tenants}
notifiers:
  retry: {{schedule: [10s, 1m, 5m], max_age: 2h}}
{notifiers}
policies:
  standard: {{default: deny}}
windows:
  - id: fw
    start: {START.isoformat()}
    duration: 4h
    notify: [1h]
    policy: standard
{windows}
daemon: {{database: maintd.db}}
""")
    return path


@pytest.fixture
def make(tmp_path):
    made: list[Daemon] = []

    def _make(urls: dict[str, str], *, now: datetime = START - timedelta(minutes=30), workers: int = 64, **kw):
        clock = Clock(now)
        d = Daemon(
            str(config(tmp_path, urls, **kw)),
            clock=clock,
            env={"MAINTD_TOKEN": TOKEN},
            settings=Settings(workers=workers),
        )
        made.append(d)
        return d, clock

    yield _make
    for d in made:
        d.stop()


def rows(d: Daemon, kind: str = "scheduled") -> dict[str, dict]:
    return {r["tenant"]: r for r in d.store.notices() if r["kind"] == kind}


# --------------------------------------------------------------------------- retry schedule


def test_retry_gaps_follow_the_configured_schedule_within_jitter(make, httpserver):
    """Fails twice then 200: the waits are 10s then 1m (±10 %), every try with the same id."""
    for status in (500, 503):
        httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("", status=status)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("", status=200)
    d, clock = make({"acme": httpserver.url_for("/hook")})
    d.reconciler.tick()
    gaps = []
    for _ in range(3):
        assert d.outbox.deliver_due() == 1
        row = rows(d)["acme"]
        if row["status"] == "sent":
            break
        assert row["status"] == "pending"
        gaps.append((row["next_attempt_at"] - clock.now).total_seconds())
        assert d.outbox.deliver_due() == 0  # not due before its wait
        clock.now = row["next_attempt_at"]
    assert rows(d)["acme"]["status"] == "sent" and rows(d)["acme"]["attempts"] == 3
    assert 9.0 <= gaps[0] <= 11.0 and 54.0 <= gaps[1] <= 66.0, gaps
    ids = {req.headers["webhook-id"] for req, _ in httpserver.log}
    assert len(httpserver.log) == 3 and len(ids) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "low", "high"),
    [(503, "120", 120, 120), (429, "1", 9, 11), (500, "120", 9, 11)],
    ids=["503_longer_honoured", "429_shorter_ignored", "500_not_honoured"],
)
def test_retry_after_is_honoured_on_429_and_503_when_longer(make, httpserver, status, retry_after, low, high):
    httpserver.expect_request("/hook").respond_with_data("", status=status, headers={"Retry-After": retry_after})
    d, clock = make({"acme": httpserver.url_for("/hook")})
    d.reconciler.tick()
    d.outbox.deliver_due()
    wait = (rows(d)["acme"]["next_attempt_at"] - clock.now).total_seconds()
    assert low <= wait <= high


def test_the_last_wait_used_up_is_failed(make, httpserver):
    httpserver.expect_request("/hook").respond_with_data("", status=500)
    d, clock = make({"acme": httpserver.url_for("/hook")})
    d.reconciler.tick()
    for _ in range(4):  # the first try and one after each of the 3 waits
        assert d.outbox.deliver_due() == 1
        clock.now = rows(d)["acme"]["next_attempt_at"]
    assert rows(d)["acme"]["status"] == "failed" and len(httpserver.log) == 4


# --------------------------------------------------------------------------- 410 Gone and resends


def test_410_disables_the_endpoint_until_a_resend(make, httpserver):
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    httpserver.expect_request("/ok").respond_with_data("", status=204)
    url = httpserver.url_for("/gone") + "?token=s3cret"
    d, clock = make({"acme": url, "beta": httpserver.url_for("/ok")})
    d.reconciler.tick()
    assert d.outbox.deliver_due() == 2
    assert rows(d)["acme"]["status"] == "failed" and "410" in rows(d)["acme"]["last_error"]
    st = d.views.status()
    [disabled] = st["disabled_endpoints"]
    assert (disabled["tenant"], disabled["channel"]) == ("acme", "webhook")
    assert "s3cret" not in json.dumps(st) and SECRET not in json.dumps(st) and "/gone" not in disabled["url"]
    d.views.refresh_gauges()
    assert d.metrics.registry.get_sample_value("maintd_endpoints_disabled") == 1

    clock.now = START + timedelta(seconds=1)
    d.reconciler.tick()  # started: acme's endpoint is disabled, so no request
    tries = len(httpserver.log)
    assert d.outbox.deliver_due() == 2
    started = rows(d, "started")
    assert started["acme"]["status"] == "failed" and started["acme"]["last_error"] == "endpoint disabled"
    assert started["beta"]["status"] == "sent"
    assert [req.path for req, _ in httpserver.log[tries:]] == ["/ok"]
    assert d.store.notice_counts()["failed"] == 2

    # A resend of the started notice enables the endpoint again; it delivers with the same id.
    httpserver.clear_all_handlers()
    httpserver.expect_request("/gone").respond_with_data("", status=200)
    notice_id = started["acme"]["notice_id"]
    client = TestClient(create_app(d), headers={"Authorization": f"Bearer {TOKEN}"})
    answer = client.post(f"/v1/notices/{notice_id}/retry")
    assert answer.status_code == 200 and answer.json()["retried"] == 1 and answer.json()["ids"] == [notice_id]
    assert d.views.status()["disabled_endpoints"] == []
    assert rows(d, "started")["acme"]["status"] == "pending" and rows(d, "started")["acme"]["attempts"] == 0
    assert d.outbox.deliver_due() == 1
    assert rows(d, "started")["acme"]["status"] == "sent"
    assert httpserver.log[-1][0].headers["webhook-id"] == notice_id
    assert client.post(f"/v1/notices/{notice_id}/retry").status_code == 404  # nothing failed any more
    assert client.post("/v1/notices/retry", json={"failed": True}).json() == {
        "retried": 1,  # the scheduled notice, still failed from the 410
        "ids": [rows(d)["acme"]["notice_id"]],
        "deliveries": [rows(d)["acme"]["id"]],
    }
    assert client.post("/v1/notices/retry", json={"failed": True}).status_code == 404


def test_a_changed_url_or_secret_enables_the_endpoint(make, httpserver, tmp_path):
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    d, clock = make({"acme": httpserver.url_for("/gone")})
    d.reconciler.tick()
    d.outbox.deliver_due()
    assert len(d.views.status()["disabled_endpoints"]) == 1
    config(tmp_path, {"acme": httpserver.url_for("/gone")}, secret=OTHER_SECRET)
    assert d.reload() is None
    assert d.views.status()["disabled_endpoints"] == []


# --------------------------------------------------------------------------- superseded vs in flight


def test_a_send_in_flight_at_the_start_is_recorded_as_what_it_was(make, httpserver):
    """acme's send is on the wire when the window starts: it finishes and counts as sent;
    beta's was not begun (one delivery slot): it is superseded and never sent."""
    release, arrived = threading.Event(), threading.Event()

    def slow(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response("", status=204)

    httpserver.expect_request("/slow").respond_with_handler(slow)
    httpserver.expect_request("/ok").respond_with_data("", status=204)
    d, clock = make({"acme": httpserver.url_for("/slow"), "beta": httpserver.url_for("/ok")}, workers=1)
    d.reconciler.tick()
    assert d.outbox.deliver_due(wait=False) == 1  # acme only: one slot
    assert arrived.wait(5)
    clock.now = START + timedelta(seconds=1)
    d.reconciler.tick()  # the start
    release.set()
    deadline = time.monotonic() + 5
    while d.outbox.slots.free() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.outbox.results.write()
    assert {t: r["status"] for t, r in rows(d).items()} == {"acme": "sent", "beta": "superseded"}
    counts = d.views.status()["notices"]
    assert counts["superseded"] == 1 and counts["sent"] == 1
    d.views.refresh_gauges()
    assert d.metrics.registry.get_sample_value("maintd_notices_superseded") == 1
    assert all(req.path == "/slow" for req, _ in httpserver.log)  # beta was never told "scheduled"


# --------------------------------------------------------------------------- a slow tenant


class Receivers(BaseHTTPRequestHandler):
    """/slow trickles one byte every 0.3 s and never finishes; /ok answers 204 at once.
    Counts, per webhook id, how many copies of the slow delivery are open at once."""

    lock = threading.Lock()
    slow_open: dict[str, int] = {}
    slow_max = 0
    slow_total = 0
    ok_at: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        if self.path.startswith("/ok"):
            cls.ok_at.append(time.monotonic())
            self.send_response(204)
            self.end_headers()
            return
        key = self.headers["webhook-id"]
        with cls.lock:
            cls.slow_open[key] = cls.slow_open.get(key, 0) + 1
            cls.slow_total += 1
            cls.slow_max = max(cls.slow_max, cls.slow_open[key])
        try:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass
        finally:
            with cls.lock:
                cls.slow_open[key] -= 1

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receivers() -> Iterator[str]:
    Receivers.slow_max = Receivers.slow_total = 0
    Receivers.slow_open = {}
    Receivers.ok_at = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receivers)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_trickling_receiver_never_stalls_a_healthy_one(make, receivers):
    now = datetime.now(UTC)
    more = "\n".join(
        f"  - {{id: fw{i}, start: {(now + timedelta(minutes=30)).isoformat()}, duration: 1h, notify: [1h], "
        "policy: standard}"
        for i in range(3)
    )
    d, _ = make(
        {"slow": receivers + "/slow", "healthy": receivers + "/ok"},
        now=now,
        notifiers="  webhook: {timeout: 2s}",
        windows=more,
    )
    d.clock = lambda: datetime.now(UTC)  # type: ignore[method-assign]
    d.outbox.clock = d.clock
    d.reconciler.clock = d.clock
    began = time.monotonic()
    d.reconciler.tick()
    stop = threading.Event()
    threads = [threading.Thread(target=f, args=(stop,), daemon=True) for f in (d.outbox.run, d.outbox.run_writer)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 5
        while len(Receivers.ok_at) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(Receivers.ok_at) == 3  # the healthy tenant's three notices
        assert max(Receivers.ok_at) - began < 1.5  # on time, while the slow one trickles
        time.sleep(4.5)  # past two of the slow receiver's 2 s deadlines
        assert Receivers.slow_total >= 2  # its deliveries went on, one after another
        assert Receivers.slow_max == 1  # never two copies of one delivery at once
    finally:
        stop.set()
        d.outbox.wake.set()
        for t in threads:
            t.join(10)
    slow = [r for r in d.store.notices() if r["tenant"] == "slow"]
    assert all(r["attempts"] <= 2 for r in slow), [(r["attempts"], r["status"]) for r in slow]


# --------------------------------------------------------------------------- crash recovery


CRASH_CONFIG = """\
version: 1
provider: {{name: Example Cloud, timezone: UTC}}
tenants:
{tenants}
notifiers:
  retry: {{schedule: [1s, 1s, 1s], max_age: 1h}}
policies:
  standard: {{default: deny}}
windows:
  - id: fw
    start: {start}
    duration: 1h
    notify: [1h]
    policy: standard
daemon: {{database: maintd.db, listen: "{{listen}}"}}
"""


class SlowOk(BaseHTTPRequestHandler):
    """Answers 200 after 0.2 s, recording each webhook id and tenant."""

    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        time.sleep(0.2)
        type(self).seen.append((body["tenant"], self.headers["webhook-id"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_restart_takes_back_a_killed_daemons_claims_at_once(daemon_factory):
    SlowOk.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowOk)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    names = [f"t{i:02d}" for i in range(24)]
    tenants = "\n".join(f'  - {{id: {t}, webhook: {{url: "{url}", secret: "{SECRET}"}}}}' for t in names)
    start = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0).isoformat()
    try:
        d = daemon_factory(
            CRASH_CONFIG.format(tenants=tenants, start=start),
            env={"MAINTD_DELIVERY_WORKERS": "4", "MAINTD_CLAIM_LEASE": "120"},  # the lease is not the mechanism
        )
        deadline = time.monotonic() + 15
        while len(SlowOk.seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        d.kill9()  # mid-fan-out: some claims in flight
        assert len({t for t, _ in SlowOk.seen}) < len(names), "the fan-out finished before the kill"
        d.restart()
        restarted = time.monotonic()
        d.wait_for(lambda s: s["notices"]["sent"] == len(names), timeout=15, what="every notice sent")
        assert time.monotonic() - restarted < 10
        ids: dict[str, set[str]] = {}
        for tenant, notice_id in SlowOk.seen:
            ids.setdefault(tenant, set()).add(notice_id)
        assert set(ids) == set(names) and all(len(v) == 1 for v in ids.values())  # one id per tenant
        r = d.cli("notices", "--retry", "--failed", env={"MAINTD_TOKEN": TOKEN})
        assert r.returncode == 1 and "no failed delivery" in r.stderr
        d.stop()
    finally:
        server.shutdown()
        server.server_close()


def test_recover_takes_back_dead_claims_and_never_resends_after_the_start(make, httpserver):
    """A dead predecessor's claims: due again at once before the start; after it, a
    `scheduled` one it had begun to send is not sent again and counts as sent (in doubt)."""
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    d, clock = make({"acme": httpserver.url_for("/hook")})
    d.reconciler.tick()
    lease = timedelta(minutes=2)
    assert len(d.store.claim_batch(clock.now, worker="dead-1", limit=5, lease=lease)) == 1
    assert d.outbox.recover(clock.now) == 1
    assert rows(d)["acme"]["status"] == "pending" and rows(d)["acme"]["claimed_by"] is None
    assert len(d.store.claim_batch(clock.now, worker="dead-2", limit=5, lease=lease)) == 1
    clock.now = START + timedelta(seconds=1)
    assert d.outbox.recover(clock.now) == 1
    row = rows(d)["acme"]
    assert row["status"] == "sent" and row["last_error"].startswith("outcome unknown")
    assert d.outbox.deliver_due() == 0 and len(httpserver.log) == 0  # and nothing goes out after the start
