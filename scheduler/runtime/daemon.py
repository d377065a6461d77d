"""The composition root: builds the parts with what they need and starts and stops them
in order. It holds no logic of its own beyond reload and leadership bookkeeping.

Parts (each testable alone with a store and a clock): :class:`Reconciler` (the tick),
:class:`Gate` (admissions, heartbeats, leases) with :class:`Drains`, :class:`Outbox`
(deliveries), :class:`Effects` (hooks, end checks), :class:`Manual` (enter/exit/extend),
:class:`Views` (status, windows, gauges).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from .. import config as config_mod
from ..groupcommit import GroupCommit
from ..leader import Leadership
from ..model import UTC
from ..store import Store, database_url
from ..store.secrets import LEASE_KEY
from .drains import Drains
from .effects import Effects
from .enqueue import NoticeRows
from .faults import Faults, StoreGuard
from .gate import Gate, Overruns, write_gate_batch
from .gatings import GatingIndex
from .generation import Generations, build_generation, retire
from .integrations import IntegrationRuns
from .manual import Manual
from .metrics import Metrics
from .ops import Ops, failed_record
from .outbox import Outbox
from .presence import Presence
from .reconciler import Reconciler
from .settings import Settings
from .storewatch import StoreWatch
from .tokens import load_tokens
from .views import Views

log = logging.getLogger("maintd")

# An admission is answered before its lease row commits; the row waits at most this long
# for others to share its transaction (the gate's crash window; see leasetoken.py).
GATE_LINGER = 0.005


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """One maintd instance. ``clock`` is the only source of time (tests inject one)."""

    reconciler: Reconciler

    def __init__(
        self,
        config_path: str,
        *,
        dry_run: bool = False,
        clock: Callable[[], datetime] = utcnow,
        env: dict | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.settings = settings or Settings.from_env(self.env)
        self.config_path, self.dry_run, self.clock = config_path, dry_run, clock
        base = os.path.dirname(os.path.abspath(config_path))
        self.metrics = Metrics()
        self.faults = Faults(clock)
        self.guard = StoreGuard(self.faults, self.metrics)
        first = build_generation(config_mod.load(config_path, self.env), clock())  # a daemon needs one good config
        self.generations = Generations(first, partial(config_mod.load, config_path, self.env), clock)
        cfg = first.config
        self.listen = self.env.get("MAINTD_LISTEN") or cfg.daemon.listen
        # a short or unreadable token stops the start before a database is created
        self.tokens = load_tokens(cfg.daemon, self.env, base)
        self.token = self.tokens.admin
        sock = cfg.daemon.socket
        self.socket = None if not sock else sock if os.path.isabs(sock) else os.path.join(base, sock)
        self.store = Store(
            database_url(_database(self.env.get("MAINTD_DATABASE") or cfg.daemon.database, dry_run), base)
        )
        instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._build(instance_id, base)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _build(self, instance_id: str, base: str) -> None:
        s, store, gens = self.settings, self.store, self.generations
        common: dict[str, Any] = dict(store=store, generations=gens, guard=self.guard)
        self.presence = Presence(
            store=store,
            leadership=Leadership(store.engine),  # several instances may share one PostgreSQL database
            instance_id=instance_id,
            listen=self.listen,
            guard=self.guard,
            metrics=self.metrics,
            stale=s.instance_stale,
        )
        # A database deleted or replaced under us: no transitions, hooks or sends (storewatch.py).
        self.watch = StoreWatch(store=store, faults=self.faults, metrics=self.metrics)
        self._halt_sends = threading.Event()  # set by stop() or by the watch
        self.watch.on_lost = self._halt_sends.set
        index, overruns = GatingIndex(), Overruns(self.faults, self.metrics)
        self.gate_writer = GroupCommit(partial(write_gate_batch, store), name="gate-writer", linger=GATE_LINGER)
        evaluation = lambda: self.reconciler.evaluation  # noqa: E731 - the latest, read when asked
        self.outbox = Outbox(
            **common,
            metrics=self.metrics,
            clock=self.clock,
            worker=instance_id,
            workers=s.workers,
            threads=s.threads,
            claim_batch=s.claim_batch,
            claim_lease=s.claim_lease,
        )
        self.effects = Effects(
            **common,
            evaluation=evaluation,
            faults=self.faults,
            metrics=self.metrics,
            clock=self.clock,
            env=self.env,
            cwd=base,
            hook_attempts=s.hook_attempts,
            dry_run=self.dry_run,
            on_check=lambda: self.reconciler.tick("end-check"),
        )
        self.integrations = IntegrationRuns(
            **common, evaluation=evaluation, metrics=self.metrics, clock=self.clock, dry_run=self.dry_run
        )
        self.ops = self._ops_room(overruns)
        self.notice_rows = NoticeRows(**common, evaluation=evaluation, dry_run=self.dry_run)
        self.reconciler = Reconciler(
            **common,
            rows=self.notice_rows,
            drains=Drains(**common, index=index, overruns=overruns),
            leader=lambda: self.presence.leader,
            metrics=self.metrics,
            clock=self.clock,
            scheduler=self.scheduler,
            dry_run=self.dry_run,
            after=self._wake_workers,
            ops=self.ops,
            watch=self.watch,
            integrations=self.integrations,
            flush=self.gate_writer.flush,
        )
        self.gate = Gate(
            writer=self.gate_writer,
            generations=gens,
            evaluation=evaluation,
            index=index,
            overruns=overruns,
            guard=self.guard,
            metrics=self.metrics,
            clock=self.clock,
            heartbeat=s.heartbeat,
            key=functools.cache(partial(_store_key, store, LEASE_KEY)),
        )
        self.manual = Manual(store=store, generations=gens, reconciler=self.reconciler, clock=self.clock)
        self.views = self._views(common)

    def _views(self, common: dict[str, Any]) -> Views:
        return Views(
            **common,
            reconciler=self.reconciler,
            presence=self.presence,
            faults=self.faults,
            metrics=self.metrics,
            clock=self.clock,
            config_path=os.path.abspath(self.config_path),
            dry_run=self.dry_run,
            status_wait=self.settings.status_wait,
            flush=self.gate_writer.flush,
        )

    def _ops_room(self, overruns: Overruns) -> Ops:
        """The provider's room (SPEC 4.2) hears failed notices, failed hooks and overruns."""
        ops = Ops(store=self.store, generations=self.generations, clock=self.clock, dry_run=self.dry_run)
        ops.after = lambda: self.outbox.wake.set()
        self.outbox.on_failed = lambda row, error: ops.emit("notice_failed", failed_record(row, error))
        self.effects.on_hook_failed = lambda record: ops.emit("hook_failed", record)
        self.effects.on_check_failing = lambda record: ops.emit("end_check_failing", record)
        self.integrations.on_failed = lambda record: ops.emit("integration_failed", record)
        overruns.on_overrun = lambda record: ops.emit("drain_overrun", record)
        return ops

    def _wake_workers(self) -> None:
        self.outbox.wake.set()
        self.effects.wake.set()
        self.integrations.wake.set()

    @property
    def config(self):
        return self.generations.config

    def journal(self, kind: str, at: datetime, **kw) -> None:
        with self.guard():
            with self.store.transaction() as tx:
                tx.journal(kind, at=at, **kw)

    def reload(self, actor: str = "SIGHUP") -> str | None:
        """Load the file again; a bad file keeps the last good config. Returns the error."""
        result = self.generations.reload()
        self.metrics.reload_error.set(1 if result.error else 0)
        if result.error:
            self.metrics.reloads.labels("error").inc()
            log.error("reload failed, keeping the last good config: %s", result.error, extra={"action": "reload-error"})
            self.journal("reload-error", result.at, message=result.error, actor=actor)
            return result.error
        cfg = result.generation.config
        self.metrics.reloads.labels("ok").inc()
        what = f"{len(cfg.tenants)} tenants, {len(cfg.windows)} windows"
        log.info("config reloaded: %s", what, extra={"action": "reload"})
        self.journal("reload", result.at, message=what, actor=actor)
        self.reconciler.tick("reload")
        return None

    def poll_leader(self) -> bool:
        """Check (or take) leadership. A new leader catches up at once; on PostgreSQL the
        leader also ticks every poll, so what a follower wrote (a manual action, a reload)
        takes effect within one poll."""
        now = self.clock()
        was, leader = self.presence.poll(now)
        if leader and not was:
            me = f"{self.presence.instance_id} ({self.listen}) leads"
            self.journal("leader", now, message=me, actor="daemon")
        if leader and self.presence.leadership.postgres:
            self.reconciler.tick("leader" if not was else "leader-poll")
        elif was and not leader:
            log.warning("no longer leader; following", extra={"action": "follower"})
        return leader

    def start(self) -> None:
        now = self.clock()
        self.presence.poll(now)
        with self.guard():
            self.store.reset_running_hooks(now)
            self.watch.start()
        dry = " in dry-run mode" if self.dry_run else ""
        self.journal("daemon-start", now, message=f"maintd started ({self.presence.instance_id}){dry}", actor="daemon")
        self.scheduler.start()
        tick = self.reconciler.tick
        self.scheduler.add_job(
            tick, "interval", seconds=self.settings.safety_tick, id="safety", kwargs={"reason": "safety"}
        )
        if self.presence.leadership.postgres:
            self.scheduler.add_job(self.poll_leader, "interval", seconds=self.settings.leader_poll, id="leader")
        self.reconciler.drains.resume(now)  # before the first tick's expiry sweep
        tick("start")
        # Hooks on a thread of their own: a 2-minute hook never stalls notices, nor a slow receiver a hook.
        self._spawn("outbox", partial(self.outbox.run, self._halt_sends))
        self._spawn("outbox-writer", partial(self.outbox.run_writer, self._stop))
        acting = lambda: self.presence.leader and not self.watch.lost  # noqa: E731
        self._spawn("hooks", partial(self.effects.run, self._stop, acting))
        self._spawn("integrations", partial(self.integrations.run, self._stop, acting))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._halt_sends.set()
        self._wake_workers()
        try:
            self.scheduler.shutdown(wait=True)  # lets a tick in flight finish its transaction
        except Exception:  # noqa: BLE001 - never started
            pass
        for t in self._threads:
            t.join(timeout=10)
        self.outbox.shutdown()
        self.ops.shutdown()
        retire(self.generations.current)  # QUIT to the relay on idle SMTP connections
        self.journal("daemon-stop", self.clock(), message="maintd stopped", actor="daemon")
        self.presence.leave()
        self.store.close()


def _database(db: str, dry_run: bool) -> str:
    if dry_run and "://" not in db:
        # A dry run journals what it would have sent; in the real database those rows would
        # count as sent and the real run would never send them.
        root, ext = os.path.splitext(db)
        return f"{root}.dry-run{ext or '.db'}"
    return db


def _store_key(store: Store, name: str) -> bytes:
    """A key kept in the store (read once per process by its caller's cache)."""
    with store.transaction() as tx:
        return tx.secrets.store_key(name)
