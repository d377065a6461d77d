"""Where each delivery goes, masked (SPEC 4.2): every outbox row carries its target -- an
email address as is, a webhook URL without credentials, query or path token, a chat URL in
Apprise's privacy form -- and `/v1/notices` and `maintd notices` (narrow and --wide) show it
and never the secret.

In process: ``create_app(Daemon(...))`` with an injected clock and a real SQLite file; the
CLI's table printer on what the API answered."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Clock
from fastapi.testclient import TestClient

from notifiers.webhook import webhook_target
from scheduler.api import create_app
from scheduler.cli.tables import print_notices
from scheduler.daemon import Daemon

TOKEN = "notice-targets-token-0123456789abcdef"
SECRETS = ("hookpw", "qtoken", "PATHTOKEN0123456789", "chatpw9")
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
CONFIG = f"""\
version: 1
provider: {{name: Test Cloud, timezone: UTC}}
notifiers:
  email: {{host: 127.0.0.1, port: 9}}
tenants:
  - id: acme
    email: [ops@acme.example, noc@acme.example]
    webhook:
      url: "https://hook:hookpw@hooks.acme.example:8443/maint/PATHTOKEN0123456789?sig=qtoken"
      secret: "whsec_{base64.b64encode(b"k" * 32).decode()}"
    notify_urls: ["json://bot:chatpw9@127.0.0.1:9/acme"]
windows:
  - id: upgrade
    title: Upgrade
    start: 2027-03-10T13:00Z
    duration: 1h
    notify: [30m]
"""
EXPECTED = {
    "email": "ops@acme.example, noc@acme.example",
    "webhook": "https://hooks.acme.example:8443/maint/P...9",
    "apprise:json": "json://bot:****@127.0.0.1:9/acme",
}


@pytest.fixture
def api_rows(tmp_path: Path) -> list[dict]:
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = Clock(T0 + timedelta(minutes=30))
    d = Daemon(str(path), clock=clock, env={"MAINTD_TOKEN": TOKEN})
    try:
        d.reconciler.tick("test")  # the 30m notice: one row per channel, nothing sent
        client = TestClient(create_app(d), headers={"Authorization": f"Bearer {TOKEN}"})
        answer = client.get("/v1/notices")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body.get("notices", body) if isinstance(body, dict) else body
    finally:
        d.outbox.shutdown()
        d.store.close()


def test_every_delivery_carries_its_masked_target(api_rows):
    assert {r["channel"]: r["target"] for r in api_rows} == EXPECTED
    assert not [s for s in SECRETS if s in str(api_rows)]


@pytest.mark.parametrize("wide, columns", [(False, "80"), (True, "80")], ids=["narrow_80", "wide"])
def test_maintd_notices_shows_the_target_and_no_secret(api_rows, capsys, monkeypatch, wide, columns):
    monkeypatch.setenv("COLUMNS", columns)
    print_notices(api_rows, ZoneInfo("UTC"), failed=False, wide=wide)
    out = capsys.readouterr().out
    flat = "".join(line.strip() for line in out.splitlines()) if not wide else out  # narrow folds long URLs
    for target in EXPECTED.values():
        assert target.replace(" ", "") in flat.replace(" ", ""), out
    assert not [s for s in SECRETS if s in out]
    if not wide:
        assert all(len(line) <= 80 for line in out.splitlines()), out


WEBHOOKS = [
    ("plain", "http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
    ("credentials_query_fragment", "https://u:p@h.example/a?token=x#frag", "https://h.example/a"),
    ("long_path_token", "https://hooks.slack.com/services/T01/B02/abcdefghijklmnopqrstuvwx", None),
    ("ipv6_port", "https://[::1]:8443/hook", "https://[::1]:8443/hook"),
    ("invalid", "not a url", "(invalid URL)"),
]


@pytest.mark.parametrize("url, shown", [w[1:] for w in WEBHOOKS], ids=[w[0] for w in WEBHOOKS])
def test_webhook_target(url, shown):
    expected = shown or "https://hooks.slack.com/services/T01/B02/a...x"
    assert webhook_target(url) == expected
