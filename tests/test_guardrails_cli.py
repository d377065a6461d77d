"""``maintd conflicts``, ``validate``'s guardrail warnings, and ``enter`` inside a freeze (SPEC 7),
as users run them: real subprocesses, and a real daemon for ``enter``."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import TOKEN, iso_in, maintd_argv

CONFIG = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  redundant: [[repo-1, repo-2]]
freezes:
  - {id: year-end, start: 2026-12-20T00:00, end: 2027-01-04T00:00, reason: Year-end}
tenants:
  - id: acme
    timezone: America/New_York
    blackouts:
      - {cron: "0 0 1 * *", duration: 1d}
  - id: beta
windows:
  - id: nightly
    cron: "0 1 * * *"
    duration: 2h
    resources: [repo-1]
  - id: weekly
    cron: "30 1 * * sun"
    duration: 1h
    resources: [repo-2]
"""


def run(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "80", "NO_COLOR": "1"}
    proc = subprocess.run(
        [*maintd_argv(), "--config", str(path), *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    return path


def test_conflicts_json_lists_each_kind_with_file_and_line(cfg):
    # 2027-01-03 (a Sunday, still frozen) .. 2027-01-04 12:00 Berlin
    r = run(cfg, "conflicts", "--from", "2027-01-02T23:00", "--to", "2027-01-04T12:00", "--json")
    assert r.returncode == 1, r.stderr
    found = json.loads(r.stdout)
    assert [(c["kind"], c["window"], c["occurrence"], c["skipped"]) for c in found] == [
        ("freeze", "nightly", "2027-01-03T00:00:00Z", True),
        ("freeze", "weekly", "2027-01-03T00:30:00Z", True),
    ]
    assert found[0]["file"] == str(cfg) and found[0]["line"] == 15 and found[0]["other_line"] == 7
    assert found[0]["other"] == "year-end"
    # Sunday 2027-01-10: both windows run, on the two redundant repositories, overlapping.
    r = run(cfg, "conflicts", "--from", "2027-01-10T00:00", "--to", "2027-01-10T12:00", "--json")
    (c,) = json.loads(r.stdout)
    assert r.returncode == 1
    assert (c["kind"], c["severity"], c["window"], c["other"], c["resources"], c["line"], c["other_line"]) == (
        "redundancy",
        "warning",
        "nightly",
        "weekly",
        ["repo-1", "repo-2"],
        15,
        19,
    )
    # Monday 2027-02-01 01:00 Berlin is Sunday 2027-01-31 19:00 in New York; Tuesday's is
    # Monday the 1st there: acme's monthly blackout.
    r = run(cfg, "conflicts", "--from", "2027-02-02T00:00", "--to", "2027-02-02T12:00", "--json")
    (c,) = json.loads(r.stdout)
    assert (c["kind"], c["tenant"], c["other"], c["other_line"], c["other_start"]) == (
        "blackout",
        "acme",
        "blackouts[0]",
        12,
        "2027-02-01T05:00:00Z",
    )


def test_conflicts_exit_codes(cfg, tmp_path):
    none = run(cfg, "conflicts", "--from", "2027-01-05T12:00", "--to", "2027-01-05T23:00")
    assert (none.returncode, none.stdout.strip()) == (
        0,
        "No conflicts between 2027-01-05T11:00:00Z and 2027-01-05T22:00:00Z.",
    )
    some = run(cfg, "conflicts", "--from", "2027-01-02T23:00", "--to", "2027-01-04T12:00")
    assert some.returncode == 1
    assert all(len(line) <= 80 for line in some.stdout.splitlines()), some.stdout
    assert "nightly" in some.stdout and "windows.yaml:15" in some.stdout and "freeze" in some.stdout
    handled = run(cfg, "conflicts", "--from", "2027-01-02T23:00", "--to", "2027-01-04T12:00", "--ignore-skipped")
    assert handled.returncode == 0, handled.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace('    cron: "0 1 * * *"', "    start: 2026-12-21T22:00"))
    invalid = run(bad, "conflicts")
    assert invalid.returncode == 2
    assert f'{bad}:15:5: window "nightly" overlaps freeze "year-end"' in invalid.stderr


def test_validate_warns_about_the_next_90_days_with_both_positions(cfg, tmp_path):
    # The window takes 2 h from 23:00 on the 31st in New York, into acme's blackout of the 1st.
    path = tmp_path / "soon.yaml"
    path.write_text(CONFIG.replace('"0 0 1 * *"', '"0 0 * * *"'))
    r = run(path, "validate")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "blackouts[0]" in line]
    assert warnings, r.stderr
    assert warnings[0].startswith(f"{path}:15: warning: occurrence ")
    assert warnings[0].endswith(f"[blackout at {path}:12]")
    redundancy = [line for line in r.stderr.splitlines() if "redundant" in line]
    assert redundancy and redundancy[0].endswith(f'[window "weekly" at {path}:19]')


DAEMON = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
freezes:
  - {{id: cab-freeze, start: {start}, end: {end}, reason: Release week}}
tenants:
  - id: acme
daemon:
  listen: "{{listen}}"
"""


@pytest.mark.slow
def test_enter_inside_a_freeze_is_refused_then_overridden(daemon_factory):
    now = datetime.now(UTC).replace(microsecond=0)
    text = DAEMON.format(
        start=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=(now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    d = daemon_factory(text)
    refused = d.cli("enter", "--reason", "SAN failover", "--for", "1h")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert 'change freeze "cab-freeze" (Release week) is in effect' in refused.stderr
    assert "--override-freeze REASON" in refused.stderr
    assert d.status()["mode"] == "normal"
    api = d.post("/v1/maintenance", {"reason": "x"})
    assert api.status_code == 409
    ok = d.cli("enter", "--reason", "SAN failover", "--for", "1h", "--override-freeze", "P1 incident 4711")
    assert ok.returncode == 0, ok.stderr
    d.wait_for(lambda s: s["mode"] == "maintenance", what="manual maintenance")
    history = d.history()
    overrides = [h for h in history if h["kind"] == "override-freeze"]
    assert overrides, json.dumps(history, indent=1)[:2000]
    assert "P1 incident 4711" in json.dumps(overrides[0])
    assert TOKEN  # the daemon fixture's admin token authorised both calls


@pytest.mark.slow
def test_oneoff_window_with_override_freeze_journals_its_reason_when_it_starts(daemon_factory):
    now = datetime.now(UTC).replace(microsecond=0)
    text = DAEMON.format(
        start=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=(now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ) + (
        "windows:\n"
        "  - id: cve-fix\n"
        f"    start: {iso_in(4, now)}\n"
        "    duration: 1h\n"
        '    override_freeze: "CVE-2027-1234, approved by CAB"\n'
    )
    d = daemon_factory(text)
    d.wait_for(lambda s: s["mode"] == "maintenance", timeout=30, what="cve-fix to start")
    deadline = time.time() + 10
    overrides: list = []
    while time.time() < deadline and not overrides:
        overrides = [h for h in d.history() if h["kind"] == "override-freeze"]
        time.sleep(0.2)
    assert [(h["window"], h["detail"]) for h in overrides] == [
        ("cve-fix", {"freeze": "cab-freeze", "reason": "CVE-2027-1234, approved by CAB"})
    ]
