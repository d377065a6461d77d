"""The gate through the API with an injected clock: exact boundaries, Retry-After, drains,
deadlines, overruns and restarts, instant by instant.

FastAPI's TestClient against ``create_app(Daemon(...))`` in-process; the clock only moves
when a test moves it, and ``tick()`` is called where the loop would run. The same
behaviour with real processes and real time is in test_gate_e2e.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock
from fastapi.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon, Settings
from scheduler.model import UTC

HEARTBEAT = Settings().heartbeat

TOKEN = "gate-test-token-0123456789abcdefghij"
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
S = T0 + timedelta(hours=1)  # `upgrade` starts here

CONFIG = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
  message: "{provider} is under maintenance until {end}."
tenants:
  - id: acme
    name: ACME Corp
  - id: beta
    name: Beta GmbH
    timezone: Europe/Berlin
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
      - deny: {kind: [backup]}
        message: "Backups are paused until {end}."
windows:
  - id: upgrade
    start: 2027-03-10T13:00Z
    end: 2027-03-10T15:00Z
    tenants: [acme]
    drain: {grace: 10m, then: stop}
  - id: follow-up
    start: 2027-03-10T15:00Z
    end: 2027-03-10T16:30Z
    tenants: [acme]
    policy: standard
  - id: san
    start: 2027-03-10T13:00Z
    end: 2027-03-10T14:00Z
    tenants: [beta]
    resources: [san-1]
    drain: {grace: 5m, then: keep}
  - id: far
    start: 2027-05-01T00:00Z
    duration: 1h
    tenants: [beta]
daemon:
  listen: 127.0.0.1:1
"""


@pytest.fixture
def make(tmp_path: Path):
    made: list[Daemon] = []
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)

    def make_daemon(now: datetime = T0) -> tuple[Daemon, Clock, TestClient]:
        clock = Clock(now)
        d = Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN})
        d.reconciler.tick("test")
        made.append(d)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return d, clock, TestClient(create_app(d), headers=auth, raise_server_exceptions=False)

    yield make_daemon
    for d in made:
        d.outbox.shutdown()
        d.store.close()


def admit(client: TestClient, **body):
    return client.post("/v1/admissions", json=body)


def secs(td: timedelta) -> int:
    return int(td.total_seconds())


# --------------------------------------------------------------------------- admissions


OVERLAP = [
    # (tenant, kind, resource, expected_duration, status, reason, retry_after from T0)
    pytest.param("acme", "backup", None, None, 200, None, None, id="no_duration_no_window_now"),
    pytest.param("acme", "backup", None, 3600, 200, None, None, id="ends_exactly_at_start"),
    pytest.param("acme", "backup", None, "1h", 200, None, None, id="ends_exactly_at_start_text"),
    pytest.param(
        "acme",
        "backup",
        None,
        3601,
        423,
        "would-overlap",
        timedelta(hours=4, minutes=30),
        id="one_second_into_the_window_waits_for_the_merged_period",
    ),
    pytest.param("acme", "restore", None, "10h", 200, None, None, id="restores_may_overlap"),
    pytest.param(
        "acme",
        "tape-export",
        None,
        "2h",
        423,
        "would-overlap",
        timedelta(hours=4, minutes=30),
        id="unknown_kind_falls_to_the_default",
    ),
    pytest.param("beta", "backup", None, "2h", 200, None, None, id="resource_window_ignores_jobs_without_one"),
    pytest.param("beta", "backup", "san-2", "2h", 200, None, None, id="resource_window_ignores_other_resources"),
    pytest.param(
        "beta",
        "backup",
        "san-1",
        "2h",
        423,
        "would-overlap",
        timedelta(hours=2),
        id="resource_window_gates_its_resource",
    ),
    pytest.param(
        "beta",
        "backup",
        None,
        "52d",
        423,
        "would-overlap",
        timedelta(days=51, hours=13),
        id="a_window_beyond_the_planning_horizon",
    ),  # starts 51d12h after T0
    pytest.param("beta", "backup", None, "51d12h", 200, None, None, id="ends_exactly_at_the_far_window"),
    pytest.param("beta", "backup", None, 0, 200, None, None, id="zero_duration"),
]


@pytest.mark.parametrize("tenant,kind,resource,duration,status,reason,retry", OVERLAP)
def test_expected_duration_against_upcoming_windows(
    make, tenant, kind, resource, duration, status, reason, retry
) -> None:
    _, _, client = make()
    body = {"tenant": tenant, "kind": kind}
    if resource:
        body["resource"] = resource
    if duration is not None:
        body["expected_duration"] = duration
    r = admit(client, **body)
    assert r.status_code == status, r.text
    out = r.json()
    if status == 200:
        assert out == {"admitted": True, "lease": out["lease"], "heartbeat": HEARTBEAT}
        return
    assert (out["admitted"], out["reason"], out["retry_after"]) == (False, reason, secs(retry))
    assert r.headers["Retry-After"] == str(secs(retry))


