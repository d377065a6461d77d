"""``maintd run`` end to end: a real subprocess on a free port, windows a few seconds long.

Everything is observed from outside, the way ops would: ``/v1/status``, ``maintd status
--json``, ``/metrics``, ``/v1/history`` and files written by hooks. Windows start 3-5 s
after the daemon and last a few seconds; waits poll (``DaemonProc.wait_for``) instead of
sleeping, so the file stays well under two minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import TOKEN, DaemonProc, free_port, iso_in, maintd_argv
from prometheus_client.parser import text_string_to_metric_families

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
    email: [ops@acme.example]
  - id: beta
    name: Beta GmbH
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
"""

HOOK = """\
import json, os
KEYS = ("MAINTD_EVENT", "MAINTD_WINDOW", "MAINTD_OCCURRENCE", "MAINTD_START", "MAINTD_END",
        "MAINTD_TENANTS", "MAINTD_MESSAGE")
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hook-runs.jsonl"), "a") as fh:
    fh.write(json.dumps({k: os.environ.get(k) for k in KEYS}) + "\\n")
"""


def config(windows: str, *, hooks: str = "", database: str = "") -> str:
    """A windows.yaml for daemon_factory (which fills in ``{listen}``)."""
    out = BASE + hooks + "windows:\n" + (windows or "  []\n") + 'daemon:\n  listen: "{listen}"\n'
    if database:
        out += f"  database: {database}\n"
    return out


def window(wid: str, start: str, end: str, extra: str = "") -> str:
    return f"  - id: {wid}\n    start: {start}\n    end: {end}\n" + extra


def hook_config(tmp_path: Path) -> str:
    """Global on_start/on_end hooks that append their environment to hook-runs.jsonl."""
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    argv = f'["{sys.executable}", "{script}"]'
    return f"hooks:\n  on_start: {argv}\n  on_end: {argv}\n  timeout: 10s\n"


def hook_runs(tmp_path: Path) -> list[dict]:
    path = tmp_path / "hook-runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def journal(d: DaemonProc, kind: str, wid: str | None = None) -> list[dict]:
    return [h for h in reversed(d.history()) if h["kind"] == kind and (wid is None or h["window"] == wid)]


def metrics(d: DaemonProc) -> dict[tuple, float]:
    r = d.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(m: dict, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def cli_json(d: DaemonProc, *args: str) -> dict:
    r = d.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def active(st: dict) -> list[str]:
    return [a["window"] for a in st["active"]]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- normal -> maintenance -> normal


def test_a_window_runs_from_normal_to_maintenance_and_back(daemon_factory, tmp_path: Path) -> None:
    # 5 s ahead: a loaded CI machine took more than 3 s to start the daemon and its first look
    # found the window already running
    start, end = iso_in(5), iso_in(8)
    d = daemon_factory(config(window("w1", start, end), hooks=hook_config(tmp_path)))

    st = cli_json(d, "status")
    assert st["mode"] == "normal" and st["active"] == []
    assert [(n["window"], n["start"], n["end"]) for n in st["next"]] == [("w1", start, end)]
    assert st["config"]["error"] is None and st["faults"] == []

    st = d.wait_for(lambda s: s["mode"] == "maintenance", what="w1 to start")
    assert st["active"] == [
        {
            "window": "w1",
            "occurrence": start,
            "start": start,
            "end": end,
            "tenants": ["acme", "beta"],
            "title": "w1",
            "manual": False,
            "policy": "standard",
            "integrations": [],  # SPEC 6: none configured for this window
        }
    ]
    st_cli = cli_json(d, "status")
    assert st_cli["mode"] == "maintenance" and active(st_cli) == ["w1"]
    human = d.cli("status")
    assert human.returncode == 0 and "MAINTENANCE" in human.stdout and "w1" in human.stdout
    m = metrics(d)
    assert metric(m, "maintd_mode", mode="maintenance") == 1.0
    assert metric(m, "maintd_mode", mode="normal") == 0.0
    assert metric(m, "maintd_active_windows") == 1.0
    assert metric(m, "maintd_transitions_total", event="start") == 1.0

    d.wait_for(lambda s: s["mode"] == "normal" and not s["active"], what="w1 to end")
    assert cli_json(d, "status")["mode"] == "normal"
    wait(lambda: len(hook_runs(tmp_path)) >= 2, what="both hooks")
    time.sleep(1.2)  # more (1 s safety) ticks: nothing runs or records twice
    runs = hook_runs(tmp_path)
    assert [r["MAINTD_EVENT"] for r in runs] == ["start", "end"]
    for r, event in zip(runs, ("start", "end")):
        assert r == {
            "MAINTD_EVENT": event,
            "MAINTD_WINDOW": "w1",
            "MAINTD_OCCURRENCE": start,
            "MAINTD_START": start,
            "MAINTD_END": end,
            "MAINTD_TENANTS": "acme,beta",
            "MAINTD_MESSAGE": r["MAINTD_MESSAGE"],
        }
        assert r["MAINTD_MESSAGE"].startswith("Test Cloud is under scheduled maintenance until ")

    starts, ends = journal(d, "start", "w1"), journal(d, "end", "w1")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0]["detail"]["late"] is False and ends[0]["detail"]["late"] is False
    assert [h["detail"]["event"] for h in journal(d, "hook", "w1")] == ["start", "end"]

    m = metrics(d)
    assert metric(m, "maintd_mode", mode="normal") == 1.0 and metric(m, "maintd_active_windows") == 0.0
    assert metric(m, "maintd_transitions_total", event="start") == 1.0
    assert metric(m, "maintd_transitions_total", event="end") == 1.0
    assert metric(m, "maintd_config_error") == 0.0
    assert 0.0 < metric(m, "maintd_last_tick_seconds") < 5.0
    assert metric(m, "maintd_ticks_total") >= 3
    assert metric(m, "maintd_hook_runs_total", event="start", result="ok") == 1.0
    assert metric(m, "maintd_hook_runs_total", event="end", result="ok") == 1.0
    assert metric(m, "maintd_store_fault") == 0.0
    assert d.stop() == 0  # SIGTERM: a clean stop
    assert "Traceback" not in d.log()


