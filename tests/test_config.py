"""config.load: windows.yaml -> model, and every way a file can be wrong.

Tables of named cases: YAML in, the exact ``FILE:LINE:COL: message`` lines out (all of
them, in file order). Each test runs in its own directory with the file named
``windows.yaml``, so the expected strings are literal. Line and column are 1-based and
point at the value that is wrong (or at the key, when the key itself is the problem).
"""

from __future__ import annotations

import base64
import os
import shutil
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler import config
from scheduler.errors import ConfigError
from scheduler.model import DENY_ALL, UTC

EXAMPLE = Path(__file__).resolve().parent.parent / "windows.yaml"

# 12 lines; the first window of a case is on line 13, its keys in column 5 and the
# value of `key: ` in column 5 + len(key) + 2.
BASE = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
tenants:
  - id: acme
    labels: {tier: gold, region: eu}
  - id: beta
    labels: {tier: silver, region: eu}
policies:
  standard: {default: deny}
windows:
"""


def W(body: str) -> str:
    """BASE plus windows written flush left in the test (indented here under `windows:`)."""
    return BASE + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


def F(text: str) -> str:
    """A whole file, written indented in the test."""
    return textwrap.dedent(text).lstrip("\n")


def secret(nbytes: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(1, nbytes + 1))).decode()


def load(tmp_path: Path, text: str | bytes, env: dict | None = None, name: str = "windows.yaml"):
    data = text.encode() if isinstance(text, str) else text
    (tmp_path / name).write_bytes(data)
    return config.load(name, env=env or {})


def errors(tmp_path: Path, text: str | bytes, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return [str(i) for i in info.value.issues]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------
# one error per case

ERRORS = [
    (
        "undefined_policy",
        W("""
        - id: w
          start: 2027-01-01T00:00
          duration: 1h
          policy: x
        """),
        ['windows.yaml:16:13: undefined policy "x" used in window "w"'],
    ),
    (
        "undefined_provider_policy",
        F("""
        version: 1
        provider: {name: P, policy: nope}
        """),
        ['windows.yaml:2:29: undefined policy "nope" used in provider'],
    ),
    (
        "unknown_tenant_in_list",
        W("""
        - id: w
          start: 2027-01-01T00:00
          duration: 1h
          tenants: [acme, zed]
        """),
        ['windows.yaml:16:21: unknown tenant "zed" in window "w"'],
    ),
    (
        "unknown_tenant_as_single_id",
        W("""
        - id: w
          start: 2027-01-01T00:00
          duration: 1h
          tenants: zed
        """),
        ['windows.yaml:16:14: unknown tenant "zed" in window "w"'],
    ),
    (
        "duplicate_window_id",
        W("""
        - id: w
          start: 2027-01-01T00:00
          duration: 1h
        - id: w
          start: 2027-01-02T00:00
          duration: 1h
        """),
        ['windows.yaml:16:9: duplicate window id "w" (first defined at line 13)'],
    ),
    (
        "duplicate_tenant_id",
        F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
          - id: beta
          - id: acme
        """),
        ['windows.yaml:6:9: duplicate tenant id "acme" (first defined at line 4)'],
    ),
    (
        "end_before_start",
        W("""
        - id: w
          start: 2027-01-01T02:00
          end: 2027-01-01T01:00
        """),
        [
            'windows.yaml:15:10: end 2027-01-01T01:00 is before start 2027-01-01T02:00 in window "w"; '
            "expected an end after the start"
        ],
    ),
    (
        "end_equal_to_start",
        W("""
        - id: w
          start: 2027-01-01T02:00
          end: 2027-01-01T02:00
        """),
        [
            'windows.yaml:15:10: end 2027-01-01T02:00 equals start 2027-01-01T02:00 in window "w"; '
            "expected an end after the start"
        ],
    ),
    (
        "end_before_start_across_offsets",
        W("""
        - id: w
          start: 2027-01-01T02:00+01:00
          end: 2027-01-01T00:30Z
        """),
        [
            'windows.yaml:15:10: end 2027-01-01T00:30Z is before start 2027-01-01T02:00+01:00 in window "w"; '
            "expected an end after the start"
        ],
    ),
    (
        "both_end_and_duration",
        W("""
        - id: w
          start: 2027-01-01T02:00
          end: 2027-01-01T03:00
          duration: 1h
        """),
        ['windows.yaml:16:5: window "w" has both end and duration; give one'],
    ),
    (
        "neither_end_nor_duration",
        W("""
        - id: w
          start: 2027-01-01T02:00
        """),
        ['windows.yaml:13:5: window "w" needs end or duration'],
    ),
    (
        "neither_start_nor_cron",
        W("""
        - id: w
          duration: 1h
        """),
        ['windows.yaml:13:5: window "w" needs start (one-off) or cron (recurring)'],
    ),
    (
        "cron_with_start",
        W("""
        - id: w
          cron: "0 1 * * *"
          start: 2027-01-01T02:00
          duration: 1h
        """),
        ['windows.yaml:15:5: window "w" is recurring (cron); it takes duration, not start'],
    ),
    (
        "cron_with_end",
        W("""
        - id: w
          cron: "0 1 * * *"
          duration: 1h
          end: 2027-01-01T02:00
        """),
        ['windows.yaml:16:5: window "w" is recurring (cron); it takes duration, not end'],
    ),
    (
        "recurring_without_duration",
        W("""
        - id: w
          cron: "0 1 * * *"
        """),
        ['windows.yaml:13:5: missing required key "duration" in recurring window "w"'],
    ),
    (
        "invalid_cron_field",
        W("""
        - id: w
          cron: "0 25 * * *"
          duration: 1h
        """),
        [
            'windows.yaml:14:11: invalid cron expression "0 25 * * *": hour "25" is not valid '
            '(allowed: 0-23); expected 5 fields "minute hour day month weekday"'
        ],
    ),
    (
        "invalid_cron_shape",
        W("""
        - id: w
          cron: "every tuesday"
          duration: 1h
        """),
        [
            'windows.yaml:14:11: invalid cron expression "every tuesday": 2 fields; '
            'expected 5 fields "minute hour day month weekday"'
        ],
    ),
    (
        "unknown_timezone",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          timezone: Europe/Gotham
        """),
        ['windows.yaml:16:15: unknown time zone "Europe/Gotham"; expected an IANA name such as Europe/Berlin or UTC'],
    ),
    (
        "local_timezone",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          timezone: local
        """),
        ['windows.yaml:16:15: "local" depends on the machine; write an IANA zone such as Europe/Berlin or UTC'],
    ),
    (
        "unknown_provider_timezone",
        F("""
        version: 1
        provider:
          name: P
          timezone: CEST
        """),
        ['windows.yaml:4:13: unknown time zone "CEST"; expected an IANA name such as Europe/Berlin or UTC'],
    ),
    (
        "bad_duration",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1hour
        """),
        ["windows.yaml:15:15: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got '1hour'"],
    ),
    (
        "bad_duration_units_order",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 30m1h
        """),
        ["windows.yaml:15:15: duration '30m1h': write units from largest to smallest (e.g. 1h30m)"],
    ),
    (
        "bad_notify_lead",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          notify: [24h, soon]
        """),
        ["windows.yaml:16:19: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got 'soon'"],
    ),
    (
        "bad_time",
        W("""
        - id: w
          start: 2027-13-01T02:00
          duration: 1h
        """),
        [
            "windows.yaml:14:12: expected a time like 2026-12-05T22:00 (local) or 2026-12-05T21:00Z, "
            "got '2027-13-01T02:00'"
        ],
    ),
    (
        "bad_time_words",
        W("""
        - id: w
          start: next friday
          duration: 1h
        """),
        ["windows.yaml:14:12: expected a time like 2026-12-05T22:00 (local) or 2026-12-05T21:00Z, got 'next friday'"],
    ),
    (
        "unknown_key_in_window",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          colour: red
        """),
        [
            'windows.yaml:16:5: unknown key "colour" in window "w" (expected one of: id, title, start, end, '
            "duration, cron, timezone, tenants, resources, notify, policy, drain, message, cancelled, "
            "hooks, skip, end_check, waves, defer, override_freeze, blackouts, integrations)"
        ],
    ),
    (
        "unknown_top_level_key",
        F("""
        version: 1
        provider: {name: P}
        windowz: []
        """),
        [
            'windows.yaml:3:1: unknown key "windowz" (expected one of: version, provider, tenants, '
            "tenants_file, notifiers, policies, windows, daemon, hooks, freezes, integrations)"
        ],
    ),
    (
        "unknown_key_in_provider",
        F("""
        version: 1
        provider:
          name: P
          zone: UTC
        """),
        [
            'windows.yaml:4:3: unknown key "zone" in provider (expected one of: name, timezone, message, policy, redundant, ops, integrations)'
        ],
    ),
    (
        "missing_window_id",
        W("""
        - title: w
          start: 2027-01-01T02:00
          duration: 1h
        """),
        ['windows.yaml:13:5: missing required key "id" in window 1'],
    ),
    (
        "missing_provider",
        F("""
        version: 1
        windows: []
        """),
        ['windows.yaml:1:1: missing required key "provider"'],
    ),
    (
        "missing_provider_name",
        F("""
        version: 1
        provider:
          timezone: UTC
        """),
        ['windows.yaml:3:3: missing required key "name" in provider'],
    ),
    (
        "version_2",
        F("""
        version: 2
        provider: {name: P}
        """),
        ["windows.yaml:1:10: unsupported version 2; expected version: 1"],
    ),
    (
        "version_as_text",
        F("""
        version: "1"
        provider: {name: P}
        """),
        ["windows.yaml:1:10: unsupported version '1'; expected version: 1"],
    ),
    (
        "bad_tenant_id",
        F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: ACME Corp
        """),
        [
            'windows.yaml:4:9: invalid tenant id "ACME Corp"; expected lowercase letters, digits, "-" and '
            '"_", starting with a letter or digit (e.g. acme-eu)'
        ],
    ),
    (
        "bad_window_id",
        W("""
        - id: -w
          start: 2027-01-01T02:00
          duration: 1h
        """),
        [
            'windows.yaml:13:9: invalid window id "-w"; expected letters, digits, ".", "-" and "_", starting '
            "with a letter or digit (e.g. storage-firmware)"
        ],
    ),
    (
        "invalid_email",
        F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            email: [ops@acme.example, ops-at-acme]
        """),
        ['windows.yaml:5:31: invalid email address "ops-at-acme"; expected something like ops@example.com'],
    ),
    (
        "invalid_webhook_url",
        F(f"""
        version: 1
        provider: {{name: P}}
        tenants:
          - id: acme
            webhook:
              url: hooks.acme.example/maintd
              secret: {secret(32)}
        """),
        ['windows.yaml:6:12: invalid URL "hooks.acme.example/maintd"; expected http(s)://host/path'],
    ),
    (
        "webhook_without_secret",
        F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            webhook: {url: "https://hooks.acme.example/"}
        """),
        ['windows.yaml:5:14: missing required key "secret" in tenant "acme".webhook'],
    ),
    (
        "hooks_as_shell_string",
        F("""
        version: 1
        provider: {name: P}
        hooks:
          on_start: pwsh -Command Enable-VBRCloudMaintenanceMode
        """),
        [
            'windows.yaml:4:13: expected an argv list such as [pwsh, -NoProfile, -Command, "..."]; '
            "hooks never run a shell string"
        ],
    ),
    (
        "window_hooks_as_shell_string",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          hooks: {on_end: "systemctl start backups"}
        """),
        [
            'windows.yaml:16:21: expected an argv list such as [pwsh, -NoProfile, -Command, "..."]; '
            "hooks never run a shell string"
        ],
    ),
    (
        "hook_argv_with_a_yaml_boolean",
        F("""
        version: 1
        provider: {name: P}
        hooks:
          on_start: [true]
        """),
        ['windows.yaml:4:13: an argv item reads as a YAML boolean; quote it ("true") to run a command of that name'],
    ),
    (
        "end_check_with_run_and_url",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          end_check: {run: ["true"], url: "https://health.example/ok"}
        """),
        ['windows.yaml:16:16: end_check of window "w" needs exactly one of run or url'],
    ),
    (
        "end_check_with_neither",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          end_check: {every: 5m, max: 1h}
        """),
        ['windows.yaml:16:16: end_check of window "w" needs exactly one of run or url'],
    ),
    (
        "unknown_placeholder_in_window_message",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          message: "Down until {ende}."
        """),
        [
            'windows.yaml:16:14: unknown placeholder "{ende}" in message; expected one of {provider}, '
            "{title}, {start}, {end}, {window}, {tenant}"
        ],
    ),
    (
        "unknown_placeholder_in_folded_provider_message",
        F("""
        version: 1
        provider:
          name: P
          message: >-
            {provider} is down
            until {finish}.
        """),
        [
            'windows.yaml:4:12: unknown placeholder "{finish}" in message; expected one of {provider}, '
            "{title}, {start}, {end}, {window}, {tenant}"
        ],
    ),
    (
        "unknown_placeholder_in_rule_message",
        F("""
        version: 1
        provider: {name: P}
        policies:
          standard:
            rules:
              - deny: {kind: [backup]}
                message: "Paused until {until}"
        """),
        [
            'windows.yaml:7:18: unknown placeholder "{until}" in message; expected one of {provider}, '
            "{title}, {start}, {end}, {window}, {tenant}"
        ],
    ),
    (
        "skip_on_one_off",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          skip: [2027-01-01]
        """),
        ['windows.yaml:16:5: skip applies only to recurring windows (cron); window "w" is one-off'],
    ),
    (
        "bad_skip_date",
        W("""
        - id: w
          cron: "0 2 * * *"
          duration: 1h
          skip: [christmas]
        """),
        ["windows.yaml:16:12: expected a local date like 2026-12-24, got 'christmas'"],
    ),
    (
        "rule_with_allow_and_deny",
        F("""
        version: 1
        provider: {name: P}
        policies:
          standard:
            rules:
              - {allow: {kind: [restore]}, deny: {kind: [backup]}}
        """),
        ['windows.yaml:6:9: rule 1 of policy "standard" needs exactly one of allow or deny'],
    ),
    (
        "tenants_and_tenants_file",
        F("""
        version: 1
        provider: {name: P}
        tenants: []
        tenants_file: tenants.yaml
        """),
        ["windows.yaml:4:1: give either tenants or tenants_file, not both"],
    ),
    (
        "bad_tenant_selector",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          tenants: {tier: gold}
        """),
        ["windows.yaml:16:14: expected all, a list of tenant ids, or {labels: {key: value}}"],
    ),
    (
        "bad_drain_then",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          drain: {grace: 10m, then: kill}
        """),
        ["windows.yaml:16:31: then: input should be 'stop' or 'keep', got 'kill'"],
    ),
    (
        "duplicate_key",
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          duration: 2h
        """),
        ['windows.yaml:16:5: duplicate key "duration" (first at line 15)'],
    ),
    (
        "merge_key",
        F("""
        version: 1
        provider: {name: P}
        base: &b {default: deny}
        policies:
          standard:
            <<: *b
        """),
        [
            'windows.yaml:3:1: unknown key "base" (expected one of: version, provider, tenants, tenants_file, '
            "notifiers, policies, windows, daemon, hooks, freezes, integrations)",
            "windows.yaml:6:5: merge keys (<<) are not supported; write the keys out",
        ],
    ),
    (
        "listen_without_port",
        F("""
        version: 1
        provider: {name: P}
        daemon: {listen: localhost}
        """),
        ["windows.yaml:3:18: expected HOST:PORT such as 127.0.0.1:8787, got 'localhost'"],
    ),
    (
        "top_level_list",
        "- version: 1\n",
        ["windows.yaml:1:1: expected a mapping at the top level (version: 1, provider: ..., windows: ...)"],
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_error(tmp_path, text, expected):
    assert errors(tmp_path, text) == expected


def test_case_names_are_unique():
    names = [c[0] for c in ERRORS]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------
# webhook secrets: Standard Webhooks, and never echoed

BAD_SECRETS = [
    ("no_whsec_prefix", base64.b64encode(bytes(32)).decode()),
    ("wrong_prefix", "whsk_" + base64.b64encode(bytes(range(32))).decode()),
    ("not_base64", "whsec_this-is-not*base64!"),
    ("too_short_16_bytes", secret(16)),
    ("too_short_23_bytes", secret(23)),
    ("too_long_65_bytes", secret(65)),
    ("empty_after_prefix", "whsec_"),
]


def _tenant_with_secret(value: str) -> str:
    return F(f"""
        version: 1
        provider: {{name: P}}
        tenants:
          - id: acme
            webhook:
              url: https://hooks.acme.example/maintd
              secret: "{value}"
        """)


@pytest.mark.parametrize("value", [c[1] for c in BAD_SECRETS], ids=[c[0] for c in BAD_SECRETS])
def test_invalid_webhook_secret(tmp_path, value):
    got = errors(tmp_path, _tenant_with_secret(value))
    assert got == [
        "windows.yaml:7:15: invalid webhook secret; expected a Standard Webhooks secret: whsec_ "
        "followed by base64 of 24 to 64 random bytes"
    ]
    body = value[len("whsec_") :] if value.startswith("whsec_") else value
    if body:
        assert body not in got[0]


def test_secret_from_environment_is_not_echoed_either(tmp_path):
    leaked = "whsec_" + base64.b64encode(b"k" * 10).decode()
    got = errors(tmp_path, _tenant_with_secret("${HOOK_SECRET}"), env={"HOOK_SECRET": leaked})
    assert got == [
        "windows.yaml:7:15: invalid webhook secret; expected a Standard Webhooks secret: whsec_ "
        "followed by base64 of 24 to 64 random bytes"
    ]
    assert leaked[6:] not in got[0]


@pytest.mark.parametrize("nbytes", [24, 32, 64], ids=["24_bytes", "32_bytes", "64_bytes"])
def test_valid_webhook_secret(tmp_path, nbytes):
    cfg = load(tmp_path, _tenant_with_secret(secret(nbytes)))
    assert cfg.tenants["acme"].webhook.secret == secret(nbytes)


# ---------------------------------------------------------------------------
# ${VAR}: values only, at the line that uses it

ENV_CASES = [
    # id, value as written, env, expected title (or the error)
    ("set", "${TITLE}", {"TITLE": "Patch day"}, "Patch day"),
    ("inside_text", "Patch ${WHAT} now", {"WHAT": "hosts"}, "Patch hosts now"),
    ("default_used", "${TITLE:-Patch day}", {}, "Patch day"),
    ("default_ignored_when_set", "${TITLE:-Patch day}", {"TITLE": "Firmware"}, "Firmware"),
    ("default_used_when_empty", "${TITLE:-Patch day}", {"TITLE": ""}, "Patch day"),
    ("empty_default", "x${TITLE:-}y", {}, "xy"),
    ("dollar_escape", "costs $$5", {}, "costs $5"),
    ("escaped_reference", "$${TITLE}", {}, "${TITLE}"),
    ("lone_dollar", "5$ fee", {}, "5$ fee"),
    (
        "unset",
        "${TITLE}",
        {},
        'windows.yaml:15:12: environment variable "TITLE" is not set (set it, or write '
        "${TITLE:-default} to give a default)",
    ),
    (
        "unset_inside_text",
        "Patch ${WHAT} now",
        {},
        'windows.yaml:15:12: environment variable "WHAT" is not set '
        "(set it, or write ${WHAT:-default} to give a default)",
    ),
]


@pytest.mark.parametrize("written, env, expected", [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_environment_variables(tmp_path, written, env, expected):
    text = W(f"""
        - id: w
          start: 2027-01-01T02:00
          title: "{written}"
          duration: 1h
        """)
    if expected.startswith("windows.yaml:"):
        assert errors(tmp_path, text, env) == [expected]
    else:
        assert load(tmp_path, text, env).windows[0].title == expected


def test_variables_in_comments_and_keys_are_not_expanded(tmp_path):
    text = F("""
        # ${NOT_SET} in a comment is just text
        version: 1
        provider:
          name: P   # and ${NOT_SET_EITHER} here
        """)
    assert load(tmp_path, text).provider.name == "P"
    text = F("""
        version: 1
        provider: {name: P}
        ${KEY}: 1
        """)
    assert errors(tmp_path, text, env={"KEY": "windows"}) == [
        'windows.yaml:3:1: unknown key "${KEY}" (expected one of: version, provider, tenants, tenants_file, '
        "notifiers, policies, windows, daemon, hooks, freezes, integrations)"
    ]


def test_unset_variable_is_one_error_not_two(tmp_path):
    # The empty string it leaves would also be an invalid secret: only the cause is reported.
    assert errors(tmp_path, _tenant_with_secret("${ACME_WEBHOOK_SECRET}")) == [
        'windows.yaml:7:15: environment variable "ACME_WEBHOOK_SECRET" is not set (set it, or write '
        "${ACME_WEBHOOK_SECRET:-default} to give a default)"
    ]


def test_secret_from_environment(tmp_path):
    cfg = load(tmp_path, _tenant_with_secret("${ACME_WEBHOOK_SECRET}"), env={"ACME_WEBHOOK_SECRET": secret(24)})
    assert cfg.tenants["acme"].webhook.secret == secret(24)


# ---------------------------------------------------------------------------
# tenants_file


TENANTS_FILE_MAIN = F("""
    version: 1
    provider: {name: P}
    tenants_file: tenants.yaml
    windows:
      - id: w
        start: 2027-01-01T02:00
        duration: 1h
        tenants: [good, also-good, missing]
    """)


def test_tenants_file_errors_name_that_file(tmp_path):
    (tmp_path / "tenants.yaml").write_text(
        F("""
        tenants:
          - id: good
          - id: Bad
          - id: also-good
            email: [nobody]
          - id: also-good
        """)
    )
    assert errors(tmp_path, TENANTS_FILE_MAIN) == [
        # the main file's problems first, then the tenants file's, each top to bottom
        'windows.yaml:8:32: unknown tenant "missing" in window "w"',
        'tenants.yaml:3:9: invalid tenant id "Bad"; expected lowercase letters, digits, "-" and "_", starting '
        "with a letter or digit (e.g. acme-eu)",
        'tenants.yaml:5:13: invalid email address "nobody"; expected something like ops@example.com',
    ]


def test_tenants_file_duplicate_and_unknown_key(tmp_path):
    (tmp_path / "tenants.yaml").write_text(
        F("""
        tenants:
          - id: good
          - id: good
        owner: ops
        """)
    )
    assert errors(tmp_path, TENANTS_FILE_MAIN.replace("also-good, ", "")) == [
        'windows.yaml:8:21: unknown tenant "missing" in window "w"',
        'tenants.yaml:3:9: duplicate tenant id "good" (first defined at line 2)',
        'tenants.yaml:4:1: unknown key "owner" (expected one of: tenants)',
    ]


def test_tenants_file_syntax_error_names_that_file(tmp_path):
    (tmp_path / "tenants.yaml").write_text("tenants:\n  - id: [good\n")
    got = errors(tmp_path, TENANTS_FILE_MAIN)
    assert got == ["tenants.yaml:3:1: invalid YAML: did not find expected ',' or ']'"]


def test_tenants_file_without_tenants_list(tmp_path):
    (tmp_path / "tenants.yaml").write_text("- id: good\n")
    assert errors(tmp_path, TENANTS_FILE_MAIN) == ["tenants.yaml:1:1: expected a mapping with a tenants: list"]


def test_tenants_file_missing(tmp_path):
    got = errors(tmp_path, TENANTS_FILE_MAIN)
    assert got == [
        f'windows.yaml:3:15: tenants_file "tenants.yaml" does not exist (looked for '
        f"{tmp_path / 'tenants.yaml'}); expected a path relative to windows.yaml"
    ]


def test_tenants_file_resolves_relative_to_windows_yaml(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "tenants.yaml").write_text(
        F("""
        tenants:
          - id: good
            labels: {tier: gold}
          - id: also-good
        """)
    )
    (tmp_path / "etc" / "windows.yaml").write_text(TENANTS_FILE_MAIN.replace(", missing", ""))
    monkeypatch.chdir("/")
    cfg = config.load(str(tmp_path / "etc" / "windows.yaml"), env={})
    assert sorted(cfg.tenants) == ["also-good", "good"]
    assert cfg.windows[0].tenants == {"good", "also-good"}
    # ... and its errors carry the path it was found at
    (tmp_path / "etc" / "tenants.yaml").write_text("tenants:\n  - id: good\n  - id: also-good\n  - id: X\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "etc" / "windows.yaml"), env={})
    assert [str(i) for i in info.value.issues] == [
        f'{tmp_path / "etc" / "tenants.yaml"}:4:9: invalid tenant id "X"; expected lowercase letters, digits, '
        '"-" and "_", starting with a letter or digit (e.g. acme-eu)'
    ]


def test_tenants_file_variables(tmp_path):
    (tmp_path / "tenants.yaml").write_text(
        F("""
        tenants:
          - id: good
            webhook: {url: "https://h.example/", secret: "${GOOD_SECRET}"}
        """)
    )
    text = F("""
        version: 1
        provider: {name: P}
        tenants_file: tenants.yaml
        """)
    assert errors(tmp_path, text) == [
        'tenants.yaml:3:50: environment variable "GOOD_SECRET" is not set (set it, or write '
        "${GOOD_SECRET:-default} to give a default)"
    ]
    cfg = load(tmp_path, text, env={"GOOD_SECRET": secret(32)})
    assert cfg.tenants["good"].webhook.secret == secret(32)


# ---------------------------------------------------------------------------
# several errors, in file order


def test_all_errors_of_a_file_in_file_order(tmp_path):
    text = F("""
        version: 1
        provider:
          name: P
          timezone: Mars/Olympus
        tenants:
          - id: acme
            email: [nope]
        policies: {}
        windows:
          - id: a
            start: 2027-01-01T00:00
            duration: 1x
          - id: b
            cron: "x"
            duration: 1h
            policy: missing
          - id: a
            start: 2027-01-01T00:00
            duration: 1h
            tenants: [acme, ghost]
        """)
    assert errors(tmp_path, text) == [
        'windows.yaml:4:13: unknown time zone "Mars/Olympus"; expected an IANA name such as Europe/Berlin or UTC',
        'windows.yaml:7:13: invalid email address "nope"; expected something like ops@example.com',
        "windows.yaml:12:15: expected a duration like 30s, 10m, 4h, 7d or 1h30m, got '1x'",
        'windows.yaml:14:11: invalid cron expression "x": 1 field; expected 5 fields "minute hour day month weekday"',
        'windows.yaml:16:13: undefined policy "missing" used in window "b"',
        'windows.yaml:17:9: duplicate window id "a" (first defined at line 10)',
    ]


def test_an_invalid_tenant_is_not_also_unknown_to_windows(tmp_path):
    text = F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            email: [nope]
        windows:
          - id: w
            start: 2027-01-01T00:00
            duration: 1h
            tenants: [acme]
        """)
    assert errors(tmp_path, text) == [
        'windows.yaml:5:13: invalid email address "nope"; expected something like ops@example.com'
    ]


