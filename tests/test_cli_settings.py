"""How a client finds the daemon and which token it sends (scheduler.cli.settings), how
durations read in the terminal, and the unix socket with a real HTTP server on it."""

from __future__ import annotations

import http.server
import json
import os
import re
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import free_port, maintd_argv

from scheduler.cli import settings
from scheduler.cli.settings import SettingsError
from scheduler.status_view import human, tenants_text

INVALID_REST = """\
version: 1
provider: {name: P, timezone: Europe/Berlin}
tenants:
  - id: acme
    webhook: {url: "https://hooks.example/x", secret: "${UNSET_WEBHOOK_SECRET}"}
windows: [{id: w, start: not-a-time, policy: nope}]
"""


def write(tmp_path: Path, daemon: str, rest: str = INVALID_REST) -> str:
    path = tmp_path / "windows.yaml"
    path.write_text(rest + daemon)
    return str(path)


@pytest.mark.parametrize(
    "daemon, env, url",
    [
        ("", {}, "http://127.0.0.1:8787"),
        ("daemon:\n  listen: 10.0.0.5:9000\n", {}, "http://10.0.0.5:9000"),
        ("daemon:\n  listen: 0.0.0.0:9000\n", {}, "http://127.0.0.1:9000"),
        ("daemon:\n  listen: ${HOST:-10.1.1.1}:9000\n", {}, "http://10.1.1.1:9000"),
        ("daemon:\n  listen: ${HOST}:9000\n", {"HOST": "10.2.2.2"}, "http://10.2.2.2:9000"),
        ("daemon:\n  listen: 10.0.0.5:9000\n", {"MAINTD_LISTEN": "10.9.9.9:1"}, "http://10.9.9.9:1"),
        ("daemon:\n", {}, "http://127.0.0.1:8787"),
        ("daemon:\n  database: ${UNSET_DB}\n  listen: 10.0.0.5:9000\n", {}, "http://10.0.0.5:9000"),
    ],
    ids=["default", "listen", "wildcard", "var_default", "var_set", "env_wins", "empty_daemon", "other_keys_ignored"],
)
def test_where_the_daemon_is_despite_the_rest_of_the_file(tmp_path, daemon, env, url) -> None:
    assert settings.load(write(tmp_path, daemon), explicit=True, env=env).url == url


@pytest.mark.parametrize(
    "daemon, message",
    [
        (
            "daemon:\n  listen: ${LISTEN}\n",
            '8:11: daemon.listen: environment variable "LISTEN" is not set '
            "(set it, or write ${LISTEN:-default} to give a default)",
        ),
        (
            "daemon:\n  listen: localhost\n",
            "8:11: daemon.listen: expected HOST:PORT such as 127.0.0.1:8787, got 'localhost'",
        ),
        ("daemon:\n  listen: [a, b]\n", "8:11: daemon.listen: expected a string"),
        ("daemon: 8787\n", "7:9: daemon: expected a mapping of settings such as listen: HOST:PORT"),
        ("daemon:\n  listen: 'a:1\n", "9:1: invalid YAML: found unexpected end of stream"),
        ("daemon:\n  listen: a:1\n  listen: b:2\n", "9:11: daemon.listen: duplicate key"),
        (
            "daemon:\n  token_file: ${TOKEN_DIR}/t\n",
            '8:15: daemon.token_file: environment variable "TOKEN_DIR" is not set',
        ),
    ],
    ids=[
        "unset_var",
        "not_host_port",
        "not_a_string",
        "not_a_mapping",
        "broken_yaml",
        "duplicate",
        "unset_in_token_file",
    ],
)
def test_what_cannot_be_read_is_an_error_at_its_place(tmp_path, daemon, message) -> None:
    path = write(tmp_path, daemon)
    with pytest.raises(SettingsError) as exc:
        settings.load(path, explicit=True, env={})
    assert exc.value.exit_code == 2
    assert exc.value.message.startswith(f"{path}:{message}"), exc.value.message


def test_deep_nesting_is_an_error_not_a_crash(tmp_path) -> None:
    path = write(tmp_path, "x: " + "[" * 200 + "]" * 200 + "\n", rest="")
    with pytest.raises(SettingsError, match=r":1:\d+: nested deeper than 64 levels"):
        settings.load(path, explicit=True, env={})


def test_a_missing_config_is_the_defaults_only_when_nobody_named_it(tmp_path) -> None:
    path = str(tmp_path / "windows.yaml")
    assert settings.load(path, explicit=False, env={}).url == "http://127.0.0.1:8787"
    with pytest.raises(SettingsError, match=r"windows\.yaml:1:1: no such file \(named by --config or MAINTD_CONFIG\)"):
        settings.load(path, explicit=True, env={})


