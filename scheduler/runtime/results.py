"""The outbox's bookkeeping around sends: free slots, and the result writer that records
results (and 410-disabled endpoints) a batch per short transaction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import StoreError
from .faults import StoreGuard

log = logging.getLogger("maintd")


class Slots:
    """Free delivery slots: taken at claim, given back when the send has reported."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._lock = threading.Lock()

    def free(self) -> int:
        with self._lock:
            return self.size - self._used

    def take(self) -> None:
        with self._lock:
            self._used += 1

    def release(self) -> None:
        with self._lock:
            self._used -= 1


class ResultWriter:
    """Queued delivery results, recorded a batch per transaction: dozens of senders then
    share SQLite's single writer instead of queueing for it one commit each, and each
    transaction is short (one ``UPDATE`` per batch), so the tick never waits long for it.
    Until written the row stays claimed (``sending``) and its claim is extended
    (:meth:`Outbox.hold_claims`), so no second copy starts while a send is in flight.
    """

    def __init__(self, *, store, worker: str, guard: StoreGuard) -> None:
        self.store = store
        self.worker = worker
        self.guard = guard
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._items: list[tuple[dict, dict, tuple | None]] = []
        self.written: Callable[[list[int]], None] = lambda ids: None

    def put(self, row: dict, values: dict, disable: tuple | None = None) -> None:
        """Queue a result; ``disable`` = (tenant, channel, endpoint, reason) after a 410."""
        with self._lock:
            self._items.append((row, values, disable))
        self.wake.set()

    def write(self) -> int:
        """Record the queued results, all in one transaction. Returns how many."""
        with self._lock:
            batch, self._items = self._items, []
            self.wake.clear()
        if not batch:
            return 0
        now = batch[-1][1]["updated_at"]
        try:
            with self.store.transaction() as tx:
                done = tx.outbox.finish_many([(row["id"], values) for row, values, _ in batch], worker=self.worker)
                for _, _, disable in batch:
                    if disable:
                        tenant, channel, endpoint, reason = disable
                        tx.endpoints.disable(tenant, channel, endpoint, now=now, reason=reason)
        except StoreError as exc:
            self.guard.failed(exc)
            with self._lock:  # keep them for the next try; the rows stay claimed meanwhile
                self._items[:0] = batch
            return 0
        self.written([row["id"] for row, _, _ in batch])
        for row, values, _ in batch:
            if row["id"] not in done:
                # Re-claimed after our claim ran out (this instance was presumed dead).
                log.info(
                    "notice %s to %s via %s: result %s not recorded, its row had moved on",
                    row["kind"],
                    row["tenant"],
                    row["channel"],
                    values["status"],
                    extra={"action": "notice-result-stale", "window": row["window"], "tenant": row["tenant"]},
                )
        return len(batch)
