"""Secrets never echoed: no validation message shows a secret field's value or a value from ${VAR}."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scheduler import config
from scheduler.errors import ConfigError

# 10 lines; what a case adds under `notifiers:` starts on line 11, its keys in column 3.
BASE = """\
version: 1
provider:
  name: Example Cloud
tenants:
  - id: acme
windows:
  - id: w
    start: 2027-01-01T00:00
    duration: 1h
notifiers:
"""


def N(body: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


def T(tenant_lines: str) -> str:
    """BASE with acme's keys replaced: the tenant's extra keys start on line 6, column 5."""
    extra = textwrap.indent(textwrap.dedent(tenant_lines).lstrip("\n"), "    ")
    return BASE.replace("  - id: acme\n", "  - id: acme\n" + extra) + "  templates: t\n"


def errors(tmp_path: Path, text: str, env: dict) -> list[str]:
    (tmp_path / "windows.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "windows.yaml"), env=env)
    return [str(i).removeprefix(str(tmp_path) + "/") for i in info.value.issues]


CASES = [
    (
        "smtp_password_number",
        N("""
        email: {host: 127.0.0.1, password: 12345}
        """),
        {},
        "12345",
        ["windows.yaml:11:38: password: input should be a valid string, got a number (not shown: a secret)"],
    ),
    (
        "smtp_password_list",
        N("""
        email:
          host: 127.0.0.1
          password: [hunter2, swordfish]
        """),
        {},
        "hunter2",
        ["windows.yaml:13:15: password: input should be a valid string, got a list (not shown: a secret)"],
    ),
    (
        "smtp_password_mapping_from_env",
        N("""
        email:
          host: 127.0.0.1
          password: {value: "${SMTP_PASSWORD}"}
        """),
        {"SMTP_PASSWORD": "correct-horse-battery"},
        "correct-horse-battery",
        ["windows.yaml:13:15: password: input should be a valid string, got a mapping (not shown: a secret)"],
    ),
    (
        "webhook_secret_number",
        T("""
        webhook: {url: "https://hooks.example.com/x", secret: 98765}
        """),
        {},
        "98765",
        [
            "windows.yaml:6:59: invalid webhook secret; expected a Standard Webhooks secret: whsec_ followed by "
            "base64 of 24 to 64 random bytes"
        ],
    ),
    (
        "webhook_secret_from_env_too_short",
        T("""
        webhook: {url: "https://hooks.example.com/x", secret: "${HOOK_SECRET}"}
        """),
        {"HOOK_SECRET": "whsec_c2hvcnQ="},
        "c2hvcnQ",
        [
            "windows.yaml:6:59: invalid webhook secret; expected a Standard Webhooks secret: whsec_ followed by "
            "base64 of 24 to 64 random bytes"
        ],
    ),
    (
        "webhook_url_from_env",
        T("""
        webhook: {url: "${HOOK_URL}", secret: whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0}
        """),
        {"HOOK_URL": "ftp://tok_live_abc@hooks.example.com/x"},
        "tok_live_abc",
        [
            "windows.yaml:6:20: url: invalid value (not shown: it comes from the environment); "
            "expected http(s)://host/path"
        ],
    ),
    (
        "smtp_port_from_env",
        N("""
        email: {host: 127.0.0.1, port: "${SMTP_PORT}"}
        """),
        {"SMTP_PORT": "s3cr3t-port"},
        "s3cr3t-port",
        [
            "windows.yaml:11:34: port: input should be a valid integer, unable to parse string as an integer, "
            "got text (not shown: it comes from the environment)"
        ],
    ),
    (
        "smtp_timeout_from_env",
        N("""
        email: {host: 127.0.0.1, timeout: "${SMTP_TIMEOUT}"}
        """),
        {"SMTP_TIMEOUT": "hunter2"},
        "hunter2",
        [
            "windows.yaml:11:37: expected a duration like 30s, 10m, 4h, 7d or 1h30m, "
            "got text (not shown: it comes from the environment)"
        ],
    ),
    (
        "tenant_named_from_env",
        BASE.replace("    duration: 1h\n", '    duration: 1h\n    tenants: ["${WHO}"]\n') + "  templates: t\n",
        {"WHO": "internal-customer-x"},
        "internal-customer-x",
        ['windows.yaml:10:15: unknown tenant (not shown: it comes from the environment) in window "w"'],
    ),
]


@pytest.mark.parametrize(("text", "env", "secret", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_secret_never_appears_in_a_message(tmp_path, text, env, secret, expected):
    got = errors(tmp_path, text, env)
    assert got == expected
    assert not any(secret in line for line in got)


def test_a_plain_value_is_still_shown(tmp_path):
    # the same mistake as smtp_timeout_from_env, written in the file: shown, it is no secret
    text = N("""
    email: {host: 127.0.0.1, timeout: hunter2}
    """)
    assert errors(tmp_path, text, {}) == [
        "windows.yaml:11:37: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got 'hunter2'"
    ]