FILES = "daemon:\n  token_file: admin\n  gate_token_file: gate\n"  # files under tmp_path
# (daemon section, environment, scope) -> the token sent
TOKENS = [
    ("", {"MAINTD_TOKEN": "A"}, "read", "A"),
    ("", {"MAINTD_TOKEN": "A", "MAINTD_READ_TOKEN": "R"}, "read", "R"),
    ("", {"MAINTD_TOKEN": "A", "MAINTD_READ_TOKEN": "R"}, "admin", "A"),
    ("", {"MAINTD_TOKEN": "A", "MAINTD_GATE_TOKEN": "G"}, "gate", "G"),
    ("", {"MAINTD_TOKEN": "A"}, "gate", "A"),
    ("", {"MAINTD_GATE_TOKEN": "G", "MAINTD_READ_TOKEN": "R"}, "admin", None),
    (FILES, {"MAINTD_TOKEN": ""}, "admin", "from-admin-file"),  # empty is unset: the config's file
    (FILES, {"MAINTD_TOKEN": "A"}, "admin", "A"),  # the environment wins over the file
    (FILES, {"MAINTD_TOKEN_FILE": "{tmp}/other"}, "admin", "from-other-file"),
    (FILES, {}, "gate", "from-gate-file"),
    (FILES, {}, "read", "from-admin-file"),  # no read token anywhere: admin
]


@pytest.mark.parametrize(
    "daemon, env, scope, token",
    TOKENS,
    ids=[
        "read_falls_back_to_admin",
        "read_token",
        "admin_token",
        "gate_token",
        "gate_falls_back_to_admin",
        "admin_never_another_scope",
        "empty_env_is_unset",
        "env_wins_over_file",
        "token_file_env",
        "gate_file_from_config",
        "read_falls_back_to_admin_file",
    ],
)
def test_which_token_each_scope_sends(tmp_path, daemon, env, scope, token) -> None:
    for name in ("admin", "gate", "other"):
        (tmp_path / name).write_text(f"from-{name}-file\n")
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    assert settings.load(write(tmp_path, daemon), explicit=True, env=env).token(scope) == token


def test_an_unreadable_token_file_is_an_error_naming_where_it_was_set(tmp_path) -> None:
    path = write(tmp_path, "daemon:\n  token_file: missing-token\n")
    s = settings.load(path, explicit=True, env={})
    with pytest.raises(SettingsError, match=rf"^{re.escape(path)}:8:15: cannot read the token file .*missing-token"):
        s.token("admin")
    assert "secret" not in repr(settings.load(path, explicit=True, env={"MAINTD_TOKEN": "secret"}))


@pytest.mark.parametrize(
    "seconds, text",
    [(8984, "2h30m"), (1800, "30m"), (5400, "1h30m"), (59, "59s"), (61, "2m"), (446400, "5d4h"), (0, "0s")],
    ids=["retry_after", "half_hour", "hour_and_half", "seconds", "minutes_round_up", "days", "zero"],
)
def test_durations_read_as_maintd_writes_them(seconds, text) -> None:
    assert human(seconds) == text


def test_tenant_lists_keep_ids_whole() -> None:
    assert tenants_text(["acme", "beta", "gamma"]) == "acme, beta, gamma"
    assert tenants_text(["acme-industries", "beta-logistics", "gamma"]) == "acme-industries +2"
    assert tenants_text([f"t{i:04d}" for i in range(500)]) == "t0000, t0001 +498"


# --------------------------------------------------------------------------- unix socket

