"""Incoming ids are compared as the config compares them: ``Backup`` is ``backup``, and a
kind with an invisible or control character is refused (422), never a kind that no rule
names and so slips past ``deny: {kind: [backup]}``. NUL bytes anywhere in a request are a
422. In-process: FastAPI's TestClient against ``create_app(Daemon(...))`` and a fixed clock.

Also here, the same in-process app: the tenant page hides resource names unless
``daemon.show_resources`` is on, and a failing tenant request logs no secret.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from conftest import Clock
from fastapi.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon
from scheduler.errors import UsageError
from scheduler.model import UTC
from scheduler.runtime.gate import normalised_request
from scheduler.web.server import SecretPathFilter

TOKEN = "unicode-test-token-0123456789abcdef"
T0 = datetime(2027, 3, 10, 13, 30, tzinfo=UTC)  # inside `upgrade`

CONFIG = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
policies:
  standard:
    default: allow
    rules:
      - deny: {{kind: [backup]}}
windows:
  - id: upgrade
    start: 2027-03-10T13:00Z
    end: 2027-03-10T15:00Z
    tenants: [acme]
  - id: storage
    start: 2027-03-11T13:00Z
    end: 2027-03-11T15:00Z
    tenants: [acme]
    resources: [repo-eu-1, san-array-7]
daemon:
  listen: 127.0.0.1:1
{extra}"""


@pytest.fixture
def make(tmp_path: Path):
    made: list[Daemon] = []

    def make_daemon(extra: str = "") -> tuple[Daemon, TestClient]:
        path = tmp_path / "windows.yaml"
        path.write_text(CONFIG.format(extra=extra))
        d = Daemon(str(path), clock=Clock(T0), env={"MAINTD_TOKEN": TOKEN})
        d.reconciler.tick("test")
        made.append(d)
        client = TestClient(create_app(d), raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        return d, client

    yield make_daemon
    for d in made:
        d.outbox.shutdown()
        d.store.close()


REFUSED = [
    pytest.param({"tenant": "acme", "kind": "backup"}, id="plain"),
    pytest.param({"tenant": "acme", "kind": "Backup"}, id="capitalised"),
    pytest.param({"tenant": "acme", "kind": "BACKUP"}, id="upper_case"),
    pytest.param({"tenant": "acme", "kind": "ｂａｃｋｕｐ"}, id="fullwidth_nfkc"),
    pytest.param({"tenant": "ａｃｍｅ", "kind": "backup"}, id="fullwidth_tenant"),
    pytest.param({"tenant": "acme", "kind": "backu\u0070"}, id="escaped_ascii"),
]


@pytest.mark.parametrize("body", REFUSED)
def test_spellings_of_a_denied_kind_are_denied(make, body: dict) -> None:
    _d, client = make()
    r = client.post("/v1/admissions", json=body)
    assert r.status_code == 423, r.text
    assert r.json()["reason"] == "maintenance"


INVALID = [
    pytest.param({"tenant": "acme", "kind": "backup\u200b"}, "kind", id="zero_width_space"),
    pytest.param({"tenant": "acme", "kind": "back\u00adup"}, "kind", id="soft_hyphen"),
    pytest.param({"tenant": "acme", "kind": "back\u0000up"}, "NUL", id="nul_in_kind"),
    pytest.param({"tenant": "ac\u0000me", "kind": "restore"}, "NUL", id="nul_in_tenant"),
    pytest.param({"tenant": "acme", "kind": "restore", "resource": "r\u0000"}, "NUL", id="nul_in_resource"),
    pytest.param({"tenant": "acme\u200d", "kind": "restore"}, "tenant", id="zero_width_joiner_tenant"),
    pytest.param({"tenant": "acme", "kind": "back\tup"}, "kind", id="tab_control"),
]


@pytest.mark.parametrize(("body", "named"), INVALID)
def test_invisible_and_control_characters_are_422(make, body: dict, named: str) -> None:
    _d, client = make()
    r = client.post("/v1/admissions", json=body)
    assert r.status_code == 422, r.text
    assert named in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/maintenance", {"reason": "disk\u0000swap", "for": "1h"}),
        ("post", "/v1/maintenance", {"reason": "swap", "tenants": ["acme\u0000"]}),
        ("post", "/v1/windows/upgrade/extend", {"by": "30m\u0000"}),
        ("delete", "/v1/leases/lse_%00", None),
        ("get", "/v1/history?window=up%00grade", None),
    ],
    ids=["manual_reason", "manual_tenant_list", "extend_by", "lease_path", "query_string"],
)
def test_nul_in_any_api_string_is_422(make, method: str, path: str, body: dict | None) -> None:
    _d, client = make()
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == 422, r.text


def test_the_gate_normalises_at_its_own_entry_too() -> None:
    assert normalised_request("ａｃｍｅ", "Backup", None) == ("acme", "backup", None)
    with pytest.raises(UsageError, match="U\\+200B"):
        normalised_request("acme", "backup\u200b", None)
    with pytest.raises(UsageError, match="control character"):
        normalised_request("acme", "back\x00up", None)


def test_an_allowed_kind_still_gets_a_lease(make) -> None:
    _d, client = make()
    r = client.post("/v1/admissions", json={"tenant": "acme", "kind": "Restore"})
    assert r.status_code == 200, r.text
    assert r.json()["admitted"] is True


# -- tenant pages ------------------------------------------------------------------------


def _page(d: Daemon, client: TestClient) -> str:
    secret = d.store.tenant_secret("acme")
    r = client.get(f"/t/{secret}/")
    assert r.status_code == 200, r.text
    return r.text


def test_tenant_page_hides_resource_names_by_default(make) -> None:
    d, client = make()
    html = _page(d, client)
    assert "upgrade" in html or "Upgrade" in html
    assert "repo-eu-1" not in html and "san-array-7" not in html


def test_tenant_page_shows_resource_names_when_the_provider_opts_in(make) -> None:
    d, client = make("  show_resources: true\n")
    html = _page(d, client)
    assert "repo-eu-1" in html and "san-array-7" in html


def test_a_failing_tenant_request_logs_the_tenant_never_the_secret(make, caplog, monkeypatch) -> None:
    d, client = make()
    secret = d.store.tenant_secret("acme")

    def broken(*_a, **_k):
        raise RuntimeError("renderer broke")

    import scheduler.web as web

    monkeypatch.setattr(web, "tenant_view", broken)
    with caplog.at_level(logging.INFO):
        assert client.get(f"/t/{secret}/").status_code == 500
        assert client.get("/t/wrong-secret-value/").status_code == 404
    # the daemon's loggers (the test client's own httpx log of the URL is not the daemon's)
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "tenant acme" in text
    assert secret not in text and "wrong-secret-value" not in text


def test_the_log_handler_masks_tenant_paths_from_any_logger() -> None:
    r = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI app: %s", ("/t/abc123/",), None
    )
    SecretPathFilter().filter(r)
    assert "abc123" not in r.getMessage()
