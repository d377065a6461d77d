"""Integrations as effects (SPEC 6): what each target should show, planned by the tick,
brought about by a worker of its own, never under the tick's lock.

Each tick, :meth:`IntegrationRuns.plan` (inside the tick's transaction) writes per
(integration, window, occurrence) what is wanted: ``planned`` (apply: at once, or for
Alertmanager at ``start - ahead``), ``started``, ``finished``, ``exited`` (an early
``maintd exit``) or ``cancelled`` (cancelled, removed, or the window no longer lists the
target), with the occurrence's current start and end (extend, end checks and reschedules
move them). The worker claims due rows, runs the steps between what was done and what is
wanted (apply, update, start, finish, revert), stores the integration's state after each
step, journals it, and on failure retries on the notice schedule. A failing integration
holds nothing else up: the tick never waits for it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from integrations import IntegrationError, Occurrence

from .. import plan as planning
from ..config.integrations import chosen
from ..model import Config, Tenant, isoz
from ..notices import tenant_message
from ..retry import next_attempt
from .faults import StoreGuard
from .generation import Generations
from .metrics import Metrics
from .snapshot import find_window

log = logging.getLogger("maintd")

LIVE = ("planned", "started")
HORIZON = timedelta(days=1)  # the plan always looks at least this far ahead (plan.scope)


def _key(r: Mapping[str, Any]) -> tuple[str, str, datetime]:
    return (r["integration"], r["window"], r["anchor"])


def steps(row: Mapping[str, Any]) -> list[str]:
    """The actions between what was done (``row["done"]``) and what is wanted, in order."""
    done, phase = row.get("done") or {}, row["phase"]
    if phase in ("exited", "cancelled"):
        return ["revert"] if done else []
    if not done:
        return [] if phase == "finished" else (["apply", "start"] if phase == "started" else ["apply"])
    out = []
    if (done.get("start"), done.get("end")) != (isoz(row["start"]), isoz(row["end"])):
        out.append("update")
    if phase in ("started", "finished") and done.get("phase") == "planned":
        out.append("start")
    if phase == "finished" and done.get("phase") != "finished":
        out.append("finish")
    return out


class IntegrationRuns:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        evaluation: Callable[[], planning.Evaluation | None],
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        dry_run: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.generations = generations
        self.evaluation = evaluation
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.dry_run = dry_run
        self.wake = threading.Event()
        self._rng = rng or random.Random()
        self.on_failed: Callable[[dict], Any] | None = None  # a target's first failure (the ops room hears it)

    # -- planning: inside the tick's transaction ----------------------------------------

    def plan(self, tx, ev: planning.Evaluation, now: datetime) -> None:
        """Write what every target should show now (see the module docstring)."""
        cfg = self.generations.config
        rows = {_key(r): r for r in tx.integrations.rows(live_only=True)}
        if not cfg.integrations and not rows:
            return
        seen: set[tuple[str, str, datetime]] = set()
        live: set[tuple[str, datetime]] = set()
        changed = False
        for a in ev.active + ev.upcoming:
            anchor = planning.anchor(a.window, a.occ, a.wave)
            live.add((a.window.id, anchor))
            phase = "started" if now in a.occ else "planned"
            for name, kind, settings in chosen(cfg, a.window):
                key = (name, a.window.id, anchor)
                seen.add(key)
                row = rows.get(key)
                due = now
                if kind == "alertmanager" and phase == "planned" and not (row and row["done"]):
                    due = max(now, a.occ.start - settings.get("ahead", timedelta(0)))
                wish = dict(occurrence=a.occ.key, type=kind, phase=phase, start=a.occ.start, end=a.occ.end)
                changed |= tx.integrations.want(key, **wish, due=due, now=now, row=row)
        gone = [r for k, r in rows.items() if k not in seen and r["phase"] in LIVE]
        for r in gone:
            final = self._gone_phase(tx, cfg, ev, r, (r["window"], r["anchor"]) in live, now)
            if final is not None:
                kept = {k: r[k] for k in ("occurrence", "type", "start", "end")}
                changed |= tx.integrations.want(_key(r), **kept, phase=final, due=now, now=now, row=r)
        if changed:
            self.wake.set()

    def _gone_phase(self, tx, cfg: Config, ev: planning.Evaluation, r: dict, live: bool, now: datetime) -> str | None:
        """What became of an occurrence the plan no longer shows with this target."""
        if live:
            return "cancelled"  # the window no longer lists the target
        w = cfg.window(r["window"])
        if r["phase"] == "planned" and w is not None and not w.cancelled and r["start"] > now + HORIZON:
            return None  # beyond what this tick expanded, not removed
        occ = (r["window"], r["occurrence"])
        removed = any(
            t.event == "end" and t.reason != "scheduled" for t in ev.transitions if (t.window, t.occurrence) == occ
        )
        started = r["phase"] == "started" or (r["window"], r["occurrence"], "start") in tx.journal.events(
            since=r["start"] - timedelta(days=1)
        )
        if not started:
            return "cancelled"
        override = tx.journal.overrides().get(occ) or {}
        return "exited" if removed or override.get("reason") == "exit" else "finished"

    # -- the worker ------------------------------------------------------------------

    def run(self, stop: threading.Event, leader: Callable[[], bool]) -> None:
        reset = False
        while not stop.is_set():
            self.wake.clear()
            ran = 0
            try:
                if leader():
                    if not reset:
                        with self.store.transaction() as tx:
                            tx.integrations.reset_running(self.clock())
                        reset = True
                    ran = self.run_due()
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("integration worker iteration failed")
            if not ran:
                self.wake.wait(1.0)

    def run_due(self) -> int:
        """Run every due row once; returns how many ran."""
        now = self.clock()
        with self.guard():
            with self.store.read() as r:
                rows = r.integrations.due(now)
        ran = 0
        for row in rows:
            with self.guard():
                with self.store.transaction() as tx:
                    claimed = tx.integrations.claim(_key(row), now)
                if claimed is not None:
                    self.run_one(claimed)
                    ran += 1
        if ran:
            with self.guard():
                with self.store.read() as r:
                    recent = r.integrations.rows(since=now - timedelta(days=7))
                    failed = sum(1 for x in recent if x["status"] == "failed")
                self.metrics.integrations_failed.set(failed)
        return ran

    def run_one(self, row: dict) -> None:
        key, gen = _key(row), self.generations.current
        target = gen.integrations.get((row["window"], row["integration"])) or gen.integrations.get(
            ("", row["integration"])
        )
        state, done = dict(row.get("state") or {}), dict(row.get("done") or {})
        action = "apply"
        try:
            if target is None:
                raise IntegrationError(f"integration {row['integration']} is not configured any more", permanent=True)
            occ = self.occurrence(row)
            for action in steps(row):
                state = self._step(target, action, occ, row, state)
                done = (
                    {}
                    if action == "revert"
                    else {"phase": _after(action, done), "start": isoz(occ.start), "end": isoz(occ.end)}
                )
                self._save(key, state, done, row, action)
        except IntegrationError as exc:
            self._failed(row, state, done, exc, action)
            return
        self._finished(row, state, done)

    def occurrence(self, row: dict) -> Occurrence:
        cfg = self.generations.config
        w = find_window(cfg, self.evaluation(), row["window"])
        title = w.title if w else row["window"]
        nobody = Tenant(id="", name="", zone=cfg.provider.zone)
        message = tenant_message(cfg, w, nobody, row["start"], row["end"], title, row["window"])
        return Occurrence(
            window=row["window"],
            title=title,
            occurrence=row["occurrence"],
            start=row["start"],
            end=row["end"],
            tenants=tuple(sorted(w.tenants)) if w else (),
            message=message,
        )

    def _step(self, target, action: str, occ: Occurrence, row: dict, state: dict) -> dict:
        now = self.clock()
        if self.dry_run:
            return state
        if action == "revert":
            reason = "exited" if row["phase"] == "exited" else "cancelled"
            return dict(target.revert(occ, state, reason=reason, now=now))
        return dict(getattr(target, action)(occ, state, now=now))

    def _save(self, key, state: dict, done: dict, row: dict, action: str) -> None:
        now = self.clock()
        dry = " (dry run: not sent)" if self.dry_run else ""
        with self.store.transaction() as tx:
            tx.integrations.record(key, now=now, state=state, done=done, status="running", attempts=row["attempts"])
            tx.journal(
                "integration",
                at=now,
                window=row["window"],
                occurrence=row["occurrence"],
                message=f"{row['integration']} ({row['type']}): {action}{dry}",
                detail={
                    "integration": row["integration"],
                    "type": row["type"],
                    "action": action,
                    "dry_run": self.dry_run,
                },
            )
        log.info("integration %s %s for %s", row["integration"], action, row["window"], extra={"action": "integration"})

    def _finished(self, row: dict, state: dict, done: dict) -> None:
        now = self.clock()
        with self.guard(), self.store.transaction() as tx:
            current = next((r for r in tx.integrations.rows(window=row["window"]) if _key(r) == _key(row)), row)
            if steps({**current, "done": done}):
                status, next_at = "pending", now  # the wish moved while we ran
            else:
                status, next_at = ("reverted" if current["phase"] in ("exited", "cancelled") else "applied"), None
            tx.integrations.record(
                _key(row), now=now, state=state, done=done or None, status=status, attempts=0, next_at=next_at
            )

    def _failed(self, row: dict, state: dict, done: dict, exc: IntegrationError, action: str = "apply") -> None:
        now = self.clock()
        retry = self.generations.config.notifiers.retry
        attempts = row["attempts"] + 1
        nxt = None
        if not exc.permanent:
            nxt = next_attempt(
                schedule=retry.schedule,
                attempts=attempts,
                due_at=row["due_at"] or now,
                now=now,
                max_age=retry.max_age,
                retry_after=exc.retry_after,
                jitter=self._rng.uniform(-1, 1),
            )
        self.metrics.integration_failures.labels(row["integration"]).inc()
        then = f"; retry at {isoz(nxt)}" if nxt else "; gave up"
        with self.guard(), self.store.transaction() as tx:
            tx.integrations.record(
                _key(row),
                now=now,
                state=state,
                done=done or None,
                status="failed",
                attempts=attempts,
                error=str(exc),
                next_at=nxt,
            )
            tx.journal(
                "integration",
                at=now,
                window=row["window"],
                occurrence=row["occurrence"],
                message=f"{row['integration']} ({row['type']}) failed: {exc}{then}",
                detail={"integration": row["integration"], "type": row["type"], "error": str(exc), "attempt": attempts},
            )
        log.warning(
            "integration %s failed: %s%s", row["integration"], exc, then, extra={"action": "integration-failed"}
        )
        if attempts == 1 and self.on_failed is not None:  # the first failure: the ops room hears it once
            declared = self.generations.config.window(row["window"])
            self.on_failed(
                {
                    "window": row["window"],
                    "title": declared.title if declared else row["window"],
                    "occurrence": row["occurrence"],
                    "start": row["start"],
                    "end": row["end"],
                    "tenants": sorted(declared.tenants) if declared else None,
                    "integration": f"{row['integration']} ({row['type']})",
                    "action": action,  # the step that failed: "could not apply / update / revert"
                    "error": str(exc)[:300],
                }
            )


def _after(action: str, done: dict) -> str:
    return {"apply": "planned", "start": "started", "finish": "finished"}.get(action, done.get("phase", "planned"))


def occurrence_integrations(cfg: Config, a: planning.Active, rows: Mapping[tuple, dict]) -> list[dict]:
    """``status --json``: the targets of one active or next occurrence and where each stands."""
    out = []
    anchor = planning.anchor(a.window, a.occ, a.wave)
    for name, kind, _settings in chosen(cfg, a.window):
        r = rows.get((name, a.window.id, anchor))
        status = "pending" if r is None or r["status"] == "running" else r["status"]
        out.append({"name": name, "type": kind, "state": status, "error": r["error"] if r else None})
    return out
