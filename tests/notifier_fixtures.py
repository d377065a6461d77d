"""Real receivers for the notifier tests: an aiosmtpd server and pytest-httpserver.

Import the fixtures into a test module (``from notifier_fixtures import ...``); pytest
picks them up from the module's namespace.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from notifiers import EmailNotifier, Renderer, WebhookNotifier
from scheduler.model import EmailSettings, Notice, Tenant, Webhook, WebhookSettings, notice_id

UTC = UTC
START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)  # 22:00 in Berlin, 16:00 in New York
END = START + timedelta(hours=4)
PROVIDER = "Example Cloud"
SMTP_USER, SMTP_PASSWORD = "noc", "s3cret-pass"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tenant(**overrides) -> Tenant:
    base = dict(id="acme", name="ACME Corp", zone=ZoneInfo("Europe/Berlin"), email=("ops@acme.example",), webhook=None)
    base.update(overrides)
    return Tenant(**base)


def make_notice(kind: str = "scheduled", **overrides) -> Notice:
    base = dict(
        kind=kind,
        window="storage-firmware",
        occurrence=START,
        tenant="acme",
        title="Storage firmware update",
        start=START,
        end=END,
        message="Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET.",
        provider=PROVIDER,
        lead="24h" if kind == "scheduled" else None,
        uid="storage-firmware@maintd",
        sequence=0,
    )
    base.update(overrides)
    base.setdefault(
        "id", notice_id(base["window"], base["occurrence"], base["tenant"], kind, base["lead"], base["sequence"])
    )
    return Notice(**base)


# --- SMTP ------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler that keeps what it receives and can be told to refuse."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], bool]] = []  # (from, to, authenticated)
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), bool(session.authenticated)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    # handled=False: let aiosmtpd answer 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int

    def settings(self, **overrides) -> EmailSettings:
        base = dict(
            host="127.0.0.1", port=self.port, sender="Example Cloud NOC <noc@example.com>", timeout=timedelta(seconds=2)
        )
        base.update(overrides)
        return EmailSettings(**base)


def _serve(**kwargs):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(inbox=inbox, port=port)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    yield from _serve()


@pytest.fixture
def smtp_auth_server():
    # Plain-text AUTH is fine on loopback in a test; production uses starttls or ssl.
    yield from _serve(authenticator=_authenticator, auth_require_tls=False)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(PROVIDER)


# --- the contract: one receiver per channel ---------------------------------------------


@dataclass
class Receiver:
    """A channel's notifier wired to a real receiver that can be told how to answer."""

    notifier: object
    tenant: Tenant  # a tenant this channel applies to
    answer: Callable[[str], None]  # "ok" | "permanent" | "temporary"
    received: Callable[[], list]
    without_channel: Tenant = field(default=None)


@pytest.fixture
def email_receiver(smtp_server, renderer) -> Receiver:
    inbox = smtp_server.inbox

    def answer(outcome: str) -> None:
        inbox.rcpt_reply = "550 5.1.1 No such mailbox" if outcome == "permanent" else None
        inbox.data_reply = "451 4.3.0 Try again later" if outcome == "temporary" else None

    tenant = make_tenant()
    return Receiver(
        notifier=EmailNotifier(smtp_server.settings(), renderer),
        tenant=tenant,
        answer=answer,
        received=lambda: inbox.messages,
        without_channel=replace(tenant, email=()),
    )


@pytest.fixture
def webhook_receiver(httpserver) -> Receiver:
    def answer(outcome: str) -> None:
        httpserver.clear_all_handlers()
        status = {"ok": 204, "permanent": 410, "temporary": 503}[outcome]
        httpserver.expect_request("/hooks/maintd", method="POST").respond_with_data("", status=status)

    answer("ok")
    tenant = make_tenant(webhook=Webhook(url=httpserver.url_for("/hooks/maintd"), secret=new_secret()))
    return Receiver(
        notifier=WebhookNotifier(WebhookSettings(timeout=timedelta(seconds=2))),
        tenant=tenant,
        answer=answer,
        received=lambda: [req for req, resp in httpserver.log if resp.status_code < 300],
        without_channel=replace(tenant, webhook=None),
    )