# --------------------------------------------------------------------------- crashes and restarts


def test_kill_9_during_a_window_and_restart_keeps_the_state(daemon_factory, tmp_path: Path) -> None:
    start, end = iso_in(3), iso_in(7)
    d = daemon_factory(config(window("w1", start, end), hooks=hook_config(tmp_path)))
    before = d.wait_for(
        lambda s: s["mode"] == "maintenance" and s["hooks"]["pending"] == 0 and len(hook_runs(tmp_path)) == 1,
        what="w1 started and its hook ran",
    )
    d.kill9()
    assert d.proc.returncode == -9

    d.restart()
    st = d.status()
    assert st["mode"] == "maintenance" and st["active"] == before["active"]
    assert len(journal(d, "start", "w1")) == 1  # the start is not recorded twice

    d.wait_for(lambda s: s["mode"] == "normal", what="w1 to end after the restart")
    wait(lambda: len(hook_runs(tmp_path)) >= 2, what="the end hook")
    time.sleep(1.2)
    assert len(journal(d, "start", "w1")) == 1 and len(journal(d, "end", "w1")) == 1
    assert [r["MAINTD_EVENT"] for r in hook_runs(tmp_path)] == ["start", "end"]  # each hook once
    # the kill left no "daemon-stop": two starts in a row
    assert [h["kind"] for h in reversed(d.history()) if h["kind"].startswith("daemon-")] == ["daemon-start"] * 2
    assert d.stop() == 0


def test_restart_after_the_whole_window_passed_records_it_once(daemon_factory, tmp_path: Path) -> None:
    start, end = iso_in(8), iso_in(9)  # slack for a slow start on a loaded machine
    d = daemon_factory(config(window("w1", start, end), hooks=hook_config(tmp_path)))
    assert d.status()["mode"] == "normal"
    assert d.stop() == 0
    wait(lambda: datetime.now(UTC) > utc(end) + timedelta(seconds=1), timeout=20, what="w1 to pass")

    d.restart()
    d.wait_for(lambda s: s["mode"] == "normal" and s["hooks"]["pending"] == 0, what="catch-up")
    time.sleep(1.2)
    starts, ends = journal(d, "start", "w1"), journal(d, "end", "w1")
    assert len(starts) == 1 and len(ends) == 1
    for entry, scheduled in ((starts[0], start), (ends[0], end)):
        assert entry["detail"]["at"] == scheduled  # took effect at the scheduled instant
        assert utc(entry["at"]) > utc(scheduled)  # and was recorded afterwards, by the restart
    # a window missed entirely runs its end hook (to leave maintenance mode), not its start hook
    assert [r["MAINTD_EVENT"] for r in hook_runs(tmp_path)] == ["end"]
    assert d.stop() == 0


