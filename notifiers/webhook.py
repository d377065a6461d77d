"""Webhook: the SPEC section 4 JSON, signed per Standard Webhooks (standardwebhooks.com)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from scheduler.model import Notice, Tenant, WebhookSettings

from .aio import LoopClient, shared_loop
from .base import DeliveryError
from .http import HttpClient, Response, origin, raise_for_response

USER_AGENT = "maintd-webhook/1"

# SPEC 4 retries every non-2xx answer; only these cannot turn into a success by retrying.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410, 413, 422})


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookNotifier:
    channel = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        http: HttpClient | LoopClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        # One event loop and pool for every delivery thread (fan-out: see notifiers.aio).
        self.http = http or shared_loop()
        self.clock = clock  # the signature timestamp is the send time; tests may pin it

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.webhook is not None

    def target_for(self, tenant: Tenant) -> str | None:
        """The tenant's URL as ``notices`` shows it (see :func:`webhook_target`)."""
        return webhook_target(tenant.webhook.url) if tenant.webhook is not None else None

    @property
    def aio(self) -> LoopClient | None:
        """The event-loop client when sends can run as coroutines (:meth:`send_async`)."""
        return self.http if isinstance(self.http, LoopClient) else None

    def send(self, notice: Notice, tenant: Tenant) -> None:
        url, body, headers, where = self._signed(notice, tenant)
        timeout = self.settings.timeout.total_seconds()
        check = functools.partial(self.check, where=where)
        self.http.request("POST", url, content=body, headers=headers, timeout=timeout, where=where, check=check)

    async def send_async(self, notice: Notice, tenant: Tenant) -> None:
        """:meth:`send` as a coroutine on :attr:`aio`'s loop (the outbox's fan-out path)."""
        url, body, headers, where = self._signed(notice, tenant)
        assert self.aio is not None
        timeout = self.settings.timeout.total_seconds()
        response = await self.aio.arequest("POST", url, content=body, headers=headers, timeout=timeout, where=where)
        self.check(response, where)

    def _signed(self, notice: Notice, tenant: Tenant) -> tuple[str, bytes, dict[str, str], str]:
        """The URL, body, signed headers and the error prefix of one send."""
        hook = tenant.webhook
        if hook is None:
            raise DeliveryError(f"tenant {tenant.id} has no webhook", permanent=True)
        body = json.dumps(notice.payload(), separators=(",", ":")).encode()
        timestamp = int(self.clock())
        try:
            signature = sign(hook.secret, notice.id, timestamp, body)
        except (ValueError, TypeError):
            # binascii.Error is a ValueError; its text never contains the secret, but say less.
            raise DeliveryError(
                f"webhook secret of tenant {tenant.id} is not valid base64 after 'whsec_'", permanent=True
            ) from None
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": notice.id,  # the same on every retry: receivers deduplicate on it
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        return hook.url, body, headers, f"webhook {origin(hook.url)}"  # scheme and host: paths often embed tokens

    def check(self, response: Response, where: str) -> None:
        """How a webhook answer is judged: the helper's default (2xx ok, 410 gone, Retry-After
        read), except that only ``PERMANENT_STATUSES`` are permanent (a 409 or a 302 may
        heal on the receiver's side; SPEC 4 retries them)."""
        try:
            raise_for_response(response, where=where)
        except DeliveryError as exc:
            exc.permanent = exc.status in PERMANENT_STATUSES
            raise


def webhook_target(url: str) -> str:
    """``https://hooks.example.com/maint/a...z``: no credentials, no query or fragment, and a
    long path segment (a token in the path) cut to its first and last character, as a
    ``json://`` chat URL to the same place is shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not host:
        return "(invalid URL)"
    host = f"[{host}]" if ":" in host else host
    path = "/".join(f"{seg[0]}...{seg[-1]}" if len(seg) > 12 else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, host + port, path, "", ""))
