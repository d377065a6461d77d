"""The outbox worker: claim due deliveries, send them with bounded concurrency, record
the results (SPEC section 4).

A delivery slot is held from claim to result, so at most ``workers`` sends run at once and
a slow receiver holds one slot, not a batch. Results are written by :class:`ResultWriter`
in batches, one transaction each.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..errors import DeliveryError, StoreError
from ..model import Notice, calendar_uid, isoz
from ..notices import notice_from_json
from ..store import give_up, next_attempt
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .ops import OpsDelivery, is_ops

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
    share SQLite's single writer instead of queueing for it one commit each. Until written
    the row stays claimed (``sending``), so a crash in between sends it again when the claim
    runs out (at least once; receivers deduplicate on the ``webhook-id``)."""

    def __init__(self, *, store, worker: str, guard: StoreGuard) -> None:
        self.store = store
        self.worker = worker
        self.guard = guard
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._items: list[tuple[dict, dict]] = []

    def put(self, row: dict, values: dict) -> None:
        with self._lock:
            self._items.append((row, values))
        self.wake.set()

    def write(self) -> int:
        """Record the queued results, all in one transaction. Returns how many."""
        with self._lock:
            batch, self._items = self._items, []
            self.wake.clear()
        if not batch:
            return 0
        try:
            done = self.store.finish_many([(row["id"], values) for row, values in batch], worker=self.worker)
        except StoreError as exc:
            self.guard.failed(exc)
            with self._lock:  # keep them for the next try; the rows stay claimed meanwhile
                self._items[:0] = batch
            return 0
        for row, values in batch:
            if row["id"] not in done:
                # Superseded meanwhile (the window started) or re-claimed after our claim ran out.
                log.info(
                    "notice %s to %s via %s: result %s not recorded, its row had moved on",
                    row["kind"],
                    row["tenant"],
                    row["channel"],
                    values["status"],
                    extra={"action": "notice-result-stale", "window": row["window"], "tenant": row["tenant"]},
                )
        return len(batch)


def stale(store, row: dict, notice: Notice, now: datetime, later: list[dict] | None = None) -> str | None:
    """Why sending this delivery now would be wrong, or None.

    Never after the start (SPEC 4): the start supersedes pending ``scheduled`` notices, this
    catches one claimed just before. And news that a later ``rescheduled`` or ``cancelled``
    (for a one-off window: of any occurrence, its key moves with its start) made untrue is
    dropped instead of being retried into a tenant's calendar. ``later``: the window's
    changes for this tenant (``store.changes_after``).
    """
    if notice.kind == "scheduled" and now >= notice.start:
        return "the window started before this notice could be delivered"
    if notice.kind in ("scheduled", "rescheduled"):
        if later is None:
            later = [c for c in store.changes_after([row["window"]], row["id"]) if c["tenant"] == row["tenant"]]
        one_off = notice.uid == calendar_uid(notice.window, None, recurring=False)
        for c in later:
            if (
                c["id"] > row["id"]
                and c["notice_id"] != row["notice_id"]
                and (one_off or c["occurrence"] == row["occurrence"])
            ):
                return f"a later {c['kind']} notice replaces it"
    return None


