"""The tick (DESIGN.md): read the clock once, read the journal, ask ``plan.evaluate`` what
is true now, apply its actions in ONE store transaction (journal + outbox + announcements
+ drains + due hook and check runs), then ask APScheduler to wake us at the next instant
the answer changes.

The lock guards the evaluation and serialises ticks; it is never held across a
subprocess or an HTTP call (end checks and hooks run on the effects worker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import plan
from ..errors import StoreError
from ..model import Config, isoz
from .drains import Drains
from .effects import hook_for
from .endchecks import checks_due, hold
from .enqueue import NoticeRows
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .snapshot import read_journal
from .waves import store_members

log = logging.getLogger("maintd")


class Reconciler:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        rows: NoticeRows,
        drains: Drains,
        leader: Callable[[], bool],
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        scheduler: Any = None,
        dry_run: bool = False,
        after: Callable[[], None] = lambda: None,
        ops: Any = None,
        watch: Any = None,
        integrations: Any = None,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.flush = flush  # the gate's writes answered before their commit: drains see those leases
        self.store = store
        self.generations = generations
        self.rows = rows
        self.drains = drains
        self.leader = leader  # only the leader records transitions, sends drains and runs hooks
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.scheduler = scheduler  # APScheduler: one `date` job is the next wake-up
        self.dry_run = dry_run
        self.after = after  # wakes the workers: new outbox rows, new hook or check runs
        self.ops = ops  # runtime.ops.Ops: the provider's room hears starts, ends, extensions
        self.watch = watch  # StoreWatch: nothing is applied to a database that is not ours any more
        self.lock = threading.RLock()
        self.integrations = integrations  # runtime.integrations.IntegrationRuns: plans in the tick's transaction
        self.evaluation: plan.Evaluation | None = None
        self.last_tick: datetime | None = None

    def journal(self, now: datetime) -> plan.Journal:
        """The journal as plan sees it now (also the pages' view)."""
        return read_journal(self.store, self.generations.config, now)

    def tick(self, reason: str = "timer") -> plan.Evaluation | None:
        """One iteration: evaluate, apply in one transaction, schedule the next wake-up."""
        t0 = time.perf_counter()
        with self.lock:
            now = self.clock()
            cfg = self.generations.config
            if self.watch is not None and not self.watch.ok():
                # deleted or replaced: its journal is not ours; the gate keeps the last evaluation
                return self.evaluation
            try:
                self.flush()  # before the tick's transaction takes the write lock
                ev = self._evaluate_and_apply(cfg, now)
            except StoreError as exc:
                self.guard.failed(exc)
                self.wake_at(now + timedelta(seconds=2))
                return self.evaluation
            self.guard.recovered()
            self.evaluation = ev
            self.last_tick = now
            self.metrics.active.set(sum(1 for a in ev.active if now in a.occ))
            self.wake_at(ev.next_wakeup)
        self.metrics.ticks.inc()
        self.metrics.tick_seconds.set(time.perf_counter() - t0)
        self.after()
        return ev

    def _evaluate_and_apply(self, cfg: Config, now: datetime) -> plan.Evaluation:
        ev = plan.evaluate(cfg, self.journal(now), now)
        if not self.leader():
            return ev  # followers evaluate too: they answer status and the gate from it
        checks: list = []
        due = checks_due(ev, cfg)
        if due:
            runs = {(r["window"], r["occurrence"], r["event"]): r["status"] for r in self.store.hook_runs()}
            if any(runs.get(k) == "ok" for k in due):
                # A check finished: its extension (written before the run was marked done)
                # may be newer than the journal read above.
                ev = plan.evaluate(cfg, self.journal(now), now)
                due = checks_due(ev, cfg)
            held = [k for k in due if runs.get(k) != "ok"]
            checks = [k for k in held if k not in runs]
            ev = hold(ev, held, cfg)
        self.apply(ev, now, checks)
        return ev

    def wake_at(self, when: datetime | None) -> None:
        if self.scheduler is None or not self.scheduler.running or when is None:
            return
        # never sleep past the safety net, never busy-loop
        when = max(when, self.clock() + timedelta(milliseconds=50))
        self.scheduler.add_job(
            self.tick, "date", run_date=when, id="wake", replace_existing=True, kwargs={"reason": "wake"}
        )

    def apply(self, ev: plan.Evaluation, now: datetime, checks: list | tuple = ()) -> None:
        """Everything ``ev`` says is due now, in one transaction."""
        cfg = self.generations.config
        with self.store.transaction() as tx:
            for t in ev.transitions:
                self._transition(tx, cfg, ev, t, now)
            rows = []
            for n in ev.notices:
                rows.extend(self.rows.rows(n, now))
                self._journal_notice(tx, n, now)
                if n.kind == "extended" and self.ops is not None:
                    self.ops.emit("extended", ops_record(cfg, n, seq=int(n.end.timestamp())), tx=tx)
            if rows:
                tx.enqueue(rows)
            for a in ev.announces:
                ann = a.announcement
                tx.announce(
                    a.window,
                    a.anchor,
                    start=ann.start,
                    end=ann.end,
                    title=ann.title,
                    sequence=ann.sequence,
                    tenants=ann.tenants,
                    status=ann.status,
                    at=now,
                    occurrence_key=ann.occurrence,
                )
            for lease_id in tx.expire_leases(now):
                msg = f"lease {lease_id} expired (no heartbeat)"
                tx.journal("lease-expired", at=now, message=msg, detail={"lease": lease_id})
            self.drains.order(tx, ev, now)
            for window, occurrence, event in checks:
                tx.add_hook_run(window, occurrence, event, now=now)
            store_members(tx, cfg, ev, now)  # SPEC 8: wave membership is stable once planned
            if self.integrations is not None:
                self.integrations.plan(tx, ev, now)
            tx.set_meta_time("last_tick", now)

    def _transition(self, tx, cfg: Config, ev: plan.Evaluation, t: plan.Transition, now: datetime) -> None:
        w = cfg.window(t.window)
        detail = {
            "tenants": sorted(t.tenants),
            "period_tenants": sorted(t.period_tenants),
            "title": w.title if w else t.window,
            "start": isoz(t.start),
            "end": isoz(t.end),
            "reason": t.reason,
        }
        if not tx.record_event(t.window, t.occurrence, t.event, at=t.at, recorded_at=now, late=t.late, detail=detail):
            return
        self.metrics.transitions.labels(t.event).inc()
        late = " (late)" if t.late else ""
        why = f" ({t.reason})" if t.reason != "scheduled" else ""
        msg = f"{t.window} {'started' if t.event == 'start' else 'ended'}{late}: {len(t.tenants)} tenants{why}"
        tx.journal(
            t.event,
            at=now,
            window=t.window,
            occurrence=t.occurrence,
            message=msg,
            detail={"late": t.late, "at": isoz(t.at), "tenants": len(t.tenants), "reason": t.reason},
        )
        log.info(msg, extra={"action": t.event, "window": t.window})
        if self.ops is not None:
            self.ops.emit("started" if t.event == "start" else "ended", ops_record(cfg, t), tx=tx)
        if t.event == "start":
            tx.supersede(t.window, t.occurrence, "scheduled", now)
            if w is not None and w.override_freeze:  # SPEC 7: a window run inside a freeze says why
                _journal_override(tx, cfg, w, t, now)
        if hook_for(cfg, self.evaluation, t.window, t.event) and (t.event == "end" or t.end is None or t.end > now):
            tx.add_hook_run(t.window, t.occurrence, t.event, now=now)

    def _journal_notice(self, tx, n: plan.NoticeAction, now: datetime) -> None:
        late = " (late)" if n.late else ""
        dry = " (dry run: rendered, not sent)" if self.dry_run else ""
        tx.journal(
            "notice",
            at=now,
            window=n.window,
            occurrence=n.occurrence,
            message=f"{n.kind} notice to {len(n.tenants)} tenants{late}{dry}",
            detail={"kind": n.kind, "lead": n.lead, "late": n.late, "tenants": len(n.tenants), "dry_run": self.dry_run},
        )


def _journal_override(tx, cfg: Config, w, t: plan.Transition, now: datetime) -> None:
    from ..guardrails import freeze_for

    frozen = freeze_for(t.start or t.at, t.end or t.at + timedelta(seconds=1), cfg.freezes)
    if frozen is not None:
        tx.journal(
            "override-freeze",
            at=now,
            window=t.window,
            occurrence=t.occurrence,
            message=f'{t.window} runs inside freeze "{frozen.id}": {w.override_freeze}',
            detail={"freeze": frozen.id, "reason": w.override_freeze},
        )


def ops_record(cfg: Config, t: Any, **extra: Any) -> dict[str, Any]:
    """What the provider's room is told of a transition or notice (``runtime.ops``)."""
    w = cfg.window(t.window)
    previous = getattr(t, "previous", None)
    return {
        "window": t.window,
        "title": getattr(t, "title", None) or (w.title if w else t.window),
        "occurrence": t.occurrence,
        "start": t.start,
        "end": t.end,
        "previous_end": previous[1] if previous else None,
        "tenants": sorted(t.tenants),
        "reason": "" if getattr(t, "reason", "scheduled") == "scheduled" else f"({t.reason})",
        **extra,
    }
