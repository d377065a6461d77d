"""One claimed delivery, from check to result: :class:`Sender` decides whether a claimed row
is still to be sent (:meth:`Sender.prepare`), sends it on the caller's thread
(:meth:`Sender.deliver`) or as a coroutine on a notifier's event loop
(:meth:`Sender.send_group_async`), and queues the result -- sent, retried at the schedule's
next wait, failed, superseded -- for the :class:`.results.ResultWriter`.

The :class:`.outbox.Outbox` claims rows, holds the slots and runs the loops around it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from ..errors import DeliveryError
from ..model import Notice, isoz
from ..notices import notice_from_json
from ..retry import next_attempt
from .claims import Held
from .endpoints import ENDPOINT_DISABLED, endpoint_of
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .ops import OpsDelivery, is_ops
from .results import ResultWriter
from .sendchecks import STARTED, retry_after_of, stale, started, with_link

log = logging.getLogger("maintd")


class Ready(NamedTuple):
    """A claimed row checked and ready to send (see :meth:`Sender.prepare`)."""

    notifier: Any
    notice: Notice | None
    tenant: Any
    endpoint: str | None


class Sender:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        results: ResultWriter,
        held: Held,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.generations = generations
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.results = results
        self._held = held
        self._rng = rng or random.Random()
        # Called with (row, error) when a tenant delivery fails for good (the ops room hears it).
        self.on_failed: Callable[[dict, str], None] | None = None

    def deliver(self, row: dict, later: list[dict] | None = None, disabled: set | None = None) -> None:
        """Send one claimed delivery and queue its result (sent, retry at the schedule's next
        wait, failed, superseded) for the result writer."""
        ready = self.prepare(row, later, disabled)
        if ready is None:
            return
        try:
            ready.notifier.send(ready.notice, ready.tenant)
        except Exception as exc:  # noqa: BLE001 - DeliveryError, or a bug in a notifier: retry either way
            self._report(row, exc, ready.endpoint)
            return
        self._report(row, None, ready.endpoint)

    def prepare(self, row: dict, later: list[dict] | None = None, disabled: set | None = None) -> Ready | None:
        """What to send for a claimed row, or None when its result is already queued (failed,
        superseded) or the store failed (the row is let go: its claim lapses, it is tried again)."""
        generation = self.generations.current
        cfg = generation.config
        channel = row["channel"]
        notifier = generation.notifiers.get(channel)
        tenant = cfg.tenants.get(row["tenant"])
        now = self.clock()
        where = {"window": row["window"], "tenant": row["tenant"]}
        if is_ops(row) and notifier is not None:  # the provider's room: no notice, no tenant
            return Ready(OpsDelivery(notifier, row["payload"]), None, None, None)
        if tenant is None or notifier is None:
            gone = f"tenant {row['tenant']} or channel {channel} no longer configured"
            self._result(row, "failed", now, last_error=gone)
            return None
        max_age = cfg.notifiers.retry.max_age
        if now - row["created_at"] >= max_age:
            # Sent this late it would be wrong, not merely slow ("starts in 1h", a day later).
            self._result(row, "failed", now, last_error=f"not sent: older than notifiers.retry.max_age ({max_age})")
            msg = "notice %s to %s via %s expired unsent"
            log.warning(msg, row["kind"], row["tenant"], channel, extra={"action": "notice-failed", **where})
            if self.on_failed is not None and not is_ops(row):
                self.on_failed(row, f"expired unsent (older than {max_age})")
            return None
        endpoint = endpoint_of(tenant, channel)
        if endpoint is not None and (tenant.id, channel, endpoint) in (disabled or ()):
            self._result(row, "failed", now, last_error=ENDPOINT_DISABLED)
            msg = "notice %s to %s via %s not sent: endpoint disabled (410 Gone)"
            log.info(msg, row["kind"], row["tenant"], channel, extra={"action": "notice-failed", **where})
            return None
        notice = notice_from_json(row["payload"])
        why: str | None = None
        with self.guard() as g:
            why = stale(self.store, row, notice, now, later)
            if not why:
                notice = with_link(self.store, notice, cfg.daemon.public_url)
        if g.failed:
            self._held.drop([row["id"]])  # unsent: no longer held, so its claim lapses and it is tried again
            return None
        if why:
            self._result(row, "superseded", now, last_error=why)
            msg = "notice %s to %s via %s not sent: %s"
            log.info(msg, row["kind"], row["tenant"], channel, why, extra={"action": "notice-superseded", **where})
            return None
        return Ready(notifier, notice, tenant, endpoint)

    def _report(self, row: dict, exc: BaseException | None, endpoint: str | None) -> None:
        """Queue a send's result: ``exc`` None is sent, else failed or retried."""
        channel = row["channel"]
        if exc is not None:
            if not isinstance(exc, DeliveryError):
                log.error("notifier %s crashed", channel, exc_info=exc)
                exc = DeliveryError(f"internal error: {type(exc).__name__}: {exc}", permanent=False)
            self._failed(row, exc, row.get("attempts") or 1, endpoint)  # the claim counted this try
            return
        now = self.clock()
        self._result(row, "sent", now, sent_at=now, last_error=None)
        self.metrics.delivery_seconds.labels(channel).observe(max(0.0, (now - row["created_at"]).total_seconds()))
        log.info(
            "notice %s to %s via %s delivered",
            row["kind"],
            row["tenant"],
            channel,
            extra={"action": "notice-sent", "window": row["window"], "tenant": row["tenant"]},
        )

    def _failed(self, row: dict, exc: Any, attempts: int, endpoint: str | None = None) -> None:
        retry = self.generations.config.notifiers.retry
        where = {"window": row["window"], "tenant": row["tenant"]}
        what = (row["kind"], row["tenant"], row["channel"])
        now = self.clock()
        gone = bool(getattr(exc, "gone", False)) and endpoint is not None
        nxt = None
        if not exc.permanent and not gone:
            nxt = next_attempt(
                schedule=retry.schedule,
                attempts=attempts,
                due_at=row["created_at"],
                now=now,
                max_age=retry.max_age,
                retry_after=retry_after_of(exc),
                jitter=self._rng.uniform(-1.0, 1.0),
            )
        if nxt is None:
            disable = (row["tenant"], row["channel"], endpoint, str(exc)) if gone else None
            self._result(row, "failed", now, disable=disable, last_error=str(exc))
            log.warning(
                "notice %s to %s via %s failed for good after %d attempt%s: %s%s",
                *what,
                attempts,
                "" if attempts == 1 else "s",
                exc,
                "; endpoint disabled" if gone else "",
                extra={"action": "notice-failed", **where},
            )
            if self.on_failed is not None and not is_ops(row):
                self.on_failed(row, str(exc))
            return
        self._result(row, "pending", now, next_attempt_at=nxt, last_error=str(exc))
        msg = "notice %s to %s via %s will be retried at %s: %s"
        log.info(msg, *what, isoz(nxt), exc, extra={"action": "notice-retry", **where})

    def _result(self, row: dict, status: str, now: datetime, disable: tuple | None = None, **values: Any) -> None:
        result = {"retry": "retry", "pending": "retry"}.get(status, status)
        self.metrics.notices.labels(row["channel"], result).inc()
        self.results.put(row, dict(status=status, updated_at=now, **values), disable)

    async def send_group_async(self, batch: list[tuple[dict, Ready]]) -> None:
        """Send one endpoint's prepared rows in order, as coroutines on the notifier's loop."""
        for row, ready in batch:
            now = self.clock()
            if started(ready.notice, now):  # while the rows before it were sent
                self._result(row, "superseded", now, last_error=STARTED)
                continue
            try:
                await ready.notifier.send_async(ready.notice, ready.tenant)
            except Exception as exc:  # noqa: BLE001 - as in deliver
                self._report(row, exc, ready.endpoint)
                continue
            self._report(row, None, ready.endpoint)
