"""Drain orders for running leases that an active occurrence's policy denies, and the
leases' survival across a restart."""

from __future__ import annotations

import logging
from datetime import datetime

from .. import plan
from ..model import isoz
from ..policy import Gating
from .faults import StoreGuard
from .gate import Overruns
from .gatings import GatingIndex, denying
from .generation import Generations

log = logging.getLogger("maintd")


class Drains:
    def __init__(
        self, *, store, generations: Generations, index: GatingIndex, overruns: Overruns, guard: StoreGuard
    ) -> None:
        self.store = store
        self.generations = generations
        self.index = index
        self.overruns = overruns
        self.guard = guard

    def resume(self, now: datetime) -> None:
        """At start-up: the time maintd was down does not count against its gate clients, so
        running leases (with their drain orders and deadlines) survive a restart."""
        resumed = 0
        with self.guard():
            with self.store.transaction() as tx:
                resumed = tx.resume_leases(now)
        if resumed:
            log.info("%d running leases resumed", resumed, extra={"action": "leases-resumed"})

    def order(self, tx, ev: plan.Evaluation, now: datetime) -> None:
        """Order the running leases that an active occurrence's policy denies to drain.

        Runs in every tick's transaction, so a window that starts (or a lease admitted just
        before its start, or a maintd that was down at the start) is caught by the next
        tick. The deadline is the occurrence's start + ``drain.grace`` for ``then: stop``,
        none for ``then: keep``; a lease keeps its first order (``order_drain``). Jobs the
        policy allows (restores) and jobs on resources a window does not cover are never
        drained. One decision per (tenant, kind, resource) per tick, however many leases.
        """
        overrun = self.overruns.lease_ids()
        if not ev.active and not overrun:
            return
        # past expires_at is gone, even if this very transaction's sweep is not visible here
        running = [lease for lease in self.store.leases("running") if lease["expires_at"] > now]
        alive = {lease["id"] for lease in running}
        for lease_id in overrun:  # a lease that expired (its client died) is no longer running late
            if lease_id not in alive:
                self.overruns.clear(lease_id)
        if not ev.active:
            return
        generation = self.generations.current
        cfg = generation.config
        denied_by: dict[tuple, Gating | None] = {}  # (tenant, kind, resource) -> the denying occurrence
        for lease in running:
            tenant = cfg.tenants.get(lease["tenant"])
            if lease["drain"] or tenant is None:
                continue
            key = (tenant.id, lease["kind"], lease["resource"])
            if key not in denied_by:
                gatings = self.index.gatings(tenant, ev, cfg)
                denied_by[key] = denying(
                    gatings, tenant, lease["kind"], lease["resource"], now, cfg, generation.compiled
                )
            gating = denied_by[key]
            if gating is not None:
                _order(tx, lease, gating, now)


def _order(tx, lease: dict, gating: Gating, now: datetime) -> None:
    w, occ = gating.window, gating.occurrence
    deadline = occ.start + w.drain.grace if w.drain.then == "stop" else None
    if not tx.order_drain([lease["id"]], deadline=deadline, then=w.drain.then):
        return
    by = f" by {isoz(deadline)}" if deadline else " (may finish)"
    tx.journal(
        "drain",
        at=now,
        window=w.id,
        occurrence=occ.key,
        message=f"lease {lease['id']} ({lease['tenant']}/{lease['kind']}) ordered to drain{by}",
        detail={
            "lease": lease["id"],
            "tenant": lease["tenant"],
            "kind": lease["kind"],
            "resource": lease["resource"],
            "deadline": isoz(deadline),
            "then": w.drain.then,
        },
    )
    log.info(
        "drain lease %s (%s/%s)%s",
        lease["id"],
        lease["tenant"],
        lease["kind"],
        by,
        extra={"action": "drain", "window": w.id, "tenant": lease["tenant"]},
    )
