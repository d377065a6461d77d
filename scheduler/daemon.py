"""The composition root: config, store, the level-triggered loop, workers, signals.

The loop (DESIGN.md): read the clock once, ask ``plan.evaluate`` what is true now,
apply its actions in ONE store transaction (journal + outbox + announcements), then
ask APScheduler to wake us at the next instant the answer changes. Also woken by
reloads, API calls and a safety-net interval. Nothing here decides *what* happens;
it only makes it durable and observable.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import config as config_mod
from . import hooks as hooks_mod
from . import messages, plan
from .errors import ConfigError, ConflictError, MaintdError, NotFoundError, StoreError, UsageError
from .model import UTC, Config, Notice, Tenant, Window, calendar_uid, isoz, notice_id
from .policy import Gating, Request, compile_policies, decide
from .store import Store, database_url, give_up, next_attempt

log = logging.getLogger("maintd")

SAFETY_TICK = float(os.environ.get("MAINTD_SAFETY_TICK", "30"))  # seconds
HEARTBEAT = int(os.environ.get("MAINTD_HEARTBEAT", "10"))  # seconds a gate client waits between heartbeats
HOOK_ATTEMPTS = 5
OPEN_ENDED = timedelta(days=3650)  # `maintd enter` without --for lasts until `maintd exit`
WORKERS = int(os.environ.get("MAINTD_DELIVERY_WORKERS", "32"))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Fault:
    what: str
    message: str
    since: datetime

    def to_json(self) -> dict:
        return {"what": self.what, "message": self.message, "since": isoz(self.since)}


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.mode = Gauge("maintd_mode", "1 for the current mode", ["mode"], registry=r)
        self.active = Gauge("maintd_active_windows", "Occurrences active now", registry=r)
        self.transitions = Counter("maintd_transitions_total", "Recorded starts and ends", ["event"], registry=r)
        self.reloads = Counter("maintd_reloads_total", "Config reloads", ["result"], registry=r)
        self.reload_error = Gauge("maintd_config_error", "1 while the last reload failed", registry=r)
        self.tick_seconds = Gauge("maintd_last_tick_seconds", "Duration of the last loop iteration", registry=r)
        self.ticks = Counter("maintd_ticks_total", "Loop iterations", registry=r)
        self.store_errors = Counter("maintd_store_errors_total", "Failed store operations", registry=r)
        self.store_fault = Gauge("maintd_store_fault", "1 while the store cannot be written", registry=r)
        self.notices = Counter("maintd_notices_total", "Notice deliveries by result", ["channel", "result"],
                               registry=r)
        self.notices_pending = Gauge("maintd_notices_pending", "Deliveries waiting", registry=r)
        self.notices_failed = Gauge("maintd_notices_failed", "Deliveries failed for good", registry=r)
        self.delivery_seconds = Histogram("maintd_delivery_seconds", "Time from enqueue to delivery",
                                          ["channel"], registry=r,
                                          buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600))
        self.hooks = Counter("maintd_hook_runs_total", "Hook runs by result", ["event", "result"], registry=r)
        self.hooks_failed = Gauge("maintd_hooks_failed", "Hook runs failed for good", registry=r)
        self.admissions = Counter("maintd_admissions_total", "Gate decisions", ["result"], registry=r)
        self.leases = Gauge("maintd_leases", "Leases by state", ["state"], registry=r)
        self.drain_overrun = Gauge("maintd_drain_overruns", "Drained leases still running after deadline",
                                   registry=r)
        self.end_checks = Counter("maintd_end_checks_total", "End checks by result", ["result"], registry=r)


class Daemon:
    """One maintd instance. ``clock`` is the only source of time (tests inject one)."""

    def __init__(self, config_path: str, *, dry_run: bool = False, clock: Callable[[], datetime] = utcnow,
                 env: Optional[dict] = None) -> None:
        self.config_path = config_path
        self.dry_run = dry_run
        self.clock = clock
        self.env = dict(os.environ if env is None else env)
        self.lock = threading.RLock()
        self.metrics = Metrics()
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = clock()
        self.faults: dict[str, Fault] = {}
        self.config: Config = config_mod.load(config_path, self.env)  # a daemon needs one good config
        self.loaded_at = self.started_at
        self.config_error: Optional[str] = None
        self.reloaded_at = self.started_at
        self._prepare(self.config)
        self.listen = self.env.get("MAINTD_LISTEN") or self.config.daemon.listen
        db = self.env.get("MAINTD_DATABASE") or self.config.daemon.database
        if dry_run and "://" not in db:
            # A dry run journals what it would have sent; in the real database those rows
            # would count as sent and the real run would never send them.
            root, ext = os.path.splitext(db)
            db = f"{root}.dry-run{ext or '.db'}"
        self.store = Store(database_url(db, os.path.dirname(os.path.abspath(config_path))))
        self.token = self._token()
        self.evaluation: Optional[plan.Evaluation] = None
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                                         "misfire_grace_time": None})
        self._stop = threading.Event()
        self._outbox_wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="deliver")
        self._threads: list[threading.Thread] = []
        self._rng = random.Random()
        self.last_tick: Optional[datetime] = None

    # -- config ------------------------------------------------------------------

    def _prepare(self, cfg: Config) -> None:
        """Everything derived from a config, built once per (re)load."""
        from notifiers import Renderer, build_notifiers

        renderer = Renderer(cfg.provider.name, cfg.notifiers.templates)
        problems = renderer.check()
        if problems:
            raise ConfigError([config_mod.ConfigIssue(p.split(":", 1)[0], 1, 1, p) for p in problems])
        self.renderer = renderer
        self.notifiers = {n.channel: n for n in build_notifiers(cfg.notifiers, cfg.provider.name)}
        self.compiled = compile_policies(cfg.policies)

    def _token(self) -> Optional[str]:
        token = self.env.get("MAINTD_TOKEN")
        if token:
            return token.strip()
        path = self.config.daemon.token_file
        if path:
            full = path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(self.config_path)),
                                                                 path)
            try:
                with open(full, encoding="utf-8") as fh:
                    return fh.read().strip() or None
            except OSError as exc:
                self._fault("token", f"cannot read token_file {full}: {exc.strerror or exc}")
        return None

    def reload(self, actor: str = "SIGHUP") -> Optional[str]:
        """Load the file again; a bad file keeps the last good config. Returns the error."""
        now = self.clock()
        try:
            cfg = config_mod.load(self.config_path, self.env)
            self._prepare(cfg)
        except ConfigError as exc:
            with self.lock:
                self.config_error = "; ".join(str(i) for i in exc.issues[:20])
                self.reloaded_at = now
            self.metrics.reloads.labels("error").inc()
            self.metrics.reload_error.set(1)
            log.error("reload failed, keeping the last good config: %s", self.config_error,
                      extra={"action": "reload-error"})
            self._journal("reload-error", now, message=self.config_error, actor=actor)
            return self.config_error
        with self.lock:
            self.config = cfg
            self.loaded_at = self.reloaded_at = now
            self.config_error = None
        self.metrics.reloads.labels("ok").inc()
        self.metrics.reload_error.set(0)
        log.info("config reloaded: %d tenants, %d windows", len(cfg.tenants), len(cfg.windows),
                 extra={"action": "reload"})
        self._journal("reload", now, message=f"{len(cfg.tenants)} tenants, {len(cfg.windows)} windows",
                      actor=actor)
        self.tick("reload")
        return None

    def _journal(self, kind: str, at: datetime, **kw: Any) -> None:
        try:
            with self.store.transaction() as tx:
                tx.journal(kind, at=at, **kw)
        except StoreError as exc:
            self._store_failed(exc)

    # -- faults ------------------------------------------------------------------

    def _fault(self, what: str, message: str) -> None:
        with self.lock:
            if what not in self.faults or self.faults[what].message != message:
                self.faults[what] = Fault(what, message, self.clock())

    def _clear(self, what: str) -> None:
        with self.lock:
            self.faults.pop(what, None)

    def _store_failed(self, exc: Exception) -> None:
        self.metrics.store_errors.inc()
        self.metrics.store_fault.set(1)
        self._fault("store", str(exc))
        log.error("store: %s (will retry)", exc, extra={"action": "store-error"})

    # -- the journal as plan sees it -----------------------------------------------

    def _snapshot(self, now: datetime) -> plan.Journal:
        since = now - plan.CATCHUP - timedelta(days=2)
        events = self.store.events(since=since)
        open_occ = {}
        for row in self.store.open_occurrences():
            d = row.get("detail") or {}
            key = (row["window"], row["occurrence"])
            open_occ[key] = plan.OpenOccurrence(
                window=row["window"], key=row["occurrence"], start=row["at"],
                end=_parse(d.get("end")) or row["at"], tenants=frozenset(d.get("tenants", ())),
                title=d.get("title", row["window"]))
        overrides = {k: v["end"] for k, v in self.store.overrides().items()}
        manual = []
        for m in self.store.manual_windows(active_only=False):
            end = m["ended_at"] or m["end"] or (m["start"] + OPEN_ENDED)
            if m["end"] is not None and m["ended_at"] is None:
                end = m["end"]
            if end < since:
                continue
            tenants = frozenset(m["tenants"]) if m["tenants"] is not None else frozenset(self.config.tenants)
            manual.append(Window(id=m["id"], title=f"Manual maintenance: {m['reason']}", zone=self.config.provider.zone,
                                 tenants=tenants, start=m["start"], end=max(end, m["start"] + timedelta(seconds=1)),
                                 policy=m["policy"] or self.config.provider.policy, manual=True,
                                 message=None))
        announced = {}
        for (wid, anc), a in self.store.announcements().items():
            announced[(wid, anc)] = plan.Announcement(
                start=a["start"], end=a["end"], title=a["title"], sequence=a["sequence"],
                tenants=frozenset(a["tenants"] or ()), status=a["status"], occurrence=a.get("occurrence_key"))
        return plan.Journal(
            last_tick=self.store.get_meta_time("last_tick"), events=frozenset(events), open=open_occ,
            overrides=overrides, manual=tuple(manual), announced=announced,
            sent_leads=frozenset(self.store.sent_leads(since)),
        )

    # -- the loop ----------------------------------------------------------------

    def tick(self, reason: str = "timer") -> Optional[plan.Evaluation]:
        """One iteration: evaluate, apply in one transaction, schedule the next wake-up."""
        t0 = time.perf_counter()
        with self.lock:
            now = self.clock()
            try:
                journal = self._snapshot(now)
                ev = plan.evaluate(self.config, journal, now)
                ev = self._end_checks(ev, journal, now)
                self._apply(ev, now)
            except StoreError as exc:
                self._store_failed(exc)
                self._wake_at(now + timedelta(seconds=2))
                return self.evaluation
            if "store" in self.faults:
                log.info("store writable again", extra={"action": "store-recovered"})
            self._clear("store")
            self.metrics.store_fault.set(0)
            self.evaluation = ev
            self.last_tick = now
            self._update_gauges(ev, now)
            wake = ev.next_wakeup
            self._wake_at(wake)
        self.metrics.ticks.inc()
        self.metrics.tick_seconds.set(time.perf_counter() - t0)
        self._outbox_wake.set()
        return ev

    def _wake_at(self, when: Optional[datetime]) -> None:
        if not self.scheduler.running or when is None:
            return
        # never sleep past the safety net, never busy-loop
        when = max(when, self.clock() + timedelta(milliseconds=50))
        self.scheduler.add_job(self.tick, "date", run_date=when, id="wake", replace_existing=True,
                               kwargs={"reason": "wake"})

    def _apply(self, ev: plan.Evaluation, now: datetime) -> None:
        cfg = self.config
        with self.store.transaction() as tx:
            for t in ev.transitions:
                detail = {"tenants": sorted(t.tenants), "period_tenants": sorted(t.period_tenants),
                          "title": self._title(t.window), "start": isoz(t.start), "end": isoz(t.end),
                          "reason": t.reason}
                if not tx.record_event(t.window, t.occurrence, t.event, at=t.at, recorded_at=now, late=t.late,
                                       detail=detail):
                    continue
                self.metrics.transitions.labels(t.event).inc()
                late = " (late)" if t.late else ""
                msg = (f"{t.window} {'started' if t.event == 'start' else 'ended'}{late}: "
                       f"{len(t.tenants)} tenants" + (f" ({t.reason})" if t.reason != "scheduled" else ""))
                tx.journal(t.event, at=now, window=t.window, occurrence=t.occurrence, message=msg,
                           detail={"late": t.late, "at": isoz(t.at), "tenants": len(t.tenants), "reason": t.reason})
                log.info(msg, extra={"action": t.event, "window": t.window})
                if t.event == "start":
                    tx.supersede(t.window, t.occurrence, "scheduled", now)
                if self._hook_for(t.window, t.event) and (t.event == "end" or t.end is None or t.end > now):
                    tx.add_hook_run(t.window, t.occurrence, t.event, now=now)
            rows = []
            for n in ev.notices:
                rows.extend(self._rows(n, now))
                tx.journal("notice", at=now, window=n.window, occurrence=n.occurrence,
                           message=f"{n.kind} notice to {len(n.tenants)} tenants" + (" (late)" if n.late else ""),
                           detail={"kind": n.kind, "lead": n.lead, "late": n.late, "tenants": len(n.tenants)})
            if rows:
                tx.enqueue(rows)
            for a in ev.announces:
                ann = a.announcement
                tx.announce(a.window, a.anchor, start=ann.start, end=ann.end, title=ann.title,
                            sequence=ann.sequence, tenants=ann.tenants, status=ann.status, at=now,
                            occurrence_key=ann.occurrence)
            for lease_id in tx.expire_leases(now):
                tx.journal("lease-expired", at=now, message=f"lease {lease_id} expired (no heartbeat)",
                           detail={"lease": lease_id})
            self._order_drains(tx, ev, now)
            tx.set_meta_time("last_tick", now)
        del cfg

    def _title(self, window_id: str) -> str:
        w = self.config.window(window_id)
        return w.title if w else window_id

    def _hook_for(self, window_id: str, event: str) -> Optional[tuple]:
        w = self._window(window_id)
        if w is None or w.manual:
            hooks = self.config.hooks
        else:
            hooks = self.config.hooks_for(w)
        if hooks is None:
            return None
        return hooks.on_start if event == "start" else hooks.on_end

    def _window(self, window_id: str) -> Optional[Window]:
        w = self.config.window(window_id)
        if w is None and self.evaluation is not None:
            for a in self.evaluation.active + self.evaluation.upcoming:
                if a.window.id == window_id:
                    return a.window
        return w

    # -- notices -----------------------------------------------------------------

    def _message_for(self, window: Optional[Window], tenant: Tenant, start: datetime, end: datetime,
                     title: str, window_id: str) -> str:
        text = (window.message if window and window.message else None) or self.config.provider.message
        return messages.render(text, provider=self.config.provider.name, title=title, start=start, end=end,
                               window=window_id, tenant=tenant, zone=tenant.zone)

    def build_notice(self, n: plan.NoticeAction, tenant: Tenant) -> Notice:
        window = self._window(n.window)
        lead = n.lead if n.kind == "scheduled" else None
        seq_key = n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0
        link = None
        if self.config.daemon.public_url:
            try:
                link = f"{self.config.daemon.public_url}/t/{self.store.tenant_secret(tenant.id)}/"
            except StoreError:
                link = None
        return Notice(
            id=notice_id(n.window, n.occurrence, tenant.id, n.kind, lead, seq_key), kind=n.kind, window=n.window,
            occurrence=n.occurrence, tenant=tenant.id, title=n.title, start=n.start, end=n.end,
            message=self._message_for(window, tenant, n.start, n.end, n.title, n.window),
            provider=self.config.provider.name, lead=lead, late=n.late,
            uid=calendar_uid(n.window, n.occurrence, n.recurring), sequence=n.sequence,
            previous_start=n.previous[0] if n.previous else None, previous_end=n.previous[1] if n.previous else None,
            summary=self._summary(n) if n.kind == "completed" else None, link=link,
        )

    def _summary(self, n: plan.NoticeAction) -> dict:
        return {"actual_start": isoz(n.start), "actual_end": isoz(n.end)}

    def _rows(self, n: plan.NoticeAction, now: datetime) -> list[dict]:
        rows = []
        for tid in sorted(n.tenants):
            tenant = self.config.tenants.get(tid)
            if tenant is None:
                continue
            notice = self.build_notice(n, tenant)
            payload = _notice_json(notice)
            for channel, notifier in self.notifiers.items():
                if not notifier.applies_to(tenant):
                    continue
                rows.append({
                    "notice_id": notice.id, "channel": channel, "window": n.window, "occurrence": n.occurrence,
                    "tenant": tid, "kind": n.kind, "lead": notice.lead, "seq": notice_seq(notice),
                    "payload": payload, "created_at": now, "late": n.late,
                    "status": "dry-run" if self.dry_run else "pending",
                })
            if self.dry_run:
                log.info("dry-run: %s notice for %s to %s", n.kind, n.window, tid,
                         extra={"action": "notice-dry-run", "window": n.window, "tenant": tid})
        return rows

    # -- end checks --------------------------------------------------------------

    def _end_checks(self, ev: plan.Evaluation, journal: plan.Journal, now: datetime) -> plan.Evaluation:
        """At a scheduled end, a window with ``end_check`` stays until the service is healthy,
        extended by ``every`` up to ``max`` past its planned end (SPEC section 5)."""
        extended = False
        for t in ev.transitions:
            if t.event != "end" or t.reason != "scheduled":
                continue
            w = self.config.window(t.window)
            if w is None or w.end_check is None:
                continue
            planned = self._planned_end(w, t.occurrence)
            if planned is None or t.end is None or t.end - planned >= w.end_check.max:
                continue
            chk = w.end_check
            timeout = max(1.0, min(chk.every.total_seconds(), 30.0))
            result = hooks_mod.run(chk.run, timeout=timeout, env=self.env) if chk.run else \
                hooks_mod.probe(chk.url, timeout=timeout)
            self.metrics.end_checks.labels("healthy" if result.ok else "failing").inc()
            if result.ok:
                self._clear(f"end-check:{w.id}")
                continue
            new_end = min(t.end + chk.every, planned + chk.max)
            self._fault(f"end-check:{w.id}", f"end check of {w.id} failing ({result.error}); "
                                              f"extended to {isoz(new_end)}")
            with self.store.transaction() as tx:
                tx.set_override(w.id, t.occurrence, end=new_end, reason="end-check", at=now, actor="end-check")
                tx.journal("end-check", at=now, window=w.id, occurrence=t.occurrence,
                           message=f"end check failing ({result.error}); extended to {isoz(new_end)}",
                           detail={"error": result.error, "end": isoz(new_end)})
            extended = True
        if extended:
            return plan.evaluate(self.config, self._snapshot(now), now)
        return ev

    def _planned_end(self, w: Window, key: datetime) -> Optional[datetime]:
        if w.recurring:
            return key + w.duration if w.duration else None
        return w.end

    # -- leases and drains (the gate) ----------------------------------------------

    def _gatings(self, tenant: Tenant, items: list[plan.Active], now: datetime) -> tuple[list, list]:
        active, upcoming = [], []
        everything = list(self.evaluation.active + self.evaluation.upcoming) if self.evaluation else []
        for a in items:
            if tenant.id not in a.window.tenants:
                continue
            g = Gating(window=a.window, occurrence=a.occ, policy=self.config.policy_for(a.window)
                       if a.window.policy is None or a.window.policy in self.config.policies
                       else self.config.policy_for(replace(a.window, policy=None)),
                       period_end=plan.period_end(everything, tenant.id, max(now, a.occ.start)) or a.occ.end)
            (active if now in a.occ else upcoming).append(g)
        return active, upcoming

    def _order_drains(self, tx, ev: plan.Evaluation, now: datetime) -> None:
        if not ev.active:
            return
        for lease in self.store.leases("running"):
            if lease["drain"]:
                continue
            tenant = self.config.tenants.get(lease["tenant"])
            if tenant is None:
                continue
            active, _ = self._gatings(tenant, list(ev.active), now)
            decision = decide(Request(tenant=tenant, kind=lease["kind"], resource=lease["resource"]), active, [],
                              now, provider=self.config.provider, compiled=self.compiled)
            if decision.admitted:
                continue
            w = next((g.window for g in active if g.window.id == decision.window), active[0].window)
            occ = next((g.occurrence for g in active if g.window.id == decision.window), active[0].occurrence)
            deadline = occ.start + w.drain.grace if w.drain.then == "stop" else None
            if tx.order_drain([lease["id"]], deadline=deadline, then=w.drain.then):
                tx.journal("drain", at=now, window=w.id, occurrence=occ.key,
                           message=f"lease {lease['id']} ({lease['tenant']}/{lease['kind']}) ordered to drain"
                                   + (f" by {isoz(deadline)}" if deadline else " (may finish)"),
                           detail={"lease": lease["id"], "tenant": lease["tenant"], "kind": lease["kind"],
                                   "deadline": isoz(deadline), "then": w.drain.then})
                log.info("drain lease %s (%s/%s)", lease["id"], lease["tenant"], lease["kind"],
                         extra={"action": "drain", "window": w.id})

    def admit(self, tenant_id: str, kind: str, resource: Optional[str] = None,
              expected_duration: Optional[timedelta] = None) -> dict:
        """The gate: decide, and on admission hand out a lease."""
        now = self.clock()
        with self.lock:
            cfg = self.config
            tenant = cfg.tenants.get(tenant_id)
            if tenant is None:
                raise NotFoundError(f'unknown tenant "{tenant_id}"')
            items = list(self.evaluation.active + self.evaluation.upcoming) if self.evaluation else []
            active, upcoming = self._gatings(tenant, items, now)
            decision = decide(Request(tenant=tenant, kind=kind, resource=resource,
                                      expected_duration=expected_duration), active, upcoming, now,
                              provider=cfg.provider, compiled=self.compiled)
        if not decision.admitted:
            self.metrics.admissions.labels(decision.reason or "denied").inc()
            retry = max(1, int((decision.retry_after - now).total_seconds() + 0.999)) if decision.retry_after else 60
            try:
                with self.store.transaction() as tx:
                    tx.journal("refused", at=now, window=decision.window, occurrence=decision.occurrence,
                               message=f"{tenant_id}/{kind} refused ({decision.reason})",
                               detail={"tenant": tenant_id, "kind": kind, "resource": resource,
                                       "reason": decision.reason})
            except StoreError as exc:
                self._store_failed(exc)  # a refusal is still a refusal without its journal line
            return {"admitted": False, "reason": decision.reason, "message": decision.message,
                    "retry_after": retry}
        lease_id = "lse_" + secrets.token_hex(12)
        with self.store.transaction() as tx:
            tx.add_lease(lease_id, tenant=tenant_id, kind=kind, resource=resource, admitted_at=now,
                         interval_s=HEARTBEAT)
        self.metrics.admissions.labels("admitted").inc()
        return {"admitted": True, "lease": lease_id, "heartbeat": HEARTBEAT}

    def heartbeat(self, lease_id: str) -> dict:
        now = self.clock()
        row = self.store.heartbeat(lease_id, now)
        if row is None:
            raise NotFoundError(f'unknown or expired lease "{lease_id}"')
        if row.get("overrun"):
            self._fault(f"overrun:{lease_id}", f"lease {lease_id} ({row['tenant']}/{row['kind']}) still runs after "
                                              f"its drain deadline {isoz(row['deadline'])}")
        return {"drain": bool(row["drain"]), "deadline": isoz(row["deadline"])}

    def release(self, lease_id: str) -> None:
        if not self.store.release(lease_id, self.clock()):
            raise NotFoundError(f'unknown or finished lease "{lease_id}"')
        self._clear(f"overrun:{lease_id}")

    # -- manual actions ----------------------------------------------------------

    def enter(self, *, reason: str, duration: Optional[timedelta] = None, tenants: Optional[list[str]] = None,
              policy: Optional[str] = None, actor: str = "api") -> dict:
        now = self.clock()
        with self.lock:
            cfg = self.config
            if tenants:
                unknown = [t for t in tenants if t not in cfg.tenants]
                if unknown:
                    raise NotFoundError(f"unknown tenant(s): {', '.join(unknown)}")
            if policy is not None and policy not in cfg.policies:
                raise NotFoundError(f'unknown policy "{policy}"')
            if duration is not None and duration <= timedelta(0):
                raise UsageError("--for must be a positive duration")
            mid = "manual-" + now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
            end = now + duration if duration else None
            with self.store.transaction() as tx:
                tx.add_manual(mid, reason=reason, start=now, end=end, tenants=tenants, policy=policy,
                              created_at=now, actor=actor)
                tx.journal("enter", at=now, window=mid, occurrence=now, actor=actor,
                           message=f"manual maintenance: {reason}" + (f" until {isoz(end)}" if end else ""),
                           detail={"reason": reason, "tenants": tenants, "end": isoz(end), "policy": policy})
            self.tick("enter")
        return {"window": mid, "occurrence": isoz(now), "start": isoz(now), "end": isoz(end),
                "tenants": sorted(tenants) if tenants else sorted(cfg.tenants)}

    def exit(self, *, window: Optional[str] = None, actor: str = "api") -> dict:
        now = self.clock()
        with self.lock:
            ev = self.tick("exit-pre") or self.evaluation
            targets = [a for a in (ev.active if ev else ()) if window is None or a.window.id == window]
            if not targets:
                raise ConflictError("no maintenance is active" if window is None
                                    else f'window "{window}" is not active')
            with self.store.transaction() as tx:
                for a in targets:
                    if a.window.manual:
                        tx.end_manual(a.window.id, now)
                    tx.set_override(a.window.id, a.occ.key, end=now, reason="exit", at=now, actor=actor)
                    tx.journal("exit", at=now, window=a.window.id, occurrence=a.occ.key, actor=actor,
                               message=f"{a.window.id} ended early by {actor}")
            self.tick("exit")
        return {"ended": [{"window": a.window.id, "occurrence": isoz(a.occ.key)} for a in targets]}

    def extend(self, window_id: str, by: timedelta, *, actor: str = "api") -> dict:
        if by <= timedelta(0):
            raise UsageError("the extension must be a positive duration such as 30m")
        now = self.clock()
        with self.lock:
            ev = self.tick("extend-pre") or self.evaluation
            known = self.config.window(window_id) is not None or any(
                a.window.id == window_id for a in (ev.active + ev.upcoming if ev else ()))
            target = next((a for a in (ev.active if ev else ()) if a.window.id == window_id), None)
            if target is None:
                if not known:
                    raise NotFoundError(f'unknown window "{window_id}"')
                raise ConflictError(f'window "{window_id}" is not active; only a running occurrence can be extended')
            new_end = target.occ.end + by
            with self.store.transaction() as tx:
                tx.set_override(window_id, target.occ.key, end=new_end, reason="extend", at=now, actor=actor)
                tx.journal("extend", at=now, window=window_id, occurrence=target.occ.key, actor=actor,
                           message=f"{window_id} extended by {by} to {isoz(new_end)}",
                           detail={"by_seconds": int(by.total_seconds()), "end": isoz(new_end)})
            self.tick("extend")
        return {"window": window_id, "occurrence": isoz(target.occ.key), "start": isoz(target.occ.start),
                "end": isoz(new_end)}

    # -- views -------------------------------------------------------------------

    def _occ_json(self, a: plan.Active, *, open_ended: bool = False) -> dict:
        return {"window": a.window.id, "occurrence": isoz(a.occ.key), "start": isoz(a.occ.start),
                "end": None if open_ended else isoz(a.occ.end), "tenants": sorted(a.window.tenants),
                "title": a.window.title, "manual": a.window.manual,
                "policy": a.window.policy or self.config.provider.policy}

    def status(self) -> dict:
        now = self.clock()
        with self.lock:
            ev = self.evaluation
            cfg = self.config
            items = list(ev.active + ev.upcoming) if ev else []
            active = [a for a in items if now in a.occ]
            nxt = [a for a in plan.next_occurrences(cfg, plan.Journal(manual=tuple(
                a.window for a in items if a.window.manual)), now, limit=5)]
            config = {"path": os.path.abspath(self.config_path), "loaded_at": isoz(self.loaded_at),
                      "reloaded_at": isoz(self.reloaded_at), "error": self.config_error}
            faults = [f.to_json() for f in self.faults.values()]
        open_manual = set()
        leases_out: dict[str, Any] = {"running": 0, "draining": 0, "items": []}
        counts = {"sent": 0, "pending": 0, "failed": 0}
        hook_info: dict[str, Any] = {"pending": 0, "failed": 0, "items": []}
        try:
            open_manual = {m["id"] for m in self.store.manual_windows(active_only=True) if m["end"] is None}
            running = self.store.leases("running")
            draining = [lease for lease in running if lease["drain"]]
            leases_out = {"running": len(running), "draining": len(draining),
                          "items": [_lease_json(lease, now) for lease in running[:100]]}
            counts = self.store.notice_counts()
            runs = self.store.hook_runs()
            hook_info = {"pending": sum(1 for r in runs if r["status"] in ("pending", "running")),
                         "failed": sum(1 for r in runs if r["status"] == "failed"),
                         "items": [_hook_json(r) for r in runs if r["status"] != "ok"][:20]}
            instances = [{"id": i["id"], "listen": i["listen"], "leader": bool(i["leader"]), "since": isoz(i["since"])}
                         for i in self.store.instances()]
        except StoreError as exc:
            self._store_failed(exc)
            draining = []
            instances = []
        if not instances:
            instances = [{"id": self.instance_id, "listen": self.listen, "leader": True,
                          "since": isoz(self.started_at)}]
        mode = "normal"
        if active:
            mode = "draining" if draining else "maintenance"
        return {
            "mode": mode,
            "now": isoz(now),
            "active": [self._occ_json(a, open_ended=a.window.id in open_manual) for a in active],
            "next": [self._occ_json(a) for a in nxt],
            "leases": leases_out,
            "notices": counts,
            "hooks": hook_info,
            "config": config,
            "faults": faults,
            "dry_run": self.dry_run,
            "last_tick": isoz(self.last_tick),
            "instances": instances,
        }

    def windows(self) -> list[dict]:
        now = self.clock()
        with self.lock:
            cfg = self.config
            out = []
            for w in cfg.windows:
                nxt = plan.effective(cfg, plan.Journal(), now, now + timedelta(days=400))
                occ = next((a for a in nxt if a.window.id == w.id), None)
                out.append({
                    "id": w.id, "title": w.title, "recurring": w.recurring, "cron": w.cron,
                    "timezone": w.zone.key, "cancelled": w.cancelled, "tenants": sorted(w.tenants),
                    "resources": sorted(w.resources) if w.resources else None,
                    "notify": [w.lead_label(lead) for lead in w.notify], "policy": w.policy,
                    "next": {"occurrence": isoz(occ.occ.key), "start": isoz(occ.occ.start),
                             "end": isoz(occ.occ.end)} if occ else None,
                })
        return out

    # -- workers -----------------------------------------------------------------

    def _update_gauges(self, ev: plan.Evaluation, now: datetime) -> None:
        active = [a for a in ev.active if now in a.occ]
        self.metrics.active.set(len(active))

    def refresh_gauges(self) -> None:
        """Gauges that read the store: refreshed when /metrics is scraped."""
        try:
            st = self.status()
        except MaintdError:
            return
        for m in ("normal", "draining", "maintenance"):
            self.metrics.mode.labels(m).set(1 if st["mode"] == m else 0)
        self.metrics.notices_pending.set(st["notices"]["pending"])
        self.metrics.notices_failed.set(st["notices"]["failed"])
        self.metrics.leases.labels("running").set(st["leases"]["running"])
        self.metrics.leases.labels("draining").set(st["leases"]["draining"])
        self.metrics.hooks_failed.set(st["hooks"]["failed"])
        self.metrics.drain_overrun.set(sum(1 for f in st["faults"] if f["what"].startswith("overrun:")))

    def deliver_due(self) -> int:
        """Claim due deliveries and send them concurrently (bounded pool). Returns how many."""
        now = self.clock()
        try:
            rows = self.store.claim(now, worker=self.instance_id, limit=WORKERS * 4, lease=timedelta(minutes=2))
        except StoreError as exc:
            self._store_failed(exc)
            return 0
        futures = [self._pool.submit(self._deliver, row) for row in rows]
        for f in futures:
            f.result()
        return len(rows)

    def _deliver(self, row: dict) -> None:
        cfg = self.config
        notifier = self.notifiers.get(row["channel"])
        tenant = cfg.tenants.get(row["tenant"])
        now = self.clock()
        try:
            if tenant is None or notifier is None:
                self.store.mark_failed(row["id"], now, f"tenant {row['tenant']} or channel {row['channel']} "
                                                       "no longer configured", worker=self.instance_id)
                self.metrics.notices.labels(row["channel"], "failed").inc()
                return
            notice = _notice_from_json(row["payload"])
            from .errors import DeliveryError

            try:
                notifier.send(notice, tenant)
            except DeliveryError as exc:
                now = self.clock()
                attempts = row.get("attempts") or 1
                if exc.permanent or give_up(attempts, row["created_at"], now, cfg.notifiers.max_attempts,
                                            cfg.notifiers.max_age):
                    self.store.mark_failed(row["id"], now, str(exc), worker=self.instance_id)
                    self.metrics.notices.labels(row["channel"], "failed").inc()
                    log.warning("notice %s to %s via %s failed for good: %s", row["kind"], row["tenant"],
                                row["channel"], exc, extra={"action": "notice-failed"})
                else:
                    nxt = next_attempt(attempts, now, jitter=self._rng.random())
                    self.store.mark_retry(row["id"], now, str(exc), nxt, worker=self.instance_id)
                    self.metrics.notices.labels(row["channel"], "retry").inc()
                    log.info("notice %s to %s via %s will be retried at %s: %s", row["kind"], row["tenant"],
                             row["channel"], isoz(nxt), exc, extra={"action": "notice-retry"})
                return
            except Exception as exc:  # a bug in a notifier must not kill the worker
                log.exception("notifier crashed")
                self.store.mark_retry(row["id"], now, f"internal error: {exc}", now + timedelta(minutes=1),
                                      worker=self.instance_id)
                return
            now = self.clock()
            self.store.mark_sent(row["id"], now, worker=self.instance_id)
            self.metrics.notices.labels(row["channel"], "sent").inc()
            self.metrics.delivery_seconds.labels(row["channel"]).observe(
                max(0.0, (now - row["created_at"]).total_seconds()))
            log.info("notice %s to %s via %s delivered", row["kind"], row["tenant"], row["channel"],
                     extra={"action": "notice-sent"})
        except StoreError as exc:
            self._store_failed(exc)

    def run_hooks_due(self) -> int:
        now = self.clock()
        try:
            runs = [r for r in self.store.hook_runs("pending") if r["next_attempt_at"] <= now]
        except StoreError as exc:
            self._store_failed(exc)
            return 0
        done = 0
        for r in runs:
            try:
                if not self.store.claim_hook(r["window"], r["occurrence"], r["event"], now):
                    continue
                self._run_hook(r)
                done += 1
            except StoreError as exc:
                self._store_failed(exc)
        return done

    def _run_hook(self, r: dict) -> None:
        argv = self._hook_for(r["window"], r["event"])
        key = (r["window"], r["occurrence"], r["event"])
        if self.dry_run and argv:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="dry run: not executed")
            with self.store.transaction() as tx:
                tx.journal("hook", at=self.clock(), window=r["window"], occurrence=r["occurrence"],
                           message=f"dry run: on_{r['event']} hook {list(argv)} not executed",
                           detail={"event": r["event"], "dry_run": True})
            return
        if not argv:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="no hook configured any more")
            return
        w = self._window(r["window"])
        hooks_cfg = (self.config.hooks_for(w) if w and not w.manual else self.config.hooks)
        ev = self.store.events().get((r["window"], r["occurrence"], "start")) or {}
        d = ev.get("detail") or {}
        tenants = d.get("tenants", [])
        start = _parse(d.get("start")) or r["occurrence"]
        end = _parse(d.get("end")) or r["occurrence"]
        if r["event"] == "end":
            end_ev = self.store.events().get((r["window"], r["occurrence"], "end")) or {}
            end = _parse((end_ev.get("detail") or {}).get("end")) or end
        message = self._message_for(w, Tenant(id="", name="", zone=self.config.provider.zone), start, end,
                                    w.title if w else r["window"], r["window"])
        env = hooks_mod.hook_env(event=r["event"], window=r["window"], occurrence=r["occurrence"], start=start,
                                 end=end, tenants=tenants, message=message, base=self.env)
        timeout = hooks_cfg.timeout.total_seconds() if hooks_cfg else 120.0
        result = hooks_mod.run(argv, timeout=timeout, env=env,
                               cwd=os.path.dirname(os.path.abspath(self.config_path)))
        now = self.clock()
        attempts = (r.get("attempts") or 0) + 1
        if result.ok:
            self.store.finish_hook(key, ok=True, now=now, exit_code=0)
            self.metrics.hooks.labels(r["event"], "ok").inc()
            self._clear(f"hook:{r['window']}:{r['event']}")
        else:
            nxt = next_attempt(attempts, now, base=timedelta(seconds=5), cap=timedelta(minutes=10),
                               jitter=self._rng.random()) if attempts < HOOK_ATTEMPTS else None
            self.store.finish_hook(key, ok=False, now=now, exit_code=result.exit_code, error=result.error,
                                   next_at=nxt)
            self.metrics.hooks.labels(r["event"], "retry" if nxt else "failed").inc()
            self._fault(f"hook:{r['window']}:{r['event']}",
                        f"{r['event']} hook of {r['window']} {result.error}"
                        + (f"; retry at {isoz(nxt)}" if nxt else "; gave up"))
        with self.store.transaction() as tx:
            tx.journal("hook", at=now, window=r["window"], occurrence=r["occurrence"],
                       message=f"on_{r['event']} hook " + ("ok" if result.ok else f"failed: {result.error}"),
                       detail={"event": r["event"], "ok": result.ok, "exit_code": result.exit_code,
                               "attempt": attempts, "output": result.output[-500:]})
        log.info("hook on_%s of %s: %s", r["event"], r["window"], "ok" if result.ok else result.error,
                 extra={"action": "hook"})

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_due()
                busy += self.run_hooks_due()
            except Exception:  # the worker must survive anything; the loop reports faults
                log.exception("worker iteration failed")
                busy = 0
            if not busy:
                self._outbox_wake.wait(1.0)
                self._outbox_wake.clear()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        try:
            self.store.register_instance(self.instance_id, listen=self.listen, now=now, leader=True)
        except (StoreError, TypeError):
            pass
        try:
            self.store.reset_running_hooks(now)
        except StoreError as exc:
            self._store_failed(exc)
        self._journal("daemon-start", now, message=f"maintd started ({self.instance_id})"
                      + (" in dry-run mode" if self.dry_run else ""), actor="daemon")
        self.scheduler.start()
        self.scheduler.add_job(self.tick, "interval", seconds=SAFETY_TICK, id="safety", kwargs={"reason": "safety"})
        self.tick("start")
        t = threading.Thread(target=self._worker_loop, name="outbox", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._outbox_wake.set()
        try:
            self.scheduler.shutdown(wait=True)  # lets a tick in flight finish its transaction
        except Exception:
            pass
        for t in self._threads:
            t.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._journal("daemon-stop", self.clock(), message="maintd stopped", actor="daemon")
        self.store.close()


# ---------------------------------------------------------------------------
# helpers


def _parse(text: Any) -> Optional[datetime]:
    if not text:
        return None
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def notice_seq(n: Notice) -> int:
    return n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0


def _notice_json(n: Notice) -> dict:
    return {
        "id": n.id, "kind": n.kind, "window": n.window, "occurrence": isoz(n.occurrence), "tenant": n.tenant,
        "title": n.title, "start": isoz(n.start), "end": isoz(n.end), "message": n.message,
        "provider": n.provider, "lead": n.lead, "late": n.late, "uid": n.uid, "sequence": n.sequence,
        "previous_start": isoz(n.previous_start), "previous_end": isoz(n.previous_end),
        "summary": dict(n.summary) if n.summary else None, "link": n.link,
    }


def _notice_from_json(d: dict) -> Notice:
    return Notice(
        id=d["id"], kind=d["kind"], window=d["window"], occurrence=_parse(d["occurrence"]), tenant=d["tenant"],
        title=d["title"], start=_parse(d["start"]), end=_parse(d["end"]), message=d["message"],
        provider=d["provider"], lead=d.get("lead"), late=bool(d.get("late")), uid=d.get("uid", ""),
        sequence=int(d.get("sequence") or 0), previous_start=_parse(d.get("previous_start")),
        previous_end=_parse(d.get("previous_end")), summary=d.get("summary"), link=d.get("link"),
    )


def _lease_json(lease: dict, now: datetime) -> dict:
    overrun = bool(lease.get("drain") and lease.get("deadline") and lease["deadline"] < now)
    return {"id": lease["id"], "tenant": lease["tenant"], "kind": lease["kind"], "resource": lease["resource"],
            "admitted_at": isoz(lease["admitted_at"]), "heartbeat_at": isoz(lease["heartbeat_at"]),
            "drain": bool(lease["drain"]), "deadline": isoz(lease["deadline"]), "overrun": overrun}


def _hook_json(r: dict) -> dict:
    return {"window": r["window"], "occurrence": isoz(r["occurrence"]), "event": r["event"], "status": r["status"],
            "attempts": r["attempts"], "error": r["last_error"], "next_attempt_at": isoz(r["next_attempt_at"])}
