"""Webhook: the SPEC section 4 JSON, signed per Standard Webhooks (standardwebhooks.com)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from scheduler.errors import DeliveryError
from scheduler.model import Notice, Tenant, WebhookSettings

USER_AGENT = "maintd-webhook/1"

# Retrying cannot turn these into a success; everything else non-2xx may (SPEC: retried).
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
        session: requests.Session | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._shared = session  # a caller's session (tests) is used by every thread
        self._local = threading.local()
        self.clock = clock  # the signature timestamp is the send time; tests may pin it

    @property
    def session(self) -> requests.Session:
        """One pooled session per delivery thread: a Session is not thread-safe, and one
        shared pool of 10 connections would drop and reopen connections under many senders."""
        if self._shared is not None:
            return self._shared
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            # Without proxy or CA-bundle variables, reading the environment on every request
            # (as requests does) only costs time: ~6% of a send's CPU (benchmarks/notify_bench.py).
            session.trust_env = _environment_matters()
        return session

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.webhook is not None

    def send(self, notice: Notice, tenant: Tenant) -> None:
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
        response = self._post(hook.url, body, headers)
        self._check(response, hook.url)

    def _post(self, url: str, body: bytes, headers: dict) -> requests.Response:
        """The one outgoing HTTP call: fixed timeout, no redirects, errors mapped."""
        where = _origin(url)
        timeout = self.settings.timeout.total_seconds()
        try:
            # A redirected POST turns into a GET in requests; a receiver that moved must say
            # so with a status we report, not have us drop the body on the floor.
            return self.session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            raise DeliveryError(f"webhook {where}: no response within {timeout:g}s", permanent=False) from None
        except requests.ConnectionError as exc:
            raise DeliveryError(f"webhook {where}: cannot connect ({_reason(exc)})", permanent=False) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise DeliveryError(f"webhook {where}: invalid URL ({type(exc).__name__})", permanent=True) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"webhook {where}: {type(exc).__name__}", permanent=False) from None

    def _check(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        excerpt = " ".join(response.text[:200].split())
        detail: dict = {"status": status}
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():
            detail["retry_after"] = int(retry_after)
        raise DeliveryError(
            f"webhook {_origin(url)} answered HTTP {status}" + (f": {excerpt}" if excerpt else ""),
            permanent=status in PERMANENT_STATUSES,
            detail=detail,
        )


_ENV_SETTINGS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle", "netrc")


def _environment_matters() -> bool:
    """True when the environment holds settings requests would apply to a webhook POST."""
    return any(name.lower() in _ENV_SETTINGS for name in os.environ)


def _origin(url: str) -> str:
    # Scheme and host only: paths, queries and userinfo of webhook URLs often embed tokens.
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if host else "(invalid URL)"


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "certificate verify failed",
        "Connection reset",
    ):
        if marker in text:
            return marker
    return type(exc).__name__