def test_in_maintenance_retry_after_is_the_merged_period_end_rounded_up(make) -> None:
    d, clock, client = make()
    clock.now = S + timedelta(minutes=30, milliseconds=250)
    r = admit(client, tenant="acme", kind="backup")
    assert r.status_code == 423
    out = r.json()
    # upgrade ends 15:00, follow-up (touching) 16:30: one period; 2:59:59.75 rounded up
    assert out == {
        "admitted": False,
        "reason": "maintenance",
        "retry_after": 3 * 3600,
        "message": "Backups are paused until Wed 10 Mar 2027 16:30 UTC.",
    }
    assert r.headers["Retry-After"] == str(3 * 3600)
    assert admit(client, tenant="acme", kind="restore").status_code == 200
    # beta reads times in its own zone; the SAN window only gates san-1
    r = admit(client, tenant="beta", kind="backup", resource="san-1")
    assert r.status_code == 423 and r.json()["message"] == "Backups are paused until Wed 10 Mar 2027 15:00 CET."
    assert admit(client, tenant="beta", kind="backup", resource="san-2").status_code == 200
    d.gate_writer.flush()  # refusals are journaled without the answer waiting for it
    refused = [h for h in d.store.history(limit=100) if h["kind"] == "refused"]
    assert sorted((h["detail"]["tenant"], h["detail"]["kind"], h["window"]) for h in refused) == [
        ("acme", "backup", "upgrade"),
        ("beta", "backup", "san"),
    ]


def test_a_window_that_began_since_the_last_tick_already_gates(make) -> None:
    d, clock, client = make()
    clock.now = S  # no tick since T0: the evaluation is an hour old
    r = admit(client, tenant="acme", kind="backup")
    assert r.status_code == 423 and r.json()["reason"] == "maintenance"
    clock.now = T0 + timedelta(hours=5)  # after follow-up's end, still without a tick
    assert admit(client, tenant="acme", kind="backup").status_code == 200


