"""The first day, as the README's Quick start runs it: the example config, `run --dry-run`,
`tenant-url` links that the running daemon serves, and a token error that says where the
token is missing (issue 14, "First run")."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port, maintd_argv

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "first-run-token-0123456789abcdefghij"  # >= 32 characters


class Shell:
    """A fresh clone's directory with the example windows.yaml, and the user's shell env."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        shutil.copy(ROOT / "windows.yaml", tmp_path / "windows.yaml")
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
        self.env.update({"MAINTD_LISTEN": f"127.0.0.1:{self.port}", "PYTHONUNBUFFERED": "1"})
        self.procs: list[subprocess.Popen] = []

    def maintd(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            maintd_argv() + ["--config", "windows.yaml", *args],
            env={**self.env, **(env or {})},
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.dir / f"daemon-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            maintd_argv() + ["--config", "windows.yaml", "run", *args],
            env={**self.env, **(env or {})},
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert proc.poll() is None, (self.dir / f"daemon-{len(self.procs) - 1}.log").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).ok:
                    return proc
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("maintd did not become ready")

    def stop(self, proc: subprocess.Popen) -> None:
        proc.terminate()
        proc.wait(timeout=15)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def shell(tmp_path: Path):
    s = Shell(tmp_path)
    yield s
    s.close()


def urls(result: subprocess.CompletedProcess) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    return lines["page:"].strip(), lines["calendar:"].strip()


def test_tenant_url_after_a_dry_run_prints_links_the_daemon_serves(shell):
    shell.env["MAINTD_TOKEN"] = TOKEN  # the Quick start exports it before starting the daemon
    daemon = shell.start("--dry-run")
    page, calendar = urls(shell.maintd("tenant-url", "acme"))
    assert page.startswith(f"http://127.0.0.1:{shell.port}/t/")
    assert requests.get(page, timeout=10).status_code == 200
    assert requests.get(calendar, timeout=10).status_code == 200
    assert requests.head(page, timeout=10).status_code == 200
    # The daemon is down: the database is read directly, the dry run's with --dry-run.
    shell.stop(daemon)
    assert urls(shell.maintd("tenant-url", "acme", "--dry-run")) == (page, calendar)
    real, _ = urls(shell.maintd("tenant-url", "acme"))
    assert real != page  # the real database has its own secret
    assert (shell.dir / "maintd.db").exists() and (shell.dir / "maintd.dry-run.db").exists()


def test_tenant_url_rotate_through_the_daemon_needs_its_token(shell):
    # Over TCP (the example's unix socket would need no token: its file mode is the access control)
    shell.env["MAINTD_URL"] = f"http://127.0.0.1:{shell.port}"
    shell.start("--dry-run", env={"MAINTD_TOKEN": TOKEN})
    page, _ = urls(shell.maintd("tenant-url", "acme", env={"MAINTD_TOKEN": TOKEN}))
    refused = shell.maintd("tenant-url", "acme", "--rotate")
    assert refused.returncode == 1 and "missing or invalid bearer token" in refused.stderr
    new_page, _ = urls(shell.maintd("tenant-url", "acme", "--rotate", env={"MAINTD_TOKEN": TOKEN}))
    assert new_page != page
    assert requests.get(page, timeout=10).status_code == 404
    assert requests.get(new_page, timeout=10).status_code == 200
    unknown = shell.maintd("tenant-url", "nobody", env={"MAINTD_TOKEN": TOKEN})
    assert unknown.returncode != 0 and "nobody" in unknown.stderr


def test_a_token_only_in_the_clients_shell_says_the_daemon_needs_it(shell):
    shell.env["MAINTD_URL"] = f"http://127.0.0.1:{shell.port}"  # over TCP, not the example's socket
    shell.start("--dry-run")
    r = shell.maintd("enter", "--reason", "SAN failover", "--for", "2h", env={"MAINTD_TOKEN": TOKEN})
    assert r.returncode == 1
    assert "the daemon" in r.stderr and "started without an admin token" in r.stderr
    assert "MAINTD_TOKEN" in r.stderr and "restart it" in r.stderr


def test_the_quick_start_sequence_works_as_written(shell):
    """export MAINTD_TOKEN first, then the daemon and the commands in the same environment."""
    shell.env["MAINTD_TOKEN"] = TOKEN
    shell.start("--dry-run")
    for args in (("validate",), ("plan",), ("status",)):
        r = shell.maintd(*args)
        assert r.returncode == 0, (args, r.stderr)
    page, _ = urls(shell.maintd("tenant-url", "acme"))
    assert requests.get(page, timeout=10).status_code == 200
    entered = shell.maintd("enter", "--reason", "SAN failover", "--for", "2h")
    assert entered.returncode == 0, entered.stderr
    left = shell.maintd("exit")
    assert left.returncode == 0, left.stderr
