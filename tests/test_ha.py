"""High availability: several `maintd run` instances on one real PostgreSQL.

One leads (transitions, drains, hooks); all answer the API and deliver notices. Kill the
leader with SIGKILL and another takes over within the bound, catching up level-triggered:
no transition, hook or notice lost or done twice.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import TOKEN, iso_in

TAKEOVER_BOUND = 10.0  # seconds: the target for a new leader


class Receiver:
    """A webhook receiver on loopback that records every delivery (id, type, tenant)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.got: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if outer.delay:
                    time.sleep(outer.delay)
                with outer.lock:
                    outer.got.append((self.headers["webhook-id"], body["type"], body["tenant"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind: str) -> list[tuple[str, str, str]]:
        with self.lock:
            return [g for g in self.got if g[1] == f"maintenance.{kind}"]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def database(postgres_server):
    """A fresh database on the session's PostgreSQL for one test."""
    name = "ha_" + secrets.token_hex(4)

    def admin(sql: str) -> None:
        # A fresh engine each time: a test may have restarted the server in between.
        engine = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
        engine.dispose()

    admin(f"CREATE DATABASE {name}")
    yield postgres_server.url.rsplit("/", 1)[0] + "/" + name
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def config(
    tenants: int, receiver_url: str, start_in: float, duration: str, hook_log: Path, notify: str = "[1h]"
) -> str:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    rows = "\n".join(
        f'  - id: t{i:04d}\n    webhook: {{url: "{receiver_url}", secret: "{secret}"}}' for i in range(tenants)
    )
    return f"""\
version: 1
provider: {{name: HA Cloud, timezone: UTC, policy: std}}
tenants:
{rows}
policies:
  std:
    default: deny
    rules:
      - allow: {{kind: [restore]}}
hooks:
  on_start: [sh, -c, 'echo "start $MAINTD_WINDOW $MAINTD_OCCURRENCE" >> {hook_log}']
  on_end: [sh, -c, 'echo "end $MAINTD_WINDOW $MAINTD_OCCURRENCE" >> {hook_log}']
windows:
  - id: ha-window
    start: {iso_in(start_in)}
    duration: {duration}
    notify: {notify}
daemon:
  listen: "{{listen}}"
"""


def start_cluster(daemon_factory, text: str, database: str, n: int = 3, **extra: str):
    env = {"MAINTD_DATABASE": database, "MAINTD_LEADER_POLL": "0.5", "MAINTD_CLAIM_LEASE": "3", **extra}
    return [daemon_factory(text, env=env, name=f"windows-{i}.yaml") for i in range(n)]


def leader_of(daemons) -> object:
    for d in daemons:
        if d.proc.poll() is None:
            try:
                st = d.status()
            except requests.RequestException:
                continue
            me = [i for i in st.get("instances", []) if i.get("self")]
            if me and me[0]["leader"]:
                return d
    return None


def wait_leader(daemons, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = leader_of(daemons)
        if d is not None:
            return d
        time.sleep(0.1)
    raise AssertionError("no leader: " + "\n".join(d.log()[-2000:] for d in daemons))


class AdmissionLoad:
    """Asks the gate on every live instance in turn, counting answers and errors."""

    def __init__(self, daemons) -> None:
        self.daemons, self.ok, self.errors = daemons, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            d = self.daemons[i % len(self.daemons)]
            i += 1
            if d.proc.poll() is not None:
                continue
            try:
                r = requests.post(
                    d.url + "/v1/admissions",
                    json={"tenant": "t0000", "kind": "restore"},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=2,
                )
                if r.status_code == 200:
                    self.ok += 1
                    requests.delete(d.url + f"/v1/leases/{r.json()['lease']}", timeout=2)
                else:
                    self.errors += 1
            except requests.RequestException:
                if d.proc.poll() is None:
                    self.errors += 1
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def test_three_instances_one_leader_all_listed(daemon_factory, database, receiver, tmp_path):
    ds = start_cluster(daemon_factory, config(3, receiver.url, 3600, "1h", tmp_path / "hooks.log"), database)
    leader = wait_leader(ds)
    st = ds[0].wait_for(lambda s: len(s["instances"]) == 3, what="three instances")
    assert sum(1 for i in st["instances"] if i["leader"]) == 1
    assert {i["listen"] for i in st["instances"]} == {f"127.0.0.1:{d.port}" for d in ds}
    assert all(i["since"] for i in st["instances"] if i["leader"])
    # every instance answers reads and the gate
    for d in ds:
        assert d.post("/v1/admissions", {"tenant": "t0001", "kind": "backup"}).status_code == 200
    assert "maintd_leader 1.0" in leader.get("/metrics").text


def test_leader_killed_during_a_window_nothing_lost_or_doubled(daemon_factory, database, receiver, tmp_path):
    hooks = tmp_path / "hooks.log"
    ds = start_cluster(daemon_factory, config(5, receiver.url, 4, "8s", hooks), database)
    leader = wait_leader(ds)
    with AdmissionLoad(ds) as load:
        leader.wait_for(lambda s: s["mode"] != "normal", timeout=15, what="maintenance")
        deadline = time.time() + 10
        while not hooks.exists() and time.time() < deadline:
            time.sleep(0.05)
        killed_at = time.time()
        leader.kill9()
        rest = [d for d in ds if d is not leader]
        new = wait_leader(rest, timeout=TAKEOVER_BOUND + 5)
        takeover = time.time() - killed_at
        new.wait_for(lambda s: s["mode"] == "normal", timeout=20, what="window end")
        deadline = time.time() + 15
        while len(receiver.of_type("completed")) < 5 and time.time() < deadline:
            time.sleep(0.1)
    assert takeover < TAKEOVER_BOUND, takeover
    started = Counter(t for _, _, t in receiver.of_type("started"))
    completed = Counter(t for _, _, t in receiver.of_type("completed"))
    # delivered at least once each, and never as two different notices
    assert set(started) == set(completed) == {f"t{i:04d}" for i in range(5)}
    assert len({i for i, _, _ in receiver.of_type("started")}) == 5
    assert len({i for i, _, _ in receiver.of_type("completed")}) == 5
    lines = hooks.read_text().splitlines()
    assert sum(1 for x in lines if x.startswith("start ")) == 1, lines
    assert sum(1 for x in lines if x.startswith("end ")) == 1, lines
    history = new.history()
    assert sum(1 for h in history if h["kind"] == "start") == 1
    assert sum(1 for h in history if h["kind"] == "end") == 1
    assert load.ok > 0
    assert load.errors <= 3, f"{load.errors} admission errors during failover"


def test_leader_killed_during_a_notice_fan_out_every_notice_delivered(daemon_factory, database, tmp_path):
    slow = Receiver(delay=0.05)
    try:
        n = 150
        # At most 24 deliveries in flight, so the duplicates bound below means something: what
        # was in flight or not yet recorded when the leader died is sent again, nothing else.
        text = config(n, slow.url, 3600, "1h", tmp_path / "hooks.log")
        ds = start_cluster(daemon_factory, text, database, MAINTD_DELIVERY_WORKERS="24")
        leader = wait_leader(ds)
        deadline = time.time() + 20
        while len(slow.of_type("scheduled")) < 20 and time.time() < deadline:
            time.sleep(0.05)
        leader.kill9()
        rest = [d for d in ds if d is not leader]
        wait_leader(rest, timeout=TAKEOVER_BOUND + 5)
        deadline = time.time() + 40
        while len({i for i, _, _ in slow.of_type("scheduled")}) < n and time.time() < deadline:
            time.sleep(0.2)
        ids = [i for i, _, _ in slow.of_type("scheduled")]
        assert len(set(ids)) == n, f"{len(set(ids))} of {n} notices delivered"
        assert {t for _, _, t in slow.of_type("scheduled")} == {f"t{i:04d}" for i in range(n)}
        # a delivery in flight when its instance died may arrive twice, with the same id
        # (receivers deduplicate on webhook-id); none is lost, none gets a second id.
        dupes = len(ids) - len(set(ids))
        assert dupes <= 32, dupes
        st = rest[0].wait_for(lambda s: s["notices"]["pending"] == 0, timeout=20, what="outbox drained")
        assert st["notices"]["sent"] == n
    finally:
        slow.close()


def test_postgres_restart_under_the_daemons(daemon_factory, database, receiver, tmp_path, postgres_server):
    ds = start_cluster(daemon_factory, config(2, receiver.url, 3600, "1h", tmp_path / "hooks.log"), database, n=2)
    wait_leader(ds)
    postgres_server.stop()
    try:
        st = ds[0].wait_for(lambda s: any(f["what"] == "store" for f in s["faults"]), timeout=15, what="store fault")
        assert st["mode"] == "normal"
        # Documented fallback: no lease can be recorded, so the gate answers 503 with a clear
        # error, and `maintd exec --if-unreachable` decides (default allow: backups go on).
        r = ds[1].post("/v1/admissions", {"tenant": "t0000", "kind": "backup"})
        assert r.status_code == 503 and "store" in r.json()["error"].lower() or "database" in r.json()["error"]
        job = ds[1].cli("exec", "--tenant", "t0000", "--kind", "backup", "--", "sh", "-c", "exit 0")
        assert job.returncode == 0 and "allow" in job.stderr, job.stderr
        job = ds[1].cli(
            "exec", "--tenant", "t0000", "--kind", "backup", "--if-unreachable", "deny", "--", "sh", "-c", "exit 0"
        )
        assert job.returncode == 75
    finally:
        postgres_server.start()
    for d in ds:
        d.wait_for(lambda s: not any(f["what"] == "store" for f in s["faults"]), timeout=20, what="recovered")
    wait_leader(ds)
    assert all(d.proc.poll() is None for d in ds)