def test_restart_long_after_a_window_records_start_and_end_late(daemon_factory, tmp_path: Path) -> None:
    """Down for ten minutes: the journal's last tick is ten minutes old (set here, as the
    crash would have left it), and a window ran in between."""
    start, end = iso_in(-300), iso_in(-180)
    d = daemon_factory(config(window("w1", start, end)))
    assert d.status()["mode"] == "normal" and journal(d, "start") == []  # before its first tick: not caught up
    assert d.stop() == 0
    db = sqlite3.connect(tmp_path / "maintd.db")
    with db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'last_tick'",
            ((datetime.now(UTC) - timedelta(minutes=10)).isoformat(),),
        )
    db.close()

    d.restart()
    d.wait_for(lambda s: s["last_tick"] is not None, what="a tick")
    time.sleep(1.2)
    starts, ends = journal(d, "start", "w1"), journal(d, "end", "w1")
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0]["detail"] == {"at": start, "late": True, "reason": "scheduled", "tenants": 2}
    assert ends[0]["detail"] == {"at": end, "late": True, "reason": "scheduled", "tenants": 2}
    assert "(late)" in starts[0]["message"] and "(late)" in ends[0]["message"]
    assert d.status()["mode"] == "normal"
    assert d.stop() == 0


# --------------------------------------------------------------------------- reload


def test_sighup_with_a_broken_file_keeps_the_old_windows(daemon_factory, tmp_path: Path) -> None:
    end = iso_in(3600)
    d = daemon_factory(config(window("w1", iso_in(-60), end)))
    d.wait_for(lambda s: active(s) == ["w1"], what="w1 active")
    good = d.config_path.read_text()
    lines = good.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("    end: "))
    bad = "".join(lines[:row] + ["    end: [not a time\n"] + lines[row + 1 :])  # unclosed flow sequence
    d.config_path.write_text(bad)
    d.signal(signal.SIGHUP)
    st = d.wait_for(lambda s: s["config"]["error"] is not None, what="the reload error")
    assert d.proc.poll() is None
    assert re.match(rf"{re.escape(str(d.config_path))}:\d+:\d+: ", st["config"]["error"]), st["config"]["error"]
    assert active(st) == ["w1"] and st["active"][0]["end"] == end and st["mode"] == "maintenance"

    # a file that parses but breaks a rule: the error names its line and column exactly
    lines[row] = "    end: tomorrow\n"
    d.config_path.write_text("".join(lines))
    d.signal(signal.SIGHUP)
    st = d.wait_for(
        lambda s: s["config"]["error"] and f":{row + 1}:" in s["config"]["error"], what="the second reload error"
    )
    assert st["config"]["error"].startswith(f"{d.config_path}:{row + 1}:10: expected a time like"), st["config"][
        "error"
    ]
    assert active(st) == ["w1"] and st["active"][0]["end"] == end  # still the old windows
    human = d.cli("status")
    assert "last reload failed" in human.stdout
    m = metrics(d)
    assert metric(m, "maintd_config_error") == 1.0
    assert metric(m, "maintd_reloads_total", result="error") == 2.0
    errors = journal(d, "reload-error")
    assert len(errors) == 2 and errors[-1]["message"] == st["config"]["error"] and errors[-1]["actor"] == "SIGHUP"
    r = d.post("/v1/admissions", {"tenant": "acme", "kind": "backup"})
    assert r.status_code == 423  # the gate still follows the old window

    new_end = iso_in(1800)
    d.config_path.write_text(good.replace(f"    end: {end}\n", f"    end: {new_end}\n"))
    d.signal(signal.SIGHUP)
    # the fixed file clears the error and applies (its tick follows the swap of the config)
    d.wait_for(
        lambda s: s["config"]["error"] is None and s["active"][0]["end"] == new_end,
        what="the error to clear and the new end to apply",
    )
    m = metrics(d)
    assert metric(m, "maintd_config_error") == 0.0 and metric(m, "maintd_reloads_total", result="ok") == 1.0
    assert d.stop() == 0


