"""SPEC 6 in windows.yaml: targets, provider defaults and window choices; every mistake at
its FILE:LINE:COL (a table), tokens never shown, and the keys agreeing with the clients."""

from __future__ import annotations

from datetime import timedelta

import pytest

import integrations
from scheduler.config import parse
from scheduler.config.integrations import KEYS, REQUIRED, chosen
from scheduler.errors import ConfigError

BASE = """\
version: 1
provider:
  name: X
  integrations: [am]
integrations:
  am:
    type: alertmanager
    url: http://127.0.0.1:9093
    token: ${AM_TOKEN:-}
    matchers: ['maintenance_tenant=~"{tenants_regex}"']
    ahead: 5m
  pd:
    type: pagerduty
    token: ${PD_TOKEN}
    from: noc@example.com
    services: [PABC123]
  status:
    type: statuspage
    token: sp
    page: kctbh9vrtdwd
    components: [8kbf7d35c070]
tenants: [{id: acme}]
windows:
  - id: plain
    start: 2026-12-05T22:00
    duration: 1h
  - id: storage-firmware
    start: 2026-12-06T22:00
    duration: 1h
    integrations:
      am: {matchers: ['cluster="eu-1"']}
      status: {}
  - id: listed
    start: 2026-12-07T22:00
    duration: 1h
    integrations: [pd]
"""
ENV = {"PD_TOKEN": "pd-secret-value"}


