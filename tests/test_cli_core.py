"""`maintd validate | plan | schema` as users run them: real subprocesses of the console script.

Every run checks that stderr carries no traceback: user mistakes end in ``Error: ...``
or ``FILE:LINE:COL: message`` lines and an exit code (SPEC section 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "windows.yaml"
MAINTD = shutil.which("maintd")
COMMAND = [MAINTD] if MAINTD else [sys.executable, "-c", "from scheduler.cli import main; main()"]


def maintd(*args: str, cwd: Path, env: dict | None = None, check_code: int | None = None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    environ.update({"COLUMNS": "200", "NO_COLOR": "1"}, **(env or {}))
    proc = subprocess.run([*COMMAND, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check_code is not None:
        assert proc.returncode == check_code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE, tmp_path / "windows.yaml")
    return tmp_path


BROKEN = """\
version: 1
provider:
  name: P
  timezone: Mars/Olympus
windows:
  - id: w
    start: 2027-01-01T00:00
    duration: 1h
    policy: nope
"""


# ---------------------------------------------------------------------------
# validate


def test_validate_ok(workdir):
    proc = maintd("validate", cwd=workdir, check_code=0)
    assert proc.stdout == "windows.yaml: OK (3 tenants, 3 windows, 1 policy)\n"


def test_validate_invalid_prints_file_line_col(workdir):
    (workdir / "windows.yaml").write_text(BROKEN)
    proc = maintd("validate", cwd=workdir, check_code=2)
    assert proc.stdout.splitlines() == [
        'windows.yaml:4:13: unknown time zone "Mars/Olympus"; expected an IANA name such as Europe/Berlin or UTC',
        'windows.yaml:9:13: undefined policy "nope" used in window "w"',
    ]
    assert "2 errors" in proc.stderr


def test_validate_warning_goes_to_stderr_and_still_passes(workdir):
    text = (
        (workdir / "windows.yaml")
        .read_text()
        .replace("tenants: {labels: {tier: gold}}", "tenants: {labels: {tier: platinum}}")
    )
    (workdir / "windows.yaml").write_text(text)
    proc = maintd("validate", cwd=workdir, check_code=0)
    assert 'warning: labels {tier: platinum} in window "patch-tuesday" match no tenant' in proc.stderr
    assert "OK" in proc.stdout


def test_validate_missing_config(tmp_path):
    proc = maintd("validate", cwd=tmp_path, check_code=2)
    assert "windows.yaml:1:1: no such file" in proc.stdout + proc.stderr


def test_validate_yaml_syntax_error(workdir):
    (workdir / "windows.yaml").write_text("version: 1\nprovider: {name: P\n")
    proc = maintd("validate", cwd=workdir, check_code=2)
    assert proc.stdout.startswith("windows.yaml:3:1: invalid YAML: ")


def test_config_option_and_maintd_config_env(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = str(workdir / "windows.yaml")
    assert maintd("--config", path, "validate", cwd=elsewhere, check_code=0).stdout.startswith(path + ": OK")
    assert maintd("validate", cwd=elsewhere, env={"MAINTD_CONFIG": path}, check_code=0).stdout.startswith(path + ": OK")
    # --config wins over the environment
    maintd("--config", path, "validate", cwd=elsewhere, env={"MAINTD_CONFIG": "/nonexistent.yaml"}, check_code=0)


# ---------------------------------------------------------------------------
# plan

NOTICE_KEYS = ["at", "event", "window", "occurrence", "tenant", "kind", "lead", "late"]
PERIOD_KEYS = ["at", "event", "window", "occurrence", "tenant"]


def _expected_example_plan() -> list[tuple]:
    # storage-firmware: 2026-12-05 22:00 -> 12-06 02:00 Berlin (21:00Z -> 01:00Z), all tenants,
    # notify [7d, 24h, 1h]; patch-tuesday's 12-08 occurrence is skipped; cancelled-example is
    # cancelled.
    out = []
    for at, lead in (("2026-11-28T21:00:00Z", "7d"), ("2026-12-04T21:00:00Z", "24h"), ("2026-12-05T20:00:00Z", "1h")):
        out += [(at, "notice", "storage-firmware", t, lead, False) for t in ("acme", "beta", "gamma")]
    out += [("2026-12-05T21:00:00Z", "start", "storage-firmware", t, None, None) for t in ("acme", "beta", "gamma")]
    out += [("2026-12-06T01:00:00Z", "end", "storage-firmware", t, None, None) for t in ("acme", "beta", "gamma")]
    return out


def _rows(events: list[dict]) -> list[tuple]:
    return [(e["at"], e["event"], e["window"], e["tenant"], e.get("lead"), e.get("late")) for e in events]


@pytest.mark.parametrize(
    "frm, to",
    [
        ("2026-11-25T00:00", "2026-12-20T00:00"),  # provider's zone (Berlin)
        ("2026-11-24T23:00Z", "2026-12-19T23:00Z"),
        ("2026-11-25T00:00+01:00", "2026-12-19T18:00-05:00"),
    ],
    ids=["local", "utc_z", "offsets"],
)
def test_plan_json_of_the_example(workdir, frm, to):
    proc = maintd("plan", "--json", "--from", frm, "--to", to, cwd=workdir, check_code=0)
    events = json.loads(proc.stdout)
    assert isinstance(events, list)
    assert _rows(events) == _expected_example_plan()
    for e in events:
        assert list(e) == (NOTICE_KEYS if e["event"] == "notice" else PERIOD_KEYS)
        assert e["occurrence"] == "2026-12-05T21:00:00Z"
        assert e["at"].endswith("Z") and e["occurrence"].endswith("Z")
        if e["event"] == "notice":
            assert e["kind"] == "scheduled"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_plan_json_late_notice_at_from(workdir):
    proc = maintd(
        "plan", "--json", "--from", "2026-12-05T12:00Z", "--to", "2026-12-05T21:00Z", cwd=workdir, check_code=0
    )
    assert _rows(json.loads(proc.stdout)) == [
        ("2026-12-05T12:00:00Z", "notice", "storage-firmware", t, "24h", True) for t in ("acme", "beta", "gamma")
    ] + [("2026-12-05T20:00:00Z", "notice", "storage-firmware", t, "1h", False) for t in ("acme", "beta", "gamma")]


def test_plan_json_tenant_filter(workdir):
    proc = maintd(
        "plan",
        "--json",
        "--from",
        "2026-11-25T00:00",
        "--to",
        "2026-12-20T00:00",
        "--tenant",
        "beta",
        cwd=workdir,
        check_code=0,
    )
    assert _rows(json.loads(proc.stdout)) == [r for r in _expected_example_plan() if r[3] == "beta"]


def test_plan_json_recurring_window_in_a_later_month(workdir):
    # January's second Tuesday (2027-01-12) 01:00 Berlin is 00:00Z; gold tenants only.
    proc = maintd(
        "plan", "--json", "--from", "2027-01-11T00:00Z", "--to", "2027-01-13T00:00Z", cwd=workdir, check_code=0
    )
    assert _rows(json.loads(proc.stdout)) == [
        ("2027-01-11T00:00:00Z", "notice", "patch-tuesday", "acme", "3d", True),
        ("2027-01-11T00:00:00Z", "notice", "patch-tuesday", "gamma", "3d", True),
        ("2027-01-11T23:00:00Z", "notice", "patch-tuesday", "acme", "1h", False),
        ("2027-01-11T23:00:00Z", "notice", "patch-tuesday", "gamma", "1h", False),
        ("2027-01-12T00:00:00Z", "start", "patch-tuesday", "acme", None, None),
        ("2027-01-12T00:00:00Z", "start", "patch-tuesday", "gamma", None, None),
        ("2027-01-12T03:00:00Z", "end", "patch-tuesday", "acme", None, None),
        ("2027-01-12T03:00:00Z", "end", "patch-tuesday", "gamma", None, None),
    ]


def test_plan_json_empty_range_is_an_empty_array(workdir):
    proc = maintd(
        "plan", "--json", "--from", "2026-12-10T00:00Z", "--to", "2026-12-11T00:00Z", cwd=workdir, check_code=0
    )
    assert json.loads(proc.stdout) == []


def test_plan_default_range_runs(workdir):
    assert isinstance(json.loads(maintd("plan", "--json", cwd=workdir, check_code=0).stdout), list)
    assert isinstance(json.loads(maintd("plan", "--json", "--from", "now", cwd=workdir, check_code=0).stdout), list)


def test_plan_table(workdir):
    proc = maintd("plan", "--from", "2026-11-25T00:00", "--to", "2026-12-20T00:00", cwd=workdir, check_code=0)
    for word in ("storage-firmware", "scheduled 7d", "start", "end", "acme"):
        assert word in proc.stdout
    # narrow: one row for all tenants, in the provider's zone (Berlin)
    assert re.search(r"^Sat 05 22:00 +storage-firmware +start +acme, beta, gamma *$", proc.stdout, re.M), proc.stdout
    assert "acme, beta, gamma" in proc.stdout
    # --wide: one row per tenant's zone, in that zone: acme is in New York
    wide = maintd("plan", "--wide", "--from", "2026-11-25T00:00", "--to", "2026-12-20T00:00", cwd=workdir, check_code=0)
    assert "Sat 2026-12-05 16:00 EST" in wide.stdout and "Sat 2026-12-05 22:00 CET" in wide.stdout


def test_plan_table_nothing_happens(workdir):
    proc = maintd("plan", "--from", "2026-12-10T00:00Z", "--to", "2026-12-11T00:00Z", cwd=workdir, check_code=0)
    assert "Nothing happens" in proc.stdout


def test_plan_unknown_tenant(workdir):
    proc = maintd("plan", "--tenant", "nobody", cwd=workdir, check_code=2)
    assert proc.stderr == 'Error: unknown tenant "nobody"; known: acme, beta, gamma\n'


@pytest.mark.parametrize(
    "args",
    [["--from", "yesterday-ish"], ["--to", "2026-13-01"], ["--from", "2026-12-05T25:00"]],
    ids=["words", "month_13", "hour_25"],
)
def test_plan_bad_time(workdir, args):
    proc = maintd("plan", *args, cwd=workdir, check_code=2)
    assert proc.stderr.startswith("Error: invalid time ")
    assert "expected ISO 8601" in proc.stderr


def test_plan_to_before_from(workdir):
    proc = maintd("plan", "--from", "2027-01-02T00:00Z", "--to", "2027-01-01T00:00Z", cwd=workdir, check_code=2)
    assert proc.stderr == "Error: --to must be after --from\n"


def test_plan_missing_config(tmp_path):
    proc = maintd("plan", "--json", cwd=tmp_path, check_code=2)
    assert "windows.yaml:1:1: no such file" in proc.stderr
    assert proc.stdout == ""


def test_plan_invalid_config(workdir):
    (workdir / "windows.yaml").write_text(BROKEN)
    proc = maintd("plan", "--json", cwd=workdir, check_code=2)
    assert 'windows.yaml:9:13: undefined policy "nope" used in window "w"' in proc.stderr
    assert proc.stdout == ""


def _plan_into_closed_pipe(workdir: Path) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    # twenty years of the example: far more than a pipe buffer
    proc = subprocess.Popen(
        [*COMMAND, "plan", "--json", "--from", "2027-01-01T00:00Z", "--to", "2047-01-01T00:00Z"],
        cwd=workdir,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(11) == b'[\n  {"at": '
    proc.stdout.close()  # `maintd plan --json | head -c 11`
    stderr = proc.stderr.read().decode()
    return proc.wait(timeout=60), stderr


def test_plan_into_a_closed_pipe_ends_quietly(workdir):
    _, stderr = _plan_into_closed_pipe(workdir)
    assert stderr == ""


def test_plan_into_a_closed_pipe_exits_0(workdir):
    code, _ = _plan_into_closed_pipe(workdir)
    assert code == 0


def test_unknown_command_is_a_usage_error(workdir):
    proc = maintd("plann", cwd=workdir, check_code=2)
    assert "No such command" in proc.stderr


# ---------------------------------------------------------------------------
# schema


def test_schema_is_json_schema_of_windows_yaml(tmp_path):
    proc = maintd("schema", cwd=tmp_path, check_code=0)  # needs no config
    schema = json.loads(proc.stdout)
    assert schema["type"] == "object"
    assert {"version", "provider", "tenants", "windows", "policies", "daemon"} <= set(schema["properties"])
    assert "$schema" in schema and "version" in schema["required"] and "provider" in schema["required"]


def test_config_option_also_after_the_command(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = str(workdir / "windows.yaml")
    assert maintd("validate", "--config", path, cwd=elsewhere, check_code=0).stdout.startswith(path)
    out = maintd(
        "plan",
        "--config",
        path,
        "--json",
        "--from",
        "2026-12-05T00:00Z",
        "--to",
        "2026-12-06T00:00Z",
        cwd=elsewhere,
        check_code=0,
    )
    assert json.loads(out.stdout)
    # after the command it wins over the global one
    maintd("--config", "/nonexistent.yaml", "validate", "--config", path, cwd=elsewhere, check_code=0)


# ---------------------------------------------------------------------------
# 80 columns (also the width when output is not a terminal)

LONG_IDS = {
    "storage-firmware": "storage-firmware-upgrade-frankfurt",
    "patch-tuesday": "monthly-host-patching-gold",
    "acme": "acme-industries-holding",
    "gamma": "gamma-hosting-europe",
}


def test_plan_fits_80_columns_with_ids_whole_and_late_notices_marked(workdir):
    text = (workdir / "windows.yaml").read_text()
    for old, new in LONG_IDS.items():
        text = re.sub(rf"\b{old}\b", new, text)
    (workdir / "windows.yaml").write_text(text)
    proc = maintd(
        "plan",
        "--from",
        "2026-12-05T12:00Z",
        "--to",
        "2027-01-20T00:00Z",
        cwd=workdir,
        env={"COLUMNS": "80"},
        check_code=0,
    )
    lines = proc.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), proc.stdout
    for new in ("storage-firmware-upgrade-frankfurt", "monthly-host-patching-gold"):
        assert new in proc.stdout
    # every row one line: a time, the window's whole id, the event, the tenants (a count when ids do not fit)
    rows = [line for line in lines if re.match(r"\w{3} \d\d \w{3} \d\d:\d\d ", line)]
    assert len(rows) == 8, proc.stdout  # each window: 2 notices, start, end
    assert "…" not in proc.stdout
    # the 24h notice is late at --from: marked, and the mark explained
    late = r"^Sat 05 Dec 13:00 +storage-firmware-upgrade-frankfurt +scheduled 24h LATE +3$"
    assert re.search(late, proc.stdout, re.M), proc.stdout
    assert "LATE: lead time passed at --from" in proc.stdout
    # with room, tenants are whole ids, then a count
    wider = maintd(
        "plan",
        "--from",
        "2026-12-05T12:00Z",
        "--to",
        "2027-01-20T00:00Z",
        cwd=workdir,
        env={"COLUMNS": "100"},
        check_code=0,
    )
    assert re.search(r"scheduled 1h +acme-industries-holding \+2$", wider.stdout, re.M), wider.stdout


def test_validate_counts_in_words(workdir):
    text = (workdir / "windows.yaml").read_text()
    start = text.index("  - id: beta\n")
    end = text.index("notifiers:")
    (workdir / "windows.yaml").write_text(text[:start] + "\n" + text[end:])
    proc = maintd("validate", cwd=workdir, check_code=0)
    assert proc.stdout == "windows.yaml: OK (1 tenant, 3 windows, 1 policy)\n"