STATUS = {
    "mode": "normal",
    "active": [],
    "next": [],
    "leases": {"running": 1, "draining": 0, "items": []},
    "notices": {"sent": 1, "pending": 0, "failed": 0},
    "config": {"path": "/etc/maintd/windows.yaml", "loaded_at": "2026-12-01T00:00:00Z", "error": None},
}


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_status_talks_over_the_unix_socket_without_a_token(tmp_path) -> None:
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps(STATUS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"

        def log_message(self, *args) -> None:
            pass

    sock = tmp_path / "maintd.sock"
    server = _UnixHTTPServer(str(sock), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the listen address has nothing behind it: only the socket can answer
        path = write(tmp_path, f"daemon:\n  listen: 127.0.0.1:{free_port()}\n  socket: maintd.sock\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
        env.update({"MAINTD_TOKEN": "admin-token-0123456789abcdef0123", "COLUMNS": "80"})
        argv = [*maintd_argv(), "--config", path]
        r = subprocess.run([*argv, "status", "--json"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and json.loads(r.stdout)["mode"] == "normal", r.stderr
        r = subprocess.run([*argv, "status"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "1 job running, 0 draining" in r.stdout, r.stderr
        assert seen == [("/v1/status", None), ("/v1/status", None)]  # the socket's permissions are the access control
        # --url wins over the socket: this one has nothing behind it
        r = subprocess.run(
            [*argv, "status", "--url", f"http://127.0.0.1:{free_port()}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 3 and "cannot reach maintd" in r.stderr
        assert len(seen) == 2
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- tokens on the wire

ADMIN, GATE, READ = "admin-" + "a" * 32, "gate-" + "g" * 32, "read-" + "r" * 32


def run_cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    e.update(env)
    return subprocess.run([*maintd_argv(), *args], env=e, cwd=cwd, capture_output=True, text=True, timeout=30)


def test_each_command_sends_its_scopes_token(httpserver, tmp_path) -> None:
    env = {"MAINTD_URL": httpserver.url_for(""), "MAINTD_TOKEN": ADMIN, "MAINTD_GATE_TOKEN": GATE}
    env["MAINTD_READ_TOKEN"] = READ
    bearer = {scope: {"Authorization": f"Bearer {token}"} for scope, token in (("a", ADMIN), ("g", GATE), ("r", READ))}
    httpserver.expect_request("/v1/notices", method="GET", headers=bearer["r"]).respond_with_json([])
    httpserver.expect_request("/v1/notices/retry", method="POST", headers=bearer["a"]).respond_with_json({"retried": 2})
    httpserver.expect_request("/v1/notices/ntc_1/retry", method="POST", headers=bearer["a"]).respond_with_json(
        {"retried": 0}
    )
    denied = {"admitted": False, "reason": "maintenance", "message": "paused", "retry_after": 8984}
    httpserver.expect_request("/v1/admissions", method="POST", headers=bearer["g"]).respond_with_json(denied, 423)
    assert run_cli("notices", env=env, cwd=tmp_path).stdout == "No notices.\n"
    r = run_cli("notices", "--retry", "--failed", env=env, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "2 deliveries back to pending\n"), r.stderr
    r = run_cli("notices", "--retry", "ntc_1", env=env, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "Error: no failed delivery to resend\n")
    r = run_cli("exec", "--tenant", "acme", "--kind", "backup", "--", "true", env=env, cwd=tmp_path)
    assert r.returncode == 75 and r.stderr.splitlines() == [
        "paused",
        "maintd exec: denied (maintenance); retry in 2h30m",
    ]
    httpserver.check_assertions()


# --------------------------------------------------------------------------- status at 80 columns


def test_a_busy_status_fits_80_columns(monkeypatch, capsys) -> None:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from scheduler.status_view import render_status

    monkeypatch.setenv("COLUMNS", "80")
    now = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)

    def occ(window: str, start: datetime, hours: int, tenants: list[str]) -> dict:
        z = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        return {
            "window": window,
            "occurrence": z(start),
            "start": z(start),
            "end": z(start + timedelta(hours=hours)),
            "tenants": tenants,
            "title": "A title long enough to be cut at eighty columns, surely",
        }

    weekly = [
        occ(
            "weekly-patching-all-hosts",
            datetime(2026, 12, 12, 1, 30, tzinfo=UTC) + timedelta(days=7 * i),
            3,
            [f"tenant-{i:03d}" for i in range(40)],
        )
        for i in range(5)
    ]
    st = {
        "mode": "draining",
        "active": [
            occ("storage-firmware-upgrade-frankfurt", datetime(2026, 12, 5, 21, tzinfo=UTC), 4, ["acme-industries"])
        ],
        "next": weekly,
        "leases": {
            "running": 1,
            "draining": 1,
            "items": [
                {
                    "id": "lse_pub_1234",
                    "tenant": "acme-industries",
                    "kind": "backup",
                    "drain": True,
                    "deadline": "2026-12-05T21:10:00Z",
                    "overrun": True,
                }
            ],
        },
        "notices": {"sent": 12, "pending": 1, "failed": 2},
        "hooks": {"pending": 0, "failed": 1},
        "config": {
            "path": "/etc/maintd/windows.yaml",
            "loaded_at": "2026-12-05T20:00:00Z",
            "reloaded_at": "2026-12-05T21:00:00Z",
            "error": "/etc/maintd/windows.yaml:12:9: " + "x" * 120,
        },
        "faults": [
            {
                "what": "hook:storage-firmware-upgrade-frankfurt:start",
                "message": "exit 1; gave up",
                "since": "2026-12-05T21:00:00Z",
            }
        ],
    }
    render_status(st, now, ZoneInfo("Europe/Berlin"))
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert re.search(r"^storage-firmware-upgrade-frankfurt +Sun 06 02:00 +3h30m +acme-industries", out, re.M), out
    (row,) = [line for line in out.splitlines() if line.startswith("weekly-patching-all-hosts")]
    assert re.search(r"every Sat 02:30 +6d4h +3h +tenant-000 \+39 +A title", row), row
    assert "1 job running, 1 draining" in out and "OVERRUN" in out
    assert "draining lse_pub_1234 acme-industries/backup deadline Sat 05 22:10" in out
    assert "last reload failed (Sat 05 22:00)" in out and "hooks: 0 pending, 1 failed" in out
    assert "fault hook:storage-firmware-upgrade-frankfurt:start: exit 1; gave up" in out.replace("\n", " ")