def test_the_gate_needs_the_token_even_from_loopback(make) -> None:
    d, _, client = make()
    lease = admit(client, tenant="acme", kind="backup").json()["lease"]
    remote = TestClient(create_app(d), client=("127.0.0.1", 50000), raise_server_exceptions=False)
    calls = [
        ("post", "/v1/admissions", {"tenant": "acme", "kind": "backup"}),
        ("post", f"/v1/leases/{lease}/heartbeat", None),
        ("delete", f"/v1/leases/{lease}", None),
    ]
    for method, path, body in calls:
        kw = {"json": body} if body else {}
        r = getattr(remote, method)(path, **kw)
        assert r.status_code == 401 and "missing or invalid bearer token" in r.json()["error"], (path, r.text)
        r = getattr(remote, method)(path, headers={"Authorization": "Bearer wrong"}, **kw)
        assert r.status_code == 401, path
        r = getattr(remote, method)(path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
        assert r.status_code == 200, (path, r.text)


# --------------------------------------------------------------------------- drains


def test_a_window_start_orders_denied_leases_to_drain_by_start_plus_grace(make) -> None:
    d, clock, client = make()
    clock.now = S - timedelta(seconds=10)  # leases live 3 heartbeat intervals: admit close to the start
    ids = {}
    for name, body in {
        "backup": {"tenant": "acme", "kind": "backup"},
        "restore": {"tenant": "acme", "kind": "restore"},
        "san-1": {"tenant": "beta", "kind": "backup", "resource": "san-1"},
        "san-2": {"tenant": "beta", "kind": "backup", "resource": "san-2"},
    }.items():
        ids[name] = admit(client, **body).json()["lease"]

    def beat(name: str) -> dict:
        r = client.post(f"/v1/leases/{ids[name]}/heartbeat")
        assert r.status_code == 200, r.text
        return r.json()

    clock.now = S - timedelta(seconds=1)
    d.reconciler.tick("test")
    assert beat("backup") == {"drain": False, "deadline": None}
    assert d.views.status()["mode"] == "normal"

    clock.now = S + timedelta(seconds=2)  # the tick runs a little after the start
    d.reconciler.tick("test")
    assert beat("backup") == {"drain": True, "deadline": "2027-03-10T13:10:00Z"}  # start + 10m, not now + 10m
    assert beat("san-1") == {"drain": True, "deadline": None}  # then: keep
    assert beat("restore") == {"drain": False, "deadline": None}
    assert beat("san-2") == {"drain": False, "deadline": None}
    st = d.views.status()
    assert st["mode"] == "draining" and st["leases"]["draining"] == 2 and st["leases"]["running"] == 4

    clock.now = S + timedelta(seconds=20)
    d.reconciler.tick("test")  # ordered once: a later tick neither moves the deadline nor journals again
    assert beat("backup") == {"drain": True, "deadline": "2027-03-10T13:10:00Z"}
    drains = [h for h in d.store.history(limit=100) if h["kind"] == "drain"]
    assert sorted(
        (h["window"], h["detail"]["tenant"], h["detail"]["kind"], h["detail"]["then"], h["detail"]["deadline"])
        for h in drains
    ) == [("san", "beta", "backup", "keep", None), ("upgrade", "acme", "backup", "stop", "2027-03-10T13:10:00Z")]

    for name in ("backup", "san-1"):
        assert client.delete(f"/v1/leases/{ids[name]}").status_code == 200
    st = d.views.status()
    assert (st["mode"], st["leases"]["running"], st["leases"]["draining"]) == ("maintenance", 2, 0)


def test_an_overrun_is_a_fault_once_and_clears_when_the_lease_ends(make) -> None:
    d, clock, client = make()
    clock.now = S - timedelta(seconds=5)
    lease = admit(client, tenant="acme", kind="backup").json()["lease"]
    clock.now = S
    d.reconciler.tick("test")
    for seconds in range(0, 600, HEARTBEAT):  # heartbeating within the grace is fine
        clock.now = S + timedelta(seconds=seconds)
        assert client.post(f"/v1/leases/{lease}/heartbeat").status_code == 200
    assert not [f for f in d.views.status()["faults"] if f["what"].startswith("overrun:")]

    for seconds in (605, 610, 615):
        clock.now = S + timedelta(seconds=seconds)
        assert client.post(f"/v1/leases/{lease}/heartbeat").json()["drain"] is True
    st = d.views.status()
    public = st["leases"]["items"][0]["id"]  # faults and the journal name the public id, never the secret
    assert public != lease and lease not in str(st)
    faults = [f for f in st["faults"] if f["what"] == f"overrun:{public}"]
    assert len(faults) == 1 and faults[0]["message"] == (
        f"lease {public} (acme/backup) still runs 5s after its drain deadline 2027-03-10T13:10:00Z"
    )
    assert st["leases"]["items"][0]["overrun"] is True
    assert [h["detail"]["lease"] for h in d.store.history(limit=100) if h["kind"] == "drain-overrun"] == [public]
    d.views.refresh_gauges()
    assert d.metrics.registry.get_sample_value("maintd_drain_overruns") == 1

    # the client dies: the lease expires and the fault goes with it
    clock.now += timedelta(seconds=3 * HEARTBEAT)
    d.reconciler.tick("test")
    assert not [f for f in d.views.status()["faults"] if f["what"].startswith("overrun:")]
    assert d.metrics.registry.get_sample_value("maintd_drain_overruns") == 0


def test_start_resumes_leases_before_the_first_sweep(tmp_path: Path) -> None:
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = Clock(T0)
    d = Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN})
    d.reconciler.tick("test")
    client = TestClient(create_app(d), headers={"Authorization": f"Bearer {TOKEN}"})
    clock.now = S - timedelta(seconds=5)
    lease = client.post("/v1/admissions", json={"tenant": "acme", "kind": "backup"}).json()["lease"]
    clock.now = S
    d.reconciler.tick("test")
    assert client.post(f"/v1/leases/{lease}/heartbeat").json()["drain"] is True
    [public] = [row["id"] for row in d.store.leases()]
    d.outbox.shutdown()
    d.store.close()

    clock.now = S + timedelta(minutes=5)  # maintd was down 5 minutes
    d2 = Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN})
    d2.start()
    try:
        client2 = TestClient(create_app(d2), headers={"Authorization": f"Bearer {TOKEN}"})
        assert d2.store.lease(public)["status"] == "running"
        assert client2.post(f"/v1/leases/{lease}/heartbeat").json() == {
            "drain": True,
            "deadline": "2027-03-10T13:10:00Z",
        }
        # a client that really is gone still expires three intervals later
        clock.now += timedelta(seconds=3 * HEARTBEAT + 1)
        d2.reconciler.tick("test")
        assert d2.store.lease(public)["status"] == "expired"
    finally:
        d2.stop()
