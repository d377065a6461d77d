"""Each runtime part built alone: a tmp SQLite store, a fixed clock, a Config parsed from a
string in memory. No YAML file, no Daemon, no threads unless the part owns one."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from conftest import Clock

from scheduler import config as config_mod
from scheduler.errors import ConflictError, DeliveryError, NotFoundError, StoreError
from scheduler.groupcommit import GroupCommit
from scheduler.leader import Leadership
from scheduler.model import UTC, isoz
from scheduler.runtime.drains import Drains
from scheduler.runtime.effects import Effects
from scheduler.runtime.endchecks import checks_due, hold
from scheduler.runtime.enqueue import NoticeRows
from scheduler.runtime.faults import Faults, StoreGuard
from scheduler.runtime.gate import Gate, Overruns, write_gate_batch
from scheduler.runtime.gatings import GatingIndex
from scheduler.runtime.generation import Generations, build_generation
from scheduler.runtime.manual import Manual
from scheduler.runtime.metrics import Metrics
from scheduler.runtime.outbox import Outbox
from scheduler.runtime.presence import Presence
from scheduler.runtime.reconciler import Reconciler
from scheduler.runtime.views import Views
from scheduler.store import Store, database_url

T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
S = T0 + timedelta(hours=1)  # `upgrade` starts here, ends an hour later

YAML = """\
version: 1
provider: {name: Test Cloud, timezone: UTC, policy: standard}
tenants:
  - {id: acme, name: ACME Corp}
  - {id: beta, name: Beta GmbH}
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
windows:
  - id: upgrade
    start: 2027-03-10T13:00Z
    end: 2027-03-10T14:00Z
    tenants: [acme]
    notify: [30m]
