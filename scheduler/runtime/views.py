"""Read-only answers: status, windows, and the gauges refreshed when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import plan
from ..errors import MaintdError
from ..model import Mode, isoz
from .endchecks import is_check
from .endpoints import disabled_json
from .faults import Faults, StoreGuard
from .generation import Generations
from .integrations import occurrence_integrations
from .metrics import Metrics
from .presence import Presence
from .reconciler import Reconciler
from .waves import halted_windows, read_waves, window_waves


class Views:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        reconciler: Reconciler,
        presence: Presence,
        faults: Faults,
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        config_path: str,
        dry_run: bool = False,
        status_wait: float = 1.0,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.flush = flush  # the gate's writes answered before their commit: status shows them
        self.store = store
        self.generations = generations
        self.reconciler = reconciler
        self.presence = presence
        self.faults = faults
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.config_path = config_path
        self.dry_run = dry_run
        self.status_wait = status_wait

    def status(self) -> dict:
        # Wait for a tick in flight (milliseconds) so the answer is consistent, but not for
        # long: a tick stuck on the store (locked by another writer, a full disk) must not
        # make status and /metrics hang for seconds — that is exactly when ops look at them.
        # Then the last completed evaluation answers.
        lock = self.reconciler.lock
        locked = lock.acquire(timeout=self.status_wait)
        try:
            now = self.clock()
            ev = self.reconciler.evaluation
            last_tick = self.reconciler.last_tick
        finally:
            if locked:
                lock.release()
        cfg = self.generations.config
        items = list(ev.active + ev.upcoming) if ev else []
        active = [a for a in items if now in a.occ]
        waves = self._waves()  # SPEC 8: stored membership and halts
        manual = plan.Journal(manual=tuple(a.window for a in items if a.window.manual), **waves)
        nxt = list(plan.next_occurrences(cfg, manual, now, limit=5))
        stored = self._stored(now)
        mode = Mode.NORMAL
        if active:
            mode = Mode.DRAINING if stored["draining"] else Mode.MAINTENANCE
        body = {
            "mode": mode.value,
            "now": isoz(now),
            "active": [occurrence_json(cfg, a, open_ended=a.window.id in stored["open_manual"]) for a in active],
            "next": [occurrence_json(cfg, a) for a in nxt],
            "leases": stored["leases"],
            "notices": stored["notices"],
            "disabled_endpoints": stored["disabled_endpoints"],
            "hooks": stored["hooks"],
            "config": {
                "path": self.config_path,
                "loaded_at": isoz(self.generations.current.loaded_at),
                "reloaded_at": isoz(self.generations.reloaded_at),
                "error": self.generations.error,
            },
            "faults": self.faults.to_json(),
            "dry_run": self.dry_run,
            "last_tick": isoz(last_tick),
            "instances": stored["instances"] or [self.presence.me()],  # the store is down: say who answers
            "halted": halted_windows(cfg, plan.Journal(**waves), now),
        }
        for entry, a in zip(body["active"] + body["next"], active + nxt, strict=True):  # SPEC 6
            entry["integrations"] = occurrence_integrations(cfg, a, stored["integrations"])
        return body

    def _waves(self) -> dict[str, Any]:
        with self.guard():
            return read_waves(self.store)
        return {}

    def _stored(self, now: datetime) -> dict[str, Any]:
        """The parts of status read from the store; empty ones while it fails."""
        out: dict[str, Any] = {
            "open_manual": set(),
            "draining": [],
            "leases": {"running": 0, "draining": 0, "items": []},
            "notices": {"sent": 0, "pending": 0, "failed": 0, "superseded": 0},
            "disabled_endpoints": [],
            "hooks": {"pending": 0, "failed": 0, "items": []},
            "instances": [],
            "integrations": {},
        }
        with self.guard():
            with self.store.read() as r:
                out["integrations"] = {
                    (x["integration"], x["window"], x["anchor"]): x
                    for x in r.integrations.rows(since=now - timedelta(days=1))
                }
            out["open_manual"] = {m["id"] for m in self.store.manual_windows(active_only=True) if m["end"] is None}
            self.flush()
            running = self.store.leases("running")
            draining = [lease for lease in running if lease["drain"]]
            out["leases"] = {
                "running": len(running),
                "draining": len(draining),
                "items": [lease_json(lease, now) for lease in running[:100]],
            }
            out["notices"] = self.store.notice_counts()
            out["disabled_endpoints"] = disabled_json(self.generations.config.tenants, self.store.disabled_endpoints())
            runs = [r for r in self.store.hook_runs() if not is_check(r["event"])]
            out["hooks"] = {
                "pending": sum(1 for r in runs if r["status"] in ("pending", "running")),
                "failed": sum(1 for r in runs if r["status"] == "failed"),
                "items": [hook_json(r) for r in runs if r["status"] != "ok"][:20],
            }
            out["instances"] = self.presence.instances(now)
            out["draining"] = draining
        return out

    def windows(self) -> list[dict]:
        now = self.clock()
        cfg = self.generations.config
        first: dict[str, plan.Active] = {}
        # once for all windows (it was once per window: 300 windows took seconds)
        journal = plan.Journal(**self._waves())
        for a in plan.effective(cfg, journal, now, now + timedelta(days=400)):
            first.setdefault(a.window.id, a)
        out = []
        for w in cfg.windows:
            occ = first.get(w.id)
            out.append(
                {
                    "id": w.id,
                    "title": w.title,
                    "recurring": w.recurring,
                    "cron": w.cron,
                    "timezone": w.zone.key,
                    "cancelled": w.cancelled,
                    "tenants": sorted(w.tenants),
                    "resources": sorted(w.resources) if w.resources else None,
                    "notify": [w.lead_label(lead) for lead in w.notify],
                    "policy": w.policy,
                    "next": {"occurrence": isoz(occ.occ.key), "start": isoz(occ.occ.start), "end": isoz(occ.occ.end)}
                    if occ
                    else None,
                }
            )
            out[-1].update(window_waves(w, journal, now))  # SPEC 8: "halted", "waves"
        return out

    def refresh_gauges(self) -> None:
        """Gauges that read the store: refreshed when /metrics is scraped."""
        try:
            st = self.status()
        except MaintdError:
            return
        for m in Mode:
            self.metrics.mode.labels(m.value).set(1 if st["mode"] == m.value else 0)
        self.metrics.notices_pending.set(st["notices"]["pending"])
        self.metrics.notices_failed.set(st["notices"]["failed"])
        self.metrics.notices_superseded.set(st["notices"].get("superseded", 0))
        self.metrics.endpoints_disabled.set(len(st.get("disabled_endpoints", [])))
        self.metrics.leases.labels("running").set(st["leases"]["running"])
        self.metrics.leases.labels("draining").set(st["leases"]["draining"])
        self.metrics.hooks_failed.set(st["hooks"]["failed"])
        self.metrics.drain_overrun.set(sum(1 for f in st["faults"] if f["what"].startswith("overrun:")))


def occurrence_json(cfg, a: plan.Active, *, open_ended: bool = False) -> dict:
    return {
        "window": a.window.id,
        "occurrence": isoz(a.occ.key),
        "start": isoz(a.occ.start),
        "end": None if open_ended else isoz(a.occ.end),
        "tenants": sorted(a.window.tenants),
        "title": a.window.title,
        "manual": a.window.manual,
        "policy": a.window.policy or cfg.provider.policy,
        **({"wave": a.wave} if a.wave is not None else {}),  # SPEC 8
    }


def lease_json(lease: dict, now: datetime) -> dict:
    overrun = bool(lease.get("drain") and lease.get("deadline") and lease["deadline"] < now)
    return {
        "id": lease["id"],
        "tenant": lease["tenant"],
        "kind": lease["kind"],
        "resource": lease["resource"],
        "admitted_at": isoz(lease["admitted_at"]),
        "heartbeat_at": isoz(lease["heartbeat_at"]),
        "drain": bool(lease["drain"]),
        "deadline": isoz(lease["deadline"]),
        "overrun": overrun,
    }


def hook_json(r: dict) -> dict:
    return {
        "window": r["window"],
        "occurrence": isoz(r["occurrence"]),
        "event": r["event"],
        "status": r["status"],
        "attempts": r["attempts"],
        "error": r["last_error"],
        "next_attempt_at": isoz(r["next_attempt_at"]),
    }
