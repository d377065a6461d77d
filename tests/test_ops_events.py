"""The provider's room hears a failing end check and a failing integration (SPEC 4.2
``provider.ops``), with the window and what to do, once each; an event the room does not
list is never sent.

Real parts: Apprise posts ``json://`` to a local HTTP receiver, the end check is a real
``false`` process, the integration is Alertmanager's API client against the receiver (which
answers 500), the store a real SQLite file. First in process with an injected clock
(``Daemon(...)`` wires the parts as ``maintd run`` does); then once through ``maintd run``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock, iso_in
from test_chat_e2e import Receiver

from scheduler.daemon import Daemon
from scheduler.runtime.ops import OPS_TENANT

TOKEN = "ops-events-token-0123456789abcdefgh"
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
START, END = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)

CONFIG = """\
version: 1
daemon: {{listen: "{{listen}}", database: maintd.db}}
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  integrations: [am]
  ops:
    urls: ["json://127.0.0.1:{port}/ops"]
    events: {events}
tenants:
  - {{id: acme}}
  - {{id: beta}}
integrations:
  am: {{type: alertmanager, url: "http://127.0.0.1:{port}/fail", matchers: ['cluster="eu-1"'], ahead: 1h}}
windows:
  - id: fw
    title: Storage firmware
    start: {start}
    end: {end}
    end_check: {{run: ["false"], every: {every}, max: {max}}}
"""


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def ops_texts(receiver: Receiver) -> list[str]:
    """``title\\nmessage`` of each message the room got (Apprise's json:// body)."""
    out = []
    for _path, _headers, body in receiver.posts("/ops"):
        message = json.loads(body)
        out.append(f"{message['title']}\n{message['message']}")
    return out


def until(what: str, probe: Callable[[], object], timeout: float) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_daemon(tmp_path: Path, receiver: Receiver, events: str) -> tuple[Daemon, Clock]:
    text = CONFIG.format(
        port=receiver.port, events=events, start=START.isoformat(), end=END.isoformat(), every="1m", max="2m"
    )
    path = tmp_path / "windows.yaml"
    path.write_text(text.replace("{listen}", "127.0.0.1:1"))
    clock = Clock(T0)
    return Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN}), clock


def send_ops(d: Daemon, count: int) -> list[dict]:
    """Wait until ``count`` ops rows are queued (emit writes on the ops thread), send them."""
    rows = until(
        f"{count} ops rows",
        lambda: len(r := [x for x in d.store.notices(limit=1000) if x["tenant"] == OPS_TENANT]) >= count and r,
        5,
    )
    d.outbox.deliver_due()
    return rows  # type: ignore[return-value]


def test_the_room_hears_a_failing_integration_and_end_check_once_each(tmp_path, receiver):
    d, clock = make_daemon(tmp_path, receiver, "[end_check_failing, integration_failed]")
    try:
        d.reconciler.tick("test")
        assert d.integrations.run_due() == 1  # the silence is due an hour ahead: now; 500
        send_ops(d, 1)
        (integration,) = until("the integration message", lambda: ops_texts(receiver), 5)  # type: ignore[misc]
        assert integration.startswith("[Example Cloud] Integration failed: Storage firmware\n")
        assert "am (alertmanager) could not apply for **Storage firmware** (`fw`)" in integration
        assert "answered HTTP 501" in integration  # the receiver has no GET: Alertmanager's first call fails
        assert "**When:** Wed 10 Mar 2027 13:10 CET to Wed 10 Mar 2027 13:20 CET (Europe/Berlin)" in integration
        assert "**Tenants:** 2 tenant(s): acme, beta" in integration
        assert "**To do:** Check the integration's credentials and reachability" in integration

        # A second failure of the same target: the room heard it already
        clock.now = T0 + timedelta(minutes=5)
        d.integrations.run_due()
        for at in (START, START + timedelta(minutes=1), END):  # started and ended are not listed
            clock.now = at
            d.reconciler.tick("test")
        assert d.effects.run_due() == 1  # the end check fails: extended by 1m
        rows = send_ops(d, 2)
        assert sorted(r["lead"] for r in rows) == ["end_check_failing", "integration_failed"]
        texts = until("the end check message", lambda: len(t := ops_texts(receiver)) >= 2 and t, 5)
        (check,) = [t for t in texts if "End check failing" in t]  # type: ignore[union-attr]
        assert check.startswith("[Example Cloud] End check failing: Storage firmware\n")
        assert "The end check of **Storage firmware** (`fw`) fails" in check
        assert "extended to Wed 10 Mar 2027 13:21 CET, at most Wed 10 Mar 2027 13:22 CET" in check
        assert "**Tenants:** 2 tenant(s): acme, beta" in check
        assert "**To do:** Fix what the check tests, or end it anyway with `maintd exit --window fw`." in check
        assert not [t for t in texts if "Maintenance started" in t or "Maintenance ended" in t]  # type: ignore[union-attr]
        assert len(texts) == 2  # type: ignore[arg-type]
        assert d.store.notice_counts() == {} or sum(d.store.notice_counts().values()) == 0  # not tenant notices
    finally:
        d.outbox.shutdown()
        d.ops.shutdown()
        d.store.close()


def test_events_the_room_does_not_list_are_not_queued(tmp_path, receiver):
    d, clock = make_daemon(tmp_path, receiver, "[started]")
    try:
        d.reconciler.tick("test")
        assert d.integrations.run_due() == 1  # fails, but the room does not listen to it
        clock.now = END
        d.reconciler.tick("test")
        assert d.effects.run_due() == 1
        d.ops.shutdown()  # whatever emit queued on the ops thread is written now
        d.outbox.deliver_due()
        ops = [r for r in d.store.notices(limit=1000) if r["tenant"] == OPS_TENANT]
        assert [r["lead"] for r in ops] == ["started"]
        texts = until("the start message", lambda: ops_texts(receiver), 5)
        assert len(texts) == 1 and "Maintenance started: Storage firmware" in texts[0]  # type: ignore[index]
    finally:
        d.outbox.shutdown()
        d.store.close()


@pytest.mark.slow
def test_maintd_run_tells_the_room_of_a_failing_integration_and_end_check(daemon_factory, receiver):
    text = CONFIG.format(
        port=receiver.port,
        events="[end_check_failing, integration_failed]",
        start=iso_in(8),
        end=iso_in(10),
        every="1s",
        max="2s",
    )
    d = daemon_factory(text)
    texts = until(
        "both ops messages",
        lambda: len(t := ops_texts(receiver)) >= 2 and any("End check failing" in x for x in t) and t,
        30,
    )
    assert any(t.startswith("[Example Cloud] Integration failed: Storage firmware") for t in texts), texts  # type: ignore[union-attr]
    assert any("maintd exit --window fw" in t for t in texts), texts  # type: ignore[union-attr]
    d.wait_for(lambda s: s["mode"] == "normal", what="the window to end", timeout=20)
    assert not [t for t in ops_texts(receiver) if "Maintenance started" in t or "Maintenance ended" in t]
    assert d.stop() == 0