def test_two_quick_sighups_end_on_the_file_on_disk(daemon_factory) -> None:
    """Reloads are serialised: a slow first reload (a big file with an error at its end)
    never finishes after the second and overwrites it with the old file's error."""
    d = daemon_factory(config(window("w1", iso_in(-60), iso_in(3600))))
    d.wait_for(lambda s: active(s) == ["w1"], what="w1 active")
    many = "".join(window(f"big{i}", iso_in(7200 + i), iso_in(7260 + i)) for i in range(3000))
    listen = f"127.0.0.1:{d.port}"
    d.config_path.write_text(config(many + "  - id: broken\n    start: [not a time\n").replace("{listen}", listen))
    d.signal(signal.SIGHUP)
    small = config(window("w2", iso_in(-60), iso_in(1800))).replace("{listen}", listen)
    time.sleep(0.05)
    d.config_path.write_text(small)
    d.signal(signal.SIGHUP)
    st = d.wait_for(lambda s: active(s) == ["w2"], timeout=20, what="the second file to apply")
    time.sleep(1.0)  # a first reload still running would land now
    st = d.status()
    assert active(st) == ["w2"] and st["config"]["error"] is None, st["config"]
    assert d.stop() == 0


# --------------------------------------------------------------------------- manual actions


def test_manual_enter_extend_exit_through_the_cli(daemon_factory) -> None:
    d = daemon_factory(config(window("later", iso_in(3600), iso_in(7200))))
    r = d.cli("enter", "--reason", "SAN failover", "--for", "1h", "--tenants", "beta")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"maintenance entered: manual-\S+ until \S+Z \(1 tenant\)\n", r.stdout), r.stdout
    st = d.status()
    assert st["mode"] == "maintenance" and st["active"][0]["tenants"] == ["beta"]
    mid, end = st["active"][0]["window"], utc(st["active"][0]["end"])

    r = d.cli("extend", mid, "30m")
    assert r.returncode == 0 and r.stdout.strip() == f"{mid} now ends at {iso(end + timedelta(minutes=30))}"
    assert utc(d.status()["active"][0]["end"]) == end + timedelta(minutes=30)

    refusals = [
        (
            ("extend", "later", "30m"),
            {},
            1,
            'Error: window "later" is not active; only a running occurrence can be extended',
        ),
        (("extend", "nope", "30m"), {}, 1, 'Error: unknown window "nope"'),
        (("enter", "--reason", "x"), {"MAINTD_TOKEN": ""}, 1, "Error: missing or invalid bearer token"),
        (("extend", mid, "5m"), {"MAINTD_TOKEN": "wrong"}, 1, "Error: missing or invalid bearer token"),
        (("exit",), {"MAINTD_TOKEN": ""}, 1, "Error: missing or invalid bearer token"),
        (("enter", "--reason", "x", "--tenants", "nobody"), {}, 1, "Error: unknown tenant(s): nobody"),
        # --tenants repeats or takes commas; every id is sent
        (
            ("enter", "--reason", "x", "--tenants", "beta", "--tenants", "acme,nobody"),
            {},
            1,
            "Error: unknown tenant(s): nobody",
        ),
    ]
    for args, env, code, message in refusals:
        r = d.cli(*args, env=env)
        assert (r.returncode, r.stdout) == (code, ""), (args, r.returncode, r.stdout, r.stderr)
        assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    # A bad value is a usage error like any other flag's: click's usage lines, then the error.
    r = d.cli("extend", mid, "soon")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for 'DURATION': expected a duration like 30s, 10m, 4h, 7d or 1h30m, got 'soon'"
    )
    assert active(d.status()) == [mid]  # none of them changed anything

    r = d.cli("exit")
    assert r.returncode == 0 and r.stdout.startswith(f"ended {mid} (")
    assert d.status()["mode"] == "normal"
    r = d.cli("exit")
    assert r.returncode == 1 and r.stderr == "Error: no maintenance is active\n"
    assert [(h["kind"], h["actor"]) for h in d.history() if h["kind"] in ("enter", "extend", "exit")] == [
        ("exit", "api"),
        ("extend", "api"),
        ("enter", "api"),
    ]
    assert d.stop() == 0


