"""Notice a database deleted or replaced under the running daemon, and stop acting on it.

A SQLite file deleted while maintd runs keeps being written (the open connections hold
the deleted inode) and a restart then finds an empty journal: hooks run again, notices
are sent again. So each tick compares the database with the one opened at start: the
SQLite file's (device, inode) and, on every backend, the random store id in ``meta``.
Once they differ the daemon is faulted for the rest of its life (status ``faults``
``store-replaced``, ``maintd_store_replaced`` 1): no transitions, no hooks, no notices;
the gate keeps deciding from memory, so a denied job stays denied. A restart on a new
database starts a new life (its journal is what it says it is).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import Gauge

from ..errors import StoreError
from ..store.identity import Identity, identity
from .faults import Faults
from .metrics import Metrics

log = logging.getLogger("maintd")

FAULT = "store-replaced"


class StoreWatch:
    def __init__(self, *, store, faults: Faults, metrics: Metrics) -> None:
        self.store = store
        self.faults = faults
        self.gauge = Gauge(
            "maintd_store_replaced",
            "1 once the database was deleted or replaced while running",
            registry=metrics.registry,
        )
        self._opened: Identity | None = None
        self._lock = threading.Lock()
        self.lost = False
        self.on_lost: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Remember the database as opened (writes its store id the first time)."""
        self._opened = identity(self.store.engine, self.store.where, create=True)

    def ok(self) -> bool:
        """False once the database is not the one opened (sticky); a store error is not a loss."""
        if self.lost:
            return False
        if self._opened is None:
            return True
        try:
            now = identity(self.store.engine, self.store.where)
        except StoreError:
            return True  # unreadable is the store guard's fault to report, not a replacement
        if now == self._opened:
            return True
        self._lose(now)
        return False

    def _lose(self, now: Identity) -> None:
        with self._lock:
            if self.lost:
                return
            self.lost = True
        what = "deleted" if now[0] is None and now[1] is None else "replaced"
        message = (
            f"database {self.store.where} was {what} while maintd ran: no transitions, hooks or notices "
            "until restart; the gate answers from memory (restart to start afresh on the new database)"
        )
        self.faults.raise_(FAULT, message)
        self.gauge.set(1)
        log.error(message, extra={"action": FAULT})
        self.on_lost()
