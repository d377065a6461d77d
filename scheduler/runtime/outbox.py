"""The outbox worker: claim due deliveries, send them with bounded concurrency, record
the results (SPEC section 4).

A delivery slot is held from claim to result, so at most ``workers`` sends run at once and
a slow receiver holds one slot, not a batch. Results are written by :class:`ResultWriter`
in batches, one transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import datetime, timedelta
from typing import Any

from .claims import Held, recover, resend
from .delivery import Ready, Sender
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .ops import is_ops
from .results import ResultWriter, Slots

log = logging.getLogger("maintd")

# Several instances: one whose presence heartbeat is this old is dead, its claims are taken
# back (checked every RECOVER_EVERY seconds), so they are sent again within 10 s (SPEC 4.1).
INSTANCE_LAPSE = timedelta(seconds=5)
RECOVER_EVERY = 2.0
SHUTDOWN_WAIT = 30.0  # seconds a stop waits for sends on an event loop (each has its own deadline)
RESULT_LINGER = 0.02  # seconds results gather before a write (at 1,000 sends/s: ~20 per transaction)
PER_ENDPOINT = 8  # rows of one endpoint (tenant, channel) claimed together and sent in order on one slot


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
        threads: int | None = None,
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
        self._pool = ThreadPoolExecutor(max_workers=threads or workers, thread_name_prefix="deliver")
        self._async: set[Future] = set()  # claims handed to an event loop (see deliver_due)
        self._held = Held()
        self.sender = Sender(
            store=store,
            generations=generations,
            guard=guard,
            metrics=metrics,
            clock=clock,
            results=self.results,
            held=self._held,
            rng=rng,
        )
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
        futures: list[Future] = []
        fanout: dict[Any, list[list[tuple[dict, Ready]]]] = {}  # event-loop client -> its endpoints' sends
        for key, group in groups.items():
            self.slots.take()
            self._held.add((row["id"] for row in group), key)
            client = self._aio_of(group[0])
            if client is not None:  # checked now, sent as coroutines on the client's loop
                ready = [
                    (row, r)
                    for row in group
                    if (r := self.sender.prepare(row, later.get((row["window"], row["tenant"]), []), disabled))
                ]
                fanout.setdefault(client, []).append(ready)
                continue
            try:
                future = self._pool.submit(self._deliver_group, group, later, disabled)
            except RuntimeError:  # the pool is shut down: stopping; the next start takes the claim back
                self.slots.release()
                continue
            future.add_done_callback(self._sent)
            futures.append(future)
        for client, batches in fanout.items():  # one hand-over per claim, not a thread per send
            future = client.submit(self._deliver_async(batches))
            self._async.add(future)
            future.add_done_callback(self._async.discard)
            futures.append(future)
        if wait:
            for f in futures:
                f.result()
            self.results.write()
        return len(rows)

    def _aio_of(self, row: dict) -> Any:
        """The event-loop client of the channel's notifier when it sends as a coroutine."""
        if is_ops(row):
            return None
        notifier = self.generations.current.notifiers.get(row["channel"])
        return getattr(notifier, "aio", None) if hasattr(notifier, "send_async") else None

    async def _deliver_async(self, batches: list[list[tuple[dict, Ready]]]) -> None:
        await asyncio.gather(*(self._group_async(batch) for batch in batches))

    async def _group_async(self, batch: list[tuple[dict, Ready]]) -> None:
        try:
            await self.sender.send_group_async(batch)
        except Exception:  # the slot must come back whatever happened
            log.exception("outbox fan-out failed")
        finally:
            self._sent(None)

    def _deliver_group(self, group: list[dict], later: dict, disabled: set) -> None:
        for row in group:
            self.deliver(row, later.get((row["window"], row["tenant"]), []), disabled)

    @property
    def on_failed(self) -> Callable[[dict, str], None] | None:
        """Called with (row, error) when a tenant delivery fails for good (the ops room hears it)."""
        return self.sender.on_failed

    @on_failed.setter
    def on_failed(self, hook: Callable[[dict, str], None] | None) -> None:
        self.sender.on_failed = hook

    def deliver(self, row: dict, later: list[dict] | None = None, disabled: set | None = None) -> None:
        """Send one claimed delivery on this thread (see :meth:`.delivery.Sender.deliver`)."""
        self.sender.deliver(row, later, disabled)

    def _sent(self, _future: Any) -> None:
        self.slots.release()
        self.wake.set()  # a free slot: claim again

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
            if not stop.is_set():  # gather the results of sends that finish together: one transaction for many
                time.sleep(RESULT_LINGER)

    def shutdown(self) -> None:
        """Stop the send pool and let the sends on event loops finish (each has its deadline);
        claims still in flight are taken back by the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        wait_futures(list(self._async), timeout=SHUTDOWN_WAIT)