def errors(text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse(text, "windows.yaml", {**ENV, **(env or {})})
    return [str(i) for i in exc.value.issues if i.severity == "error"]


def test_targets_defaults_and_overrides_are_built():
    cfg = parse(BASE, "windows.yaml", ENV)
    assert {n: t.type for n, t in cfg.integrations.items()} == {
        "am": "alertmanager",
        "pd": "pagerduty",
        "status": "statuspage",
    }
    assert cfg.integrations["am"].settings["ahead"] == timedelta(minutes=5)
    assert cfg.provider.integrations == ("am",)
    by_id = {w.id: [(n, t, dict(s)) for n, t, s in chosen(cfg, w)] for w in cfg.windows}
    assert [n for n, _, _ in by_id["plain"]] == ["am"]  # the provider's list
    (am, status) = by_id["storage-firmware"]
    assert am[2]["matchers"] == ('cluster="eu-1"',) and am[2]["url"] == "http://127.0.0.1:9093"
    assert status[:2] == ("status", "statuspage")
    assert [(n, s["token"]) for n, _, s in by_id["listed"]] == [("pd", "pd-secret-value")]


CASES = [
    (
        "unknown_type",
        ("    type: alertmanager\n    url", "    type: alertmgr\n    url"),
        'windows.yaml:7:11: unknown integration type "alertmgr" in integrations.am (expected one of: alertmanager, pagerduty, statuspage)',
    ),
    (
        "unknown_key",
        ("    ahead: 5m\n", "    ahead: 5m\n    colour: red\n"),
        'windows.yaml:12:5: unknown key "colour" in integrations.am (alertmanager takes: url, token, matchers, ahead)',
    ),
    (
        "missing_type",
        ("  status:\n    type: statuspage\n", "  status:\n"),
        'windows.yaml:18:5: missing required key "type" in integrations.status',
    ),
    (
        "missing_required",
        ("    page: kctbh9vrtdwd\n", ""),
        'windows.yaml:18:5: missing required key "page" in integrations.status (statuspage needs: token, page)',
    ),
    (
        "bad_matcher",
        ("matchers: ['maintenance_tenant=~\"{tenants_regex}\"']", "matchers: ['not a matcher']"),
        'windows.yaml:10:15: matchers: matcher \'not a matcher\' is not like name="value", name!="...", name=~"..." or name!~"..."',
    ),
    ("bad_ahead", ("ahead: 5m", "ahead: soon"), "windows.yaml:11:12: ahead: expected a duration such as 5m"),
    (
        "bad_url",
        ("url: http://127.0.0.1:9093", "url: ftp://x"),
        'windows.yaml:8:10: url: invalid URL "ftp://x"; expected http(s)://host/path',
    ),
    (
        "unknown_in_provider",
        ("integrations: [am]", "integrations: [am, nope]"),
        'windows.yaml:4:22: undefined integration "nope" used in provider',
    ),
    (
        "unknown_in_window_map",
        ("      status: {}\n", "      stauts: {}\n"),
        'windows.yaml:32:7: undefined integration "stauts" used in window "storage-firmware"',
    ),
    (
        "unknown_in_window_list",
        ("integrations: [pd]", "integrations: [pd, pdd]"),
        'windows.yaml:36:24: undefined integration "pdd" used in window "listed"',
    ),
    (
        "unknown_override_key",
        ("am: {matchers: ['cluster=\"eu-1\"']}", "am: {matchers: ['cluster=\"eu-1\"'], page: x}"),
        'windows.yaml:31:42: unknown key "page" in window "storage-firmware" integration "am" (alertmanager takes: url, token, matchers, ahead)',
    ),
    (
        "override_not_a_mapping",
        ("      status: {}\n", "      status: yes\n"),
        'windows.yaml:32:15: expected a mapping of settings to merge over integration "status"',
    ),
    (
        "window_integrations_not_a_list",
        ("integrations: [pd]", "integrations: pd"),
        "windows.yaml:36:19: expected a list of integration names or a mapping name -> settings",
    ),
]


@pytest.mark.parametrize("change, expected", [(c, e) for _, c, e in CASES], ids=[i for i, _, _ in CASES])
def test_mistakes_are_reported_at_their_place(change, expected):
    old, new = change
    assert old in BASE
    assert errors(BASE.replace(old, new, 1)) == [expected]


def test_a_token_is_never_shown():
    text = BASE.replace("    token: sp\n", "    token: [sp-secret-value]\n")
    (message,) = errors(text)
    assert "sp-secret-value" not in message and message.startswith("windows.yaml:19:12: token: ")
    (unset,) = errors(BASE, env={"PD_TOKEN": ""}) or ["?"]
    assert "pd-secret" not in unset and "token" in unset


def test_the_keys_agree_with_the_clients():
    assert {t: frozenset(k) for t, k in KEYS.items()} == integrations.SETTINGS
    assert {t: frozenset(r) for t, r in REQUIRED.items()} == {t: c.REQUIRED for t, c in integrations.TYPES.items()}


STEP_CASES = [
    ("first_planned", "planned", None, ["apply"]),
    ("first_seen_running", "started", None, ["apply", "start"]),
    ("missed_entirely", "finished", None, []),
    ("planned_again", "planned", {"phase": "planned", "start": "S", "end": "E"}, []),
    ("moved", "planned", {"phase": "planned", "start": "S", "end": "E0"}, ["update"]),
    ("started", "started", {"phase": "planned", "start": "S", "end": "E"}, ["start"]),
    ("extended_while_running", "started", {"phase": "started", "start": "S", "end": "E0"}, ["update"]),
    ("ended", "finished", {"phase": "started", "start": "S", "end": "E"}, ["finish"]),
    ("ended_unseen_start", "finished", {"phase": "planned", "start": "S", "end": "E"}, ["start", "finish"]),
    ("exited", "exited", {"phase": "started", "start": "S", "end": "E"}, ["revert"]),
    ("cancelled", "cancelled", {"phase": "planned", "start": "S", "end": "E"}, ["revert"]),
    ("cancelled_never_applied", "cancelled", None, []),
]


@pytest.mark.parametrize("phase, done, expected", [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_steps_between_what_was_done_and_what_is_wanted(phase, done, expected):
    from datetime import UTC, datetime

    from scheduler.model import isoz
    from scheduler.runtime.integrations import steps

    start, end = datetime(2026, 12, 5, 21, tzinfo=UTC), datetime(2026, 12, 5, 23, tzinfo=UTC)
    names = {"S": isoz(start), "E": isoz(end), "E0": isoz(end - timedelta(hours=1))}
    if done is not None:
        done = {**done, "start": names[done["start"]], "end": names[done["end"]]}
    assert steps({"phase": phase, "done": done, "start": start, "end": end}) == expected


def test_integrations_dry_run_prints_the_silence_and_no_token(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from scheduler.cli import cli

    monkeypatch.setattr("scheduler.cli.integrations.clock", lambda: datetime(2026, 12, 1, tzinfo=UTC))

    path = tmp_path / "windows.yaml"
    path.write_text(BASE.replace("${AM_TOKEN:-}", "am-secret-token"))
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(path), "integrations", "storage-firmware", "--dry-run"], env=ENV)
    assert result.exit_code == 0, result.output
    import json

    out = json.loads(result.output)
    am, status = out["integrations"]
    assert (am["name"], am["method"], am["url"]) == ("am", "POST", "http://127.0.0.1:9093/api/v2/silences")
    assert am["body"]["matchers"] == [{"name": "cluster", "value": "eu-1", "isRegex": False, "isEqual": True}]
    assert am["body"]["createdBy"] == "maintd" and am["body"]["endsAt"] == "2026-12-06T23:00:00Z"
    assert status["body"]["incident"]["component_ids"] == ["8kbf7d35c070"]
    assert "am-secret-token" not in result.output and "sp" != status["body"]["incident"]["body"]
    refused = runner.invoke(cli, ["--config", str(path), "integrations", "storage-firmware"], env=ENV)
    assert getattr(refused.exception, "exit_code", None) == 2  # cli.main prints it and exits 2