# ---------------------------------------------------------------------------
# files that are not windows.yaml at all: a clear ConfigError, never a traceback


def _bomb(levels: int = 9) -> str:
    lines = ["version: 1", "provider: {name: P}", "a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


UNREADABLE = [
    (
        "yaml_syntax",
        "version: 1\nprovider: {name: P\nwindows: []\n",
        "windows.yaml:3:8: invalid YAML: did not find expected ',' or '}'",
    ),
    (
        "bad_indentation",
        "version: 1\nprovider:\n  name: P\n timezone: UTC\n",
        "windows.yaml:4:2: invalid YAML: did not find expected key",
    ),
    (
        "tab_indentation",
        "version: 1\nprovider:\n\tname: P\n",
        "windows.yaml:3:1: invalid YAML: a tab character; YAML is indented with spaces",
    ),
    ("empty_file", "", "windows.yaml:1:1: the file is empty; expected a mapping with version: 1"),
    ("only_comments", "# nothing yet\n\n", "windows.yaml:1:1: the file is empty; expected a mapping with version: 1"),
    (
        "two_documents",
        "version: 1\nprovider: {name: P}\n---\nversion: 1\n",
        "windows.yaml:3:1: invalid YAML: expected a single document, found a second one (a --- line); put "
        "everything in one document",
    ),
    (
        "non_utf8",
        b"version: 1\nprovider:\n  name: Caf\xe9 Cloud\n",
        "windows.yaml:3:12: invalid UTF-8 byte 0xe9; expected a UTF-8 text file",
    ),
    (
        "control_character",
        'version: 1\nprovider: {name: "P\x07"}\n',
        "windows.yaml:2:20: invalid YAML: control character 0x07 is not allowed; expected printable text",
    ),
    (
        "alias_bomb",
        _bomb(),
        # a5's third *a4 (each expands to 66,430 values) is the one over the limit
        'windows.yaml:8:20: aliases expand to more than 250000 values at "*a4" (an alias bomb?); expected a '
        "plain config",
    ),
    (
        "recursive_alias",
        "version: 1\nprovider: {name: P}\nloop: &x [1, *x]\n",
        'windows.yaml:3:14: alias "*x" refers to the node that contains it; expected a plain config without '
        "recursive aliases",
    ),
    ("undefined_alias", "version: 1\nprovider: *p\n", 'windows.yaml:2:11: invalid YAML: undefined alias "*p"'),
    (
        "deep_nesting",
        "version: 1\nx: " + "[" * 100 + "]" * 100 + "\n",
        "windows.yaml:2:67: nested more than 64 levels deep; expected a plain config",
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in UNREADABLE], ids=[c[0] for c in UNREADABLE])
def test_unreadable(tmp_path, text, expected):
    assert errors(tmp_path, text) == [expected]


def test_very_deep_nesting_is_a_located_error_not_a_crash(tmp_path):
    # 100,000 levels: libyaml's composer used to segfault here. Depending on the PyYAML
    # build, libyaml's own depth limit (1000) or ours (64) answers first; either way it
    # is one clean error at the line that nests.
    found = errors(tmp_path, "version: 1\nx: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert len(found) == 1 and found[0].startswith("windows.yaml:2:"), found
    assert "nest" in found[0], found


def test_utf8_byte_order_mark_is_fine(tmp_path):
    assert load(tmp_path, b"\xef\xbb\xbfversion: 1\nprovider: {name: P}\n").provider.name == "P"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load("windows.yaml", env={})
    assert [str(i) for i in info.value.issues] == [
        "windows.yaml:1:1: no such file; expected a windows.yaml (give --config PATH or set MAINTD_CONFIG)"
    ]


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "windows.yaml").mkdir()
    with pytest.raises(ConfigError) as info:
        config.load("windows.yaml", env={})
    assert [str(i) for i in info.value.issues] == ["windows.yaml:1:1: is a directory; expected a YAML file"]


def test_a_file_over_64_mib(tmp_path):
    text = "version: 1\nprovider: {name: P}\n" + ("# padding " + "x" * 1000 + "\n") * 67_000
    assert len(text) > 64 * 1024 * 1024
    assert errors(tmp_path, text) == ["windows.yaml:1:1: file is 64.6 MiB; expected at most 64 MiB of YAML"]


def test_alias_bomb_is_refused_quickly(tmp_path):
    import time

    began = time.perf_counter()
    errors(tmp_path, _bomb(12))
    assert time.perf_counter() - began < 2


def test_small_aliases_still_work(tmp_path):
    text = F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            labels: &gold-eu {tier: gold, region: eu}
          - id: beta
            labels: *gold-eu
          - id: gamma
            labels: {tier: silver}
        windows:
          - id: w
            start: 2027-01-01T00:00
            duration: 1h
            tenants: {labels: *gold-eu}
        """)
    cfg = load(tmp_path, text)
    assert cfg.windows[0].tenants == {"acme", "beta"}
    assert dict(cfg.tenants["beta"].labels) == {"tier": "gold", "region": "eu"}


def test_errors_inside_an_alias_point_at_its_definition(tmp_path):
    text = F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            email: &mails [ops@acme.example, broken]
          - id: beta
            email: *mails
        """)
    # the same bad value reached twice reads as one error
    assert errors(tmp_path, text) == [
        'windows.yaml:5:38: invalid email address "broken"; expected something like ops@example.com'
    ]


