"""The HTTP helper's fan-out path: the same ``request()`` as :class:`.http.HttpClient`, sent on
one event loop (aiohttp) that every delivery thread shares.

Why: with dozens of delivery threads, httpx's sync pool spends its time in its own lock and
per-request Python (notify_bench: ~300-450 notices/s against a 50 ms receiver, where the
network allows over 1,000); aiohttp on one loop parses in C and never contends. A caller's
thread submits the exchange and waits for its answer, so the outbox keeps its slots, claims
and per-endpoint order unchanged.

The guarantees are :mod:`.http`'s: a TOTAL deadline per request (connect to last body
byte, ``asyncio.timeout``), at most ``MAX_BODY`` bytes of any answer read (the connection
is dropped after), no redirects followed, no proxies from the environment, the same
``DeliveryError`` texts and judgement (``check=``, default ``raise_for_response``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import ssl
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp
import httpx

from .base import DeliveryError
from .http import MAX_BODY, USER_AGENT, Check, Response, _decode, mask_url, raise_for_response

__all__ = ["LoopClient", "shared_loop"]

# Connections kept open at once, over all receivers (each endpoint sends at most 1-2 at a time).
CONNECTIONS = 256

T = TypeVar("T")


class LoopClient:
    """``request()`` like :class:`.http.HttpClient`, run on a private event loop thread.

    The loop and its session start on the first request (nothing happens at construction)
    and are stopped by :meth:`close`.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_body: int = MAX_BODY,
        user_agent: str = USER_AGENT,
        verify: bool | ssl.SSLContext = True,
        connections: int = CONNECTIONS,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._user_agent = user_agent
        self._verify = verify
        self._connections = connections
        self._lock = threading.Lock()  # guards starting and stopping the loop, never a request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="http-loop", daemon=True)
                thread.start()
                self._session = asyncio.run_coroutine_threadsafe(self._open(), loop).result(10)
                self._loop, self._thread = loop, thread
            return self._loop

    async def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._connections, limit_per_host=0, ssl=self._verify if self._verify is not True else True
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": self._user_agent, "accept-encoding": "identity"},
            auto_decompress=False,  # _decode inflates within the cap
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the deadline is ours, below
        )

    def close(self) -> None:
        with self._lock:
            loop, session, thread = self._loop, self._session, self._thread
            self._loop = self._session = self._thread = None
        if loop is None or session is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(session.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on this client's loop (started if needed) and return at once: the
        outbox hands a whole claim's sends over in one call instead of a thread per send."""
        return asyncio.run_coroutine_threadsafe(coro, self._start())

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
        """Send and return the answer once ``check`` (default ``raise_for_response``) passed;
        the arguments and failures are those of :meth:`.http.HttpClient.request`."""
        where = where or mask_url(url)
        total = self.timeout if timeout is None else timeout
        exchange = self.arequest(
            method, url, json=json, content=content, headers=headers, timeout=total, where=where, max_body=max_body
        )
        future = self.submit(exchange)
        try:
            response = future.result(total + 5)  # the loop enforces ``total``; this only guards a stuck loop
        except TimeoutError:
            future.cancel()
            raise DeliveryError(f"{where}: no complete response within {total:g}s", permanent=False) from None
        if check is not None:
            check(response)
        else:
            raise_for_response(response, where=where)
        return response

    async def arequest(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        where: str | None = None,
        max_body: int | None = None,
    ) -> Response:
        """:meth:`request` for a coroutine running on this client's loop (see :meth:`submit`),
        without judging the answer: the caller applies its ``check`` (``raise_for_response``)."""
        where = where or mask_url(url)
        total = self.timeout if timeout is None else timeout
        limit = max_body or self.max_body
        try:
            response = await self._exchange(
                method, url, json=json, content=content, headers=headers, total=total, limit=limit
            )
        except TimeoutError:
            raise DeliveryError(f"{where}: no complete response within {total:g}s", permanent=False) from None
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise DeliveryError(f"{where}: invalid request ({type(exc).__name__})", permanent=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{where}: cannot connect ({_reason(exc)})", permanent=False) from None
        return response

    async def _exchange(self, method: str, url: str, *, json, content, headers, total: float, limit: int) -> Response:
        assert self._session is not None
        async with asyncio.timeout(total):
            async with self._session.request(
                method, url, json=json, data=content, headers=dict(headers or {}), allow_redirects=False
            ) as answer:
                chunks: list[bytes] = []
                size = 0
                while size <= limit:
                    chunk = await answer.content.read(min(16384, limit + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                if size > limit:
                    answer.close()  # the rest is never read: drop the connection
                raw = b"".join(chunks)
                headers_out = httpx.Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers])
                status = answer.status
        body, cut = _decode(raw, headers_out.get("content-encoding", ""), limit)
        return Response(status=status, headers=headers_out, body=body, truncated=cut)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connect call failed", "Connection refused", "Name or service not known", "certificate verify"):
        if marker in text:
            return "Connection refused" if marker == "Connect call failed" else marker
    return type(exc).__name__


_shared: LoopClient | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopClient:
    """The process-wide fan-out client: one loop and one connection pool for every webhook."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LoopClient()
            atexit.register(_shared.close)  # close its connections before the interpreter goes
        return _shared