EXTRA
"""


class Recorder:
    """A notifier at the one seam the outbox calls: records sends, or fails them."""

    channel = "webhook"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.error: DeliveryError | None = None

    def applies_to(self, tenant) -> bool:
        return True

    def send(self, notice, tenant) -> None:
        if self.error:
            raise self.error
        self.sent.append((notice.kind, tenant.id))


class Parts:
    """The parts wired as the composition root wires them, minus threads and the scheduler."""

    def __init__(self, tmp_path, extra: str = "") -> None:
        self.clock = Clock(T0)
        cfg = config_mod.parse(YAML.replace("EXTRA", extra), "windows.yaml", {})
        self.notifier = Recorder()
        generation = replace(build_generation(cfg, T0), notifiers={"webhook": self.notifier})
        self.generations = Generations(generation, load=lambda: cfg, clock=self.clock)
        self.store = Store(database_url(str(tmp_path / "maintd.db"), str(tmp_path)))
        self.metrics = Metrics()
        self.faults = Faults(self.clock)
        self.guard = StoreGuard(self.faults, self.metrics)
        common = dict(store=self.store, generations=self.generations, guard=self.guard)
        evaluation = lambda: self.reconciler.evaluation  # noqa: E731
        index, overruns = GatingIndex(), Overruns(self.faults, self.metrics)
        self.presence = Presence(
            store=self.store,
            leadership=Leadership(self.store.engine),
            instance_id="test-1",
            listen="127.0.0.1:1",
            guard=self.guard,
            metrics=self.metrics,
            stale=timedelta(seconds=15),
        )
        self.presence.poll(T0)
        self.reconciler = Reconciler(
            **common,
            rows=NoticeRows(**common, evaluation=evaluation),
            drains=Drains(**common, index=index, overruns=overruns),
            leader=lambda: self.presence.leader,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.writer = GroupCommit(lambda ops: write_gate_batch(self.store, ops), name="test-gate-writer")
        self.gate = Gate(
            writer=self.writer,
            generations=self.generations,
            evaluation=evaluation,
            index=index,
            overruns=overruns,
            guard=self.guard,
            metrics=self.metrics,
            clock=self.clock,
            heartbeat=10,
        )
        self.outbox = Outbox(
            **common,
            metrics=self.metrics,
            clock=self.clock,
            worker="test-1",
            workers=4,
            claim_batch=4,
            claim_lease=timedelta(minutes=2),
        )
        self.manual = Manual(
            store=self.store, generations=self.generations, reconciler=self.reconciler, clock=self.clock
        )
        self.effects = Effects(
            **common,
            evaluation=evaluation,
            faults=self.faults,
            metrics=self.metrics,
            clock=self.clock,
            env={},
            cwd=str(tmp_path),
            hook_attempts=2,
        )
        self.views = Views(
            **common,
            reconciler=self.reconciler,
            presence=self.presence,
            faults=self.faults,
            metrics=self.metrics,
            clock=self.clock,
            config_path="windows.yaml",
        )

    def at(self, when: datetime):
        self.clock.now = when
        return self.reconciler.tick("test")

    def journal(self, kind: str) -> list[dict]:
        return [h for h in self.store.history(limit=200) if h["kind"] == kind]


@pytest.fixture
def parts(tmp_path):
    made = []

    def make(extra: str = "") -> Parts:
        made.append(Parts(tmp_path, extra))
        return made[-1]

    yield make
    for p in made:
        p.outbox.shutdown()
        p.store.close()


# --------------------------------------------------------------------------- reconciler


def test_reconciler_records_start_and_end_once_and_wakes_at_the_next_edge(parts) -> None:
    p = parts()
    ev = p.at(T0)
    assert ev.transitions == () and [a.window.id for a in ev.upcoming] == ["upgrade"]
    assert ev.next_wakeup == S - timedelta(minutes=30)  # the 30m notice
    ev = p.at(S + timedelta(seconds=1))
    assert [(t.event, t.window) for t in ev.transitions] == [("start", "upgrade")]
    assert p.at(S + timedelta(seconds=2)).transitions == ()  # recorded: never twice
    ev = p.at(S + timedelta(hours=1))
    assert [(t.event, t.window) for t in ev.transitions] == [("end", "upgrade")]
    assert [e for e in p.store.events() if e[0] == "upgrade"] == [
        ("upgrade", S, "start"),
        ("upgrade", S, "end"),
    ]


def test_a_follower_evaluates_but_records_nothing(parts) -> None:
    p = parts()
    p.reconciler.leader = lambda: False
    ev = p.at(S + timedelta(seconds=1))
    assert [t.event for t in ev.transitions] == ["start"]  # what is true ...
    assert p.store.events() == {}  # ... but only the leader writes it


# --------------------------------------------------------------------------- gate


def test_gate_refuses_in_a_window_and_admits_what_the_policy_allows(parts) -> None:
    p = parts()
    p.at(S + timedelta(seconds=1))
    p.clock.now = S + timedelta(minutes=30)
    refused = p.gate.admit("acme", "backup")
    assert refused["admitted"] is False and refused["retry_after"] == 30 * 60
    assert p.gate.admit("acme", "restore")["admitted"] is True
    assert p.gate.admit("beta", "backup")["admitted"] is True  # not in the window
    assert [h["detail"]["kind"] for h in p.journal("refused")] == ["backup"]
    with pytest.raises(NotFoundError):
        p.gate.admit("nobody", "backup")


def test_gate_lease_heartbeat_drain_overrun_and_release(parts) -> None:
    p = parts()
    p.clock.now = S - timedelta(seconds=5)
    lease = p.gate.admit("acme", "backup")["lease"]
    assert p.gate.heartbeat(lease) == {"drain": False, "deadline": None}
    p.at(S + timedelta(seconds=1))  # the window starts: the backup is told to drain
    deadline = S + timedelta(minutes=10)
    assert p.gate.heartbeat(lease) == {"drain": True, "deadline": isoz(deadline)}
    while p.clock.now < deadline + timedelta(seconds=5):  # the job heartbeats as `maintd exec` would
        p.clock.now += timedelta(seconds=10)
        p.gate.heartbeat(lease)
    [public] = [row["id"] for row in p.store.leases()]  # the fault names the public id, not the secret
    assert p.faults.names("overrun:") == [f"overrun:{public}"]
    assert p.gate.release(lease) == public
    assert p.faults.names("overrun:") == []
    with pytest.raises(NotFoundError):
        p.gate.release(lease)


# --------------------------------------------------------------------------- outbox


def test_outbox_sends_due_notices_and_records_the_results(parts) -> None:
    p = parts()
    p.at(S - timedelta(minutes=30))  # the 30m notice is due
    assert p.outbox.deliver_due() == 1
    assert p.notifier.sent == [("scheduled", "acme")]
    assert [r["status"] for r in p.store.notices()] == ["sent"]
    assert p.outbox.deliver_due() == 0


def test_outbox_retries_a_temporary_failure_and_gives_up_on_a_permanent_one(parts) -> None:
    p = parts()
    p.at(S - timedelta(minutes=30))
    p.notifier.error = DeliveryError("503 from receiver", permanent=False)
    assert p.outbox.deliver_due() == 1
    (row,) = p.store.notices()
    assert row["status"] == "pending" and row["last_error"] == "503 from receiver"
    assert row["next_attempt_at"] > p.clock.now
    p.clock.now = row["next_attempt_at"]
    p.notifier.error = DeliveryError("410 gone", permanent=True)
    assert p.outbox.deliver_due() == 1
    assert [r["status"] for r in p.store.notices()] == ["failed"]


# --------------------------------------------------------------------------- manual


def test_manual_enter_extend_exit(parts) -> None:
    p = parts()
    p.at(T0)
    entered = p.manual.enter(reason="patch", duration=timedelta(minutes=10), tenants=["beta"])
    assert entered["end"] == isoz(T0 + timedelta(minutes=10)) and entered["tenants"] == ["beta"]
    assert p.gate.admit("beta", "backup")["admitted"] is False
    extended = p.manual.extend(entered["window"], timedelta(minutes=5))
    assert extended["end"] == isoz(T0 + timedelta(minutes=15))
    assert p.manual.exit(window=entered["window"]) == {"ended": [{"window": entered["window"], "occurrence": isoz(T0)}]}
    with pytest.raises(ConflictError):
        p.manual.exit()
    with pytest.raises(NotFoundError):
        p.manual.extend("nope", timedelta(minutes=5))


# --------------------------------------------------------------------------- views


def test_views_status_and_windows(parts) -> None:
    p = parts()
    p.at(T0)
    st = p.views.status()
    assert st["mode"] == "normal" and st["active"] == []
    assert [(n["window"], n["start"]) for n in st["next"]] == [("upgrade", isoz(S))]
    assert st["config"] == {"path": "windows.yaml", "loaded_at": isoz(T0), "reloaded_at": isoz(T0), "error": None}
    p.at(S + timedelta(seconds=1))
    assert p.views.status()["mode"] == "maintenance"
    (w,) = p.views.windows()
    assert w["id"] == "upgrade" and w["next"] == {
        "occurrence": isoz(S),
        "start": isoz(S),
        "end": isoz(S + timedelta(hours=1)),
    }
    p.views.refresh_gauges()
    assert p.metrics.registry.get_sample_value("maintd_mode", {"mode": "maintenance"}) == 1


# --------------------------------------------------------------------------- end checks, off the tick lock


CHECKED = """\
  - id: checked
    start: 2027-03-10T12:10Z
    end: 2027-03-10T12:20Z
    tenants: [beta]
    end_check: {run: ["false"], every: 1m, max: 2m}