class Outbox:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        worker: str,
        workers: int,
        claim_batch: int,
        claim_lease: timedelta,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.generations = generations
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.worker = worker
        self.claim_batch = claim_batch
        self.claim_lease = claim_lease
        self.slots = Slots(workers)
        self.results = ResultWriter(store=store, worker=worker, guard=guard)
        self.wake = threading.Event()  # set by ticks (new rows) and by each finished send
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._rng = rng or random.Random()
        # Called with (row, error) when a tenant delivery fails for good (the ops room hears it).
        self.on_failed: Callable[[dict, str], None] | None = None

    def deliver_due(self, wait: bool = True) -> int:
        """Claim due deliveries for the free slots and send them on the pool.

        The worker loop (``wait=False``) claims again as soon as slots free up. ``wait=True``
        (tests, benchmarks) returns when this claim's sends are done and their results
        written. Returns how many deliveries were claimed.
        """
        free = self.slots.free()
        if free <= 0:
            return 0
        now = self.clock()
        with self.guard() as g:
            rows = self.store.claim_batch(
                now, worker=self.worker, limit=min(free, self.claim_batch), lease=self.claim_lease
            )
            # One read per batch for what a later reschedule or cancellation made untrue.
            news = [r for r in rows if r["kind"] in ("scheduled", "rescheduled")]
            changes = self.store.changes_after({r["window"] for r in news}, min(r["id"] for r in news)) if news else []
        if g.failed:
            return 0
        later: dict[tuple[str, str], list[dict]] = {}
        for c in changes:
            later.setdefault((c["window"], c["tenant"]), []).append(c)
        futures = []
        for row in rows:
            self.slots.take()
            try:
                future = self._pool.submit(self.deliver, row, later.get((row["window"], row["tenant"]), []))
            except RuntimeError:  # the pool is shut down: stopping; the claim runs out and it is retried
                self.slots.release()
                continue
            future.add_done_callback(self._sent)
            futures.append(future)
        if wait:
            for f in futures:
                f.result()
            self.results.write()
        return len(rows)

    def _sent(self, _future: Any) -> None:
        self.slots.release()
        self.wake.set()  # a free slot: claim again

    def deliver(self, row: dict, later: list[dict] | None = None) -> None:
        """Send one claimed delivery and queue its result (sent, retry at a backoff, failed,
        superseded) for the result writer."""
        generation = self.generations.current
        cfg = generation.config
        channel = row["channel"]
        notifier = generation.notifiers.get(channel)
        tenant = cfg.tenants.get(row["tenant"])
        now = self.clock()
        where = {"window": row["window"], "tenant": row["tenant"]}
        if is_ops(row) and notifier is not None:  # the provider's room: no notice, no tenant
            self._send(row, OpsDelivery(notifier, row["payload"]), None, None)
            return
        if tenant is None or notifier is None:
            gone = f"tenant {row['tenant']} or channel {channel} no longer configured"
            self._result(row, "failed", now, last_error=gone)
            return
        if now - row["created_at"] >= cfg.notifiers.max_age:
            # Sent this late it would be wrong, not merely slow ("starts in 1h", a day later).
            expired = f"not sent: older than notifiers.max_age ({cfg.notifiers.max_age})"
            self._result(row, "failed", now, last_error=expired)
            log.warning(
                "notice %s to %s via %s expired unsent",
                row["kind"],
                row["tenant"],
                channel,
                extra={"action": "notice-failed", **where},
            )
            if self.on_failed is not None:
                self.on_failed(row, expired)
            return
        notice = notice_from_json(row["payload"])
        why: str | None = None
        with self.guard() as g:
            why = stale(self.store, row, notice, now, later)
            if not why:
                notice = self._with_link(notice, cfg.daemon.public_url)
        if g.failed:
            return  # unsent and still claimed: tried again when the claim runs out
        if why:
            self._result(row, "superseded", now, last_error=why)
            msg = "notice %s to %s via %s not sent: %s"
            log.info(msg, row["kind"], row["tenant"], channel, why, extra={"action": "notice-superseded", **where})
            return
        self._send(row, notifier, notice, tenant)

    def _send(self, row: dict, notifier: Any, notice: Notice | None, tenant: Any) -> None:
        channel = row["channel"]
        try:
            notifier.send(notice, tenant)
        except Exception as exc:  # noqa: BLE001 - DeliveryError, or a bug in a notifier: retry either way
            if not isinstance(exc, DeliveryError):
                log.exception("notifier %s crashed", channel)
                exc = DeliveryError(f"internal error: {type(exc).__name__}: {exc}", permanent=False)
            self._failed(row, exc, row.get("attempts") or 1)  # the claim counted this try
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

    def _with_link(self, notice: Notice, base: str | None) -> Notice:
        """Fill in the tenant page link a notice was enqueued without (see ``NoticeRows``)."""
        if notice.link or not base:
            return notice
        try:
            # Read first: creating takes the write lock, which every sender would queue for.
            secret = self.store.tenant_secret(notice.tenant, create=False) or self.store.tenant_secret(notice.tenant)
        except StoreError:
            return notice
        return replace(notice, link=f"{base}/t/{secret}/")

    def _failed(self, row: dict, exc: Any, attempts: int) -> None:
        cfg = self.generations.config
        where = {"window": row["window"], "tenant": row["tenant"]}
        what = (row["kind"], row["tenant"], row["channel"])
        now = self.clock()
        if exc.permanent or give_up(
            attempts, row["created_at"], now, cfg.notifiers.max_attempts, cfg.notifiers.max_age
        ):
            self._result(row, "failed", now, last_error=str(exc))
            log.warning(
                "notice %s to %s via %s failed for good after %d attempt%s: %s",
                *what,
                attempts,
                "" if attempts == 1 else "s",
                exc,
                extra={"action": "notice-failed", **where},
            )
            if self.on_failed is not None and not is_ops(row):
                self.on_failed(row, str(exc))
            return
        nxt = next_attempt(attempts, now, base=cfg.notifiers.retry_base, jitter=self._rng.random())
        retry_after = (getattr(exc, "detail", None) or {}).get("retry_after")
        if isinstance(retry_after, int) and retry_after > 0:  # the receiver asked for a pause: honour it, within reason
            nxt = max(nxt, now + min(timedelta(seconds=retry_after), timedelta(hours=1)))
        self._result(row, "pending", now, next_attempt_at=nxt, last_error=str(exc))
        msg = "notice %s to %s via %s will be retried at %s: %s"
        log.info(msg, *what, isoz(nxt), exc, extra={"action": "notice-retry", **where})

    def _result(self, row: dict, status: str, now: datetime, **values: Any) -> None:
        result = {"retry": "retry", "pending": "retry"}.get(status, status)
        self.metrics.notices.labels(row["channel"], result).inc()
        self.results.put(row, dict(status=status, updated_at=now, **values))

    # -- the loops -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The worker loop: keeps every slot busy while deliveries are due.

        Woken by ticks (new rows) and by each finished send (a free slot); otherwise it looks
        again every second (retries coming due).
        """
        # A claim is a store round trip: while sends are in flight, wait until a quarter of
        # the slots are free (or 50 ms passed) and claim them together, not one per finished send.
        batch = max(1, min(self.claim_batch, self.slots.size) // 4)
        last = 0.0
        while not stop.is_set():
            self.wake.clear()  # before claiming: a send finishing meanwhile wakes the wait below
            free = self.slots.free()
            claimed = 0
            if free and (free >= batch or free == self.slots.size or time.monotonic() - last >= 0.05):
                last = time.monotonic()
                try:
                    claimed = self.deliver_due(wait=False)
                except Exception:  # the worker must survive anything; the loop reports faults
                    log.exception("outbox worker iteration failed")
            if not claimed:
                self.wake.wait(0.05 if 0 < free < self.slots.size else 1.0)

    def run_writer(self, stop: threading.Event) -> None:
        """Writes results until stopped and every send in flight has reported (``shutdown``
        joins this thread before it shuts the pool down)."""
        while True:
            idle = stop.is_set() and self.slots.free() == self.slots.size  # read before writing: nothing after
            written = self.results.write()
            if idle and not written:
                return
            if not written:
                self.results.wake.wait(0.5)

    def shutdown(self) -> None:
        """Stop the send pool; claims in flight run out and are retried by the next instance."""
        self._pool.shutdown(wait=True, cancel_futures=True)