def test_without_a_configured_token_state_changes_are_refused(daemon_factory) -> None:
    d = daemon_factory(config(window("later", iso_in(3600), iso_in(7200))), env={"MAINTD_TOKEN": ""})
    for args in (("enter", "--reason", "x"), ("exit",), ("extend", "later", "30m")):
        r = d.cli(*args, env={"MAINTD_TOKEN": TOKEN})
        assert r.returncode == 1 and r.stderr == (
            "Error: state-changing calls are disabled: no token is configured on the daemon (it was started without"
            " an admin token); set MAINTD_TOKEN or daemon.token_file for the daemon (in its environment or config)"
            " and restart it\n"
        ), r.stderr
    r = d.post("/v1/maintenance", {"reason": "x"})
    assert r.status_code == 403 and "no token is configured" in r.json()["error"]
    # without any token nothing but liveness is open over TCP, whatever the address (issue 12)
    r = d.get("/v1/status", token=None)
    assert r.status_code == 403 and "reads are disabled over TCP" in r.json()["error"]
    assert d.get("/healthz").ok
    assert "no token configured" in d.log()
    assert d.stop() == 0


# --------------------------------------------------------------------------- the store fails


class TinyDisk:
    """A 4 MiB tmpfs for the database; ``fill()`` takes its last byte, ``free()`` gives it back."""

    def __init__(self, root: Path) -> None:
        self.mnt = root / "tiny"
        self.mnt.mkdir()
        self.filler = self.mnt / "filler"
        r = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.mnt)], capture_output=True, text=True
            )
            if shutil.which("mount")
            else None
        )
        self.mounted = r is not None and r.returncode == 0
        self.why = "no mount command" if r is None else (r.stderr.strip() or f"mount exited {r.returncode}")

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            for size in (1 << 16, 4096, 1):
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)


def _store_fault_scenario(
    d: DaemonProc, brk: Callable[[], None], heal: Callable[[], None], cause: str, start: str
) -> None:
    d.wait_for(lambda s: s["last_tick"] is not None and s["mode"] == "normal", what="first tick")
    assert d.cli("enter", "--reason", "before the fault", "--for", "1s", "--tenants", "beta").returncode == 0
    before = d.history()
    assert {"daemon-start", "enter"} <= {h["kind"] for h in before}

    brk()
    st = d.wait_for(lambda s: any(f["what"] == "store" for f in s["faults"]), timeout=20, what="the store fault")
    fault = next(f for f in st["faults"] if f["what"] == "store")
    assert cause in fault["message"] and fault["message"].startswith("cannot "), fault
    m = metrics(d)
    assert metric(m, "maintd_store_fault") == 1.0 and metric(m, "maintd_store_errors_total") >= 1
    assert "fault store:" in d.cli("status").stdout
    t = time.monotonic()
    d.status()
    assert time.monotonic() - t < 2.0  # status does not queue behind a tick stuck on the store
    # w1 starts while nothing can be written: the daemon stays up and answers
    wait(lambda: datetime.now(UTC) > utc(start) + timedelta(seconds=1), timeout=15, what="w1 start")
    assert d.get("/healthz").json() == {"ok": True} and d.proc.poll() is None
    assert any(f["what"] == "store" for f in d.status()["faults"])

    heal()
    st = d.wait_for(
        lambda s: not any(f["what"] == "store" for f in s["faults"]) and active(s) == ["w1"],
        timeout=20,
        what="recovery",
    )
    assert metric(metrics(d), "maintd_store_fault") == 0.0
    wait(lambda: len(journal(d, "start", "w1")) == 1, what="the start of w1, recorded once recovered")
    after = {h["id"]: h for h in d.history()}
    assert all(after.get(h["id"]) == h for h in before)  # nothing journaled before the fault is lost
    assert len(journal(d, "start", "w1")) == 1
    assert d.stop() == 0


def test_disk_full_keeps_the_daemon_up_and_it_recovers(daemon_factory, tmp_path: Path) -> None:
    disk = TinyDisk(tmp_path)
    if not disk.mounted:
        pytest.skip(
            f"cannot mount a tmpfs here ({disk.why}); test_a_database_locked_by_another_writer covers the same path"
        )
    try:
        start = iso_in(5)
        d = daemon_factory(config(window("w1", start, iso_in(3600)), database=str(disk.mnt / "maintd.db")))
        _store_fault_scenario(d, disk.fill, disk.free, "database or disk is full", start)
    finally:
        disk.free()
        disk.unmount()  # lazy: a daemon left running by a failure still holds the file


