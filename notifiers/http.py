"""The one HTTP helper for every outgoing call: webhooks, chat channels, integrations.

Like healthchecks' ``HttpTransport``: callers say what to send; this module alone opens
connections, bounds time and memory, and turns failures into ``DeliveryError`` that says
whether a retry can help. A caller changes only how an answer is judged (``check=``).

- One ``httpx.Client`` per ``HttpClient`` (``shared()`` gives the process-wide one): pooled
  connections, thread-safe.
- A TOTAL deadline per request, connect to last body byte: every socket read, write and
  connect gets at most the time left, so a receiver trickling a byte every second cannot
  hold a sender (a per-read timeout would never fire).
- At most ``MAX_BODY`` bytes of any answer are read; the rest is dropped with the connection.
- Redirects are not followed: a moved receiver must say so with a status we report.
- Messages name the target with userinfo and query masked, and quote at most 200
  characters of an answer.
"""

from __future__ import annotations

import json as jsonlib
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from .base import DeliveryError

__all__ = [
    "MAX_BODY",
    "DeliveryError",
    "HttpClient",
    "Response",
    "excerpt",
    "mask_url",
    "origin",
    "parse_retry_after",
    "raise_for_response",
    "shared",
]

MAX_BODY = 64 * 1024
EXCERPT = 200
USER_AGENT = "maintd/1"
RETRYABLE_STATUSES = frozenset({408, 425, 429})  # plus every 5xx
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Response:
    """An answer, read whole up to ``MAX_BODY`` bytes (``truncated`` says when cut)."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def mask_url(url: str) -> str:
    """``https://***@host:8443/path?***``: userinfo and query often carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not parts.netloc:
        return "(invalid URL)"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def origin(url: str) -> str:
    """Scheme and host only, for URLs whose path is itself a secret (webhook and chat URLs)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if parts.scheme and host else "(invalid URL)"


def excerpt(body: bytes | str, limit: int = EXCERPT) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text[: limit * 2].split())
    return text[:limit] + ("..." if len(text) > limit else "")


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """``Retry-After`` as delay-seconds or an HTTP date (RFC 9110 10.2.3); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - now)


def raise_for_response(response: Response, *, where: str, now: datetime | None = None) -> None:
    """The default judgement: 2xx ok; 408/425/429/5xx retryable; 410 permanent and gone;
    other statuses (4xx, and 3xx since redirects are not followed) permanent."""
    status = response.status
    if 200 <= status < 300:
        return
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        # Against the receiver's own Date when it sent one: our clocks may disagree.
        reference = _date_header(response.headers) or now or datetime.now(UTC)
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=reference)
    text = excerpt(response.body)
    raise DeliveryError(
        f"{where} answered HTTP {status}" + (f": {text}" if text else ""),
        permanent=not (status in RETRYABLE_STATUSES or status >= 500),
        retry_after=retry_after,
        status=status,
        gone=status == 410,
    )


def _date_header(headers: httpx.Headers) -> datetime | None:
    try:
        date = parsedate_to_datetime(headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return date if date.tzinfo else date.replace(tzinfo=UTC)


Check = Callable[[Response], None]


class HttpClient:
    """Send one request, bounded in time and memory; failures raise ``DeliveryError``.

    ``timeout`` is the default total deadline in seconds. ``transport`` is for tests only.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_body: int = MAX_BODY,
        user_agent: str = USER_AGENT,
        verify: bool | ssl.SSLContext = True,
        proxy: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._deadline = threading.local()
        self._client = httpx.Client(
            transport=transport or _deadline_transport(self._deadline, verify=verify, proxy=proxy),
            headers={"user-agent": user_agent, "accept-encoding": "identity"},
            follow_redirects=False,
            trust_env=False,  # the transport above is the only way out; proxies come explicitly
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        where: str | None = None,
        check: Check | None = None,
        max_body: int | None = None,
    ) -> Response:
        """Send and return the answer once ``check`` (default ``raise_for_response``) passed.

        ``where`` names the target in error messages (default: the masked URL);
        ``max_body`` raises the read cap for one call (a listing the caller must parse whole).
        """
        where = where or mask_url(url)
        total = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + total
        self._deadline.value = deadline
        try:
            response = self._exchange(
                method, url, json=json, content=content, headers=headers, total=total, limit=max_body or self.max_body
            )
        except httpx.TimeoutException:
            raise DeliveryError(f"{where}: no complete response within {total:g}s", permanent=False) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise DeliveryError(f"{where}: invalid request ({type(exc).__name__})", permanent=True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{where}: cannot connect ({_reason(exc)})", permanent=False) from None
        finally:
            self._deadline.value = None
        if check is not None:
            check(response)
        else:
            raise_for_response(response, where=where)
        return response

    def _exchange(self, method: str, url: str, *, json, content, headers, total: float, limit: int) -> Response:
        request = self._client.build_request(method, url, json=json, content=content, headers=headers, timeout=total)
        response = self._client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_raw(16384):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break  # the rest is never read: closing drops the connection
            raw = b"".join(chunks)
        finally:
            response.close()
        body, cut = _decode(raw, response.headers.get("content-encoding", ""), limit)
        return Response(status=response.status_code, headers=response.headers, body=body, truncated=cut)


def _decode(raw: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """Undo gzip/deflate within ``limit`` bytes (a small bomb must not become 1 GB)."""
    raw, cut = raw[:limit], len(raw) > limit
    if encoding.strip().lower() not in ("gzip", "deflate"):
        return raw, cut
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
        out = inflater.decompress(raw, limit)
    except zlib.error:
        return raw, cut
    return out, cut or bool(inflater.unconsumed_tail)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "certificate verify failed"):
        if marker in text:
            return marker
    return type(exc).__name__


def _time_left(clock: threading.local, timeout: float | None) -> float | None:
    deadline = getattr(clock, "value", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every wait is cut to the time left before the request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, clock: threading.local) -> None:
        self._stream = stream
        self._clock = clock

    def _left(self, timeout: float | None) -> float | None:
        return _time_left(self._clock, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # type: ignore[no-untyped-def]
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, self._left(timeout)), self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend, clock: threading.local) -> None:
        self._backend = backend
        self._clock = clock

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        stream = self._backend.connect_tcp(host, port, _time_left(self._clock, timeout), local_address, socket_options)
        return _DeadlineStream(stream, self._clock)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # type: ignore[no-untyped-def]
        stream = self._backend.connect_unix_socket(path, _time_left(self._clock, timeout), socket_options)
        return _DeadlineStream(stream, self._clock)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _deadline_transport(
    clock: threading.local, *, verify: bool | ssl.SSLContext, proxy: str | None
) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=verify, proxy=proxy)
    # httpx has no total timeout and no public way to pass httpcore a network backend;
    # the pool (ConnectionPool or a proxy subclass of it) keeps it in this attribute.
    pool = transport._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend, clock)  # type: ignore[attr-defined]
    return transport


_shared: HttpClient | None = None
_shared_lock = threading.Lock()


def shared() -> HttpClient:
    """The process-wide client: one connection pool for every channel and integration."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = HttpClient()
        return _shared
