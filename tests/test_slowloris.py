"""Slowloris against a real ``maintd run`` limited to 1,024 file descriptors (the shipped
systemd unit's old limit): 1,100 connections that send half a request line and stall,
kept up for the whole test (a closed one is reopened at once). Meanwhile ``/healthz``
answers, the gate refuses a backup during the active window with 423, and the daemon's log
stays small.

Also the parts alone: the head deadline and eviction on an in-process server, and the
repeat filter.
"""

from __future__ import annotations

import logging
import os
import resource
import selectors
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import TOKEN, DaemonProc, free_port, iso_in, maintd_argv

from scheduler.web.server import RepeatFilter, SecretPathFilter

pytestmark = pytest.mark.slow

ATTACKERS = 1100

CONFIG = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
policies:
  standard:
    default: allow
    rules:
      - deny: {{kind: [backup]}}
daemon:
  listen: "127.0.0.1:{port}"
windows:
  - id: patching
    start: {start}
    end: {end}
"""


def _fd_limit_1024() -> None:  # preexec_fn: the daemon gets the unit's 1,024 descriptors
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


class Attack:
    """``count`` half-sent requests, held open; whatever the server closes is reopened."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.opened = 0
        self.reopened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open_one(self) -> None:
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: loc")  # and never the rest
        except OSError:
            s.close()
            return
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        while len(self.sel.get_map()) < self.count and not self.stop.is_set():
            self._open_one()
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                self.sel.unregister(sock)
                sock.close()  # closed by the server (deadline or eviction): the attacker comes back
                if not self.stop.is_set():
                    self._open_one()
                    self.reopened += 1

    def open_now(self) -> int:
        return len(self.sel.get_map())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


@pytest.fixture
def limited_daemon(tmp_path: Path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or soft < hard < 4096:  # this test's own 1,100 sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = free_port()
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG.format(port=port, start=iso_in(-60), end=iso_in(3600)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    env.update({"MAINTD_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
    d = DaemonProc(config_path=path, port=port, env=env)
    d.log_path = tmp_path / "daemon.log"
    d._logs.append(d.log_path)
    with open(d.log_path, "wb") as fh:
        d.proc = subprocess.Popen(
            maintd_argv() + ["--config", str(path), "run"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=_fd_limit_1024,
        )
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()


def test_gate_answers_while_1100_half_sent_requests_hold_sockets(limited_daemon: DaemonProc) -> None:
    d = limited_daemon
    attack = Attack(d.port, ATTACKERS)
    attack.thread.start()
    try:
        deadline = time.monotonic() + 15
        while attack.opened < ATTACKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert attack.opened >= ATTACKERS, f"only {attack.opened} attack connections were accepted"
        healthy = denied = 0
        until = time.monotonic() + 8  # longer than the 5 s head deadline: the attack keeps coming back
        while time.monotonic() < until:
            t0 = time.monotonic()
            assert requests.get(d.url + "/healthz", timeout=3).json() == {"ok": True}
            r = requests.post(
                d.url + "/v1/admissions",
                json={"tenant": "acme", "kind": "backup"},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=3,
            )
            assert r.status_code == 423, r.text
            assert r.json()["admitted"] is False
            assert time.monotonic() - t0 < 5  # both answers within a few seconds, on a loaded machine too
            healthy, denied = healthy + 1, denied + 1
            time.sleep(0.3)
        assert healthy >= 5 and denied >= 5
        # the half-sent requests were cut (deadline or eviction) and came back: the attack lasted
        assert attack.reopened >= ATTACKERS // 2, attack.reopened
    finally:
        attack.close()
    assert d.proc.poll() is None, d.log()
    size = d.log_path.stat().st_size
    assert size < 1_000_000, f"daemon log grew to {size} bytes:\n{d.log()[-3000:]}"


# -- the parts alone --------------------------------------------------------------------


def test_repeat_filter_lets_one_through_per_interval_with_a_count() -> None:
    now = [0.0]
    f = RepeatFilter(every=10, clock=lambda: now[0])

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    passed = [f.filter(rec("socket.accept() out of system resource")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert f.filter(rec("another error"))  # a different message is not held back
    now[0] = 10.5
    r = rec("socket.accept() out of system resource")
    assert f.filter(r)
    assert r.getMessage() == "socket.accept() out of system resource (and 999 more like it in the last 10s)"


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        ("internal error on GET /t/s3cr3t-abc/", "internal error on GET /t/<secret>/"),
        ("GET /t/s3cr3t-abc/calendar.ics 500", "GET /t/<secret>/calendar.ics 500"),
        ("nothing to hide on /v1/status", "nothing to hide on /v1/status"),
    ],
    ids=["page", "feed", "other_path"],
)
def test_secret_path_filter_masks_tenant_secrets(message: str, logged: str) -> None:
    r = logging.LogRecord("maintd.api", logging.ERROR, __file__, 1, message, None, None)
    assert SecretPathFilter().filter(r)
    assert r.getMessage() == logged
