"""The daemon's own state and secrets, with real ``maintd run`` processes:

- a SQLite database deleted under a running daemon is noticed (status fault), and the start
  hook of a window that begins afterwards does not run; the gate still refuses a denied job;
- a second ``maintd run`` on the same SQLite file is refused (exit 2, HA needs PostgreSQL);
- hooks see no secret of maintd's environment.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TOKEN, free_port, iso_in, maintd_argv

pytestmark = pytest.mark.slow

BASE = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
{tenant_extra}policies:
  standard:
    default: allow
    rules:
      - deny: {{kind: [backup]}}
daemon:
  listen: "{{listen}}"
{daemon_extra}windows:
  - id: patching
    start: {start}
    end: {end}
    hooks: {{on_start: ["{python}", "{script}"]}}
"""

ENV_HOOK = """\
import json, os, sys
with open(sys.argv[0] + ".out", "w") as fh:
    json.dump(dict(os.environ), fh)
"""


def _config(tmp_path: Path, start: str, *, tenant_extra: str = "", daemon_extra: str = "") -> str:
    script = tmp_path / "hook.py"
    script.write_text(ENV_HOOK)
    return BASE.format(
        tenant_extra=tenant_extra,
        daemon_extra=daemon_extra,
        start=start,
        end=iso_in(3600),
        python=sys.executable,
        script=script,
    )


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_deleted_database_is_a_fault_and_nothing_more_is_acted_on(daemon_factory, tmp_path: Path) -> None:
    start = iso_in(9)
    d = daemon_factory(_config(tmp_path, start))
    db = tmp_path / "maintd.db"
    assert db.exists()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)

    def faulted():
        faults = d.status()["faults"]
        return [f for f in faults if f["what"] == "store-replaced"]

    fault = _wait(faulted, 6, "the store-replaced fault")[0]
    assert "deleted" in fault["message"] and "restart" in fault["message"]
    metrics = d.get("/metrics").text
    assert "maintd_store_replaced 1.0" in metrics

    # the window begins after the deletion: no start hook, but the gate still refuses a backup
    _wait(lambda: d.status()["now"] > start, 20, "the window's start")
    time.sleep(3)  # a tick, then the hook worker, would have run the hook by now
    assert not (tmp_path / "hook.py.out").exists(), "the start hook ran against a deleted database"
    r = d.post("/v1/admissions", {"tenant": "acme", "kind": "Backup"})
    assert r.status_code == 423, r.text
    assert d.proc.poll() is None


def test_a_second_daemon_on_one_sqlite_file_is_refused(daemon_factory, tmp_path: Path) -> None:
    first = daemon_factory(_config(tmp_path, iso_in(1800)))
    second = tmp_path / "second.yaml"
    template = first.config_path.read_text().replace(f"127.0.0.1:{first.port}", "{listen}")
    second.write_text(template.replace("{listen}", f"127.0.0.1:{free_port()}"))
    out = subprocess.run(
        maintd_argv() + ["--config", str(second), "run"],
        env=first.env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    assert "PostgreSQL" in out.stderr and "maintd.db" in out.stderr
    assert first.get("/healthz").ok  # the first one is untouched
    first.stop()
    # the lock went with the first daemon: a new one starts
    assert daemon_factory(template, name="second.yaml").get("/healthz").ok


def test_hooks_see_none_of_maintds_secrets(daemon_factory, tmp_path: Path) -> None:
    hook_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    env = {
        "MAINTD_GATE_TOKEN": "g" * 40,
        "MAINTD_READ_TOKEN": "r" * 40,
        "SMTP_PASSWORD": "7351984620",
        "ACME_HOOK_SECRET": hook_secret,
        "SAME_VALUE_ELSEWHERE": hook_secret,
        "UNRELATED_SETTING": "keep-me",
    }
    tenant_extra = '    webhook: {url: "http://127.0.0.1:9/hook", secret: "${ACME_HOOK_SECRET}"}\n'
    d = daemon_factory(_config(tmp_path, iso_in(4), tenant_extra=tenant_extra), env=env)
    out = tmp_path / "hook.py.out"
    _wait(out.exists, 20, "the start hook")
    time.sleep(0.3)
    seen = json.loads(out.read_text())
    for name in ("MAINTD_TOKEN", "MAINTD_GATE_TOKEN", "MAINTD_READ_TOKEN", "SMTP_PASSWORD", "ACME_HOOK_SECRET"):
        assert name not in seen, name
    assert hook_secret not in json.dumps(seen) and TOKEN not in json.dumps(seen)
    assert seen["UNRELATED_SETTING"] == "keep-me"
    assert seen["MAINTD_EVENT"] == "start" and seen["MAINTD_WINDOW"] == "patching"
    assert d.proc.poll() is None
