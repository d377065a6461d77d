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
from ..retry import next_attempt
from .claims import Held, recover, resend
from .endpoints import ENDPOINT_DISABLED, endpoint_of
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .ops import OpsDelivery, is_ops
from .results import ResultWriter, Slots

log = logging.getLogger("maintd")

# Several instances: one whose presence heartbeat is this old is dead, its claims are taken
# back (checked every RECOVER_EVERY seconds), so they are sent again within 10 s (SPEC 4.1).
INSTANCE_LAPSE = timedelta(seconds=5)
RECOVER_EVERY = 2.0
PER_ENDPOINT = 8  # rows of one endpoint (tenant, channel) claimed together and sent in order on one slot


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
        instance_lapse: timedelta = INSTANCE_LAPSE,
    ) -> None:
        self.store = store
        self.generations = generations
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.worker = worker
        self.claim_batch = claim_batch
        self.claim_lease = claim_lease
        self.instance_lapse = instance_lapse
        self.slots = Slots(workers)
        self.results = ResultWriter(store=store, worker=worker, guard=guard)
        self.results.written = self._written
        self.wake = threading.Event()  # set by ticks (new rows) and by each finished send
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._rng = rng or random.Random()
        # Called with (row, error) when a tenant delivery fails for good (the ops room hears it).
        self.on_failed: Callable[[dict, str], None] | None = None
        self._held = Held()
        self._shared = store.url.get_backend_name() == "postgresql"

    # -- claims -------------------------------------------------------------------

    def busy(self) -> list[tuple[str, str]]:
        """Endpoints (tenant, channel) with a send in flight or a result not yet written."""
        return self._held.endpoints()

    def in_flight(self) -> int:
        return len(self._held)

    def _written(self, ids: list[int]) -> None:
        self._held.drop(ids)
        self.wake.set()  # an endpoint is free again

    def hold_claims(self, now: datetime) -> int:
        """Extend this worker's claims on the rows it still holds (sends in flight)."""
        ids = self._held.ids()
        if not ids:
            return 0
        with self.guard():
            return self.store.extend_claims(ids, worker=self.worker, until=now + self.claim_lease)
        return 0

    def recover(self, now: datetime) -> int:
        """Take back the claims of dead instances at once (see :func:`.claims.recover`)."""
        taken = recover(
            self.store, self.guard, worker=self.worker, shared=self._shared, lapse=self.instance_lapse, now=now
        )
        if taken:
            self.wake.set()
        return taken

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
                now,
                worker=self.worker,
                limit=min(free, self.claim_batch),
                lease=self.claim_lease,
                busy=self.busy(),
                per_endpoint=PER_ENDPOINT,
            )
            # One read per batch for what a later reschedule or cancellation made untrue,
            # and one for the endpoints a 410 disabled.
            news = [r for r in rows if r["kind"] in ("scheduled", "rescheduled")]
            changes = self.store.changes_after({r["window"] for r in news}, min(r["id"] for r in news)) if news else []
            disabled = (
                {(d["tenant"], d["channel"], d["endpoint"]) for d in self.store.disabled_endpoints()} if rows else set()
            )
        if g.failed:
            return 0
        later: dict[tuple[str, str], list[dict]] = {}
        for c in changes:
            later.setdefault((c["window"], c["tenant"]), []).append(c)
        # One job per endpoint: its rows in order on one slot (a slow tenant holds one slot).
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["tenant"], row["channel"]), []).append(row)
        futures = []
        for key, group in groups.items():
            self.slots.take()
            self._held.add((row["id"] for row in group), key)
            try:
                future = self._pool.submit(self._deliver_group, group, later, disabled)
            except RuntimeError:  # the pool is shut down: stopping; the next start takes the claim back
                self.slots.release()
                continue
            future.add_done_callback(self._sent)
            futures.append(future)
        if wait:
            for f in futures:
                f.result()
            self.results.write()
        return len(rows)

    def _deliver_group(self, group: list[dict], later: dict, disabled: set) -> None:
        for row in group:
            self.deliver(row, later.get((row["window"], row["tenant"]), []), disabled)

    def _sent(self, _future: Any) -> None:
        self.slots.release()
        self.wake.set()  # a free slot: claim again

    # -- one delivery ---------------------------------------------------------------

    def deliver(self, row: dict, later: list[dict] | None = None, disabled: set | None = None) -> None:
        """Send one claimed delivery and queue its result (sent, retry at the schedule's next
        wait, failed, superseded) for the result writer."""
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
        max_age = cfg.notifiers.retry.max_age
        if now - row["created_at"] >= max_age:
            # Sent this late it would be wrong, not merely slow ("starts in 1h", a day later).
            self._result(row, "failed", now, last_error=f"not sent: older than notifiers.retry.max_age ({max_age})")
            msg = "notice %s to %s via %s expired unsent"
            log.warning(msg, row["kind"], row["tenant"], channel, extra={"action": "notice-failed", **where})
            if self.on_failed is not None and not is_ops(row):
                self.on_failed(row, f"expired unsent (older than {max_age})")
            return
        endpoint = endpoint_of(tenant, channel)
        if endpoint is not None and (tenant.id, channel, endpoint) in (disabled or ()):
            self._result(row, "failed", now, last_error=ENDPOINT_DISABLED)
            msg = "notice %s to %s via %s not sent: endpoint disabled (410 Gone)"
            log.info(msg, row["kind"], row["tenant"], channel, extra={"action": "notice-failed", **where})
            return
        notice = notice_from_json(row["payload"])
        why: str | None = None
        with self.guard() as g:
            why = stale(self.store, row, notice, now, later)
            if not why:
                notice = with_link(self.store, notice, cfg.daemon.public_url)
        if g.failed:
            return  # unsent and still claimed: the claim lapses and it is tried again
        if why:
            self._result(row, "superseded", now, last_error=why)
            msg = "notice %s to %s via %s not sent: %s"
            log.info(msg, row["kind"], row["tenant"], channel, why, extra={"action": "notice-superseded", **where})
            return
        self._send(row, notifier, notice, tenant, endpoint)

    def _send(self, row: dict, notifier: Any, notice: Notice | None, tenant: Any, endpoint: str | None = None) -> None:
        channel = row["channel"]
        try:
            notifier.send(notice, tenant)
        except Exception as exc:  # noqa: BLE001 - DeliveryError, or a bug in a notifier: retry either way
            if not isinstance(exc, DeliveryError):
                log.exception("notifier %s crashed", channel)
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

    # -- resends ------------------------------------------------------------------

    def resend(self, notice_id: str | None = None, *, failed: bool = False) -> dict:
        """Failed deliveries back to ``pending`` (see :func:`.claims.resend`)."""
        answer = resend(self.store, self.clock(), notice_id, failed=failed)
        self.wake.set()
        return answer

    # -- the loops -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The worker loop: keeps every slot busy while deliveries are due.

        Woken by ticks (new rows) and by each finished send (a free slot); otherwise it looks
        again every second (retries coming due). Starts by taking back a dead predecessor's
        claims.
        """
        self.recover(self.clock())
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
        """Writes results, extends the claims of sends in flight and (several instances)
        takes back dead instances' claims, until stopped and every send in flight has
        reported (``shutdown`` joins this thread before it shuts the pool down)."""
        hold_every = max(0.5, self.claim_lease.total_seconds() / 4)
        held = recovered = time.monotonic()
        while True:
            idle = stop.is_set() and self.slots.free() == self.slots.size  # read before writing: nothing after
            written = self.results.write()
            if idle and not written:
                return
            if time.monotonic() - held >= hold_every:
                held = time.monotonic()
                self.hold_claims(self.clock())
            if self._shared and time.monotonic() - recovered >= RECOVER_EVERY:
                recovered = time.monotonic()
                self.recover(self.clock())
            if not written:
                self.results.wake.wait(0.5)

    def shutdown(self) -> None:
        """Stop the send pool; claims in flight are taken back by the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def retry_after_of(exc: Any) -> timedelta | None:
    """The pause a 429/503 asked for (``Retry-After``), if any."""
    status = getattr(exc, "status", None) or (getattr(exc, "detail", None) or {}).get("status")
    if status is not None and status not in (429, 503):
        return None
    after = getattr(exc, "retry_after", None)
    if isinstance(after, timedelta):
        return after
    seconds = (getattr(exc, "detail", None) or {}).get("retry_after")
    return timedelta(seconds=seconds) if isinstance(seconds, int) and seconds > 0 else None


def with_link(store, notice: Notice, base: str | None) -> Notice:
    """Fill in the tenant page link a notice was enqueued without (see ``NoticeRows``)."""
    if notice.link or not base:
        return notice
    try:
        # Read first: creating takes the write lock, which every sender would queue for.
        secret = store.tenant_secret(notice.tenant, create=False) or store.tenant_secret(notice.tenant)
    except StoreError:
        return notice
    return replace(notice, link=f"{base}/t/{secret}/")