# ---------------------------------------------------------------------------
# what a valid file means


def test_example_loads_with_an_empty_environment():
    cfg = config.load(str(EXAMPLE), env={})
    assert cfg.provider.name == "Example Cloud"
    assert sorted(cfg.tenants) == ["acme", "beta", "gamma"]
    assert [w.id for w in cfg.windows] == ["storage-firmware", "patch-tuesday", "cancelled-example"]
    assert cfg.warnings == ()
    firmware, patch, cancelled = cfg.windows
    assert firmware.start.isoformat() == "2026-12-05T21:00:00+00:00"
    assert firmware.end.isoformat() == "2026-12-06T01:00:00+00:00"
    assert patch.tenants == {"acme", "gamma"} and patch.skip == {datetime(2026, 12, 8).date()}
    assert cancelled.cancelled
    assert cfg.tenants["acme"].webhook.secret.startswith("whsec_")
    assert cfg.notifiers.email.password == ""


def _one_window(tmp_path, lines: str, provider_zone: str = "Europe/Berlin", env=None):
    text = F(f"""
        version: 1
        provider:
          name: P
          timezone: {provider_zone}
        tenants:
          - id: acme
            labels: {{tier: gold, region: eu}}
          - id: beta
            labels: {{tier: silver, region: eu}}
          - id: gamma
            labels: {{tier: gold, region: us}}
        policies:
          standard: {{default: deny}}
        windows:
          - id: w
        """) + textwrap.indent(textwrap.dedent(lines).lstrip("\n"), "    ")
    return load(tmp_path, text, env).windows[0]


