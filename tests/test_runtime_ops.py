"""The chat registry and the ops room as runtime parts, on a real SQLite store and a fixed
clock: one outbox row per tenant URL (two URLs of one scheme are two rows), one row per
ops event and room, never twice, journaled, and not counted as tenant notices."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import Clock

from scheduler import config as config_mod
from scheduler.model import UTC
from scheduler.runtime.drains import Drains
from scheduler.runtime.enqueue import NoticeRows
from scheduler.runtime.faults import Faults, StoreGuard
from scheduler.runtime.gate import Overruns
from scheduler.runtime.gatings import GatingIndex
from scheduler.runtime.generation import Generations, build_generation, shown_channel
from scheduler.runtime.metrics import Metrics
from scheduler.runtime.ops import OPS_TENANT, Ops, failed_record
from scheduler.runtime.reconciler import Reconciler
from scheduler.store import Store, database_url

T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
START = T0 + timedelta(hours=1)

YAML = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  ops: {{urls: ["json://127.0.0.1:9/ops"], events: {events}}}
tenants:
  - id: acme
    notify_urls: ["json://127.0.0.1:9/a", "json://user:pw1234@127.0.0.1:9/b"]
  - {{id: beta}}
windows:
  - id: upgrade
    title: Upgrade
    start: 2027-03-10T13:00Z
    end: 2027-03-10T14:00Z
    notify: [30m]
"""


class Parts:
    def __init__(self, tmp_path, events: str) -> None:
        self.clock = Clock(T0)
        cfg = config_mod.parse(YAML.format(events=events), "windows.yaml", {})
        self.generations = Generations(build_generation(cfg, T0), load=lambda: cfg, clock=self.clock)
        self.store = Store(database_url(str(tmp_path / "maintd.db"), str(tmp_path)))
        metrics = Metrics()
        guard = StoreGuard(Faults(self.clock), metrics)
        common = dict(store=self.store, generations=self.generations, guard=guard)
        self.ops = Ops(store=self.store, generations=self.generations, clock=self.clock)
        self.reconciler = Reconciler(
            **common,
            rows=NoticeRows(**common, evaluation=lambda: self.reconciler.evaluation),
            drains=Drains(**common, index=GatingIndex(), overruns=Overruns(Faults(self.clock), metrics)),
            leader=lambda: True,
            metrics=metrics,
            clock=self.clock,
            ops=self.ops,
        )

    def at(self, when: datetime) -> list[dict]:
        self.clock.now = when
        self.reconciler.tick("test")
        return self.store.notices(limit=1000)


@pytest.fixture
def parts(tmp_path):
    p = Parts(tmp_path, "[started, ended, notice_failed]")
    yield p
    p.ops.shutdown()
    p.store.close()


def test_one_row_per_tenant_url_even_when_two_share_a_scheme(parts):
    rows = parts.at(START - timedelta(minutes=30))
    acme = [r for r in rows if r["tenant"] == "acme"]
    assert len(acme) == 2 and len({r["channel"] for r in acme}) == 2
    assert {shown_channel(r["channel"]) for r in acme} == {"apprise:json"}
    assert sorted(r["payload"]["target"] for r in acme) == ["json://127.0.0.1:9/a", "json://user:****@127.0.0.1:9/b"]
    assert not [r for r in rows if r["tenant"] == "beta"]  # no channel: no rows
    assert all("pw1234" not in str(r) for r in rows)


def test_the_ops_room_hears_start_and_end_once_and_they_are_not_tenant_notices(parts):
    parts.at(START)
    parts.at(START + timedelta(seconds=1))  # a second tick: nothing twice
    rows = parts.at(START + timedelta(hours=1))
    ops = [r for r in rows if r["tenant"] == OPS_TENANT]
    assert sorted(r["lead"] for r in ops) == ["ended", "started"]
    assert all(shown_channel(r["channel"]) == "ops:apprise:json" for r in ops)
    assert ops[0]["payload"]["title"] == "Upgrade" and ops[0]["payload"]["tenants"] == ["acme", "beta"]
    tenant_rows = [r for r in rows if r["tenant"] != OPS_TENANT]
    assert sum(parts.store.notice_counts().values()) == len(tenant_rows)
    journal = [h for h in parts.store.history(limit=100) if h["kind"] == "ops"]
    assert len(journal) == 2 and all("json://127.0.0.1:9/ops" in h["message"] for h in journal)


def test_notice_failed_is_one_message_per_failed_delivery_and_unheard_events_write_nothing(parts):
    rows = parts.at(START - timedelta(minutes=30))
    failed = rows[0]
    with parts.store.transaction() as tx:
        parts.ops.emit("notice_failed", failed_record(failed, "HTTP 500"), tx=tx)
        parts.ops.emit("notice_failed", failed_record(failed, "HTTP 500"), tx=tx)  # the same failure
        parts.ops.emit("hook_failed", {"window": "upgrade", "hook": "on_start"}, tx=tx)  # not listened to
    ops = [r for r in parts.store.notices(limit=1000) if r["tenant"] == OPS_TENANT]
    assert [r["lead"] for r in ops] == ["notice_failed"]
    record = ops[0]["payload"]
    assert record["error"] == "HTTP 500" and record["tenants"] == ["acme"]
    assert record["channel"].startswith("apprise:json json://")
