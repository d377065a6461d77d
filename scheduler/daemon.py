"""The composition root: config, store, the level-triggered loop, workers, signals.

The loop (DESIGN.md): read the clock once, ask ``plan.evaluate`` what is true now,
apply its actions in ONE store transaction (journal + outbox + announcements), then
ask APScheduler to wake us at the next instant the answer changes. Also woken by
reloads, API calls and a safety-net interval. Nothing here decides *what* happens;
it only makes it durable and observable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import config as config_mod
from . import hooks as hooks_mod
from . import messages, plan
from .errors import ConfigError, ConflictError, MaintdError, NotFoundError, StoreError, UsageError
from .groupcommit import GroupCommit
from .leader import Leadership
from .model import UTC, Config, Notice, Tenant, Window, calendar_uid, isoz, notice_id
from .policy import Gating, Request, compile_policies, decide
from .store import Store, database_url, give_up, next_attempt

log = logging.getLogger("maintd")

SAFETY_TICK = float(os.environ.get("MAINTD_SAFETY_TICK", "30"))  # seconds
HEARTBEAT = int(os.environ.get("MAINTD_HEARTBEAT", "10"))  # seconds a gate client waits between heartbeats
HOOK_ATTEMPTS = int(os.environ.get("MAINTD_HOOK_ATTEMPTS", "5"))  # tries before a hook run is failed for good
OPEN_ENDED = timedelta(days=3650)  # `maintd enter` without --for lasts until `maintd exit`
STATUS_WAIT = 1.0  # seconds status waits for a tick in flight before answering from the last one
# Concurrent sends (bounded). Sends mostly wait on the network; 64 keeps a 50 ms receiver
# at ~600 deliveries/s (benchmarks/notify_bench.py) where 32 gave ~420.
WORKERS = int(os.environ.get("MAINTD_DELIVERY_WORKERS", "64"))
CLAIM_BATCH = int(os.environ.get("MAINTD_CLAIM_BATCH", str(WORKERS)))  # rows claimed per store round trip
# a claim not finished by then (an instance that died mid-send) is claimed again
CLAIM_LEASE = timedelta(seconds=float(os.environ.get("MAINTD_CLAIM_LEASE", "120")))
LEADER_POLL = float(os.environ.get("MAINTD_LEADER_POLL", "1"))  # seconds between leadership checks (PostgreSQL)
INSTANCE_STALE = timedelta(seconds=max(15.0, 5 * LEADER_POLL))  # an instance silent this long is gone


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
        self.notices = Counter("maintd_notices_total", "Notice deliveries by result", ["channel", "result"], registry=r)
        self.notices_pending = Gauge("maintd_notices_pending", "Deliveries waiting", registry=r)
        self.notices_failed = Gauge("maintd_notices_failed", "Deliveries failed for good", registry=r)
        self.delivery_seconds = Histogram(
            "maintd_delivery_seconds",
            "Time from enqueue to delivery",
            ["channel"],
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
        )
        self.hooks = Counter("maintd_hook_runs_total", "Hook runs by result", ["event", "result"], registry=r)
        self.hooks_failed = Gauge("maintd_hooks_failed", "Hook runs failed for good", registry=r)
        self.admissions = Counter("maintd_admissions_total", "Gate decisions", ["result"], registry=r)
        self.leases = Gauge("maintd_leases", "Leases by state", ["state"], registry=r)
        self.drain_overrun = Gauge("maintd_drain_overruns", "Drained leases still running after deadline", registry=r)
        self.end_checks = Counter("maintd_end_checks_total", "End checks by result", ["result"], registry=r)
        self.leader = Gauge(
            "maintd_leader", "1 while this instance leads (runs transitions, drains, hooks)", registry=r
        )


class Daemon:
    """One maintd instance. ``clock`` is the only source of time (tests inject one)."""

    def __init__(
        self,
        config_path: str,
        *,
        dry_run: bool = False,
        clock: Callable[[], datetime] = utcnow,
        env: dict | None = None,
    ) -> None:
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
        self.config_error: str | None = None
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
        # Several instances may share one PostgreSQL database; one of them leads.
        self.leadership = Leadership(self.store.engine)
        self.token = self._token()
        self.evaluation: plan.Evaluation | None = None
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._stop = threading.Event()
        self._outbox_wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="deliver")
        self._threads: list[threading.Thread] = []
        self._rng = random.Random()
        self.last_tick: datetime | None = None

    # -- config ------------------------------------------------------------------

    def _prepare(self, cfg: Config) -> None:
        """Everything derived from a config, built once per (re)load."""
        from notifiers import Renderer, build_notifiers

        renderer = Renderer(cfg.provider.name, cfg.notifiers.templates)
        problems = renderer.check()
        if problems:
            raise ConfigError([config_mod.ConfigIssue(p.split(":", 1)[0], 1, 1, p) for p in problems])
        self.renderer = renderer
        self.notifiers = {n.channel: n for n in build_notifiers(cfg.notifiers, cfg.provider.name, renderer)}
        self.compiled = compile_policies(cfg.policies)

    def _token(self) -> str | None:
        token = self.env.get("MAINTD_TOKEN")
        if token:
            return token.strip()
        path = self.config.daemon.token_file
        if path:
            full = (
                path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(self.config_path)), path)
            )
            try:
                with open(full, encoding="utf-8") as fh:
                    return fh.read().strip() or None
            except OSError as exc:
                self._fault("token", f"cannot read token_file {full}: {exc.strerror or exc}")
        return None

    def reload(self, actor: str = "SIGHUP") -> str | None:
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
            log.error(
                "reload failed, keeping the last good config: %s", self.config_error, extra={"action": "reload-error"}
            )
            self._journal("reload-error", now, message=self.config_error, actor=actor)
            return self.config_error
        with self.lock:
            self.config = cfg
            self.loaded_at = self.reloaded_at = now
            self.config_error = None
        self.metrics.reloads.labels("ok").inc()
        self.metrics.reload_error.set(0)
        log.info(
            "config reloaded: %d tenants, %d windows", len(cfg.tenants), len(cfg.windows), extra={"action": "reload"}
        )
        self._journal("reload", now, message=f"{len(cfg.tenants)} tenants, {len(cfg.windows)} windows", actor=actor)
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
                window=row["window"],
                key=row["occurrence"],
                start=row["at"],
                end=_parse(d.get("end")) or row["at"],
                tenants=frozenset(d.get("tenants", ())),
                title=d.get("title", row["window"]),
            )
        overrides = {k: v["end"] for k, v in self.store.overrides().items()}
        manual = []
        for m in self.store.manual_windows(active_only=False):
            end = m["ended_at"] or m["end"] or (m["start"] + OPEN_ENDED)
            if m["end"] is not None and m["ended_at"] is None:
                end = m["end"]
            if end < since:
                continue
            tenants = frozenset(m["tenants"]) if m["tenants"] is not None else frozenset(self.config.tenants)
            manual.append(
                Window(
                    id=m["id"],
                    title=f"Manual maintenance: {m['reason']}",
                    zone=self.config.provider.zone,
                    tenants=tenants,
                    start=m["start"],
                    end=max(end, m["start"] + timedelta(seconds=1)),
                    policy=m["policy"] or self.config.provider.policy,
                    manual=True,
                    message=None,
                )
            )
        announced = {}
        for (wid, anc), a in self.store.announcements().items():
            announced[(wid, anc)] = plan.Announcement(
                start=a["start"],
                end=a["end"],
                title=a["title"],
                sequence=a["sequence"],
                tenants=frozenset(a["tenants"] or ()),
                status=a["status"],
                occurrence=a.get("occurrence_key"),
            )
        return plan.Journal(
            last_tick=self.store.get_meta_time("last_tick"),
            events=frozenset(events),
            open=open_occ,
            overrides=overrides,
            manual=tuple(manual),
            announced=announced,
            sent_leads=frozenset(self.store.sent_leads(since)),
        )

    # -- the loop ----------------------------------------------------------------

    def tick(self, reason: str = "timer") -> plan.Evaluation | None:
        """One iteration: evaluate, apply in one transaction, schedule the next wake-up."""
        t0 = time.perf_counter()
        with self.lock:
            now = self.clock()
            try:
                journal = self._snapshot(now)
                ev = plan.evaluate(self.config, journal, now)
                if self.leadership.leader:
                    # Followers evaluate too (they answer status and the gate from it) but
                    # only the leader records transitions, sends drains and runs hooks.
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

    def _wake_at(self, when: datetime | None) -> None:
        if not self.scheduler.running or when is None:
            return
        # never sleep past the safety net, never busy-loop
        when = max(when, self.clock() + timedelta(milliseconds=50))
        self.scheduler.add_job(
            self.tick, "date", run_date=when, id="wake", replace_existing=True, kwargs={"reason": "wake"}
        )

    def _apply(self, ev: plan.Evaluation, now: datetime) -> None:
        with self.store.transaction() as tx:
            for t in ev.transitions:
                detail = {
                    "tenants": sorted(t.tenants),
                    "period_tenants": sorted(t.period_tenants),
                    "title": self._title(t.window),
                    "start": isoz(t.start),
                    "end": isoz(t.end),
                    "reason": t.reason,
                }
                if not tx.record_event(
                    t.window, t.occurrence, t.event, at=t.at, recorded_at=now, late=t.late, detail=detail
                ):
                    continue
                self.metrics.transitions.labels(t.event).inc()
                late = " (late)" if t.late else ""
                msg = f"{t.window} {'started' if t.event == 'start' else 'ended'}{late}: {len(t.tenants)} tenants" + (
                    f" ({t.reason})" if t.reason != "scheduled" else ""
                )
                tx.journal(
                    t.event,
                    at=now,
                    window=t.window,
                    occurrence=t.occurrence,
                    message=msg,
                    detail={"late": t.late, "at": isoz(t.at), "tenants": len(t.tenants), "reason": t.reason},
                )
                log.info(msg, extra={"action": t.event, "window": t.window})
                if t.event == "start":
                    tx.supersede(t.window, t.occurrence, "scheduled", now)
                if self._hook_for(t.window, t.event) and (t.event == "end" or t.end is None or t.end > now):
                    tx.add_hook_run(t.window, t.occurrence, t.event, now=now)
            rows = []
            for n in ev.notices:
                rows.extend(self._rows(n, now))
                tx.journal(
                    "notice",
                    at=now,
                    window=n.window,
                    occurrence=n.occurrence,
                    message=f"{n.kind} notice to {len(n.tenants)} tenants"
                    + (" (late)" if n.late else "")
                    + (" (dry run: rendered, not sent)" if self.dry_run else ""),
                    detail={
                        "kind": n.kind,
                        "lead": n.lead,
                        "late": n.late,
                        "tenants": len(n.tenants),
                        "dry_run": self.dry_run,
                    },
                )
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
                tx.journal(
                    "lease-expired",
                    at=now,
                    message=f"lease {lease_id} expired (no heartbeat)",
                    detail={"lease": lease_id},
                )
            self._order_drains(tx, ev, now)
            tx.set_meta_time("last_tick", now)

    def _title(self, window_id: str) -> str:
        w = self.config.window(window_id)
        return w.title if w else window_id

    def _hook_for(self, window_id: str, event: str) -> tuple | None:
        w = self._window(window_id)
        if w is None or w.manual:
            hooks = self.config.hooks
        else:
            hooks = self.config.hooks_for(w)
        if hooks is None:
            return None
        return hooks.on_start if event == "start" else hooks.on_end

    def _window(self, window_id: str) -> Window | None:
        w = self.config.window(window_id)
        if w is None and self.evaluation is not None:
            for a in self.evaluation.active + self.evaluation.upcoming:
                if a.window.id == window_id:
                    return a.window
        return w

    # -- notices -----------------------------------------------------------------

    def _message_for(
        self, window: Window | None, tenant: Tenant, start: datetime, end: datetime, title: str, window_id: str
    ) -> str:
        return tenant_message(self.config, window, tenant, start, end, title, window_id)

    def build_notice(
        self, n: plan.NoticeAction, tenant: Tenant, *, summary: dict | None = None, create_secret: bool = True
    ) -> Notice:
        """The notice ``n`` means for one tenant. ``create_secret=False`` inside a store
        transaction: making a tenant's first page secret is a write of its own, so the link
        is then left for delivery to fill in (see ``_with_link``)."""
        link = None
        if self.config.daemon.public_url:
            try:
                secret = self.store.tenant_secret(tenant.id, create=create_secret)
                link = f"{self.config.daemon.public_url}/t/{secret}/" if secret else None
            except StoreError:
                link = None
        if n.kind == "completed" and summary is None:
            summary = self._summary(n, tenant.id)
        return compose_notice(self.config, n, tenant, window=self._window(n.window), link=link, summary=summary)

    def _summary(
        self,
        n: plan.NoticeAction,
        tenant: str,
        counts: dict | None = None,
        started: dict | None = None,
        now: datetime | None = None,
    ) -> dict:
        """What the tenant's ``completed`` notice reports, from the journal: its jobs refused
        (by kind), drained and stopped during the occurrence, and when maintenance really
        began and ended (later than planned when maintd was down at the edge).

        ``counts`` (``store.journal_counts``) and ``started`` (the start event) are read once
        per occurrence by ``_rows``; without them they are read here.
        """
        try:
            if counts is None:
                counts = self.store.journal_counts(n.window, n.occurrence)
            if started is None:
                started = self.store.events(since=n.start).get((n.window, n.occurrence, "start"))
        except StoreError as exc:
            self._store_failed(exc)
            counts, started = counts or {}, started
        actual_start = n.start
        if started:
            actual_start = started["recorded_at"] if started.get("late") else started["at"]
        actual_end = n.end
        if n.late and now is not None:
            actual_end = max(n.end, now)  # maintd was down at the end: released only now
        mine = counts.get(tenant) or {}
        return {
            "actual_start": isoz(actual_start),
            "actual_end": isoz(actual_end),
            "refused": dict(sorted((mine.get("refused") or {}).items())),
            "drained": int(mine.get("drained", 0)),
            "stopped": int(mine.get("stopped", 0)),
        }

    def _rows(self, n: plan.NoticeAction, now: datetime) -> list[dict]:
        """Outbox rows for one notice action: one per tenant and channel. Runs inside the
        tick's transaction (so reads only; see ``build_notice``)."""
        rows = []
        counts = started = None
        if n.kind == "completed":
            counts = self.store.journal_counts(n.window, n.occurrence)
            started = self.store.events(since=n.start).get((n.window, n.occurrence, "start")) or {}
        for tid in sorted(n.tenants):
            tenant = self.config.tenants.get(tid)
            if tenant is None:
                continue
            summary = self._summary(n, tid, counts, started, now) if n.kind == "completed" else None
            notice = self.build_notice(n, tenant, summary=summary, create_secret=False)
            payload = _notice_json(notice)
            for channel, notifier in self.notifiers.items():
                if not notifier.applies_to(tenant):
                    continue
                rows.append(
                    {
                        "notice_id": notice.id,
                        "channel": channel,
                        "window": n.window,
                        "occurrence": n.occurrence,
                        "tenant": tid,
                        "kind": n.kind,
                        "lead": notice.lead,
                        "seq": notice_seq(notice),
                        "payload": payload,
                        "created_at": now,
                        "late": n.late,
                        "status": "dry-run" if self.dry_run else "pending",
                    }
                )
                if self.dry_run:
                    self._dry_run_render(notifier, notice, tenant)
        return rows

    def _dry_run_render(self, notifier: Any, notice: Notice, tenant: Tenant) -> None:
        """A dry run renders what it would send (so template errors show now) and logs it."""
        channel = notifier.channel
        extra = {"action": "notice-dry-run", "window": notice.window, "tenant": tenant.id}
        try:
            if channel == "email":
                msg = notifier.build_message(notice, tenant)
                what = f"email to {msg['To']}: {msg['Subject']}"
            elif channel == "webhook":
                what = f"webhook {notice.payload()['type']} ({notice.id})"
            else:
                what = channel
        except Exception as exc:  # noqa: BLE001 - report it like a send would, never break the tick
            log.warning(
                "dry-run: %s notice for %s to %s via %s cannot be rendered: %s",
                notice.kind,
                notice.window,
                tenant.id,
                channel,
                exc,
                extra=extra,
            )
            return
        log.info(
            "dry-run: %s notice for %s to %s not sent (%s)", notice.kind, notice.window, tenant.id, what, extra=extra
        )

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
            result = (
                hooks_mod.run(
                    chk.run, timeout=timeout, env=self.env, cwd=os.path.dirname(os.path.abspath(self.config_path))
                )
                if chk.run
                else hooks_mod.probe(chk.url, timeout=timeout)
            )
            self.metrics.end_checks.labels("healthy" if result.ok else "failing").inc()
            if result.ok:
                self._clear(f"end-check:{w.id}")
                continue
            new_end = min(t.end + chk.every, planned + chk.max)
            self._fault(
                f"end-check:{w.id}", f"end check of {w.id} failing ({result.error}); extended to {isoz(new_end)}"
            )
            with self.store.transaction() as tx:
                tx.set_override(w.id, t.occurrence, end=new_end, reason="end-check", at=now, actor="end-check")
                tx.journal(
                    "end-check",
                    at=now,
                    window=w.id,
                    occurrence=t.occurrence,
                    message=f"end check failing ({result.error}); extended to {isoz(new_end)}",
                    detail={"error": result.error, "end": isoz(new_end)},
                )
            extended = True
        if extended:
            return plan.evaluate(self.config, self._snapshot(now), now)
        return ev

    def _planned_end(self, w: Window, key: datetime) -> datetime | None:
        if w.recurring:
            return key + w.duration if w.duration else None
        return w.end

    # -- leases and drains (the gate) ----------------------------------------------

    # Longer than any job; keeps now + expected_duration (and the occurrences expanded up
    # to it) far from datetime's limits.
    MAX_EXPECTED_DURATION = timedelta(days=366)

    @staticmethod
    def _whole_seconds(delta: timedelta) -> int:
        """Seconds rounded up, at least 1 (Retry-After, overrun reports)."""
        whole = int(delta.total_seconds())
        return max(1, whole + (whole < delta.total_seconds()))

    def _gatings(self, tenant: Tenant, ev: plan.Evaluation | None) -> tuple[Gating, ...]:
        """The occurrences of ``ev`` that affect ``tenant``, each with the policy in force and
        the end of the tenant's merged period (what a refused job is told to wait for).

        Independent of the instant asked about (decide() classifies every gating by its own
        ``[start, end)``, and the merged period containing an occurrence's start is the one
        containing any later instant of it), so it is built once per evaluation, config and
        tenant and shared by every admission until the next tick: the gate's hot path is a
        dict lookup, not a scan of every occurrence.
        """
        if ev is None:
            return ()
        cfg = self.config
        cache = self.__dict__.get("_gate_cache")
        if cache is None or cache[0] is not ev or cache[1] is not cfg:
            cache = (ev, cfg, {})
            self._gate_cache = cache  # threads racing here build equal answers; last one wins
        found = cache[2].get(tenant.id)
        if found is None:
            found = cache[2][tenant.id] = self._gatings_of(tenant.id, ev.active + ev.upcoming, cfg)
        return found

    def _gatings_of(self, tenant_id: str, items: Any, cfg: Config) -> tuple[Gating, ...]:
        mine = [a for a in items if tenant_id in a.window.tenants]
        return tuple(
            Gating(
                window=a.window,
                occurrence=a.occ,
                policy=self._gate_policy(cfg, a.window),
                period_end=plan.period_end(mine, tenant_id, a.occ.start) or a.occ.end,
            )
            for a in mine
        )

    @staticmethod
    def _gate_policy(cfg: Config, window: Window):
        # A manual window keeps the policy it was entered with; if that policy has since
        # left the file, provider.policy (or deny-all) gates instead of nothing.
        if window.policy is not None and window.policy not in cfg.policies:
            window = replace(window, policy=None)
        return cfg.policy_for(window)

    def _gatings_until(self, tenant: Tenant, ev: plan.Evaluation, until: datetime) -> tuple[Gating, ...]:
        """Like :meth:`_gatings`, but reaching ``until``: a tick expands occurrences only a day
        (plus the longest notice lead) ahead, and a long ``expected_duration`` looks further."""
        cfg = self.config
        known = {(a.window.id, a.occ.key) for a in ev.active + ev.upcoming}
        far = tuple(
            a
            for a in plan.effective(cfg, plan.Journal(), ev.now, until)
            if a.occ.start > ev.now and (a.window.id, a.occ.key) not in known
        )
        return self._gatings_of(tenant.id, ev.active + ev.upcoming + far, cfg)

    def _order_drains(self, tx, ev: plan.Evaluation, now: datetime) -> None:
        """Order the running leases that an active occurrence's policy denies to drain.

        Runs in every tick's transaction, so a window that starts (or a lease admitted just
        before its start, or a maintd that was down at the start) is caught by the next
        tick. The deadline is the occurrence's start + ``drain.grace`` for ``then: stop``,
        none for ``then: keep``; a lease keeps its first order (``order_drain``). Jobs the
        policy allows (restores) and jobs on resources a window does not cover are never
        drained. One decision per (tenant, kind, resource) per tick, however many leases.
        """
        overruns = [what for what in list(self.faults) if what.startswith("overrun:")]
        if not ev.active and not overruns:
            return
        # past expires_at is gone, even if this very transaction's sweep is not visible here
        running = [lease for lease in self.store.leases("running") if lease["expires_at"] > now]
        if overruns:  # a lease that expired (its client died) is no longer running late
            alive = {lease["id"] for lease in running}
            for what in overruns:
                if what.split(":", 1)[1] not in alive:
                    self._clear_overrun(what.split(":", 1)[1])
        if not ev.active:
            return
        cfg = self.config
        denied_by: dict[tuple, Gating | None] = {}  # (tenant, kind, resource) -> the denying occurrence
        for lease in running:
            if lease["drain"]:
                continue
            tenant = cfg.tenants.get(lease["tenant"])
            if tenant is None:
                continue
            key = (tenant.id, lease["kind"], lease["resource"])
            if key not in denied_by:
                denied_by[key] = self._denying(tenant, lease["kind"], lease["resource"], ev, now)
            gating = denied_by[key]
            if gating is None:
                continue
            w, occ = gating.window, gating.occurrence
            deadline = occ.start + w.drain.grace if w.drain.then == "stop" else None
            if tx.order_drain([lease["id"]], deadline=deadline, then=w.drain.then):
                tx.journal(
                    "drain",
                    at=now,
                    window=w.id,
                    occurrence=occ.key,
                    message=f"lease {lease['id']} ({lease['tenant']}/{lease['kind']}) ordered to drain"
                    + (f" by {isoz(deadline)}" if deadline else " (may finish)"),
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
                    f" by {isoz(deadline)}" if deadline else " (may finish)",
                    extra={"action": "drain", "window": w.id, "tenant": lease["tenant"]},
                )

    def _denying(
        self, tenant: Tenant, kind: str, resource: str | None, ev: plan.Evaluation, now: datetime
    ) -> Gating | None:
        """The active occurrence whose policy denies this job now (decide()'s choice), or None."""
        active = [g for g in self._gatings(tenant, ev) if g.occurrence.start <= now < g.occurrence.end]
        if not active:
            return None
        decision = decide(
            Request(tenant=tenant, kind=kind, resource=resource),
            active,
            (),
            now,
            provider=self.config.provider,
            compiled=self.compiled,
        )
        if decision.admitted:
            return None
        return next(g for g in active if g.window.id == decision.window and g.occurrence.key == decision.occurrence)

    def _resume_leases(self, now: datetime) -> None:
        """At start-up: the time maintd was down does not count against its gate clients, so
        running leases (with their drain orders and deadlines) survive a restart."""
        try:
            with self.store.transaction() as tx:
                resumed = tx.resume_leases(now)
        except StoreError as exc:
            self._store_failed(exc)
            return
        if resumed:
            log.info("%d running leases resumed", resumed, extra={"action": "leases-resumed"})

    def _gate_writer(self) -> GroupCommit:
        """Every gate write (a lease, a refusal's journal line, a heartbeat, a release) is group
        committed with the others that arrive meanwhile (see ``scheduler.groupcommit``)."""
        writer = self.__dict__.get("_gate_commit")
        if writer is None:
            writer = self.__dict__.setdefault("_gate_commit", GroupCommit(self._gate_batch, name="gate-writer"))
        return writer

    def _gate_batch(self, ops: Any) -> list:
        results: list = [None] * len(ops)
        with self.store.transaction() as tx:
            tx.add_leases([op[1] for op in ops if op[0] == "lease"])
            for i, op in enumerate(ops):
                if op[0] == "journal":
                    tx.journal(op[1], **op[2])
                elif op[0] == "heartbeat":
                    results[i] = tx.heartbeat(op[1], op[2])
                elif op[0] == "release":
                    results[i] = tx.release(op[1], op[2])
        return results

    # Each gate call has a blocking form (threads, tests) and an async one (the API: no trip
    # through the thread pool); both decide the same way and wait for the same commit.

    def admit(
        self, tenant_id: str, kind: str, resource: str | None = None, expected_duration: timedelta | None = None
    ) -> dict:
        """The gate: decide, and on admission hand out a lease (``POST /v1/admissions``)."""
        result, write = self._admission(tenant_id, kind, resource, expected_duration)
        try:
            self._gate_writer().submit(write)
        except StoreError as exc:
            return self._unwritten(result, exc)
        return self._admitted(result)

    async def admit_async(
        self, tenant_id: str, kind: str, resource: str | None = None, expected_duration: timedelta | None = None
    ) -> dict:
        if expected_duration is not None and expected_duration > timedelta(days=1):
            # may expand occurrences far ahead (_gatings_until): not on the event loop
            return await asyncio.get_running_loop().run_in_executor(
                None, self.admit, tenant_id, kind, resource, expected_duration
            )
        result, write = self._admission(tenant_id, kind, resource, expected_duration)
        try:
            await self._gate_writer().submit_async(write)
        except StoreError as exc:
            return self._unwritten(result, exc)
        return self._admitted(result)

    def _admission(
        self, tenant_id: str, kind: str, resource: str | None, expected_duration: timedelta | None
    ) -> tuple[dict, tuple]:
        """The answer to an admission request, and the write that must commit before it is given.

        Takes no lock: a tick holds the daemon lock while it plans (end checks run inside
        it), and a job start must not wait for that. The last evaluation and the config are
        each one atomic attribute read, and decide() classifies occurrences by ``now``
        itself, so a window that began after the last tick gates already.
        """
        now = self.clock()
        cfg = self.config
        tenant = cfg.tenants.get(tenant_id)
        if tenant is None:
            raise NotFoundError(f'unknown tenant "{tenant_id}"')
        longest = self.MAX_EXPECTED_DURATION
        if expected_duration is not None and not timedelta(0) <= expected_duration <= longest:
            raise UsageError(f"expected_duration must be between 0s and {longest.days}d")
        ev = self.evaluation
        gatings = self._gatings(tenant, ev)
        if expected_duration is not None and ev is not None and now + expected_duration > ev.now + timedelta(days=1):
            gatings = self._gatings_until(tenant, ev, now + expected_duration)
        if gatings:
            decision = decide(
                Request(tenant=tenant, kind=kind, resource=resource, expected_duration=expected_duration),
                [g for g in gatings if g.occurrence.start <= now],
                [g for g in gatings if g.occurrence.start > now],
                now,
                provider=cfg.provider,
                compiled=self.compiled,
            )
            if not decision.admitted:
                retry = self._whole_seconds(decision.retry_after - now) if decision.retry_after else 60
                # tenant and kind in `detail`: the completed notice counts refusals per tenant
                write = (
                    "journal",
                    "refused",
                    dict(
                        at=now,
                        window=decision.window,
                        occurrence=decision.occurrence,
                        message=f"{tenant_id}/{kind} refused ({decision.reason})",
                        detail={
                            "tenant": tenant_id,
                            "kind": kind,
                            "resource": resource,
                            "reason": decision.reason,
                            "retry_after": retry,
                        },
                    ),
                )
                return (
                    {"admitted": False, "reason": decision.reason, "message": decision.message, "retry_after": retry},
                    write,
                )
        lease_id = "lse_" + secrets.token_hex(12)
        write = (
            "lease",
            {
                "id": lease_id,
                "tenant": tenant_id,
                "kind": kind,
                "resource": resource,
                "admitted_at": now,
                "interval_s": HEARTBEAT,
            },
        )
        return {"admitted": True, "lease": lease_id, "heartbeat": HEARTBEAT}, write

    def _admitted(self, result: dict) -> dict:
        self.metrics.admissions.labels("admitted" if result["admitted"] else result["reason"] or "denied").inc()
        return result

    def _unwritten(self, result: dict, exc: StoreError) -> dict:
        self._store_failed(exc)
        if result["admitted"]:
            raise exc  # no lease without its row: the client hears 503 (and --if-unreachable decides)
        return self._admitted(result)  # a refusal is still a refusal without its journal line

    def heartbeat(self, lease_id: str) -> dict:
        """A gate client is alive: ``{"drain": bool, "deadline": ts|null}``. A drained job
        that still heartbeats after its deadline is an overrun: a fault ops must see."""
        now = self.clock()
        row = self._gate_writer().submit(("heartbeat", lease_id, now))
        result, write = self._heartbeat_answer(lease_id, row, now)
        if write is not None:
            try:
                self._gate_writer().submit(write)
            except StoreError as exc:
                self._store_failed(exc)
        return result

    async def heartbeat_async(self, lease_id: str) -> dict:
        now = self.clock()
        row = await self._gate_writer().submit_async(("heartbeat", lease_id, now))
        result, write = self._heartbeat_answer(lease_id, row, now)
        if write is not None:
            try:
                await self._gate_writer().submit_async(write)
            except StoreError as exc:
                self._store_failed(exc)
        return result

    def _heartbeat_answer(self, lease_id: str, row: dict | None, now: datetime) -> tuple[dict, tuple | None]:
        if row is None:
            raise NotFoundError(f'unknown or expired lease "{lease_id}"')
        write = self._overrun(row, now) if row.get("overrun") else None
        return {"drain": bool(row["drain"]), "deadline": isoz(row["deadline"])}, write

    def _overrun(self, row: dict, now: datetime) -> tuple | None:
        """Raise the overrun fault of a lease (once); returns the journal write it needs."""
        what = f"overrun:{row['id']}"
        if what in self.faults:
            return None
        late = self._whole_seconds(now - row["deadline"])
        message = (
            f"lease {row['id']} ({row['tenant']}/{row['kind']}) still runs {late}s after its drain "
            f"deadline {isoz(row['deadline'])}"
        )
        self._fault(what, message)
        self.metrics.drain_overrun.set(sum(1 for f in list(self.faults) if f.startswith("overrun:")))
        log.warning(message, extra={"action": "drain-overrun", "tenant": row["tenant"]})
        return (
            "journal",
            "drain-overrun",
            dict(
                at=now,
                message=message,
                detail={
                    "lease": row["id"],
                    "tenant": row["tenant"],
                    "kind": row["kind"],
                    "resource": row["resource"],
                    "deadline": isoz(row["deadline"]),
                },
            ),
        )

    def _clear_overrun(self, lease_id: str) -> None:
        if f"overrun:{lease_id}" in self.faults:
            self._clear(f"overrun:{lease_id}")
            self.metrics.drain_overrun.set(sum(1 for f in list(self.faults) if f.startswith("overrun:")))

    def release(self, lease_id: str) -> None:
        """The job ended (``DELETE /v1/leases/{id}``)."""
        self._released(lease_id, self._gate_writer().submit(("release", lease_id, self.clock())))

    async def release_async(self, lease_id: str) -> None:
        self._released(lease_id, await self._gate_writer().submit_async(("release", lease_id, self.clock())))

    def _released(self, lease_id: str, released: bool) -> None:
        if not released:
            raise NotFoundError(f'unknown or finished lease "{lease_id}"')
        self._clear_overrun(lease_id)

    # -- manual actions ----------------------------------------------------------

    def enter(
        self,
        *,
        reason: str,
        duration: timedelta | None = None,
        tenants: list[str] | None = None,
        policy: str | None = None,
        actor: str = "api",
    ) -> dict:
        # Whole seconds: the start is the occurrence key, which the store keeps as isoz() text
        # (seconds). With microseconds the journal's key would never match the plan's again:
        # the occurrence read as "removed" one tick after it started, and its overrides
        # (extend, exit) never applied.
        now = self.clock().replace(microsecond=0)
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
                tx.add_manual(
                    mid, reason=reason, start=now, end=end, tenants=tenants, policy=policy, created_at=now, actor=actor
                )
                tx.journal(
                    "enter",
                    at=now,
                    window=mid,
                    occurrence=now,
                    actor=actor,
                    message=f"manual maintenance: {reason}" + (f" until {isoz(end)}" if end else ""),
                    detail={"reason": reason, "tenants": tenants, "end": isoz(end), "policy": policy},
                )
            self.tick("enter")
        return {
            "window": mid,
            "occurrence": isoz(now),
            "start": isoz(now),
            "end": isoz(end),
            "tenants": sorted(tenants) if tenants else sorted(cfg.tenants),
        }

    def exit(self, *, window: str | None = None, actor: str = "api") -> dict:
        now = self.clock()
        with self.lock:
            ev = self.tick("exit-pre") or self.evaluation
            targets = [a for a in (ev.active if ev else ()) if window is None or a.window.id == window]
            if not targets:
                raise ConflictError(
                    "no maintenance is active" if window is None else f'window "{window}" is not active'
                )
            with self.store.transaction() as tx:
                for a in targets:
                    if a.window.manual:
                        tx.end_manual(a.window.id, now)
                    tx.set_override(a.window.id, a.occ.key, end=now, reason="exit", at=now, actor=actor)
                    tx.journal(
                        "exit",
                        at=now,
                        window=a.window.id,
                        occurrence=a.occ.key,
                        actor=actor,
                        message=f"{a.window.id} ended early by {actor}",
                    )
            self.tick("exit")
        return {"ended": [{"window": a.window.id, "occurrence": isoz(a.occ.key)} for a in targets]}

    def extend(self, window_id: str, by: timedelta, *, actor: str = "api") -> dict:
        if by <= timedelta(0):
            raise UsageError("the extension must be a positive duration such as 30m")
        now = self.clock()
        with self.lock:
            ev = self.tick("extend-pre") or self.evaluation
            known = self.config.window(window_id) is not None or any(
                a.window.id == window_id for a in (ev.active + ev.upcoming if ev else ())
            )
            target = next((a for a in (ev.active if ev else ()) if a.window.id == window_id), None)
            if target is None:
                if not known:
                    raise NotFoundError(f'unknown window "{window_id}"')
                raise ConflictError(f'window "{window_id}" is not active; only a running occurrence can be extended')
            if by > OPEN_ENDED or target.occ.end + by - now > 2 * OPEN_ENDED:  # far from datetime's year 9999
                raise UsageError(f"cannot extend {window_id} more than {2 * OPEN_ENDED.days} days ahead")
            new_end = target.occ.end + by
            with self.store.transaction() as tx:
                tx.set_override(window_id, target.occ.key, end=new_end, reason="extend", at=now, actor=actor)
                tx.journal(
                    "extend",
                    at=now,
                    window=window_id,
                    occurrence=target.occ.key,
                    actor=actor,
                    message=f"{window_id} extended by {by} to {isoz(new_end)}",
                    detail={"by_seconds": int(by.total_seconds()), "end": isoz(new_end)},
                )
            self.tick("extend")
        return {
            "window": window_id,
            "occurrence": isoz(target.occ.key),
            "start": isoz(target.occ.start),
            "end": isoz(new_end),
        }

    # -- views -------------------------------------------------------------------

    def _occ_json(self, a: plan.Active, *, open_ended: bool = False) -> dict:
        return {
            "window": a.window.id,
            "occurrence": isoz(a.occ.key),
            "start": isoz(a.occ.start),
            "end": None if open_ended else isoz(a.occ.end),
            "tenants": sorted(a.window.tenants),
            "title": a.window.title,
            "manual": a.window.manual,
            "policy": a.window.policy or self.config.provider.policy,
        }

    def status(self) -> dict:
        # Wait for a tick in flight (milliseconds; an end check's few) so the answer is
        # consistent, but not for long: a tick stuck on the store (locked by another writer,
        # a full disk) must not make status and /metrics hang for seconds — that is exactly
        # when ops look at them. Then the last completed evaluation answers.
        locked = self.lock.acquire(timeout=STATUS_WAIT)
        try:
            now = self.clock()
            ev = self.evaluation
            cfg = self.config
            items = list(ev.active + ev.upcoming) if ev else []
            active = [a for a in items if now in a.occ]
            nxt = [
                a
                for a in plan.next_occurrences(
                    cfg, plan.Journal(manual=tuple(a.window for a in items if a.window.manual)), now, limit=5
                )
            ]
            config = {
                "path": os.path.abspath(self.config_path),
                "loaded_at": isoz(self.loaded_at),
                "reloaded_at": isoz(self.reloaded_at),
                "error": self.config_error,
            }
            faults = [f.to_json() for f in list(self.faults.values())]
        finally:
            if locked:
                self.lock.release()
        open_manual = set()
        leases_out: dict[str, Any] = {"running": 0, "draining": 0, "items": []}
        counts = {"sent": 0, "pending": 0, "failed": 0}
        hook_info: dict[str, Any] = {"pending": 0, "failed": 0, "items": []}
        try:
            open_manual = {m["id"] for m in self.store.manual_windows(active_only=True) if m["end"] is None}
            running = self.store.leases("running")
            draining = [lease for lease in running if lease["drain"]]
            leases_out = {
                "running": len(running),
                "draining": len(draining),
                "items": [_lease_json(lease, now) for lease in running[:100]],
            }
            counts = self.store.notice_counts()
            runs = self.store.hook_runs()
            hook_info = {
                "pending": sum(1 for r in runs if r["status"] in ("pending", "running")),
                "failed": sum(1 for r in runs if r["status"] == "failed"),
                "items": [_hook_json(r) for r in runs if r["status"] != "ok"][:20],
            }
            instances = self._instances(now)
        except StoreError as exc:
            self._store_failed(exc)
            draining = []
            instances = []
        if not instances:  # the store is down: say at least who answers
            instances = [self._me()]
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

    def _me(self) -> dict:
        return {
            "id": self.instance_id,
            "listen": self.listen,
            "leader": self.leadership.leader,
            "since": isoz(self.leadership.since),
            "self": True,
        }

    def _instances(self, now: datetime) -> list[dict]:
        """Every live instance on this store; this one's row from its own live state."""
        if not self.leadership.postgres:
            return [self._me()]  # one instance per SQLite file; old rows are past runs
        out = [self._me()]
        for i in self.store.instances():
            if i["id"] == self.instance_id or i["heartbeat_at"] < now - INSTANCE_STALE:
                continue
            out.append(
                {
                    "id": i["id"],
                    "listen": i["listen"],
                    "leader": bool(i["leader"]),
                    "since": isoz(i["since"]),
                    "self": False,
                }
            )
        return sorted(out, key=lambda i: (not i["leader"], i["listen"]))

    def poll_leader(self) -> bool:
        """Check (or take) leadership and heartbeat this instance's row. A new leader
        catches up at once; on PostgreSQL the leader also ticks every poll, so what a
        follower wrote (a manual action, a reload) takes effect within one poll."""
        now = self.clock()
        was = self.leadership.leader
        leader = self.leadership.poll(now)
        self.metrics.leader.set(1 if leader else 0)
        try:
            self.store.register_instance(
                self.instance_id, listen=self.listen, now=now, leader=leader, since=self.leadership.since
            )
        except StoreError as exc:
            self._store_failed(exc)
        if leader and not was:
            self._journal("leader", now, message=f"{self.instance_id} ({self.listen}) leads", actor="daemon")
        if leader and self.leadership.postgres:
            self.tick("leader" if not was else "leader-poll")
        elif was and not leader:
            log.warning("no longer leader; following", extra={"action": "follower"})
        return leader

    def windows(self) -> list[dict]:
        now = self.clock()
        cfg = self.config  # one read, not under self.lock (see status)
        first: dict[str, plan.Active] = {}
        # once for all windows (it was once per window: 300 windows took seconds)
        for a in plan.effective(cfg, plan.Journal(), now, now + timedelta(days=400)):
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

    def deliver_due(self, wait: bool = True) -> int:
        """Claim due deliveries for the free delivery slots and send them on the pool.

        A slot is held from claim to result, so at most ``WORKERS`` sends run at once and a
        slow receiver holds one slot, not a batch: the worker loop (``wait=False``) claims
        again as soon as slots free up. ``wait=True`` (tests, benchmarks) returns when this
        claim's sends are done. Returns how many deliveries were claimed.
        """
        slots = self._slots()
        free = slots.free()
        if free <= 0:
            return 0
        now = self.clock()
        try:
            rows = self.store.claim_batch(now, worker=self.instance_id, limit=min(free, CLAIM_BATCH), lease=CLAIM_LEASE)
            # One read per batch for what a later reschedule or cancellation made untrue.
            news = [r for r in rows if r["kind"] in ("scheduled", "rescheduled")]
            changes = self.store.changes_after({r["window"] for r in news}, min(r["id"] for r in news)) if news else []
        except StoreError as exc:
            self._store_failed(exc)
            return 0
        later: dict[tuple[str, str], list[dict]] = {}
        for c in changes:
            later.setdefault((c["window"], c["tenant"]), []).append(c)
        futures = []
        for row in rows:
            slots.take()
            try:
                future = self._pool.submit(self._deliver, row, later.get((row["window"], row["tenant"]), []))
            except RuntimeError:  # the pool is shut down: stopping; the claim runs out and it is retried
                slots.release()
                continue
            future.add_done_callback(lambda _f: (slots.release(), self._outbox_wake.set()))
            futures.append(future)
        if wait:
            for f in futures:
                f.result()
            self._write_results()
        return len(rows)

    def _slots(self) -> _Slots:
        slots = self.__dict__.get("_delivery_slots")
        if slots is None:
            with self.lock:
                slots = self.__dict__.setdefault("_delivery_slots", _Slots(WORKERS))
        return slots

    def _with_link(self, notice: Notice) -> Notice:
        """Fill in the tenant page link a notice was enqueued without (see ``build_notice``)."""
        base = self.config.daemon.public_url
        if notice.link or not base:
            return notice
        try:
            # Read first: creating takes the write lock, which every sender would queue for.
            secret = self.store.tenant_secret(notice.tenant, create=False) or self.store.tenant_secret(notice.tenant)
        except StoreError:
            return notice
        return replace(notice, link=f"{base}/t/{secret}/")

    def _stale(self, row: dict, notice: Notice, now: datetime, later: list[dict] | None = None) -> str | None:
        """Why sending this delivery now would be wrong, or None.

        Never after the start (SPEC 4): the start supersedes pending ``scheduled`` notices,
        this catches one claimed just before. And news that a later ``rescheduled`` or
        ``cancelled`` (for a one-off window: of any occurrence, its key moves with its
        start) made untrue is dropped instead of being retried into a tenant's calendar.
        ``later``: the window's changes for this tenant (``store.changes_after``).
        """
        if notice.kind == "scheduled" and now >= notice.start:
            return "the window started before this notice could be delivered"
        if notice.kind in ("scheduled", "rescheduled"):
            if later is None:
                later = [
                    c for c in self.store.changes_after([row["window"]], row["id"]) if c["tenant"] == row["tenant"]
                ]
            one_off = notice.uid == calendar_uid(notice.window, None, recurring=False)
            for c in later:
                if (
                    c["id"] > row["id"]
                    and c["notice_id"] != row["notice_id"]
                    and (one_off or c["occurrence"] == row["occurrence"])
                ):
                    return f"a later {c['kind']} notice replaces it"
        return None

    def _deliver(self, row: dict, later: list[dict] | None = None) -> None:
        """Send one claimed delivery and queue its result (sent, retry at a backoff, failed,
        superseded) for the outbox writer (``_write_results``)."""
        from .errors import DeliveryError

        cfg = self.config
        channel = row["channel"]
        notifier = self.notifiers.get(channel)
        tenant = cfg.tenants.get(row["tenant"])
        now = self.clock()
        attempts = row.get("attempts") or 1  # the claim counted this try
        where = {"window": row["window"], "tenant": row["tenant"]}
        try:
            if tenant is None or notifier is None:
                self._result(
                    row, "failed", now, last_error=f"tenant {row['tenant']} or channel {channel} no longer configured"
                )
                return
            if now - row["created_at"] >= cfg.notifiers.max_age:
                # Sent this late it would be wrong, not merely slow ("starts in 1h", a day later).
                self._result(
                    row, "failed", now, last_error=f"not sent: older than notifiers.max_age ({cfg.notifiers.max_age})"
                )
                log.warning(
                    "notice %s to %s via %s expired unsent",
                    row["kind"],
                    row["tenant"],
                    channel,
                    extra={"action": "notice-failed", **where},
                )
                return
            notice = _notice_from_json(row["payload"])
            why = self._stale(row, notice, now, later)
            if why:
                self._result(row, "superseded", now, last_error=why)
                log.info(
                    "notice %s to %s via %s not sent: %s",
                    row["kind"],
                    row["tenant"],
                    channel,
                    why,
                    extra={"action": "notice-superseded", **where},
                )
                return
            notice = self._with_link(notice)
        except StoreError as exc:
            self._store_failed(exc)
            return  # unsent and still claimed: tried again when the claim runs out
        try:
            notifier.send(notice, tenant)
        except Exception as exc:  # noqa: BLE001 - DeliveryError, or a bug in a notifier: retry either way
            if not isinstance(exc, DeliveryError):
                log.exception("notifier %s crashed", channel)
                exc = DeliveryError(f"internal error: {type(exc).__name__}: {exc}", permanent=False)
            self._delivery_failed(row, exc, attempts)
            return
        now = self.clock()
        self._result(row, "sent", now, sent_at=now, last_error=None)
        self.metrics.delivery_seconds.labels(channel).observe(max(0.0, (now - row["created_at"]).total_seconds()))
        log.info(
            "notice %s to %s via %s delivered",
            row["kind"],
            row["tenant"],
            channel,
            extra={"action": "notice-sent", **where},
        )

    def _delivery_failed(self, row: dict, exc: Any, attempts: int) -> None:
        cfg = self.config
        channel = row["channel"]
        where = {"window": row["window"], "tenant": row["tenant"]}
        now = self.clock()
        if exc.permanent or give_up(
            attempts, row["created_at"], now, cfg.notifiers.max_attempts, cfg.notifiers.max_age
        ):
            self._result(row, "failed", now, last_error=str(exc))
            log.warning(
                "notice %s to %s via %s failed for good after %d attempt%s: %s",
                row["kind"],
                row["tenant"],
                channel,
                attempts,
                "" if attempts == 1 else "s",
                exc,
                extra={"action": "notice-failed", **where},
            )
            return
        nxt = next_attempt(attempts, now, base=cfg.notifiers.retry_base, jitter=self._rng.random())
        retry_after = (getattr(exc, "detail", None) or {}).get("retry_after")
        if isinstance(retry_after, int) and retry_after > 0:  # the receiver asked for a pause: honour it, within reason
            nxt = max(nxt, now + min(timedelta(seconds=retry_after), timedelta(hours=1)))
        self._result(row, "pending", now, next_attempt_at=nxt, last_error=str(exc))
        log.info(
            "notice %s to %s via %s will be retried at %s: %s",
            row["kind"],
            row["tenant"],
            channel,
            isoz(nxt),
            exc,
            extra={"action": "notice-retry", **where},
        )

    def _result(self, row: dict, status: str, now: datetime, **values: Any) -> None:
        """Queue one delivery's result. The writer records a batch in one transaction:
        dozens of senders then share SQLite's single writer instead of queueing for it
        one commit each. Until written the row stays claimed (``sending``), so a crash in
        between sends it again when the claim runs out (at least once; receivers
        deduplicate on the ``webhook-id``)."""
        result = {"retry": "retry", "pending": "retry"}.get(status, status)
        self.metrics.notices.labels(row["channel"], result).inc()
        q = self._results_queue()
        with q["lock"]:
            q["items"].append((row, dict(status=status, updated_at=now, **values)))
        q["wake"].set()

    def _results_queue(self) -> dict:
        q = self.__dict__.get("_delivery_results")
        if q is None:
            with self.lock:
                q = self.__dict__.setdefault(
                    "_delivery_results", {"lock": threading.Lock(), "items": [], "wake": threading.Event()}
                )
        return q

    def _write_results(self) -> int:
        """Record the queued delivery results, all in one transaction. Returns how many."""
        q = self._results_queue()
        with q["lock"]:
            batch, q["items"] = q["items"], []
            q["wake"].clear()
        if not batch:
            return 0
        try:
            done = self.store.finish_many([(row["id"], values) for row, values in batch], worker=self.instance_id)
        except StoreError as exc:
            self._store_failed(exc)
            with q["lock"]:  # keep them for the next try; the rows stay claimed meanwhile
                q["items"][:0] = batch
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

    def _writer_loop(self) -> None:
        """Writes delivery results until stopped and every send in flight has reported
        (``stop`` joins this thread before it shuts the pool down)."""
        q = self._results_queue()
        slots = self._slots()
        while True:
            idle = self._stop.is_set() and slots.free() == slots.size  # read before writing: nothing after
            written = self._write_results()
            if idle and not written:
                return
            if not written:
                q["wake"].wait(0.5)

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
                tx.journal(
                    "hook",
                    at=self.clock(),
                    window=r["window"],
                    occurrence=r["occurrence"],
                    message=f"dry run: on_{r['event']} hook {list(argv)} not executed",
                    detail={"event": r["event"], "dry_run": True},
                )
            return
        if not argv:
            self.store.finish_hook(key, ok=True, now=self.clock(), error="no hook configured any more")
            return
        w = self._window(r["window"])
        hooks_cfg = self.config.hooks_for(w) if w and not w.manual else self.config.hooks
        ev = self.store.events().get((r["window"], r["occurrence"], "start")) or {}
        d = ev.get("detail") or {}
        tenants = d.get("tenants", [])
        start = _parse(d.get("start")) or r["occurrence"]
        end = _parse(d.get("end")) or r["occurrence"]
        if r["event"] == "end":
            end_ev = self.store.events().get((r["window"], r["occurrence"], "end")) or {}
            end = _parse((end_ev.get("detail") or {}).get("end")) or end
        message = self._message_for(
            w,
            Tenant(id="", name="", zone=self.config.provider.zone),
            start,
            end,
            w.title if w else r["window"],
            r["window"],
        )
        env = hooks_mod.hook_env(
            event=r["event"],
            window=r["window"],
            occurrence=r["occurrence"],
            start=start,
            end=end,
            tenants=tenants,
            message=message,
            base=self.env,
        )
        timeout = hooks_cfg.timeout.total_seconds() if hooks_cfg else 120.0
        result = hooks_mod.run(argv, timeout=timeout, env=env, cwd=os.path.dirname(os.path.abspath(self.config_path)))
        now = self.clock()
        attempts = (r.get("attempts") or 0) + 1
        if result.ok:
            self.store.finish_hook(key, ok=True, now=now, exit_code=0)
            self.metrics.hooks.labels(r["event"], "ok").inc()
            self._clear(f"hook:{r['window']}:{r['event']}")
        else:
            nxt = (
                next_attempt(
                    attempts, now, base=timedelta(seconds=5), cap=timedelta(minutes=10), jitter=self._rng.random()
                )
                if attempts < HOOK_ATTEMPTS
                else None
            )
            self.store.finish_hook(key, ok=False, now=now, exit_code=result.exit_code, error=result.error, next_at=nxt)
            self.metrics.hooks.labels(r["event"], "retry" if nxt else "failed").inc()
            self._fault(
                f"hook:{r['window']}:{r['event']}",
                f"{r['event']} hook of {r['window']} {result.error}"
                + (f"; retry at {isoz(nxt)}" if nxt else "; gave up"),
            )
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
        log.info(
            "hook on_%s of %s: %s",
            r["event"],
            r["window"],
            "ok" if result.ok else result.error,
            extra={"action": "hook"},
        )

    def _worker_loop(self) -> None:
        """The outbox worker: keeps every delivery slot busy while deliveries are due.

        Woken by ticks (new rows) and by each finished send (a free slot); otherwise it
        looks again every second (retries coming due). Hooks run on a thread of their own,
        so a 2-minute hook never stalls notices, nor a slow receiver a hook.
        """
        hooks_wake = threading.Event()
        hooks = threading.Thread(target=self._hooks_loop, args=(hooks_wake,), name="hooks", daemon=True)
        hooks.start()
        self._threads.append(hooks)
        writer = threading.Thread(target=self._writer_loop, name="outbox-writer", daemon=True)
        writer.start()
        self._threads.append(writer)
        slots = self._slots()
        # A claim is a store round trip: while sends are in flight, wait until a quarter of
        # the slots are free (or 50 ms passed) and claim them together, not one per finished send.
        batch = max(1, min(CLAIM_BATCH, slots.size) // 4)
        last = 0.0
        while not self._stop.is_set():
            self._outbox_wake.clear()  # before claiming: a send finishing meanwhile wakes the wait below
            free = slots.free()
            claimed = 0
            if free and (free >= batch or free == slots.size or time.monotonic() - last >= 0.05):
                last = time.monotonic()
                try:
                    claimed = self.deliver_due(wait=False)
                except Exception:  # the worker must survive anything; the loop reports faults
                    log.exception("outbox worker iteration failed")
            if claimed:
                continue
            self._outbox_wake.wait(0.05 if 0 < free < slots.size else 1.0)
            hooks_wake.set()

    def _hooks_loop(self, wake: threading.Event) -> None:
        while not self._stop.is_set():
            wake.clear()
            try:
                ran = self.run_hooks_due() if self.leadership.leader else 0
            except Exception:  # noqa: BLE001 - as above
                log.exception("hook worker iteration failed")
                ran = 0
            if not ran:
                wake.wait(1.0)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        self.leadership.poll(now)
        self.metrics.leader.set(1 if self.leadership.leader else 0)
        try:
            self.store.register_instance(
                self.instance_id,
                listen=self.listen,
                now=now,
                leader=self.leadership.leader,
                since=self.leadership.since,
            )
        except StoreError as exc:
            self._store_failed(exc)
        try:
            self.store.reset_running_hooks(now)
        except StoreError as exc:
            self._store_failed(exc)
        self._journal(
            "daemon-start",
            now,
            message=f"maintd started ({self.instance_id})" + (" in dry-run mode" if self.dry_run else ""),
            actor="daemon",
        )
        self.scheduler.start()
        self.scheduler.add_job(self.tick, "interval", seconds=SAFETY_TICK, id="safety", kwargs={"reason": "safety"})
        if self.leadership.postgres:
            self.scheduler.add_job(self.poll_leader, "interval", seconds=LEADER_POLL, id="leader")
        self._resume_leases(now)  # before the first tick's expiry sweep
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
        self.leadership.release()  # another instance takes over at its next poll
        try:
            self.store.remove_instance(self.instance_id)
        except StoreError:
            pass
        self.store.close()


# ---------------------------------------------------------------------------
# helpers


class _Slots:
    """Free delivery slots: taken at claim, given back when the send's result is recorded."""

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


def _parse(text: Any) -> datetime | None:
    if not text:
        return None
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def tenant_message(
    cfg: Config, window: Window | None, tenant: Tenant, start: datetime, end: datetime, title: str, window_id: str
) -> str:
    """The tenant-facing message of a window (or the provider's), placeholders filled in."""
    text = (window.message if window and window.message else None) or cfg.provider.message
    return messages.render(
        text,
        provider=cfg.provider.name,
        title=title,
        start=start,
        end=end,
        window=window_id,
        tenant=tenant,
        zone=tenant.zone,
    )


def compose_notice(
    cfg: Config,
    n: plan.NoticeAction,
    tenant: Tenant,
    *,
    window: Window | None = None,
    link: str | None = None,
    summary: dict | None = None,
) -> Notice:
    """The Notice a planned action means for one tenant. Pure: the daemon and ``maintd
    preview`` build notices the same way, so a preview is what would be sent."""
    lead = n.lead if n.kind == "scheduled" else None
    seq_key = n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0
    return Notice(
        id=notice_id(n.window, n.occurrence, tenant.id, n.kind, lead, seq_key),
        kind=n.kind,
        window=n.window,
        occurrence=n.occurrence,
        tenant=tenant.id,
        title=n.title,
        start=n.start,
        end=n.end,
        message=tenant_message(cfg, window, tenant, n.start, n.end, n.title, n.window),
        provider=cfg.provider.name,
        lead=lead,
        late=n.late,
        uid=calendar_uid(n.window, n.occurrence, n.recurring),
        sequence=n.sequence,
        previous_start=n.previous[0] if n.previous else None,
        previous_end=n.previous[1] if n.previous else None,
        summary=summary if n.kind == "completed" else None,
        link=link,
    )


def notice_seq(n: Notice) -> int:
    return n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0


def _notice_json(n: Notice) -> dict:
    return {
        "id": n.id,
        "kind": n.kind,
        "window": n.window,
        "occurrence": isoz(n.occurrence),
        "tenant": n.tenant,
        "title": n.title,
        "start": isoz(n.start),
        "end": isoz(n.end),
        "message": n.message,
        "provider": n.provider,
        "lead": n.lead,
        "late": n.late,
        "uid": n.uid,
        "sequence": n.sequence,
        "previous_start": isoz(n.previous_start),
        "previous_end": isoz(n.previous_end),
        "summary": dict(n.summary) if n.summary else None,
        "link": n.link,
    }


def _notice_from_json(d: dict) -> Notice:
    return Notice(
        id=d["id"],
        kind=d["kind"],
        window=d["window"],
        occurrence=_parse(d["occurrence"]),
        tenant=d["tenant"],
        title=d["title"],
        start=_parse(d["start"]),
        end=_parse(d["end"]),
        message=d["message"],
        provider=d["provider"],
        lead=d.get("lead"),
        late=bool(d.get("late")),
        uid=d.get("uid", ""),
        sequence=int(d.get("sequence") or 0),
        previous_start=_parse(d.get("previous_start")),
        previous_end=_parse(d.get("previous_end")),
        summary=d.get("summary"),
        link=d.get("link"),
    )


def _lease_json(lease: dict, now: datetime) -> dict:
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


def _hook_json(r: dict) -> dict:
    return {
        "window": r["window"],
        "occurrence": isoz(r["occurrence"]),
        "event": r["event"],
        "status": r["status"],
        "attempts": r["attempts"],
        "error": r["last_error"],
        "next_attempt_at": isoz(r["next_attempt_at"]),
    }