TIMES = [
    # id, start as written, zone of the window, expected start (UTC)
    ("berlin_winter_local", "2027-01-15T22:00", "Europe/Berlin", "2027-01-15T21:00:00+00:00"),
    ("berlin_summer_local", "2027-07-15T22:00", "Europe/Berlin", "2027-07-15T20:00:00+00:00"),
    ("berlin_spring_gap", "2027-03-28T02:30", "Europe/Berlin", "2027-03-28T01:00:00+00:00"),
    ("berlin_fall_fold_first", "2027-10-31T02:30", "Europe/Berlin", "2027-10-31T00:30:00+00:00"),
    ("ny_spring_gap", "2027-03-14T02:15", "America/New_York", "2027-03-14T07:00:00+00:00"),
    ("ny_fall_fold_first", "2027-11-07T01:30", "America/New_York", "2027-11-07T05:30:00+00:00"),
    ("kolkata_half_hour_offset", "2027-01-15T22:00", "Asia/Kolkata", "2027-01-15T16:30:00+00:00"),
    ("z_taken_as_is", "2027-03-28T02:30Z", "Europe/Berlin", "2027-03-28T02:30:00+00:00"),
    ("offset_taken_as_is", "2027-03-28T02:30+05:30", "Europe/Berlin", "2027-03-27T21:00:00+00:00"),
    ("seconds", "2027-01-15T22:00:30", "UTC", "2027-01-15T22:00:30+00:00"),
]


