"""The gate's hot path (issue: the gate near the bare-server floor).

- ``POST /v1/admissions`` is answered by :class:`scheduler.web.fastgate.GateFastPath` when
  the request is ordinary, and by the full FastAPI route otherwise; both answer alike.
- The answer does not wait for the lease's commit while the store is healthy; ``status``
  still shows the lease at once, and a lease whose row was lost (the daemon died before the
  commit) is re-created by its next heartbeat, only if the daemon issued it.
- The lease secret (``scheduler.leasetoken``) is sealed: altered or foreign ones are refused.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock
from fastapi.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon
from scheduler.leasetoken import seal, unseal
from scheduler.model import UTC
from scheduler.web import fastgate

TOKEN = "gate-test-token-0123456789abcdefghij"
GATE = "gate-only-token-0123456789abcdefghij"
READ = "read-only-token-0123456789abcdefghij"
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)

CONFIG = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
  - id: beta
    name: Beta GmbH
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
daemon:
  listen: 127.0.0.1:1
  database: maintd.db
"""


@pytest.fixture
def gate(tmp_path: Path, monkeypatch):
    """(daemon, clock, client, calls): ``calls`` counts admissions the fast path answered."""
    (tmp_path / "windows.yaml").write_text(CONFIG)
    clock = Clock(T0)
    env = {"MAINTD_TOKEN": TOKEN, "MAINTD_GATE_TOKEN": GATE, "MAINTD_READ_TOKEN": READ}
    d = Daemon(str(tmp_path / "windows.yaml"), clock=clock, env=env)
    d.reconciler.tick("test")
    calls: list[int] = []
    answer = fastgate.GateFastPath._answer

    async def counted(self, body):
        out = await answer(self, body)
        calls.append(0 if out is None else out.status_code)
        return out

    monkeypatch.setattr(fastgate.GateFastPath, "_answer", counted)
    client = TestClient(create_app(d), raise_server_exceptions=False)
    yield d, clock, client, calls
    d.outbox.shutdown()
    d.store.close()


def auth(token: str = GATE) -> dict:
    return {"Authorization": f"Bearer {token}"}


def chunked(body: bytes):
    """The same body without a Content-Length (chunked): never the fast path."""
    yield body


CASES = [
    # (name, token, body, status, fields of the answer that must match)
    ("admitted", GATE, b'{"tenant": "acme", "kind": "backup"}', 200, {"admitted": True}),
    ("admitted_admin", TOKEN, b'{"tenant": "beta", "kind": "backup", "resource": "r1"}', 200, {"admitted": True}),
    ("unknown_tenant", GATE, b'{"tenant": "nobody", "kind": "backup"}', 404, {"error": 'unknown tenant "nobody"'}),
    ("invalid_json", GATE, b'{"tenant": ', 422, {}),
    ("blank_kind", GATE, b'{"tenant": "acme", "kind": "  "}', 422, {"problems": ["kind: must not be blank"]}),
    ("no_token", None, b'{"tenant": "acme", "kind": "backup"}', 401, {}),
    ("read_token", READ, b'{"tenant": "acme", "kind": "backup"}', 403, {}),
]


