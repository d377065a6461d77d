"""Client commands against a real daemon: how they find it, which token they send, and
what they print in an 80-column terminal (also the width when output is not a terminal).

The first version fell back to 127.0.0.1:8787 when windows.yaml could not be loaded; an
``exec`` in a cron shell without a webhook secret's variable then ran a backup during
maintenance. A client reads only ``daemon:`` now, and fails loudly when even that fails.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from conftest import TOKEN, DaemonProc, free_port, iso_in, maintd_argv

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
CONFIG = f"""\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  policy: standard
tenants:
  - id: acme-industries
    name: ACME Industries
    webhook: {{url: "http://127.0.0.1:{{dead}}/hook", secret: "{SECRET}"}}
  - id: beta-logistics
  - id: gamma-hosting-eu
policies:
  standard:
    default: deny
    rules:
      - allow: {{kind: [restore]}}
windows:
  - id: storage-firmware-upgrade
    title: Storage firmware upgrade on every array in the Frankfurt data centre
    start: {{start}}
    duration: 4h
    notify: [7d, 24h]
  - id: weekly-patching
    title: Weekly host patching
    cron: "30 2 * * 6"
    duration: 3h
daemon:
  listen: "{{listen}}"
"""


def cli(d: DaemonProc, *args: str, config: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`maintd` as a user runs it: no MAINTD_URL, so the config says where the daemon is."""
    e = {k: v for k, v in d.env.items() if not k.startswith("MAINTD_")}
    e.update({"COLUMNS": "80", "NO_COLOR": "1", "MAINTD_TOKEN": TOKEN}, **(env or {}))
    argv = [*maintd_argv(), "--config", str(config or d.config_path), *args]
    proc = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=30, cwd=d.config_path.parent)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def busy(daemon_factory) -> DaemonProc:
    """A daemon with an active window, a weekly one, late notices failing to a dead webhook, and history."""
    text = CONFIG.replace("{dead}", str(free_port())).replace("{start}", iso_in(-60))
    d = daemon_factory(text)
    d.wait_for(lambda s: s["mode"] == "maintenance", what="the window to start")
    assert cli(d, "extend", "storage-firmware-upgrade", "30m").returncode == 0
    r = cli(d, "enter", "--reason", "SAN failover", "--for", "1h", "--tenants", "beta-logistics")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"maintenance entered: manual-\S+ until \S+Z \(1 tenant\)\n", r.stdout), r.stdout
    d.wait_for(lambda s: s["notices"]["pending"] + s["notices"]["failed"] > 0, what="a failing delivery")
    return d


def assert_fits(out: str, ids: tuple[str, ...] = ()) -> None:
    for line in out.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}\n{out}"
        # an id or a time is never cut: an ellipsis only ends a free-text cell
        for word in re.findall(r"\S*…", line):
            assert not any(word[:-1] and i.startswith(word[:-1]) and i != word[:-1] for i in ids), (word, line)
            assert not re.search(r"\d…$|^\d{4}-", word), (word, line)
    for i in ids:
        assert i in out, (i, out)


IDS = ("storage-firmware-upgrade", "weekly-patching", "acme-industries")


def test_status_fits_80_columns_and_folds_a_weekly_window(busy) -> None:
    r = cli(busy, "status")
    assert r.returncode == 0, r.stderr
    assert_fits(r.stdout, IDS)
    # five next occurrences of the weekly window are one row
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("weekly-patching")]
    assert re.search(r"every Sat 02:30 +(\d+d)?(\d+h)?(\d+m)? +3h ", row), row
    assert "0 jobs running, 0 draining" in r.stdout
    row = r"storage-firmware-upgrade +\w{3} \d\d \d\d:\d\d +4h(29|30)m +acme-industries \+2 +Storage"
    assert re.search(row, r.stdout), r.stdout
    wide = cli(busy, "status", "--wide")
    assert wide.stdout.count("weekly-patching") == 5  # --wide: every occurrence