"""


def test_an_end_check_is_recorded_due_then_run_off_the_tick_and_extends(parts) -> None:
    p = parts(CHECKED)
    end = T0 + timedelta(minutes=20)
    p.at(T0 + timedelta(minutes=11))
    ev = p.at(end)
    assert [t.window for t in ev.transitions] == []  # the end waits for its check
    assert [(r["window"], r["event"], r["status"]) for r in p.store.hook_runs()] == [("checked", "c0", "pending")]
    assert p.views.status()["hooks"]["pending"] == 0  # checks are not hooks
    # while its check is due or running the window is still on: status shows it, the gate refuses
    assert [(a.window.id, a.occ.end) for a in ev.active] == [("checked", end + timedelta(minutes=1))]
    assert [a["window"] for a in p.views.status()["active"]] == ["checked"]
    assert p.gate.admit("beta", "backup")["admitted"] is False
    ticks = []
    p.effects.on_check = lambda: ticks.append(p.reconciler.tick("end-check"))
    assert p.effects.run_due() == 1
    assert [e["detail"]["end"] for e in p.journal("end-check")] == [isoz(end + timedelta(minutes=1))]
    assert "end-check:checked" in p.faults
    assert ticks and ticks[0].transitions == ()  # extended, not ended
    assert [(a.window.id, a.occ.end) for a in ticks[0].active] == [("checked", end + timedelta(minutes=1))]
    # at max past the planned end, no more checks: it ends
    p.at(end + timedelta(minutes=1))
    p.effects.run_due()
    ev = p.at(end + timedelta(minutes=2))
    assert [(t.event, t.window, t.at) for t in ev.transitions] == [("end", "checked", end + timedelta(minutes=2))]


def test_hold_drops_the_end_its_completed_notice_and_announcement() -> None:
    cfg = config_mod.parse(YAML.replace("EXTRA", CHECKED), "windows.yaml", {})
    from scheduler import plan

    end = T0 + timedelta(minutes=20)
    journal = plan.Journal(events=frozenset({("checked", T0 + timedelta(minutes=10), "start")}))
    ev = plan.evaluate(cfg, journal, end)
    due = checks_due(ev, cfg)
    assert due == [("checked", T0 + timedelta(minutes=10), "c0")]
    held = hold(ev, due, cfg)
    assert [t.event for t in ev.transitions] == ["end"] and held.transitions == ()
    assert [a.window.id for a in ev.active] == [] and [a.window.id for a in held.active] == ["checked"]
    assert not [n for n in held.notices if n.kind == "completed" and n.window == "checked"]
    assert not [a for a in held.announces if a.window == "checked"]


# --------------------------------------------------------------------------- faults, generations


def test_the_store_guard_reports_and_recovers() -> None:
    clock = Clock(T0)
    faults, metrics = Faults(clock), Metrics()
    guard = StoreGuard(faults, metrics)
    with guard() as g:
        raise StoreError("database is locked")
    assert g.failed and faults.to_json() == [{"what": "store", "message": "database is locked", "since": isoz(T0)}]
    assert metrics.registry.get_sample_value("maintd_store_fault") == 1
    guard.recovered()
    assert faults.to_json() == [] and metrics.registry.get_sample_value("maintd_store_fault") == 0


def test_reloads_are_serialised_so_the_last_one_wins() -> None:
    first = config_mod.parse(YAML.replace("EXTRA", ""), "windows.yaml", {})
    second = config_mod.parse(YAML.replace("EXTRA", CHECKED), "windows.yaml", {})
    slow, started = threading.Event(), threading.Event()
    loads = iter([first, second])

    def load():
        cfg = next(loads)
        if cfg is first:  # the first reload is slow to build
            started.set()
            assert slow.wait(5)
        return cfg

    gens = Generations(build_generation(first, T0), load=load, clock=Clock(T0))
    a = threading.Thread(target=gens.reload)
    a.start()
    assert started.wait(5)
    b = threading.Thread(target=gens.reload)
    b.start()
    b.join(0.2)
    assert b.is_alive()  # waits for the first reload instead of racing it
    slow.set()
    a.join(5)
    b.join(5)
    assert gens.config is second and gens.error is None


def test_a_reload_closes_the_replaced_notifiers_and_a_failed_one_keeps_them() -> None:
    cfg = config_mod.parse(YAML.replace("EXTRA", ""), "windows.yaml", {})

    class Closable:
        channel = "email"
        closed = 0

        def close(self) -> None:
            self.closed += 1

    old = Closable()
    gens = Generations(replace(build_generation(cfg, T0), notifiers={"email": old}), load=lambda: cfg, clock=Clock(T0))
    assert gens.reload().error is None
    assert old.closed == 1  # replaced: its idle connections said goodbye
    kept = gens.current.notifiers
    broken = "version: 1\nprovider: {name: X, timezone: Nowhere/Nowhere}\n"
    gens._load = lambda: config_mod.parse(broken, "windows.yaml", {})
    assert gens.reload().error is not None
    assert gens.current.notifiers is kept  # a failed reload replaces (and closes) nothing
