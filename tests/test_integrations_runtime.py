"""The integrations part in process: a real SQLite store, an injected clock, the PagerDuty
stand-in over real HTTP. Reschedules update the same object; a 429 is retried on the
notice schedule (Retry-After honoured) and never holds the tick up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import Clock

from scheduler import config as config_mod
from scheduler.leader import Leadership
from scheduler.runtime.drains import Drains
from scheduler.runtime.enqueue import NoticeRows
from scheduler.runtime.faults import Faults, StoreGuard
from scheduler.runtime.gate import Overruns
from scheduler.runtime.gatings import GatingIndex
from scheduler.runtime.generation import Generations, build_generation
from scheduler.runtime.integrations import IntegrationRuns
from scheduler.runtime.metrics import Metrics
from scheduler.runtime.presence import Presence
from scheduler.runtime.reconciler import Reconciler
from scheduler.store import Store, database_url
from tests.test_integrations_pagerduty import pagerduty  # noqa: F401 - the fixture

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
YAML = """\
version: 1
provider: {name: X, timezone: UTC, integrations: [pd]}
tenants: [{id: acme}]
integrations:
  pd: {type: pagerduty, url: "URL", token: pd-secret, from: noc@example.com, services: [PABC123]}
windows:
  - id: fw
    start: START
    duration: 1h
"""


class Parts:
    def __init__(self, tmp_path, url: str) -> None:
        self.clock = Clock(T0)
        self.url = url
        self.cfg = self.parse("2026-12-01T14:00:00Z")
        self.generations = Generations(build_generation(self.cfg, T0), load=lambda: self.cfg, clock=self.clock)
        self.store = Store(database_url(str(tmp_path / "maintd.db"), str(tmp_path)))
        self.metrics = Metrics()
        faults = Faults(self.clock)
        guard = StoreGuard(faults, self.metrics)
        common = dict(store=self.store, generations=self.generations, guard=guard)
        presence = Presence(
            store=self.store,
            leadership=Leadership(self.store.engine),
            instance_id="t",
            listen="127.0.0.1:1",
            guard=guard,
            metrics=self.metrics,
            stale=timedelta(seconds=15),
        )
        presence.poll(T0)
        evaluation = lambda: self.reconciler.evaluation  # noqa: E731
        self.runs = IntegrationRuns(**common, evaluation=evaluation, metrics=self.metrics, clock=self.clock)
        self.reconciler = Reconciler(
            **common,
            rows=NoticeRows(**common, evaluation=evaluation),
            drains=Drains(**common, index=GatingIndex(), overruns=Overruns(faults, self.metrics)),
            leader=lambda: presence.leader,
            metrics=self.metrics,
            clock=self.clock,
            integrations=self.runs,
        )

    def parse(self, start: str):
        return config_mod.parse(YAML.replace("URL", self.url).replace("START", start), "windows.yaml", {})

    def rows(self) -> list[dict]:
        with self.store.read() as r:
            return r.integrations.rows()


def test_a_reschedule_updates_the_same_window_and_a_429_is_retried_later(tmp_path, pagerduty):  # noqa: F811
    pagerduty.now = T0
    p = Parts(tmp_path, pagerduty.url.rstrip("/"))
    p.reconciler.tick()
    (row,) = p.rows()
    assert (row["phase"], row["status"], row["next_at"]) == ("planned", "pending", T0)
    assert p.runs.run_due() == 1
    (window,) = pagerduty.windows.values()
    assert window["start_time"] == "2026-12-01T14:00:00Z"
    assert [r["status"] for r in p.rows()] == ["applied"]
    assert p.runs.run_due() == 0  # nothing is done twice

    # Moved by an hour, and PagerDuty says "slow down" once.
    p.cfg = p.parse("2026-12-01T15:00:00Z")
    p.generations.reload()
    pagerduty.throttle = 1
    p.clock.now = T0 + timedelta(minutes=1)
    p.reconciler.tick()
    assert p.runs.run_due() == 1
    (row,) = p.rows()
    assert row["status"] == "failed" and "429" in row["error"] and "pd-secret" not in row["error"]
    assert row["next_at"] == p.clock.now + timedelta(seconds=7)  # Retry-After beats the 5s (+-10%) first wait
    assert p.reconciler.evaluation is not None and p.reconciler.evaluation.upcoming  # the tick went on
    assert p.runs.run_due() == 0  # not before next_at

    p.clock.now += timedelta(seconds=7)
    assert p.runs.run_due() == 1
    (row,) = p.rows()
    assert (row["status"], row["error"], row["attempts"]) == ("applied", None, 0)
    assert list(pagerduty.windows) == [window["id"]]  # the same window, moved
    assert pagerduty.windows[window["id"]]["start_time"] == "2026-12-01T15:00:00Z"
    methods = [m for m, _, _ in pagerduty.requests]
    assert methods == ["POST", "PUT", "PUT"]
