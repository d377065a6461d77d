"""Shared fixtures: a real `maintd run` subprocess on a free port, driven over HTTP and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

MAINTD = shutil.which("maintd")
TOKEN = "test-token-0123456789-abcdefghijklmn"  # >= 32 characters, as maintd requires


def maintd_argv() -> list[str]:
    """The console script when installed, else the same entry point through this Python."""
    if MAINTD:
        return [MAINTD]
    return [sys.executable, "-c", "from scheduler.cli import main; main()"]


class Clock:
    """An injected clock for in-process daemons: tests move ``now`` by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso_in(seconds: float, now: datetime | None = None) -> str:
    """A UTC instant ``seconds`` from now, as windows.yaml takes it (whole seconds, Z)."""
    now = now or datetime.now(UTC)
    return (now + timedelta(seconds=seconds)).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DaemonProc:
    config_path: Path
    port: int
    env: dict
    args: tuple = ()
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _logs: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> DaemonProc:
        self.log_path = self.config_path.parent / f"daemon-{len(self._logs)}.log"
        self._logs.append(self.log_path)
        fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            maintd_argv() + ["--config", str(self.config_path), "run", *self.args],
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=self.config_path.parent,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"maintd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"maintd did not become ready:\n{self.log()}")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self._logs if p.exists())

    def get(self, path: str, token: str | None = TOKEN, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", None) or {})
        return requests.get(self.url + path, headers=headers, timeout=10, **kw)

    def post(self, path: str, json_body=None, token: str | None = TOKEN, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.url + path, json=json_body, headers=headers, timeout=10, **kw)

    def delete(self, path: str, token: str | None = TOKEN, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.delete(self.url + path, headers=headers, timeout=10, **kw)

    def status(self) -> dict:
        r = self.get("/v1/status")
        r.raise_for_status()
        return r.json()

    def history(self) -> list:
        return self.get("/v1/history", params={"limit": 1000}).json()

    def cli(
        self, *args: str, env: dict | None = None, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess:
        e = dict(self.env)
        e["MAINTD_URL"] = self.url
        e.update(env or {})
        return subprocess.run(
            maintd_argv() + ["--config", str(self.config_path), *args],
            env=e,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd=self.config_path.parent,
        )

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 15.0, what: str = "") -> dict:
        deadline = time.time() + timeout
        last: dict = {}
        while time.time() < deadline:
            try:
                last = self.status()
                if predicate(last):
                    return last
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what or predicate}; last status:\n"
            f"{json.dumps(last, indent=1)[:3000]}\nlog:\n{self.log()[-4000:]}"
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"maintd did not stop on SIGTERM:\n{self.log()}")
        return self.proc.returncode if self.proc else 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self) -> DaemonProc:
        return self.start()


@pytest.fixture
def daemon_factory(tmp_path: Path):
    """``start(config_text, ...)`` writes windows.yaml (``{listen}`` is filled in) and runs
    `maintd run` as a real subprocess; every daemon is stopped at the end of the test."""
    started: list[DaemonProc] = []

    def start(
        config_text: str,
        *,
        env: dict | None = None,
        args: tuple = (),
        wait: bool = True,
        name: str = "windows.yaml",
        port: int | None = None,
    ) -> DaemonProc:
        port = port or free_port()
        path = tmp_path / name
        path.write_text(config_text.replace("{listen}", f"127.0.0.1:{port}"))
        e = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
        e.update({"MAINTD_TOKEN": TOKEN, "MAINTD_SAFETY_TICK": "1", "MAINTD_HEARTBEAT": "1", "PYTHONUNBUFFERED": "1"})
        e.update(env or {})
        d = DaemonProc(config_path=path, port=port, env=e, args=args)
        started.append(d)
        return d.start(wait=wait)

    yield start
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


# ---------------------------------------------------------------------------
# PostgreSQL: one real server for the session (store tests run on SQLite and on it)

_PG = None


def pytest_configure(config):
    global _PG
    if os.environ.get("MAINTD_TEST_POSTGRES_URL"):
        return
    from pgserver import PostgresServer

    _PG = PostgresServer().start()
    os.environ["MAINTD_TEST_POSTGRES_URL"] = _PG.url


def pytest_unconfigure(config):
    if _PG is not None:
        _PG.destroy()


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (restartable by HA tests)."""
    if _PG is None:
        pytest.fail("MAINTD_TEST_POSTGRES_URL points at an external server; HA tests need the managed one")
    return _PG