@pytest.mark.parametrize("written, zone, expected", [c[1:] for c in TIMES], ids=[c[0] for c in TIMES])
def test_start_times(tmp_path, written, zone, expected):
    w = _one_window(
        tmp_path,
        f"""
        start: {written}
        duration: 1h
        timezone: {zone}
        """,
    )
    assert w.start.isoformat() == expected
    assert w.end == w.start + timedelta(hours=1)  # absolute time, even across a DST change


def test_end_is_local_too_and_duration_is_absolute(tmp_path):
    # The night the clocks go back in Berlin: 01:00 -> 05:00 local is five hours.
    w = _one_window(
        tmp_path,
        """
        start: 2027-10-31T01:00
        end: 2027-10-31T05:00
        """,
    )
    assert (w.start.isoformat(), w.end.isoformat()) == ("2027-10-30T23:00:00+00:00", "2027-10-31T04:00:00+00:00")
    w = _one_window(
        tmp_path,
        """
        start: 2027-10-31T01:00
        duration: 4h
        """,
    )
    assert w.end.astimezone(ZoneInfo("Europe/Berlin")).isoformat() == "2027-10-31T04:00:00+01:00"


def test_window_zone_defaults_to_the_providers(tmp_path):
    w = _one_window(
        tmp_path,
        """
        start: 2027-01-15T22:00
        duration: 1h
        """,
        provider_zone="America/New_York",
    )
    assert w.zone == ZoneInfo("America/New_York")
    assert w.start.isoformat() == "2027-01-16T03:00:00+00:00"


