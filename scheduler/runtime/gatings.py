"""Which occurrences gate a tenant, and under which policy: shared by admissions and drains."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from typing import Any

from .. import plan
from ..model import Config, Tenant, Window
from ..policy import Gating, Request, decide


class GatingIndex:
    """The occurrences of an evaluation that affect each tenant, built once per evaluation,
    config and tenant and shared by every admission until the next tick: the gate's hot path
    is a dict lookup, not a scan of every occurrence.

    Independent of the instant asked about (decide() classifies every gating by its own
    ``[start, end)``, and the merged period containing an occurrence's start is the one
    containing any later instant of it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, Any] = (None, None)
        self._by_tenant: dict[str, tuple[Gating, ...]] = {}

    def gatings(self, tenant: Tenant, ev: plan.Evaluation | None, cfg: Config) -> tuple[Gating, ...]:
        if ev is None:
            return ()
        with self._lock:
            if self._key[0] is not ev or self._key[1] is not cfg:
                self._key, self._by_tenant = (ev, cfg), {}
            by_tenant = self._by_tenant
        found = by_tenant.get(tenant.id)
        if found is None:  # threads racing here build equal answers; last one wins
            found = by_tenant[tenant.id] = gatings_of(tenant.id, ev.active + ev.upcoming, cfg)
        return found


def gatings_of(tenant_id: str, items: Any, cfg: Config) -> tuple[Gating, ...]:
    """Each occurrence of ``items`` that affects the tenant, with the policy in force and the
    end of the tenant's merged period (what a refused job is told to wait for)."""
    mine = [a for a in items if tenant_id in a.window.tenants]
    return tuple(
        Gating(
            window=a.window,
            occurrence=a.occ,
            policy=gate_policy(cfg, a.window),
            period_end=plan.period_end(mine, tenant_id, a.occ.start) or a.occ.end,
        )
        for a in mine
    )


def gate_policy(cfg: Config, window: Window):
    # A manual window keeps the policy it was entered with; if that policy has since
    # left the file, provider.policy (or deny-all) gates instead of nothing.
    if window.policy is not None and window.policy not in cfg.policies:
        window = replace(window, policy=None)
    return cfg.policy_for(window)


def gatings_until(tenant: Tenant, ev: plan.Evaluation, cfg: Config, until: datetime) -> tuple[Gating, ...]:
    """Like :meth:`GatingIndex.gatings`, but reaching ``until``: a tick expands occurrences
    only a day (plus the longest notice lead) ahead, and a long ``expected_duration`` looks
    further, from the journal the tick evaluated (stored wave membership, halts, deferrals,
    manual windows, extensions); an empty one would gate by waves that no longer exist."""
    known = {(a.window.id, a.occ.key) for a in ev.active + ev.upcoming}
    far = tuple(
        a
        for a in plan.effective(cfg, ev.journal or plan.Journal(), ev.now, until)
        if a.occ.start > ev.now and (a.window.id, a.occ.key) not in known
    )
    return gatings_of(tenant.id, ev.active + ev.upcoming + far, cfg)


def denying(
    gatings: tuple[Gating, ...], tenant: Tenant, kind: str, resource: str | None, now: datetime, cfg: Config, compiled
) -> Gating | None:
    """The active occurrence whose policy denies this job now (decide()'s choice), or None."""
    active = [g for g in gatings if g.occurrence.start <= now < g.occurrence.end]
    if not active:
        return None
    decision = decide(
        Request(tenant=tenant, kind=kind, resource=resource), active, (), now, provider=cfg.provider, compiled=compiled
    )
    if decision.admitted:
        return None
    return next(g for g in active if g.window.id == decision.window and g.occurrence.key == decision.occurrence)
