"""Webhook fan-out on the event loop (issue #19): webhook sends are coroutines on one loop,
handed over a claim at a time, so their concurrency is the delivery slots', not the
delivery threads'; and the loop path keeps the outbox's promises (never a ``scheduled``
notice after the start, a crashing notifier is retried, every slot comes back).

Real Daemons on SQLite files with an injected clock, a real threaded HTTP receiver on
loopback that counts how many requests it holds at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TOKEN, Clock
from test_delivery import SECRET, START, config, rows

from scheduler.daemon import Daemon
from scheduler.errors import DeliveryError
from scheduler.runtime.settings import Settings


class SlowReceiver:
    """Answers every POST 200 after ``delay`` seconds; records bodies, headers and the peak
    number of requests held at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.seen: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.now += 1
                    outer.peak = max(outer.peak, outer.now)
                    outer.seen.append((dict(self.headers), body))
                time.sleep(outer.delay)
                with outer.lock:
                    outer.now -= 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the sends connect at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = SlowReceiver(0.3)
    yield r
    r.close()


def _daemon(tmp_path, urls: dict[str, str], **settings) -> tuple[Daemon, Clock]:
    clock = Clock(START - timedelta(minutes=30))
    d = Daemon(str(config(tmp_path, urls)), clock=clock, env={"MAINTD_TOKEN": TOKEN}, settings=Settings(**settings))
    return d, clock


def test_webhook_sends_are_as_concurrent_as_the_slots_not_the_threads(tmp_path, receiver):
    """24 tenants, a receiver that takes 300 ms, ONE delivery thread: on threads this takes
    24 x 0.3 = 7.2 s; on the loop the 24 sends are in flight together."""
    urls = {f"t{i:02d}": f"{receiver.url}/t{i:02d}" for i in range(24)}
    d, _clock = _daemon(tmp_path, urls, workers=32, threads=1)
    try:
        d.reconciler.tick()
        began = time.monotonic()
        assert d.outbox.deliver_due() == 24
        elapsed = time.monotonic() - began
        assert {r["status"] for r in rows(d).values()} == {"sent"}
        assert elapsed < 3.0, elapsed
        assert receiver.peak >= 12, receiver.peak  # one thread: 1
        assert d.outbox.slots.free() == 32  # every slot came back
        headers, body = receiver.seen[0]
        # Signed as on the thread path (Standard Webhooks): verify one.
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        msg = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == expected
    finally:
        d.stop()


def test_slots_bound_the_loop_too(tmp_path, receiver):
    """8 slots: never more than 8 requests at the receiver at once, and all 20 still go out."""
    urls = {f"t{i:02d}": f"{receiver.url}/t{i:02d}" for i in range(20)}
    d, _clock = _daemon(tmp_path, urls, workers=8, threads=8)
    try:
        d.reconciler.tick()
        sent = 0
        deadline = time.monotonic() + 10
        while sent < 20 and time.monotonic() < deadline:
            sent += d.outbox.deliver_due()
        assert sent == 20
        assert 1 <= receiver.peak <= 8, receiver.peak
        assert {r["status"] for r in rows(d).values()} == {"sent"}
    finally:
        d.stop()


def test_a_scheduled_notice_is_not_sent_once_the_start_passed_on_the_loop(tmp_path, receiver):
    """The start passes while a claim is on its way to the loop: the row is superseded, not sent."""
    d, clock = _daemon(tmp_path, {"acme": f"{receiver.url}/acme"})
    try:
        d.reconciler.tick()
        sender = d.outbox.sender
        prepare = sender.prepare

        def prepare_then_start(*args, **kwargs):  # checked before the start, handed over after it
            ready = prepare(*args, **kwargs)
            clock.now = START
            return ready

        sender.prepare = prepare_then_start
        assert d.outbox.deliver_due() == 1
        row = rows(d)["acme"]
        assert row["status"] == "superseded" and "started" in row["last_error"]
        assert receiver.seen == []
    finally:
        d.stop()


def test_a_crashing_async_send_is_retried_and_its_slot_comes_back(tmp_path, receiver):
    d, clock = _daemon(tmp_path, {"acme": f"{receiver.url}/acme", "beta": f"{receiver.url}/beta"}, workers=4)
    try:
        d.reconciler.tick()
        notifier = d.generations.current.notifiers["webhook"]
        real = notifier.send_async

        async def flaky(notice, tenant):
            if tenant.id == "acme":
                raise RuntimeError("bug in a notifier")
            if tenant.id == "beta":
                raise DeliveryError("webhook http://127.0.0.1: HTTP 503", permanent=False)
            return await real(notice, tenant)

        notifier.send_async = flaky
        assert d.outbox.deliver_due() == 2
        got = rows(d)
        assert got["acme"]["status"] == "pending" and "internal error: RuntimeError" in got["acme"]["last_error"]
        assert got["beta"]["status"] == "pending" and "503" in got["beta"]["last_error"]
        assert d.outbox.slots.free() == 4
        notifier.send_async = real  # healed: the retries go out when due
        clock.now = max(r["next_attempt_at"] for r in got.values())
        assert d.outbox.deliver_due() == 2
        assert {r["status"] for r in rows(d).values()} == {"sent"}
    finally:
        d.stop()


def test_a_row_whose_check_hit_a_store_fault_is_let_go_so_its_claim_lapses(tmp_path, receiver, monkeypatch):
    """The store fails while a claimed row is checked: nothing is sent, and the row is no longer
    held (its claim is not extended), so it is claimed again once the claim lapses."""
    import scheduler.runtime.delivery as delivery
    from scheduler.errors import StoreError

    d, clock = _daemon(tmp_path, {"acme": f"{receiver.url}/acme"}, claim_lease=timedelta(seconds=30))
    try:
        d.reconciler.tick()

        def broken(*_args, **_kwargs):
            raise StoreError("database is locked")

        monkeypatch.setattr(delivery, "stale", broken)
        assert d.outbox.deliver_due() == 1
        assert receiver.seen == [] and d.outbox.in_flight() == 0
        assert rows(d)["acme"]["status"] == "sending"
        monkeypatch.undo()
        clock.now += timedelta(seconds=31)  # the claim lapsed: taken again and sent
        assert d.outbox.deliver_due() == 1
        assert rows(d)["acme"]["status"] == "sent"
    finally:
        d.stop()