@pytest.mark.parametrize("name,token,body,status,fields", CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_and_the_route_answer_alike(gate, name, token, body, status, fields) -> None:
    d, clock, client, calls = gate
    headers = {"Content-Type": "application/json", **(auth(token) if token else {})}
    fast = client.post("/v1/admissions", content=body, headers=headers)
    slow = client.post("/v1/admissions", content=chunked(body), headers=headers)
    assert fast.status_code == slow.status_code == status, (fast.text, slow.text)
    for r in (fast, slow):
        assert r.headers["content-type"] == "application/json"
        for key, value in fields.items():
            assert r.json()[key] == value
    assert set(fast.json()) == set(slow.json())
    # only an authorised, valid admission of a known tenant is answered by the fast path
    assert calls == ([200] if status == 200 else [0] if token in (GATE, TOKEN) else [])


def test_a_refusal_is_the_same_on_both_paths_with_retry_after(gate) -> None:
    d, clock, client, calls = gate
    clock.now = T0 + timedelta(hours=1, minutes=30)  # inside `upgrade`
    d.reconciler.tick("test")
    body = b'{"tenant": "acme", "kind": "backup"}'
    headers = {"Content-Type": "application/json", **auth()}
    fast = client.post("/v1/admissions", content=body, headers=headers)
    slow = client.post("/v1/admissions", content=chunked(body), headers=headers)
    assert fast.status_code == slow.status_code == 423
    assert fast.json() == slow.json()
    assert (
        fast.json()["message"] == "Backups are paused until 2027-03-10 15:00 UTC." or "15:00" in fast.json()["message"]
    )
    assert fast.headers["retry-after"] == slow.headers["retry-after"] == str(90 * 60)
    assert calls == [423]
    refused = [h for h in client.get("/v1/history", headers=auth(READ)).json() if h["kind"] == "refused"]
    assert len(refused) == 2  # both journaled, the fast one without waiting for it


def test_other_content_types_and_oversized_bodies_go_the_long_way(gate) -> None:
    d, clock, client, calls = gate
    r = client.post("/v1/admissions", content=b'{"tenant": "acme", "kind": "backup"}', headers=auth())
    assert r.status_code in (200, 422)  # no content type: FastAPI's own rule decides
    r = client.post(
        "/v1/admissions", content=b"x" * (70 * 1024), headers={"Content-Type": "application/json", **auth()}
    )
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert calls == []


def test_status_shows_a_lease_as_soon_as_it_is_answered(gate) -> None:
    d, clock, client, calls = gate
    leases = [
        client.post("/v1/admissions", json={"tenant": "acme", "kind": "backup"}, headers=auth()) for _ in range(20)
    ]
    assert all(r.status_code == 200 for r in leases)
    st = client.get("/v1/status", headers=auth(READ)).json()
    assert st["leases"]["running"] == 20


def _forget_leases(d: Daemon, db: Path) -> None:
    """What a crash between the answer and the commit leaves: no row."""
    d.gate_writer.flush()
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM leases")


def test_a_heartbeat_re_creates_a_lease_lost_before_its_commit(gate, tmp_path: Path) -> None:
    d, clock, client, calls = gate
    clock.now = T0 + timedelta(minutes=59, seconds=50)  # 10 s before `upgrade`
    r = client.post("/v1/admissions", json={"tenant": "acme", "kind": "backup"}, headers=auth())
    secret = r.json()["lease"]
    before = client.get("/v1/status", headers=auth(READ)).json()["leases"]["items"][0]
    _forget_leases(d, tmp_path / "maintd.db")
    assert client.get("/v1/status", headers=auth(READ)).json()["leases"]["running"] == 0

    clock.now = T0 + timedelta(minutes=59, seconds=55)
    hb = client.post(f"/v1/leases/{secret}/heartbeat", headers=auth())
    assert hb.status_code == 200 and hb.json() == {"drain": False, "deadline": None}
    after = client.get("/v1/status", headers=auth(READ)).json()["leases"]["items"]
    assert [(x["id"], x["tenant"], x["kind"]) for x in after] == [(before["id"], "acme", "backup")]

    # a window starting later drains the re-created lease like any other
    clock.now = T0 + timedelta(hours=1)
    d.reconciler.tick("test")
    hb = client.post(f"/v1/leases/{secret}/heartbeat", headers=auth())
    assert hb.status_code == 200 and hb.json()["drain"] is True, hb.text
    # released, it stays released: a heartbeat of an ended lease is never a new one
    assert client.delete(f"/v1/leases/{secret}", headers=auth()).status_code == 200
    assert client.post(f"/v1/leases/{secret}/heartbeat", headers=auth()).status_code == 404


def test_only_a_lease_the_daemon_issued_is_re_created(gate, tmp_path: Path) -> None:
    d, clock, client, calls = gate
    secret = client.post("/v1/admissions", json={"tenant": "acme", "kind": "restore"}, headers=auth()).json()["lease"]
    _forget_leases(d, tmp_path / "maintd.db")
    rand, payload, mac = secret.split(".")
    lease = unseal(d.gate.key(), secret)
    assert lease is not None and (lease["tenant"], lease["kind"]) == ("acme", "restore")
    forged = [
        f"{rand}.{payload}.{'A' * len(mac)}",  # altered MAC
        f"{rand}x.{payload}.{mac}",  # altered random part
        seal(b"k" * 32, {**lease, "kind": "backup"}),  # another key
        "not-a-lease",
    ]
    for f in forged:
        assert client.post(f"/v1/leases/{f}/heartbeat", headers=auth()).status_code == 404, f
    assert client.get("/v1/status", headers=auth(READ)).json()["leases"]["running"] == 0
    assert client.post(f"/v1/leases/{secret}/heartbeat", headers=auth()).status_code == 200


def test_the_lease_key_is_the_stores_so_a_restart_re_creates_too(gate, tmp_path: Path) -> None:
    d, clock, client, calls = gate
    secret = client.post("/v1/admissions", json={"tenant": "beta", "kind": "backup"}, headers=auth()).json()["lease"]
    _forget_leases(d, tmp_path / "maintd.db")
    d2 = Daemon(str(tmp_path / "windows.yaml"), clock=clock, env={"MAINTD_TOKEN": TOKEN, "MAINTD_GATE_TOKEN": GATE})
    try:
        assert d2.gate.key() == d.gate.key()
        assert d2.gate.heartbeat(secret) == {"drain": False, "deadline": None}
    finally:
        d2.outbox.shutdown()
        d2.store.close()


def test_while_the_store_is_failing_an_admission_waits_for_its_write(gate, tmp_path: Path) -> None:
    d, clock, client, calls = gate
    client.post("/v1/admissions", json={"tenant": "acme", "kind": "restore"}, headers=auth())  # the key is read
    d.guard.failed(RuntimeError("disk full"))  # as any part reports a store error
    with sqlite3.connect(tmp_path / "maintd.db") as conn:
        conn.execute("CREATE TRIGGER no_leases BEFORE INSERT ON leases BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    r = client.post("/v1/admissions", json={"tenant": "acme", "kind": "backup"}, headers=auth())
    assert r.status_code == 503, r.text  # not admitted without its row