SELECTORS = [
    ("all_by_default", "", {"acme", "beta", "gamma"}),
    ("all", "tenants: all", {"acme", "beta", "gamma"}),
    ("list", "tenants: [acme, beta]", {"acme", "beta"}),
    ("single_id", "tenants: gamma", {"gamma"}),
    ("one_label", "tenants: {labels: {tier: gold}}", {"acme", "gamma"}),
    ("two_labels", "tenants: {labels: {tier: gold, region: eu}}", {"acme"}),
    ("empty_list", "tenants: []", set()),
]


@pytest.mark.parametrize("selector, expected", [c[1:] for c in SELECTORS], ids=[c[0] for c in SELECTORS])
def test_tenant_selectors(tmp_path, selector, expected):
    w = _one_window(
        tmp_path,
        f"""
        start: 2027-01-15T22:00
        duration: 1h
        {selector}
        """,
    )
    assert w.tenants == expected


def test_label_selector_matching_no_tenant_is_a_warning(tmp_path):
    text = W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
          tenants: {labels: {tier: bronze}}
        """)
    cfg = load(tmp_path, text)
    assert cfg.warnings == ('windows.yaml:16:14: warning: labels {tier: bronze} in window "w" match no tenant',)
    assert cfg.windows[0].tenants == frozenset()


def test_defaults(tmp_path):
    text = F("""
        version: 1
        provider:
          name: P
          timezone: Europe/Berlin
          policy: standard
        tenants:
          - id: acme
        policies:
          standard: {default: deny}
          open: {default: allow}
        windows:
          - id: bare
            start: 2027-01-15T22:00
            duration: 1h
          - id: own
            start: 2027-01-16T22:00
            duration: 1h
            policy: open
        """)
    cfg = load(tmp_path, text)
    bare, own = cfg.windows
    assert bare.title == "bare"
    assert bare.tenants == {"acme"}
    assert bare.zone == ZoneInfo("Europe/Berlin")
    assert bare.notify == ()
    assert bare.policy is None and cfg.policy_for(bare).name == "standard"
    assert cfg.policy_for(own).name == "open"
    assert bare.drain.grace == timedelta(minutes=10) and bare.drain.then == "stop"
    assert not bare.cancelled and not bare.recurring
    assert cfg.tenants["acme"].name == "acme" and cfg.tenants["acme"].zone == ZoneInfo("Europe/Berlin")
    assert cfg.provider.message == "{provider} is under scheduled maintenance until {end}."


def test_no_provider_policy_denies_everything(tmp_path):
    w_cfg = load(
        tmp_path,
        W("""
        - id: w
          start: 2027-01-01T02:00
          duration: 1h
        """),
    )
    assert w_cfg.policy_for(w_cfg.windows[0]) is DENY_ALL


def test_lead_labels_keep_the_users_spelling(tmp_path):
    w = _one_window(
        tmp_path,
        """
        start: 2027-01-15T22:00
        duration: 1h
        notify: [1h, 24h, 7d, 90m, 1d]
        """,
    )
    # longest first; "1d" is the same lead as "24h", written second: the first spelling wins
    assert w.notify == (timedelta(days=7), timedelta(hours=24), timedelta(minutes=90), timedelta(hours=1))
    assert [w.lead_label(lead) for lead in w.notify] == ["7d", "24h", "90m", "1h"]


def test_recurring_window(tmp_path):
    w = _one_window(
        tmp_path,
        """
        cron: "0 1 * * 2#2"
        duration: 3h
        skip: [2027-01-12]
        timezone: Europe/Berlin
        """,
    )
    assert w.recurring and w.cron == "0 1 * * 2#2" and w.duration == timedelta(hours=3)
    assert w.start is None and w.end is None
    assert w.skip == {datetime(2027, 1, 12).date()}


def test_numbers_and_booleans_are_typed(tmp_path):
    text = F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            labels: {rack: 12, weight: 1.5}
        notifiers:
          email: {host: smtp.example.com, port: 587, starttls: yes}
        """)
    cfg = load(tmp_path, text)
    assert cfg.notifiers.email.port == 587 and cfg.notifiers.email.starttls is True
    assert dict(cfg.tenants["acme"].labels) == {"rack": "12", "weight": "1.5"}


