"""SMTP connections per relay, reused and bounded, and the relay's rate limit.

A connection costs a TCP handshake, a greeting, EHLO and often STARTTLS and AUTH: several
round trips before the first byte of a message. Sending each message on a new one made
email fan-out 3.6x a single reused connection (issue 19); the pool keeps up to ``size``
open per relay and hands one to each sender. A connection that raised anything is closed
and dropped, never handed out again: the next send opens a fresh one, and the failed
message goes back to the outbox's retry schedule. One idle for ``idle_max`` seconds is
closed rather than reused, since relays drop quiet sessions (and a message sent on a dead
one would wait a retry for nothing).

:class:`RateLimit` spaces the starts of sends evenly: at ``rate`` per second, ``n``
messages take at least ``(n - 1) / rate`` seconds, and no second holds more than ``rate``
starts (``notifiers.email.rate``; real relays throttle and then refuse).
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["IDLE_MAX", "POOL_SIZE", "RateLimit", "SmtpPool"]

POOL_SIZE = 16  # connections open at once per relay (notifiers.email.connections)
IDLE_MAX = 30.0  # seconds a connection may wait unused and still be reused


class RateLimit:
    """At most ``rate`` send starts per second, evenly spaced; ``None``: no limit."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()  # guards _next only; the wait happens outside it

    def wait(self) -> float:
        """Block until this caller's turn; returns the seconds waited."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + 1.0 / self.rate
        delay = at - now
        if delay > 0:
            self._sleep(delay)
        return max(0.0, delay)


class SmtpPool:
    """Up to ``size`` open connections, each used by one sender at a time.

    ``connect`` opens a ready connection (greeted, and after STARTTLS and login if the
    relay needs them). ``opened`` counts connections made (tests and benchmarks).
    """

    def __init__(
        self,
        connect: Callable[[], smtplib.SMTP],
        *,
        size: int = POOL_SIZE,
        idle_max: float = IDLE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[tuple[smtplib.SMTP, float]] = []  # (connection, when it was put back)
        self._lock = threading.Lock()  # guards _idle only: never held while talking to the relay
        self._idle_max = idle_max
        self._clock = clock
        self.size = size
        self.opened = 0
        self._closed = False  # set by close(): connections coming back are said goodbye to

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[smtplib.SMTP]:
        """A connection for one send; back to the pool after, or dropped if the block raised.

        Waits at most ``timeout`` seconds for a free one (``TimeoutError``).
        """
        if not self._slots.acquire(timeout=timeout):
            raise TimeoutError("no SMTP connection free")
        try:
            smtp = self._take()
            try:
                yield smtp
            except BaseException:
                _close(smtp)
                raise
            with self._lock:
                closed = self._closed
                if not closed:
                    self._idle.append((smtp, self._clock()))
            if closed:  # closed while this send ran (a reload replaced the notifier): no idle leftovers
                _quit(smtp)
        finally:
            self._slots.release()

    def _take(self) -> smtplib.SMTP:
        now = self._clock()
        stale: list[smtplib.SMTP] = []
        smtp = None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since < self._idle_max:
                    smtp = candidate
                    break
                stale.append(candidate)
        for old in stale:
            _close(old)  # no QUIT: the relay has likely dropped it, and a reply would only be waited for
        if smtp is None:
            smtp = self._connect()
            with self._lock:
                self.opened += 1
        return smtp

    def close(self) -> None:
        """Say goodbye on every idle connection, and on each one in use once its send is done.
        A closed pool still sends (it opens a connection and closes it after)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for smtp, _ in idle:
            _quit(smtp)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        _close(smtp)


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass
