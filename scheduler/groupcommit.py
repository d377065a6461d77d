"""Group commit: the small writes of many requests in one transaction.

The gate writes a row for every job start, heartbeat and release. With a transaction
each, concurrent requests queue on SQLite's write lock, and SQLite's busy handler waits
by sleeping (up to 100 ms a try): under load that sleep, not the work, is the latency.
Here one writer thread takes everything waiting, writes it in one transaction, and
answers every request of the batch; the next batch gathers meanwhile. Nothing is
acknowledged before the transaction holding it has committed, so durability is the same
as one by one.

Callers wait in a thread (:meth:`GroupCommit.submit`) or on an event loop
(:meth:`GroupCommit.submit_async`: the API answers admissions without a trip through the
thread pool, and a batch is one wake-up of the loop, not one per request).

Only threading and asyncio here; the caller's ``run`` knows the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("maintd")


class _Ticket:
    __slots__ = ("op", "result", "error", "wake", "loop", "future", "on_error")

    def __init__(
        self,
        op: Any,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future | None = None,
        on_error: Callable[[Any, BaseException], Any] | None = None,
    ) -> None:
        self.op = op
        self.result: Any = None
        self.error: BaseException | None = None
        self.loop, self.future, self.on_error = loop, future, on_error
        self.wake: threading.Lock | None = None
        if future is None and on_error is None:
            self.wake = threading.Lock()
            self.wake.acquire()  # released by the writer once the op is committed (or failed)


class GroupCommit:
    """``run(ops)`` performs a batch in one transaction and returns one result per op; if
    it raises, each op of the batch is run alone, so one bad op fails only itself."""

    def __init__(
        self,
        run: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int = 512,
        name: str = "group-commit",
        linger: float = 0.0,
    ) -> None:
        self._run = run
        self._max = max_batch
        # A batch of writes nobody waits for (submit_nowait) waits up to `linger` seconds for
        # company: fewer, larger transactions. Anything a caller waits for goes at once.
        self._linger = linger
        self._urgent = False
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Ticket] = []
        self._thread: threading.Thread | None = None
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Ticket]] = {}  # touched by each loop's thread only

    def submit(self, op: Any) -> Any:
        """Write ``op``; return its result once committed (or raise its error)."""
        ticket = _Ticket(op)
        self._enqueue(ticket)
        assert ticket.wake is not None  # a thread's ticket: made with its lock
        ticket.wake.acquire()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    async def submit_async(self, op: Any) -> Any:
        """:meth:`submit` for a coroutine: the event loop stays free while the batch is written.

        What the loop's requests submit in one pass of the loop goes to the writer together
        (one wake-up of the writer per pass, not per request).
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        gathered = self._gathering.get(loop)
        if gathered is None:
            gathered = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathered.append(_Ticket(op, loop, future))
        return await future

    def submit_nowait(self, op: Any, on_error: Callable[[Any, BaseException], Any]) -> None:
        """Write ``op`` with the next batch without waiting for it (from an event loop: joins
        that loop pass's batch). ``on_error(op, exc)`` runs on the writer thread if it fails.
        Later submissions commit after it, so a read behind :meth:`flush` sees it."""
        ticket = _Ticket(op, on_error=on_error)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._enqueue(ticket)
            return
        gathered = self._gathering.get(loop)
        if gathered is None:
            gathered = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathered.append(ticket)

    def flush(self) -> None:
        """Wait (in a thread) until everything submitted before has been written."""
        if self._thread is not None:
            self.submit(None)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._enqueue(*self._gathering.pop(loop))

    def _enqueue(self, *tickets: _Ticket) -> None:
        with self._cond:
            idle = not self._pending
            self._pending.extend(tickets)
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name=self._name, daemon=True)
                self._thread.start()
            if any(t.on_error is None for t in tickets):
                self._urgent = True
            elif not idle and len(self._pending) < self._max:
                return  # the writer is lingering over these already
            self._cond.notify()

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                if self._linger and not self._urgent:
                    self._cond.wait_for(lambda: self._urgent or len(self._pending) >= self._max, self._linger)
                self._urgent = False
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            try:
                self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - the writer must outlive anything
                log.exception("group commit writer failed")
                for t in batch:
                    t.error = t.error or exc
            self._answer(batch)

    def _write(self, batch: list[_Ticket]) -> None:
        try:
            results = self._run([t.op for t in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the requests
            if len(batch) == 1:
                batch[0].error = exc
                return
            for t in batch:
                try:
                    t.result = self._run([t.op])[0]
                except Exception as one:  # noqa: BLE001
                    t.error = one
            return
        for t, result in zip(batch, results):
            t.result = result

    def _answer(self, batch: list[_Ticket]) -> None:
        loops: dict[asyncio.AbstractEventLoop, list[_Ticket]] = {}
        for t in batch:
            if t.wake is not None:
                t.wake.release()
            elif t.on_error is not None:
                if t.error is not None:
                    try:
                        t.on_error(t.op, t.error)
                    except Exception:  # noqa: BLE001 - the writer must outlive anything
                        log.exception("group commit: error callback failed")
            else:
                if t.loop is not None:  # an async ticket always has its loop
                    loops.setdefault(t.loop, []).append(t)
        for loop, tickets in loops.items():
            try:
                loop.call_soon_threadsafe(_settle, tickets)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass


def _settle(tickets: list[_Ticket]) -> None:
    for t in tickets:
        if t.future is None:  # never: only async tickets are settled here
            continue
        if t.future.done():  # the request was cancelled (client went away)
            continue
        if t.error is not None:
            t.future.set_exception(t.error)
        else:
            t.future.set_result(t.result)