def test_a_database_locked_by_another_writer_keeps_the_daemon_up(daemon_factory, tmp_path: Path) -> None:
    """Another process holds SQLite's write lock past the busy timeout: a real failure that
    needs neither root nor a mount (and so also runs where the tmpfs test cannot)."""
    start = iso_in(9)  # the first failing write takes SQLite's 5 s busy timeout
    d = daemon_factory(config(window("w1", start, iso_in(3600))))
    holder: dict = {}

    def lock() -> None:
        code = (
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(120)\n"
        )
        holder["p"] = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "maintd.db")], stdout=subprocess.PIPE, text=True
        )
        assert holder["p"].stdout.readline().strip() == "locked"

    def unlock() -> None:
        holder["p"].kill()
        holder["p"].wait()

    try:
        _store_fault_scenario(d, lock, unlock, "database is locked", start)
    finally:
        if "p" in holder and holder["p"].poll() is None:
            unlock()


# --------------------------------------------------------------------------- the command line around the daemon


def test_status_exits_3_with_one_line_when_the_daemon_is_down(tmp_path: Path) -> None:
    path = tmp_path / "windows.yaml"
    path.write_text(config("").replace("{listen}", f"127.0.0.1:{free_port()}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    for args in (("status",), ("status", "--json"), ("history",), ("exit",)):
        r = subprocess.run(
            maintd_argv() + ["--config", str(path), *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert r.returncode == 3, (args, r.returncode, r.stderr)
        assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
        assert re.fullmatch(
            r"Error: cannot reach maintd at http://127\.0\.0\.1:\d+ \(connection refused or host "
            r"unreachable\); is `maintd run` running\?\n",
            r.stderr,
        ), r.stderr


def test_run_with_an_invalid_config_exits_2_naming_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "windows.yaml"
    path.write_text(config(window("w1", "2030-01-01T00:00Z", "whenever")).replace("{listen}", "127.0.0.1:1"))
    r = subprocess.run(maintd_argv() + ["--config", str(path), "run"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    line = path.read_text().splitlines().index("    end: whenever") + 1
    assert r.stderr.startswith(f"{path}:{line}:10: expected a time like"), r.stderr
    assert r.stderr.endswith("Error: invalid config (run `maintd validate` for details)\n")
    assert "Traceback" not in r.stderr and not (tmp_path / "maintd.db").exists()


def test_a_port_already_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = tmp_path / "windows.yaml"
        path.write_text(config("").replace("{listen}", f"127.0.0.1:{port}"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
        r = subprocess.run(
            maintd_argv() + ["--config", str(path), "run"], capture_output=True, text=True, timeout=30, env=env
        )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (set daemon.listen or MAINTD_LISTEN)"
    )
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- end checks (SPEC 5)


def test_end_check_extends_a_window_until_healthy(daemon_factory, tmp_path: Path) -> None:
    start, end = iso_in(3), iso_in(5)
    windows = (
        # own tenants for `checked`: a tenant whose period another window opened was not told
        # of this one's start, so gets no `extended` for it either
        window(
            "checked",
            start,
            end,
            "    tenants: [acme]\n    end_check: {run: [test, -f, healthy], every: 2s, max: 1m}\n",
        )
        + window("capped", start, end, '    tenants: [beta]\n    end_check: {run: ["false"], every: 2s, max: 4s}\n')
        + window(
            "missing", start, end, "    tenants: [beta]\n    end_check: {run: [./no-such-check], every: 2s, max: 2s}\n"
        )
    )
    d = daemon_factory(config(windows))
    d.wait_for(lambda s: sorted(active(s)) == ["capped", "checked", "missing"], what="all three start")

    # at the planned end each check fails: extended by `every`, journaled, shown in status
    st = d.wait_for(
        lambda s: len([f for f in s["faults"] if f["what"].startswith("end-check:")]) == 3,
        what="three failing end checks",
    )
    faults = {f["what"]: f["message"] for f in st["faults"]}
    assert "cannot run './no-such-check'" in faults["end-check:missing"]
    assert "exited with 1" in faults["end-check:capped"]
    assert sorted(active(st)) == ["capped", "checked", "missing"]
    assert all(utc(a["end"]) == utc(end) + timedelta(seconds=2) for a in st["active"]), st["active"]

    # `capped` stops at max past its planned end; `missing` after one extension
    d.wait_for(lambda s: active(s) == ["checked"], timeout=10, what="capped and missing to end")
    assert len(journal(d, "end-check", "checked")) >= 2
    assert len(journal(d, "end-check", "capped")) == 2 and len(journal(d, "end-check", "missing")) == 1
    capped = journal(d, "end-check", "capped")
    assert [e["detail"]["end"] for e in capped] == [
        iso(utc(end) + timedelta(seconds=2)),
        iso(utc(end) + timedelta(seconds=4)),
    ]
    assert journal(d, "end", "capped")[0]["detail"]["at"] == iso(utc(end) + timedelta(seconds=4))

    (tmp_path / "healthy").touch()
    st = d.wait_for(lambda s: s["active"] == [], timeout=10, what="checked to end once healthy")
    assert "end-check:checked" not in {f["what"] for f in st["faults"]}
    checks = journal(d, "end-check", "checked")
    assert journal(d, "end", "checked")[0]["detail"]["at"] == checks[-1]["detail"]["end"]
    # one `extended` notice per extension
    extended = [h for h in journal(d, "notice", "checked") if h["detail"]["kind"] == "extended"]
    assert len(extended) == len(checks)
    m = metrics(d)
    assert metric(m, "maintd_end_checks_total", result="failing") >= 5
    assert metric(m, "maintd_end_checks_total", result="healthy") == 1.0
    assert d.stop() == 0


# --------------------------------------------------------------------------- failing hooks

FLAKY = """\
import os, sys
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky-count")
n = int(open(path).read()) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
print(f"attempt {n}")
sys.exit(1 if n == 1 else 0)
"""


def test_a_failing_hook_is_retried_with_backoff_and_shown(daemon_factory, tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(FLAKY)
    start = iso_in(3)
    windows = window(
        "flaky", start, iso_in(3600), f'    hooks: {{on_start: ["{sys.executable}", "{tmp_path / "flaky.py"}"]}}\n'
    ) + window("broken", start, iso_in(3600), '    hooks: {on_start: [sh, -c, "echo boom; exit 1"]}\n')
    d = daemon_factory(config(windows), env={"MAINTD_HOOK_ATTEMPTS": "2"})

    # the first failure: pending again with the error, a fault, a metric
    st = d.wait_for(
        lambda s: {f["what"] for f in s["faults"]} >= {"hook:flaky:start", "hook:broken:start"}, what="two hook faults"
    )
    items = {i["window"]: i for i in st["hooks"]["items"]}
    assert items["broken"]["error"] == "exited with 1: boom"
    faults = {f["what"]: f["message"] for f in st["faults"]}
    assert faults["hook:flaky:start"].startswith("start hook of flaky exited with 1: attempt 1; retry at ")
    assert metric(metrics(d), "maintd_hook_runs_total", event="start", result="retry") >= 1

    # the retry (after 2.5..5 s): flaky succeeds and its fault clears; broken gives up
    st = d.wait_for(
        lambda s: s["hooks"]["failed"] == 1 and "hook:flaky:start" not in {f["what"] for f in s["faults"]},
        timeout=12,
        what="the retries",
    )
    assert [(i["window"], i["status"], i["attempts"]) for i in st["hooks"]["items"]] == [("broken", "failed", 2)]
    assert {f["what"]: f["message"] for f in st["faults"]}["hook:broken:start"].endswith("; gave up")
    human = d.cli("status").stdout
    assert "hooks: 0 pending, 1 failed" in human and "fault hook:broken:start" in human
    runs = journal(d, "hook", "flaky")
    assert [(r["detail"]["attempt"], r["detail"]["ok"]) for r in runs] == [(1, False), (2, True)]
    assert utc(runs[1]["at"]) - utc(runs[0]["at"]) >= timedelta(seconds=2)  # backoff, not a busy retry
    assert (tmp_path / "flaky-count").read_text() == "2"
    m = metrics(d)
    assert metric(m, "maintd_hooks_failed") == 1.0
    assert metric(m, "maintd_hook_runs_total", event="start", result="failed") == 1.0
    assert metric(m, "maintd_hook_runs_total", event="start", result="ok") == 1.0
    assert d.stop() == 0
