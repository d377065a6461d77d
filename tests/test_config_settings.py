"""notifiers.retry (SPEC 4.1), the old retry keys it replaces, and the scoped-token daemon settings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler import config
from scheduler.errors import ConfigError

S, M, H = (lambda n: timedelta(seconds=n)), (lambda n: timedelta(minutes=n)), (lambda n: timedelta(hours=n))

# 6 lines; a case's `notifiers:` body starts on line 7, its keys in column 3.
BASE = """\
version: 1
provider:
  name: Example Cloud
tenants:
  - id: acme
notifiers:
"""


def N(body: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


def load(tmp_path: Path, text: str, env: dict | None = None):
    (tmp_path / "windows.yaml").write_text(text)
    return config.load("windows.yaml", env=env or {})


def errors(tmp_path: Path, text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return [str(i) for i in info.value.issues]


DEFAULT_SCHEDULE = (S(5), M(5), M(30), H(2), H(5), H(10), H(10))
OLD = "deprecated; under notifiers write instead: retry: "

RETRY = [
    # name, notifiers body, schedule, max_age, (max_attempts, max_age, retry_base) as read by old code, warnings
    ("defaults", "templates: t\n", DEFAULT_SCHEDULE, H(72), (8, H(24), S(30)), []),
    (
        "retry_written",
        "retry: {schedule: [1m, 10m], max_age: 6h}\n",
        (M(1), M(10)),
        H(6),
        (3, H(6), M(1)),
        [],
    ),
    ("retry_schedule_only", "retry: {schedule: [30s]}\n", (S(30),), H(72), (2, H(72), S(30)), []),
    ("retry_no_retries", "retry: {schedule: []}\n", (), H(72), (1, H(72), S(30)), []),
    (
        "old_keys_all_three",
        "retry_base: 10s\nmax_attempts: 5\nmax_age: 2h\n",
        (S(10), S(20), S(40), S(80)),
        H(2),
        (5, H(2), S(10)),
        [
            "windows.yaml:7:3: warning: notifiers.max_attempts, notifiers.retry_base, notifiers.max_age are "
            + OLD
            + "{schedule: [10s, 20s, 40s, 1m20s], max_age: 2h}"
        ],
    ),
    (
        "old_max_attempts_only",
        "max_attempts: 3\n",
        (S(30), M(1)),
        H(24),
        (3, H(24), S(30)),
        ["windows.yaml:7:3: warning: notifiers.max_attempts is " + OLD + "{schedule: [30s, 1m], max_age: 1d}"],
    ),
    (
        "old_base_doubles_up_to_an_hour",
        "max_attempts: 6\nretry_base: 20m\n",
        (M(20), M(40), H(1), H(1), H(1)),
        H(24),
        (6, H(24), M(20)),
        [
            "windows.yaml:7:3: warning: notifiers.max_attempts, notifiers.retry_base are "
            + OLD
            + "{schedule: [20m, 40m, 1h, 1h, 1h], max_age: 1d}"
        ],
    ),
    (
        "old_single_try",
        "max_attempts: 1\n",
        (),
        H(24),
        (1, H(24), S(30)),
        ["windows.yaml:7:3: warning: notifiers.max_attempts is " + OLD + "{schedule: [], max_age: 1d}"],
    ),
    (
        "old_and_new_together",
        "retry: {schedule: [1m]}\nmax_age: 2h\n",
        (M(1),),
        H(72),
        (2, H(72), M(1)),
        ["windows.yaml:8:3: warning: notifiers.max_age is deprecated and ignored: notifiers.retry is set; remove it"],
    ),
]


@pytest.mark.parametrize(
    ("body", "schedule", "max_age", "legacy", "warnings"), [c[1:] for c in RETRY], ids=[c[0] for c in RETRY]
)
def test_retry_schedule(tmp_path, monkeypatch, body, schedule, max_age, legacy, warnings):
    monkeypatch.chdir(tmp_path)
    n = load(tmp_path, N(body)).notifiers
    assert n.retry.schedule == schedule and n.retry.max_age == max_age
    assert (n.max_attempts, n.max_age, n.retry_base) == legacy
    assert list(config.load("windows.yaml", env={}).warnings) == warnings


RETRY_BAD = [
    ("wait_zero", "retry: {schedule: [5s, 0s]}\n", "7:26: expected at least 1s, got 0s"),
    (
        "wait_not_a_duration",
        "retry: {schedule: [5s, 5x]}\n",
        "7:26: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got '5x'",
    ),
    ("schedule_not_a_list", "retry: {schedule: 5m}\n", "7:21: schedule: input should be a valid list, got '5m'"),
    (
        "max_age_not_a_duration",
        "retry:\n  max_age: soon\n",
        "8:14: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got 'soon'",
    ),
    (
        "unknown_key",
        "retry: {schedule: [5s], attempts: 3}\n",
        '7:27: unknown key "attempts" in notifiers.retry (expected one of: schedule, max_age)',
    ),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in RETRY_BAD], ids=[c[0] for c in RETRY_BAD])
def test_retry_errors(tmp_path, monkeypatch, body, expected):
    monkeypatch.chdir(tmp_path)
    assert errors(tmp_path, N(body)) == ["windows.yaml:" + expected]


def test_validate_prints_the_deprecation_to_stderr(tmp_path):
    (tmp_path / "windows.yaml").write_text(N("max_attempts: 3\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    proc = subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "validate", "--config", "windows.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "windows.yaml:7:3: warning: notifiers.max_attempts is " + OLD + "{schedule: [30s, 1m], max_age: 1d}"
    ]
    assert "warning" not in proc.stdout


# --- daemon settings for scoped tokens (SPEC section 3) ------------------------------------

DAEMON_BASE = BASE + "  templates: t\ndaemon:\n"  # a case's daemon body starts on line 9, keys in column 3
LONG_SOCKET = "/run/" + "m" * 103 + ".sock"  # 113 bytes

DAEMON = [
    ("defaults", "listen: 127.0.0.1:8787\n", {}, (None, None, None, False)),
    (
        "from_the_file",
        "gate_token_file: /etc/maintd/gate\nread_token_file: /etc/maintd/read\n"
        "socket: /run/maintd/api.sock\nshow_resources: true\n",
        {},
        ("/etc/maintd/gate", "/etc/maintd/read", "/run/maintd/api.sock", True),
    ),
    (
        "env_wins",
        "gate_token_file: /etc/maintd/gate\nshow_resources: true\n",
        {
            "MAINTD_GATE_TOKEN_FILE": "/run/secrets/gate",
            "MAINTD_READ_TOKEN_FILE": "/run/secrets/read",
            "MAINTD_SOCKET": "/run/maintd.sock",
            "MAINTD_SHOW_RESOURCES": "false",
        },
        ("/run/secrets/gate", "/run/secrets/read", "/run/maintd.sock", False),
    ),
    ("env_turns_resources_on", "listen: 127.0.0.1:8787\n", {"MAINTD_SHOW_RESOURCES": "true"}, (None, None, None, True)),
]


@pytest.mark.parametrize(("body", "env", "expected"), [c[1:] for c in DAEMON], ids=[c[0] for c in DAEMON])
def test_daemon_scoped_token_settings(tmp_path, monkeypatch, body, env, expected):
    monkeypatch.chdir(tmp_path)
    d = load(tmp_path, DAEMON_BASE + textwrap.indent(body, "  "), env).daemon
    assert (d.gate_token_file, d.read_token_file, d.socket, d.show_resources) == expected


DAEMON_BAD = [
    (
        "show_resources_not_a_boolean",
        "show_resources: maybe\n",
        {},
        "windows.yaml:9:19: show_resources: input should be a valid boolean, unable to interpret input, got 'maybe'",
    ),
    (
        "socket_path_too_long",
        f"socket: {LONG_SOCKET}\n",
        {},
        "windows.yaml:9:11: socket path is 113 bytes; a unix socket path has at most 107",
    ),
    (
        "socket_path_too_long_from_env",
        "listen: 127.0.0.1:8787\n",
        {"MAINTD_SOCKET": LONG_SOCKET},
        "$MAINTD_SOCKET:1:1: MAINTD_SOCKET: socket path is 113 bytes; a unix socket path has at most 107",
    ),
    (
        "show_resources_env_not_a_boolean",
        "listen: 127.0.0.1:8787\n",
        {"MAINTD_SHOW_RESOURCES": "perhaps"},
        "$MAINTD_SHOW_RESOURCES:1:1: MAINTD_SHOW_RESOURCES: Input should be a valid boolean, unable to interpret input",
    ),
]


@pytest.mark.parametrize(("body", "env", "expected"), [c[1:] for c in DAEMON_BAD], ids=[c[0] for c in DAEMON_BAD])
def test_daemon_scoped_token_settings_errors(tmp_path, monkeypatch, body, env, expected):
    monkeypatch.chdir(tmp_path)
    assert errors(tmp_path, DAEMON_BASE + textwrap.indent(body, "  "), env) == [expected]


def test_every_daemon_key_has_its_env_override():
    assert config.DAEMON_ENV == {
        "listen": "MAINTD_LISTEN",
        "database": "MAINTD_DATABASE",
        "token_file": "MAINTD_TOKEN_FILE",
        "public_url": "MAINTD_PUBLIC_URL",
        "gate_token_file": "MAINTD_GATE_TOKEN_FILE",
        "read_token_file": "MAINTD_READ_TOKEN_FILE",
        "socket": "MAINTD_SOCKET",
        "show_resources": "MAINTD_SHOW_RESOURCES",
    }