def test_boolean_label_value_asks_for_quotes(tmp_path):
    text = F("""
        version: 1
        provider: {name: P}
        tenants:
          - id: acme
            labels: {ssd: yes}
        """)
    assert errors(tmp_path, text) == [
        "windows.yaml:5:19: label value reads as a YAML boolean (yes/no/true/false/on/off); quote it to use it "
        'as text, e.g. "yes"'
    ]
    assert dict(load(tmp_path, text.replace("yes", '"yes"')).tenants["acme"].labels) == {"ssd": "yes"}


def test_parse_is_pure(tmp_path):
    # parse() takes the text and the environment; it never reads os.environ
    os.environ.pop("MAINTD_TEST_UNSET", None)
    text = 'version: 1\nprovider: {name: "${MAINTD_TEST_UNSET:-fallback}"}\n'
    assert config.parse(text, "x.yaml", env={}).provider.name == "fallback"
    assert config.parse(text, "x.yaml", env={"MAINTD_TEST_UNSET": "set"}).provider.name == "set"


def test_config_times_are_utc(tmp_path):
    cfg = config.load(str(EXAMPLE), env={})
    for w in cfg.windows:
        if w.start is not None:
            assert w.start.utcoffset() == timedelta(0) and w.start.tzinfo == UTC


def test_example_is_copied_and_still_valid(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "windows.yaml")
    assert config.load("windows.yaml", env={}).path == str(tmp_path / "windows.yaml")


