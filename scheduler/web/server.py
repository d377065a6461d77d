"""HTTP serving limits: what keeps the gate answering while someone holds sockets open.

uvicorn's h11 protocol has no deadline for a request head or body, and no cap on
connections: 1,100 half-sent requests used up 1,024 file descriptors, ``/healthz`` timed
out and asyncio logged the failed ``accept()`` hundreds of megabytes a minute. Here:

- :class:`GuardedH11Protocol`: a request must send its head within ``head_timeout`` and its
  body within ``body_timeout``, or the connection is closed; at most ``limit`` connections
  are open, and a new one over the limit evicts the oldest idle one (no request being
  answered: a half-sent head, or nothing) so a job's gate request gets a place -- a real
  client sends its request at once and is not idle for long;
- :func:`connection_limit`: the soft ``RLIMIT_NOFILE`` raised to the hard limit, minus a
  reserve for the store, the gate's writer and outgoing sends;
- :class:`RepeatFilter`: the same log message at most once per ``every`` seconds, then
  with the count of the ones held back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import threading
import time
from typing import Any

from starlette.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 5.0  # seconds for a request line and headers
BODY_TIMEOUT = 10.0  # seconds for a (64 KiB at most) body
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open


def connection_limit(reserve_min: int = 128) -> int:
    """Raise the soft fd limit to the hard one; the connections the API may hold open.

    A quarter of the descriptors (at least ``reserve_min``) stay for everything else: the
    database, the outbox's sends, hooks, and sockets asyncio accepts before they are counted.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - max(reserve_min, soft // 4))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request deadlines and a connection cap (class attributes,
    set by :func:`guarded_protocol`)."""

    limit = 1024
    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._opened = time.monotonic()
        self._sent_anything = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout)
        if len(self.connections) > self.limit and not self._evict_one():
            transport.abort()  # nothing idle to make room: this one goes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._sent_anything = True
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._idle():
            if self._deadline is None:  # the first bytes of a new request head
                self._arm(self.head_timeout)
        elif self.cycle is not None and self.cycle.more_body:
            if self._deadline is None or self._deadline.when() - self.loop.time() < self.body_timeout / 2:
                self._arm(self.body_timeout)
        else:
            self._disarm()  # read whole; the app answers, then keep-alive applies

    def on_response_complete(self) -> None:
        self._sent_anything = False
        self._disarm()
        super().on_response_complete()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        # armed only while a head or a body is being read: the app's own time is not limited here
        reading_body = self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body
        if self._idle() or reading_body:
            self.transport.abort()

    def _evict_one(self) -> bool:
        """Close the oldest idle connection; False when none is idle."""
        best: GuardedH11Protocol | None = None
        closing = 0
        for c in self.connections:
            if c is self or not isinstance(c, GuardedH11Protocol) or not c._idle():
                continue
            if c.transport.is_closing():  # evicted already, gone at the next loop iteration
                closing += 1
                continue
            if best is None or c._opened < best._opened:
                best = c
        if len(self.connections) - closing <= self.limit:
            return True
        if best is None:
            return False
        best.transport.abort()
        return True


def guarded_protocol(
    limit: int, *, head_timeout: float = HEAD_TIMEOUT, body_timeout: float = BODY_TIMEOUT
) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limit": limit, "head_timeout": head_timeout, "body_timeout": body_timeout},
    )


class RepeatFilter(logging.Filter):
    """Let the same message (logger, level, text) through once per ``every`` seconds; the
    next one that passes says how many were held back. Bounded memory."""

    MAX_KEYS = 1024

    def __init__(self, every: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # key -> [last passed at, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logged as it comes
            return True
        key = (record.name, record.levelno, text[:300])
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.every:
                entry[1] += 1
                return False
            held = entry[1] if entry is not None else 0
            if len(self._seen) >= self.MAX_KEYS:
                self._seen.clear()
            self._seen[key] = [now, 0]
        if held:
            record.msg, record.args = f"{text} (and {held} more like it in the last {self.every:g}s)", None
        return True


_TENANT_PATH = re.compile(r"/t/[^/\s\"'?]+")


class SecretPathFilter(logging.Filter):
    """Mask the secret of ``/t/{secret}/...`` in any message: a log is no place for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if "/t/" in text:
            record.msg, record.args = _TENANT_PATH.sub("/t/<secret>", text), None
        return True


class RefuseNul:
    """ASGI middleware: a NUL byte in the path or the query string (``%00``) is a 422, before
    any route sees it (bodies are checked by the API's models)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or b""
            query = scope.get("query_string") or b""
            if "\x00" in scope.get("path", "") or b"%00" in raw or b"%00" in query or b"\x00" in query:
                await JSONResponse({"error": "NUL bytes are not allowed in a request"}, status_code=422)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a JSON 413, whether the client sends a
    Content-Length or streams the body chunked (which a header check alone would let through
    into memory)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        resp = JSONResponse(
            {"error": f"request body too large (limit {self.limit} bytes)"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await resp(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read at most `limit` bytes, then hand the body on.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, replaying(b"".join(chunks), receive), send)


def replaying(body: bytes, receive: Any, *, more_body: bool = False) -> Any:
    """A ``receive`` that hands the app a body already read, then the client's own messages
    (more of the body when ``more_body``, or its disconnect)."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more_body}
        return await receive()

    return replay
