"""Hooks and end checks: durable runs (the store's hook runs), run by a worker of their
own, never under the tick's lock. The tick plans a run in its transaction; the worker
claims it, runs the command or probe, records the result and wakes the tick."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import hooks as hooks_mod
from .. import plan
from ..model import Config, Tenant, isoz
from ..notices import parse_time, tenant_message
from ..store import next_attempt
from .endchecks import check_offset, is_check, planned_end
from .faults import Faults, StoreGuard
from .generation import Generations
from .metrics import Metrics
from .snapshot import find_window
from .waves import halt_after_check

log = logging.getLogger("maintd")


def hook_for(cfg: Config, ev: plan.Evaluation | None, window_id: str, event: str) -> tuple | None:
    """The argv of a window's on_start / on_end hook, or None."""
    w = find_window(cfg, ev, window_id)
    hooks = cfg.hooks if w is None or w.manual else cfg.hooks_for(w)
    if hooks is None:
        return None
    return hooks.on_start if event == "start" else hooks.on_end


class Effects:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        evaluation: Callable[[], plan.Evaluation | None],
        faults: Faults,
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        env: dict[str, str],
        cwd: str,
        hook_attempts: int,
        dry_run: bool = False,
        on_check: Callable[[], Any] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.generations = generations
        self.evaluation = evaluation
        self.faults = faults
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.env = env
        self.cwd = cwd
        self.hook_attempts = hook_attempts
        self.dry_run = dry_run
        self.on_check = on_check  # a check's result changes the plan: tick
        self.wake = threading.Event()
        self._rng = rng or random.Random()
        self.on_hook_failed: Callable[[dict], Any] | None = None  # a hook that gave up (the ops room hears it)
        self.on_check_failing: Callable[[dict], Any] | None = None  # an end check extended a window (ops room)
        self._secrets: tuple[Config | None, frozenset[str]] = (None, frozenset())

    def secret_names(self, cfg: Config) -> frozenset[str]:
        """Environment variables hooks and checks must not see (once per loaded config)."""
        if self._secrets[0] is not cfg:
            try:
                with open(cfg.path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read(4 << 20)
            except OSError:
                text = ""
            values = hooks_mod.secret_values(cfg)
            self._secrets = (cfg, hooks_mod.secret_env_names(text, self.env, values))
        return self._secrets[1]

    def run_due(self) -> int:
        """Run every due hook and end check once; returns how many ran."""
        now = self.clock()
        runs: list[dict] = []
        with self.guard():
            runs = [r for r in self.store.hook_runs("pending") if r["next_attempt_at"] <= now]
        done = 0
        for r in runs:
            with self.guard():
                if not self.store.claim_hook(r["window"], r["occurrence"], r["event"], now):
                    continue
                if is_check(r["event"]):
                    self.run_check(r)
                else:
                    self.run_hook(r)
                done += 1
        return done

    def run(self, stop: threading.Event, leader: Callable[[], bool]) -> None:
        while not stop.is_set():
            self.wake.clear()
            try:
                ran = self.run_due() if leader() else 0
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("hook worker iteration failed")
                ran = 0
            if not ran:
                self.wake.wait(1.0)

    # -- end checks -------------------------------------------------------------------

    def run_check(self, r: dict) -> None:
        key = (r["window"], r["occurrence"], r["event"])
        w = self.generations.config.window(r["window"])
        planned = planned_end(w, r["occurrence"]) if w is not None and w.end_check is not None else None
        if w is None or w.end_check is None or planned is None:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="no end check configured any more")
            self.on_check()
            return
        chk = w.end_check
        timeout = max(1.0, min(chk.every.total_seconds(), 30.0))
        if chk.run:
            env = hooks_mod.without_secrets(self.env, self.secret_names(self.generations.config))
            result = hooks_mod.run(chk.run, timeout=timeout, env=env, cwd=self.cwd)
        else:
            result = hooks_mod.probe(chk.url or "", timeout=timeout)
        now = self.clock()
        self.metrics.end_checks.labels("healthy" if result.ok else "failing").inc()
        if result.ok:
            self.faults.clear(f"end-check:{w.id}")
            self.store.finish_hook(key, ok=True, now=now)
            self.on_check()
            return
        end = planned + check_offset(r["event"])
        new_end = min(end + chk.every, planned + chk.max)
        message = f"end check failing ({result.error}); extended to {isoz(new_end)}"
        # the extension first, then the run's result: a tick that sees the run done sees the new end
        with self.store.transaction() as tx:
            tx.set_override(w.id, r["occurrence"], end=new_end, reason="end-check", at=now, actor="end-check")
            tx.journal(
                "end-check",
                at=now,
                window=w.id,
                occurrence=r["occurrence"],
                message=message,
                detail={"error": result.error, "end": isoz(new_end)},
            )
            halt = None
            if new_end >= planned + chk.max:  # SPEC 8: still failing at max halts the later waves
                halt = halt_after_check(
                    tx,
                    self.generations.config,
                    w.id,
                    r["occurrence"],
                    error=str(result.error),
                    now=now,
                )
        self.store.finish_hook(key, ok=True, now=now, error=result.error)
        self.on_check()  # before the fault: status shows the fault with the extension in force
        self.faults.raise_(
            f"end-check:{w.id}", f"end check of {w.id} failing ({result.error}); extended to {isoz(new_end)}"
        )
        if self.on_check_failing is not None:
            self.on_check_failing(
                {
                    "window": w.id,
                    "title": w.title,
                    "occurrence": r["occurrence"],
                    "start": r["occurrence"],
                    "end": new_end,
                    "max_end": planned + chk.max,
                    "tenants": sorted(w.tenants),
                    "error": str(result.error)[:300],
                }
            )
            if halt is not None:  # the room hears the halt too (SPEC 8), as an end_check_failing
                self.on_check_failing(halt)

    # -- hooks --------------------------------------------------------------------------

    def run_hook(self, r: dict) -> None:
        cfg = self.generations.config
        argv = hook_for(cfg, self.evaluation(), r["window"], r["event"])
        key = (r["window"], r["occurrence"], r["event"])
        if not argv:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="no hook configured any more")
            return
        if self.dry_run:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="dry run: not executed")
            with self.store.transaction() as tx:
                tx.journal(
                    "hook",
                    at=self.clock(),
                    window=r["window"],
                    occurrence=r["occurrence"],
                    message=f"dry run: on_{r['event']} hook {list(argv)} not executed",
                    detail={"event": r["event"], "dry_run": True},
                )
            return
        w = find_window(cfg, self.evaluation(), r["window"])
        hooks_cfg = cfg.hooks_for(w) if w and not w.manual else cfg.hooks
        timeout = hooks_cfg.timeout.total_seconds() if hooks_cfg else 120.0
        result = hooks_mod.run(argv, timeout=timeout, env=self._hook_env(r, cfg), cwd=self.cwd)
        self._hook_result(r, key, result)

    def _hook_env(self, r: dict, cfg: Config) -> dict[str, str]:
        w = find_window(cfg, self.evaluation(), r["window"])
        events = self.store.events()
        d = (events.get((r["window"], r["occurrence"], "start")) or {}).get("detail") or {}
        start = parse_time(d.get("start")) or r["occurrence"]
        end = parse_time(d.get("end")) or r["occurrence"]
        if r["event"] == "end":
            end_ev = events.get((r["window"], r["occurrence"], "end")) or {}
            end = parse_time((end_ev.get("detail") or {}).get("end")) or end
        nobody = Tenant(id="", name="", zone=cfg.provider.zone)
        message = tenant_message(cfg, w, nobody, start, end, w.title if w else r["window"], r["window"])
        return hooks_mod.hook_env(
            event=r["event"],
            window=r["window"],
            occurrence=r["occurrence"],
            start=start,
            end=end,
            tenants=d.get("tenants", []),
            message=message,
            base=self.env,
            secrets=self.secret_names(cfg),
        )

    def _ops_record(self, r: dict, attempts: int, error: str) -> dict:
        w = self.generations.config.window(r["window"])
        return {
            "window": r["window"],
            "title": w.title if w else r["window"],
            "occurrence": r["occurrence"],
            "start": r["occurrence"],
            "hook": f"on_{r['event']}",
            "attempts": attempts,
            "error": str(error)[:300],
        }

    def _hook_result(self, r: dict, key: tuple, result: hooks_mod.Result) -> None:
        now = self.clock()
        attempts = (r.get("attempts") or 0) + 1
        fault = f"hook:{r['window']}:{r['event']}"
        if result.ok:
            self.store.finish_hook(key, ok=True, now=now, exit_code=0)
            self.metrics.hooks.labels(r["event"], "ok").inc()
            self.faults.clear(fault)
        else:
            nxt = None
            if attempts < self.hook_attempts:
                base, cap = timedelta(seconds=5), timedelta(minutes=10)
                nxt = next_attempt(attempts, now, base=base, cap=cap, jitter=self._rng.random())
            self.store.finish_hook(key, ok=False, now=now, exit_code=result.exit_code, error=result.error, next_at=nxt)
            self.metrics.hooks.labels(r["event"], "retry" if nxt else "failed").inc()
            then = f"; retry at {isoz(nxt)}" if nxt else "; gave up"
            self.faults.raise_(fault, f"{r['event']} hook of {r['window']} {result.error}{then}")
            if nxt is None and self.on_hook_failed is not None:
                self.on_hook_failed(self._ops_record(r, attempts, str(result.error)))
        with self.store.transaction() as tx:
            tx.journal(
                "hook",
                at=now,
                window=r["window"],
                occurrence=r["occurrence"],
                message=f"on_{r['event']} hook " + ("ok" if result.ok else f"failed: {result.error}"),
                detail={
                    "event": r["event"],
                    "ok": result.ok,
                    "exit_code": result.exit_code,
                    "attempt": attempts,
                    "output": result.output[-500:],
                },
            )
        outcome = "ok" if result.ok else result.error
        log.info("hook on_%s of %s: %s", r["event"], r["window"], outcome, extra={"action": "hook"})
