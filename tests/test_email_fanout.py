"""Email fan-out (issue 19): SMTP connections reused per relay (bounded), a dropped one
replaced, the relay's rate limit (``notifiers.email.rate``) held, against a real aiosmtpd."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from notifiers import EmailNotifier
from notifiers.smtp_pool import RateLimit, SmtpPool
from scheduler import config
from scheduler.errors import ConfigError, DeliveryError

try:
    from notifier_fixtures import Inbox, SmtpServer, free_port, make_notice, make_tenant, renderer, smtp_server  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import Inbox, SmtpServer, free_port, make_notice, make_tenant, renderer, smtp_server  # noqa: F401


class CountingInbox(Inbox):
    """Counts SMTP sessions (one EHLO each) and can hang up after a session's first message."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0
        self.hang_up = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if self.hang_up:
            asyncio.get_running_loop().call_later(0.01, server.transport.close)  # the relay drops the session
        return answer


@pytest.fixture
def relay():
    inbox = CountingInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(inbox=inbox, port=port)
    finally:
        controller.stop()


def notices(n: int):
    return [make_notice(tenant=f"t{i}", sequence=i) for i in range(n)]


def test_messages_reuse_one_connection(relay, renderer):
    notifier = EmailNotifier(relay.settings(), renderer)
    for notice in notices(5):
        notifier.send(notice, make_tenant())
    assert len(relay.inbox.messages) == 5
    assert relay.inbox.sessions == 1  # before: one session per message
    notifier.close()


def test_concurrent_senders_share_a_bounded_pool(relay, renderer):
    notifier = EmailNotifier(relay.settings(), renderer, connections=2)
    errors: list[BaseException] = []

    def send(batch) -> None:
        try:
            for notice in batch:
                notifier.send(notice, make_tenant())
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    all_notices = notices(12)
    threads = [threading.Thread(target=send, args=(all_notices[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and len(relay.inbox.messages) == 12
    assert 1 <= relay.inbox.sessions <= 2  # never more connections than the pool's size
    assert notifier.pool.opened == relay.inbox.sessions


def test_a_dropped_connection_is_replaced_and_the_message_retried(relay, renderer):
    relay.inbox.hang_up = True
    notifier = EmailNotifier(relay.settings(), renderer)
    first, second = notices(2)
    notifier.send(first, make_tenant())
    time.sleep(0.2)  # the relay has hung up by now
    with pytest.raises(DeliveryError) as info:
        notifier.send(second, make_tenant())  # on the reused connection, which the relay drops
    assert info.value.permanent is False  # so the outbox retries it per notifiers.retry
    notifier.send(second, make_tenant())  # the retry: a fresh connection
    assert [m["Message-ID"] for m in relay.inbox.messages] == [
        f"<{first.id}@example.com>",
        f"<{second.id}@example.com>",
    ]
    assert relay.inbox.sessions == 2 and notifier.pool.opened == 2


def test_an_idle_connection_is_not_reused():
    clock = [0.0]
    opened: list[object] = []

    class Fake:
        closed = False

        def close(self) -> None:
            self.closed = True

    def connect():
        opened.append(Fake())
        return opened[-1]

    pool = SmtpPool(connect, size=2, idle_max=30, clock=lambda: clock[0])  # type: ignore[arg-type]
    with pool.connection():
        pass
    clock[0] = 10.0
    with pool.connection():
        pass
    assert len(opened) == 1
    clock[0] = 45.0  # 35 s idle: the relay has likely dropped it
    with pool.connection():
        pass
    assert len(opened) == 2 and opened[0].closed


def test_rate_limit_holds_against_a_real_relay(relay, renderer):
    n, rate = 6, 10.0
    limited = EmailNotifier(relay.settings(rate=rate), renderer)
    started = time.monotonic()
    for notice in notices(n):
        limited.send(notice, make_tenant())
    elapsed = time.monotonic() - started
    assert len(relay.inbox.messages) == n
    assert elapsed >= (n - 1) / rate  # starts spaced 1/rate apart: 0.5 s for 6 at 10/s

    unlimited = EmailNotifier(relay.settings(), renderer)
    started = time.monotonic()
    for notice in notices(n):
        unlimited.send(notice, make_tenant())
    assert time.monotonic() - started < (n - 1) / rate  # without the limit the same sends are faster


def test_rate_limit_spaces_concurrent_starts():
    clock, waits = [0.0], []
    limit = RateLimit(50.0, clock=lambda: clock[0], sleep=waits.append)
    assert [limit.wait() for _ in range(4)] == pytest.approx([0.0, 0.02, 0.04, 0.06])
    clock[0] = 1.0  # a quiet second: no backlog carried over
    assert limit.wait() == 0.0
    assert RateLimit(None).wait() == 0.0


BASE = """\
version: 1
provider:
  name: Example Cloud
tenants:
  - id: acme
notifiers:
  email:
    host: smtp.example.com
"""


def load(tmp_path: Path, rate: str):
    (tmp_path / "windows.yaml").write_text(BASE + textwrap.indent(f"rate: {rate}\n", "    "))
    return config.load(str(tmp_path / "windows.yaml"), env={})


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("50/s", 50.0), ("100/m", 100 / 60), ("3600/h", 1.0), ("2.5/s", 2.5)],
    ids=["per_second", "per_minute", "per_hour", "fraction"],
)
def test_rate_config(tmp_path, rate, per_second):
    assert load(tmp_path, rate).notifiers.email.rate == pytest.approx(per_second)


@pytest.mark.parametrize("rate", ["fast", "50", "0/s", "50/d", "-1/s"], ids=["word", "no_unit", "zero", "days", "neg"])
def test_malformed_rate_is_an_error_at_its_line(tmp_path, rate):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, rate)
    (issue,) = [str(i) for i in info.value.issues]
    assert ":9:11: expected a rate like 50/s, 100/m or 1000/h (more than 0), got" in issue


def test_rate_defaults_to_unlimited_and_connections_to_16(tmp_path):
    (tmp_path / "windows.yaml").write_text(BASE)
    email = config.load(str(tmp_path / "windows.yaml"), env={}).notifiers.email
    assert (email.rate, email.connections) == (None, 16)


def test_connections_config_bounds_the_pool(tmp_path, renderer):
    (tmp_path / "windows.yaml").write_text(BASE + "    connections: 3\n")
    email = config.load(str(tmp_path / "windows.yaml"), env={}).notifiers.email
    assert EmailNotifier(email, renderer).pool.size == 3
    (tmp_path / "windows.yaml").write_text(BASE + "    connections: 0\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "windows.yaml"), env={})
    assert ":9:18: " in str(info.value.issues[0])


def test_a_closed_pool_quits_connections_as_they_come_back(smtp_server, renderer):  # noqa: F811
    """A reload closes the old email notifier's pool while a send may be in flight: that
    connection is said goodbye to when the send is done instead of idling forever."""
    pool = EmailNotifier(smtp_server.settings(), renderer).pool
    with pool.connection(timeout=5) as in_flight:
        pool.close()
        assert in_flight.noop()[0] == 250  # still usable for the send under way
    assert in_flight.sock is None and pool._idle == []  # quit once back
    with pool.connection(timeout=5) as later:  # a closed pool still sends, and keeps nothing
        assert later.noop()[0] == 250
    assert later.sock is None and pool._idle == [] and pool.opened == 2