def test_notices_fit_80_columns(busy) -> None:
    r = cli(busy, "notices")
    assert r.returncode == 0, r.stderr
    assert_fits(r.stdout, ("storage-firmware-upgrade", "acme-industries"))
    # grouped under the window's id; the whole kind with its late mark, the state and the error
    assert "\nstorage-firmware-upgrade\n" in r.stdout
    assert re.search(
        r"^  \w{3} \d\d \d\d:\d\d +acme-industries +started late +webhook +pending \(\d tr", r.stdout, re.M
    )
    assert "times in Europe/Berlin" in r.stdout
    wide = cli(busy, "notices", "--wide")
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", wide.stdout)  # full instants
    assert "127.0.0.1" in wide.stdout or "connect" in wide.stdout.lower()  # the whole error


def test_history_fits_80_columns_and_writes_durations_as_maintd_does(busy) -> None:
    r = cli(busy, "history")
    assert r.returncode == 0, r.stderr
    assert_fits(r.stdout, ("storage-firmware-upgrade",))
    assert not re.search(r"\b\d+:\d\d:\d\d\b", r.stdout), r.stdout
    assert re.search(r"extend +api +storage-firmware-upgrade extended by 30m", r.stdout), r.stdout
    wide = cli(busy, "history", "--wide")
    assert re.search(r"storage-firmware-upgrade +\S+Z +api +storage-firmware-upgrade extended by 30m to ", wide.stdout)
    assert "0:30:00" not in wide.stdout


def test_an_invalid_config_with_a_valid_daemon_section_still_reaches_the_daemon(busy) -> None:
    # what a cron shell sees: a webhook secret from a variable it does not set, and a
    # window someone is still editing; the daemon section is fine
    broken = busy.config_path.parent / "cron.yaml"
    text = busy.config_path.read_text().replace(SECRET, "${ACME_WEBHOOK_SECRET}")
    broken.write_text(text.replace("duration: 3h", "duration: three hours"))
    r = cli(busy, "status", "--json", config=broken)
    assert r.returncode == 0, r.stderr
    assert '"mode": "maintenance"' in r.stdout


def test_an_unset_variable_in_daemon_listen_is_exit_2_with_its_place(busy, tmp_path: Path) -> None:
    broken = tmp_path / "cron.yaml"
    broken.write_text(busy.config_path.read_text().replace(f'listen: "127.0.0.1:{busy.port}"', "listen: ${LISTEN}"))
    line = broken.read_text().splitlines().index("  listen: ${LISTEN}") + 1
    marker = tmp_path / "ran"
    for args in (("status",), ("exec", "--tenant", "acme-industries", "--kind", "backup", "--", "touch", str(marker))):
        r = cli(busy, *args, config=broken)
        assert (r.returncode, r.stdout) == (2, ""), (args, r.stderr)
        assert r.stderr == (
            f'Error: {broken}:{line}:11: daemon.listen: environment variable "LISTEN" is not set '
            "(set it, or write ${LISTEN:-default} to give a default)\n"
        )
    assert not marker.exists()


def test_exec_never_falls_back_to_the_default_address(busy, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = ("exec", "--tenant", "acme-industries", "--kind", "backup", "--", "touch", str(marker))
    # a --config that does not exist is not "no config": it is an error, not 127.0.0.1:8787
    r = cli(busy, *job, config=tmp_path / "nowhere.yaml")
    assert (
        r.returncode == 2
        and r.stderr == f"Error: {tmp_path / 'nowhere.yaml'}:1:1: no such file (named by --config or MAINTD_CONFIG)\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text(busy.config_path.read_text().replace(f'listen: "127.0.0.1:{busy.port}"', "listen: [127.0.0.1"))
    r = cli(busy, *job, config=broken)
    assert r.returncode == 2 and re.match(rf"Error: {re.escape(str(broken))}:\d+:\d+: invalid YAML: ", r.stderr)
    assert not marker.exists()
    # and with the config readable, the gate of the configured daemon decides: maintenance
    r = cli(busy, *job)
    assert r.returncode == 75 and "retry in " in r.stderr and not marker.exists(), r.stderr