# SPEC section 5: every key of the daemon block has an environment override.
DAEMON_YAML = "version: 1\nprovider: {name: P}\ndaemon: {listen: '127.0.0.1:9000', public_url: 'https://a.example'}\n"


@pytest.mark.parametrize(
    "env, key, value",
    [
        ({"MAINTD_LISTEN": "0.0.0.0:8888"}, "listen", "0.0.0.0:8888"),
        ({"MAINTD_DATABASE": "postgresql+psycopg://db/maintd"}, "database", "postgresql+psycopg://db/maintd"),
        ({"MAINTD_TOKEN_FILE": "/etc/maintd/token"}, "token_file", "/etc/maintd/token"),
        ({"MAINTD_PUBLIC_URL": "https://maint.example.com/"}, "public_url", "https://maint.example.com"),
        ({}, "listen", "127.0.0.1:9000"),
    ],
    ids=["listen", "database", "token_file", "public_url_trailing_slash", "file_value_without_env"],
)
def test_daemon_keys_have_env_overrides(tmp_path, env, key, value):
    path = tmp_path / "windows.yaml"
    path.write_text(DAEMON_YAML)
    assert getattr(config.load(str(path), env=env).daemon, key) == value


def test_a_bad_env_override_is_a_clear_error(tmp_path):
    path = tmp_path / "windows.yaml"
    path.write_text(DAEMON_YAML)
    with pytest.raises(ConfigError) as info:
        config.load(str(path), env={"MAINTD_LISTEN": "nonsense"})
    assert [str(i) for i in info.value.issues] == [
        "$MAINTD_LISTEN:1:1: MAINTD_LISTEN: expected HOST:PORT such as 127.0.0.1:8787, got 'nonsense'"
    ]


def test_email_addresses_without_an_email_notifier_are_a_warning(tmp_path):
    path = tmp_path / "windows.yaml"
    path.write_text(
        "version: 1\nprovider: {name: P}\ntenants:\n  - id: a\n    email: [x@y.example]\n"
        "  - id: b\n    email: [z@y.example]\n"
    )
    cfg = config.load(str(path), env={})
    assert cfg.warnings == (
        f'{path}:5:12: warning: 2 tenant(s) have email addresses (first: "a") but '
        "notifiers.email is not configured; no email will be sent",
    )
    path.write_text(path.read_text() + "notifiers: {email: {host: localhost}}\n")
    assert config.load(str(path), env={}).warnings == ()
