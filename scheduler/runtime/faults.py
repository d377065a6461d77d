"""Typed faults ops must see (status ``faults``), and the one guard around store calls.

A store failure never stops the daemon: the guard counts it, raises the ``store`` fault and
logs it; the caller carries on (the next tick or poll tries again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from ..errors import StoreError
from ..model import isoz
from .metrics import Metrics

log = logging.getLogger("maintd")


@dataclass(frozen=True)
class Fault:
    what: str  # "store", "token", "end-check:<window>", "hook:<window>:<event>", "overrun:<lease>"
    message: str
    since: datetime

    def to_json(self) -> dict:
        return {"what": self.what, "message": self.message, "since": isoz(self.since)}


class Faults:
    """The current faults by name; thread-safe, guards only memory."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def raise_(self, what: str, message: str) -> None:
        """Record a fault; its ``since`` moves only when its message changes."""
        with self._lock:
            if what not in self._faults or self._faults[what].message != message:
                self._faults[what] = Fault(what, message, self._clock())

    def clear(self, what: str) -> bool:
        """Clear a fault; True if it was raised."""
        with self._lock:
            return self._faults.pop(what, None) is not None

    def __contains__(self, what: object) -> bool:
        return what in self._faults

    def names(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [w for w in self._faults if w.startswith(prefix)]

    def to_json(self) -> list[dict]:
        with self._lock:
            return [f.to_json() for f in self._faults.values()]


class Outcome:
    """What a guarded block learnt: ``failed`` once a StoreError was swallowed."""

    failed: bool = False
    error: StoreError | None = None


class StoreGuard:
    """``with guard():`` swallows a StoreError and reports it; ``with guard() as g`` tells
    the caller (``g.failed``) so it can answer without the store."""

    def __init__(self, faults: Faults, metrics: Metrics) -> None:
        self.faults = faults
        self.metrics = metrics

    def failed(self, exc: Exception) -> None:
        self.metrics.store_errors.inc()
        self.metrics.store_fault.set(1)
        self.faults.raise_("store", str(exc))
        log.error("store: %s (will retry)", exc, extra={"action": "store-error"})

    def recovered(self) -> None:
        if self.faults.clear("store"):
            log.info("store writable again", extra={"action": "store-recovered"})
        self.metrics.store_fault.set(0)

    @contextmanager
    def __call__(self) -> Iterator[Outcome]:
        outcome = Outcome()
        try:
            yield outcome
        except StoreError as exc:
            outcome.failed, outcome.error = True, exc
            self.failed(exc)
