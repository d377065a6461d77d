"""Waves end to end (SPEC 8): a real ``maintd run`` with two waves seconds apart.

Each wave is an occurrence of its own: its tenants are told, started and gated at the
wave's times; an end check still failing at ``max`` halts the later waves (their tenants
get ``cancelled``), and ``maintd resume`` plans them again. Waits poll with deadlines.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TOKEN, DaemonProc, free_port, iso_in

pytestmark = pytest.mark.slow

BASE = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - {id: acme, name: ACME Corp, email: [ops@acme.example]}
  - {id: beta, name: Beta GmbH, email: [ops@beta.example]}
notifiers:
  email: {host: 127.0.0.1, port: 9}
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
windows:
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait(predicate: Callable[[], object], timeout: float = 15.0, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def notices(d: DaemonProc, kind: str, tenant: str) -> list[dict]:
    rows = d.get("/v1/notices", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return [r for r in rows if r["kind"] == kind and r["tenant"] == tenant]


class Room:
    """The provider's ops room: a loopback HTTP server that keeps every POSTed body."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
                owner.bodies.append(self.rfile.read(length).decode(errors="replace"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.timeout = 5
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def room() -> Iterator[Room]:
    r = Room()
    yield r
    r.server.shutdown()
    r.server.server_close()


def admitted(d: DaemonProc, tenant: str) -> bool:
    r = d.post("/v1/admissions", {"tenant": tenant, "kind": "backup"})
    assert r.status_code in (200, 423), r.text
    if r.status_code == 200:
        d.delete(f"/v1/leases/{r.json()['lease']}")
    return r.status_code == 200


def test_two_waves_start_and_gate_at_their_own_times(daemon_factory) -> None:
    start = iso_in(10)
    w2 = iso(utc(start) + timedelta(seconds=6))
    windows = (
        f"  - id: roll\n    start: {start}\n    duration: 3s\n    notify: [1h]\n    waves: {{size: 1, every: 6s}}\n"
    )
    d = daemon_factory(BASE + windows + 'daemon:\n  listen: "{listen}"\n')
    st = d.status()
    nxt = {n["wave"]: n for n in st["next"] if n["window"] == "roll"}
    assert sorted(nxt) == [1, 2], (st["next"], st["now"])
    assert nxt[1]["tenants"] == ["acme"] and nxt[1]["start"] == start
    assert nxt[2]["tenants"] == ["beta"] and nxt[2]["start"] == w2 and nxt[2]["occurrence"] == w2

    st = d.wait_for(lambda s: any(a.get("wave") == 1 for a in s["active"]), timeout=20, what="wave 1 to start")
    assert [(a["wave"], a["tenants"]) for a in st["active"]] == [(1, ["acme"])]
    assert not admitted(d, "acme") and admitted(d, "beta")  # gating follows the wave
    st = d.wait_for(lambda s: any(a.get("wave") == 2 for a in s["active"]), timeout=12, what="wave 2 to start")
    assert [(a["wave"], a["tenants"]) for a in st["active"]] == [(2, ["beta"])]
    assert admitted(d, "acme") and not admitted(d, "beta")

    started = {t: wait(lambda t=t: notices(d, "started", t), what=f"started for {t}") for t in ("acme", "beta")}
    assert started["acme"][0]["occurrence"] == start and started["beta"][0]["occurrence"] == w2
    assert utc(started["acme"][0]["created_at"]) >= utc(start)
    assert utc(started["beta"][0]["created_at"]) >= utc(w2)
    assert {n["occurrence"] for n in notices(d, "scheduled", "beta")} == {w2}
    assert d.stop() == 0


def test_a_failing_end_check_halts_wave_2_and_resume_plans_it_again(daemon_factory, room: Room) -> None:
    start = iso_in(8)
    w2 = iso(utc(start) + timedelta(seconds=12))
    windows = (
        f"  - id: roll\n    start: {start}\n    duration: 2s\n    notify: [1h]\n"
        '    end_check: {run: ["false"], every: 1s, max: 2s}\n'
        "    waves: {size: 1, every: 12s, halt_on: end_check}\n"
    )
    # a room that lists only SPEC 4.2's events still hears the halt
    ops = f'  ops: {{urls: ["json://127.0.0.1:{room.port}/ops"], events: [end_check_failing]}}\n'
    d = daemon_factory(
        BASE.replace("  policy: standard\n", "  policy: standard\n" + ops) + windows + 'daemon:\n  listen: "{listen}"\n'
    )
    wait(lambda: notices(d, "scheduled", "beta"), what="beta told of wave 2")

    st = d.wait_for(lambda s: s["halted"], timeout=25, what="the window to halt")
    assert st["halted"][0]["window"] == "roll" and st["halted"][0]["halted"] is True
    assert "end check of wave 1" in st["halted"][0]["reason"]
    assert not any(n["window"] == "roll" and n.get("wave") == 2 for n in st["next"])
    listed = {w["id"]: w for w in d.get("/v1/windows", headers={"Authorization": f"Bearer {TOKEN}"}).json()}
    assert listed["roll"]["halted"] is True
    cancelled = wait(lambda: notices(d, "cancelled", "beta"), what="beta cancelled")
    assert cancelled[0]["occurrence"] == w2
    halted = wait(lambda: [b for b in room.bodies if "Waves halted" in b], what="the ops room told of the halt")
    assert "end check of wave 1" in halted[0] and "beta" in halted[0] and "maintd resume roll" in halted[0]
    assert not notices(d, "cancelled", "acme")
    history = d.history()
    assert any(h["kind"] == "halt" and h["window"] == "roll" for h in history)

    # resume: wave 2 planned again from --at, beta told (late: its 1h lead passed)
    at = iso_in(5)
    r = d.cli("resume", "roll", "--at", at)
    assert r.returncode == 0, r.stderr
    st = d.status()
    assert st["halted"] == []
    assert any(n.get("wave") == 2 and n["start"] == at and n["tenants"] == ["beta"] for n in st["next"]), st["next"]
    again = wait(lambda: [n for n in notices(d, "scheduled", "beta") if n["occurrence"] == at], what="rescheduled")
    assert again[0]["late"] is True
    wait(lambda: [n for n in notices(d, "started", "beta") if n["occurrence"] == at], what="wave 2 to start")
    assert not notices(d, "started", "beta")[0]["occurrence"] == w2

    r = d.cli("resume", "roll", "--at", "now")  # not halted any more: exit 1
    assert r.returncode == 1 and "not halted" in r.stderr, r.stderr
    assert json.loads(d.get("/v1/status").text)["halted"] == []
    assert d.stop() == 0
