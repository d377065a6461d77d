"""The HTTP API (SPEC section 3): input validation, access, errors as JSON — never a 500.

Fast tables run FastAPI's TestClient against ``create_app(Daemon(...))`` built on a
tmp config with an injected clock; the schemathesis run and the streamed huge body go
to a real ``maintd run`` (the ``daemon_factory`` fixture of conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import TOKEN, Clock, iso_in
from fastapi.testclient import TestClient

from scheduler.api import MAX_BODY, create_app
from scheduler.daemon import Daemon
from scheduler.model import UTC

T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)  # "now" of the in-process daemon

CONFIG = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
    email: [ops@acme.example]
  - id: beta
    name: Beta GmbH
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
windows:
  - id: running
    start: 2027-03-10T11:00Z
    end: 2027-03-10T13:00Z
    tenants: [acme]
  - id: later
    start: 2027-03-20T01:00Z
    duration: 2h
daemon:
  listen: 127.0.0.1:1
  database: x
"""


@pytest.fixture
def make_daemon(tmp_path: Path):
    made: list[Daemon] = []

    def make(token: str | None = TOKEN, config: str = CONFIG) -> Daemon:
        path = tmp_path / f"windows-{len(made)}.yaml"
        path.write_text(config.replace("database: x", f"database: db-{len(made)}.db"))
        env = {"MAINTD_TOKEN": token} if token else {}
        d = Daemon(str(path), clock=Clock(T0), env=env)
        d.reconciler.tick("test")
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()  # never started: stops whatever threads it made and closes the store


@pytest.fixture
def daemon(make_daemon) -> Daemon:
    return make_daemon()


@pytest.fixture
def client(daemon: Daemon) -> TestClient:
    return TestClient(create_app(daemon), headers=AUTH, raise_server_exceptions=False)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def assert_json_error(resp: requests.Response | object, status: int, *needles: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in resp.text
    for n in needles:
        assert n in body["error"], (n, body["error"])
    return body


# --------------------------------------------------------------------------- bad input -> 4xx JSON

BAD_INPUT = [
    # (method, path, json body or raw bytes, status, text the error must contain)
    ("POST", "/v1/admissions", {}, 422, "tenant: Field required"),
    ("POST", "/v1/admissions", {"tenant": 5, "kind": "backup"}, 422, "tenant: "),
    ("POST", "/v1/admissions", {"tenant": "acme"}, 422, "kind: Field required"),
    ("POST", "/v1/admissions", {"tenant": "acme", "kind": None}, 422, "kind: "),
    ("POST", "/v1/admissions", {"tenant": "", "kind": "backup"}, 422, "tenant: "),
    (
        "POST",
        "/v1/admissions",
        {"tenant": "acme", "kind": "backup", "expected_duration": "soon"},
        422,
        "expected a duration",
    ),
    (
        "POST",
        "/v1/admissions",
        {"tenant": "acme", "kind": "backup", "expected_duration": -5},
        422,
        "must not be negative",
    ),
    (
        "POST",
        "/v1/admissions",
        {"tenant": "acme", "kind": "backup", "expected_duration": True},
        422,
        "expected_duration",
    ),
    ("POST", "/v1/admissions", {"tenant": "acme", "kind": "backup", "expected_duration": 1e300}, 422, "at most 3650d"),
    (
        "POST",
        "/v1/admissions",
        {"tenant": "acme", "kind": "backup", "expected_duration": "99999999999d"},
        422,
        "at most",
    ),
    (
        "POST",
        "/v1/admissions",
        {"tenant": "acme", "kind": "backup", "colour": "red"},
        422,
        "colour: Extra inputs are not permitted",
    ),
    ("POST", "/v1/admissions", ["acme", "backup"], 422, "valid dictionary"),
    ("POST", "/v1/admissions", b"{not json", 422, "JSON"),
    ("POST", "/v1/admissions", {"tenant": "nobody", "kind": "backup"}, 404, 'unknown tenant "nobody"'),
    ("POST", "/v1/maintenance", {}, 422, "reason: Field required"),
    ("POST", "/v1/maintenance", {"reason": ""}, 422, "reason: "),
    ("POST", "/v1/maintenance", {"reason": "x", "for": "0s"}, 422, "positive duration"),
    ("POST", "/v1/maintenance", {"reason": "x", "for": "2 hours"}, 422, "expected a duration"),
    ("POST", "/v1/maintenance", {"reason": "x", "for": 1.6e16}, 422, "at most 3650d"),
    ("POST", "/v1/maintenance", {"reason": "x", "for": "99999999999d"}, 422, "at most 3650d"),
    ("POST", "/v1/maintenance", {"reason": "x", "tenants": 7}, 422, "tenants: "),
    ("POST", "/v1/maintenance", {"reason": "x", "tenants": ["acme", "nobody"]}, 404, "unknown tenant(s): nobody"),
    ("POST", "/v1/maintenance", {"reason": "x", "policy": "nope"}, 404, 'unknown policy "nope"'),
    ("POST", "/v1/windows/running/extend", {}, 422, "by: Field required"),
    ("POST", "/v1/windows/running/extend", {"by": "0s"}, 422, "positive duration"),
    ("POST", "/v1/windows/running/extend", {"by": True}, 422, "by: "),
    ("POST", "/v1/windows/running/extend", {"by": 1.3e246}, 422, "at most 3650d"),
    ("POST", "/v1/windows/running/extend", {"by": [30]}, 422, "by: "),
    ("POST", "/v1/windows/nope/extend", {"by": "30m"}, 404, 'unknown window "nope"'),
    ("POST", "/v1/windows/later/extend", {"by": "30m"}, 409, 'window "later" is not active'),
    ("DELETE", "/v1/maintenance?window=later", None, 409, 'window "later" is not active'),
    ("POST", "/v1/leases/lse_nope/heartbeat", None, 404, "unknown or expired lease"),
    ("DELETE", "/v1/leases/lse_nope", None, 404, "unknown or finished lease"),
    ("GET", "/v1/notices?limit=many", None, 422, "limit: "),
    ("GET", "/v1/notices?failed=perhaps", None, 422, "failed: "),
    ("GET", "/v1/history?limit=1.5", None, 422, "limit: "),
    ("GET", "/v1/nothing-here", None, 404, "Not Found"),
    ("PUT", "/v1/status", None, 405, "Method Not Allowed"),
    ("POST", "/v1/admissions", b"x" * (MAX_BODY + 1), 413, "request body too large"),
]


@pytest.mark.parametrize(
    "method,path,body,status,needle", BAD_INPUT, ids=[f"{m} {p} -> {s} {str(b)[:40]}" for m, p, b, s, _ in BAD_INPUT]
)
def test_bad_input_is_a_4xx_json_error(client: TestClient, method, path, body, status, needle) -> None:
    kw: dict = {"headers": dict(AUTH)}
    if isinstance(body, bytes):
        kw["content"] = body
        kw["headers"]["Content-Type"] = "application/json"
    elif body is not None:
        kw["json"] = body
    assert_json_error(client.request(method, path, **kw), status, needle)


def test_validation_errors_list_every_problem(client: TestClient) -> None:
    body = assert_json_error(client.post("/v1/admissions", json={"tenant": 5, "kind": None, "x": 1}), 422)
    assert sorted(p.split(":")[0] for p in body["problems"]) == ["kind", "tenant", "x"]


def test_large_query_values_are_clamped_not_errors(client: TestClient) -> None:
    assert client.get("/v1/history", params={"limit": -5}).status_code == 200
    assert client.get("/v1/history", params={"limit": 10**30}).status_code == 200
    assert client.get("/v1/notices", params={"limit": 0, "window": "x" * 5000}).json() == []


def test_repeated_extends_stop_far_from_the_calendar_limit(client: TestClient) -> None:
    for _ in range(2):
        assert client.post("/v1/windows/running/extend", json={"by": "3000d"}, headers=AUTH).status_code == 200
    assert_json_error(
        client.post("/v1/windows/running/extend", json={"by": "3000d"}, headers=AUTH),
        400,
        "cannot extend running more than 7300 days ahead",
    )


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/v1/maintenance", {"reason": "x"}),
        ("DELETE", "/v1/maintenance", None),
        ("POST", "/v1/windows/running/extend", {"by": "30m"}),
    ],
    ids=["enter", "exit", "extend"],
)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer"], ids=["none", "wrong", "not-bearer", "empty"]
)
def test_state_changes_need_the_token(daemon: Daemon, method, path, body, header) -> None:
    headers = {"Authorization": header} if header else {}
    client = TestClient(create_app(daemon), raise_server_exceptions=False)
    resp = client.request(method, path, json=body, headers=headers)
    assert_json_error(resp, 401, "missing or invalid bearer token")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert [a.window.id for a in daemon.reconciler.evaluation.active] == ["running"]  # nothing changed


def test_no_token_configured_refuses_state_changes_with_a_clear_message(make_daemon) -> None:
    client = TestClient(create_app(make_daemon(token=None)), raise_server_exceptions=False)
    for method, path, body in [
        ("POST", "/v1/maintenance", {"reason": "x"}),
        ("DELETE", "/v1/maintenance", None),
        ("POST", "/v1/windows/running/extend", {"by": "30m"}),
    ]:
        assert_json_error(
            client.request(method, path, json=body, headers=AUTH),
            403,
            "state-changing calls are disabled: no token is configured",
            "MAINTD_TOKEN or daemon.token_file",
        )
    # without any token nothing but liveness is open over TCP, not even from loopback
    assert client.get("/v1/status").status_code == 403
    assert client.post("/v1/admissions", json={"tenant": "beta", "kind": "backup"}).status_code == 403
    assert client.get("/healthz").status_code == 200


def test_reads_and_the_gate_need_the_token_from_any_address(daemon: Daemon) -> None:
    remote = TestClient(create_app(daemon), client=("127.0.0.1", 40000), raise_server_exceptions=False)
    for method, path, body in [
        ("GET", "/v1/status", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/admissions", {"tenant": "beta", "kind": "backup"}),
    ]:
        assert_json_error(remote.request(method, path, json=body), 401, "bearer token")
        assert remote.request(method, path, json=body, headers=AUTH).status_code == 200
    assert remote.get("/healthz").json() == {"ok": True}  # liveness stays open


# --------------------------------------------------------------------------- happy paths through the API


def test_manual_enter_extend_exit(client: TestClient, daemon: Daemon) -> None:
    r = client.post("/v1/maintenance", json={"reason": "storage", "for": "1h", "tenants": ["beta"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    manual = r.json()
    assert manual["tenants"] == ["beta"] and manual["end"] == "2027-03-10T13:00:00Z"
    st = client.get("/v1/status").json()
    assert st["mode"] == "maintenance"
    assert {a["window"] for a in st["active"]} == {"running", manual["window"]}
    r = client.post(f"/v1/windows/{manual['window']}/extend", json={"by": 1800}, headers=AUTH)
    assert r.status_code == 200 and r.json()["end"] == "2027-03-10T13:30:00Z"
    r = client.delete("/v1/maintenance", params={"window": manual["window"]}, headers=AUTH)
    assert r.json() == {"ended": [{"window": manual["window"], "occurrence": "2027-03-10T12:00:00Z"}]}
    st = client.get("/v1/status").json()
    assert [a["window"] for a in st["active"]] == ["running"]
    kinds = [h["kind"] for h in client.get("/v1/history").json()]
    assert {"enter", "extend", "exit"} <= set(kinds)


def test_manual_bodies_accept_duration_and_comma_separated_tenants(client: TestClient) -> None:
    r = client.post(
        "/v1/maintenance", json={"reason": "storage", "duration": "2h", "tenants": "acme, beta"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    manual = r.json()
    assert manual["tenants"] == ["acme", "beta"] and manual["end"] == "2027-03-10T14:00:00Z"
    r = client.post(f"/v1/windows/{manual['window']}/extend", json={"duration": "15m"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["end"] == "2027-03-10T14:15:00Z"


def test_the_gate_admits_denies_and_releases(client: TestClient) -> None:
    denied = client.post("/v1/admissions", json={"tenant": "acme", "kind": "backup"})
    assert denied.status_code == 423
    assert denied.json()["reason"] == "maintenance" and denied.headers["retry-after"] == "3600"
    ok = client.post("/v1/admissions", json={"tenant": "beta", "kind": "backup", "expected_duration": "1h"})
    assert ok.status_code == 200 and ok.json()["admitted"] is True
    lease = ok.json()["lease"]
    assert client.post(f"/v1/leases/{lease}/heartbeat").json() == {"drain": False, "deadline": None}
    public = client.get("/v1/status").json()["leases"]["items"][0]["id"]
    assert client.delete(f"/v1/leases/{lease}").json() == {"released": public}
    assert_json_error(client.delete(f"/v1/leases/{lease}"), 404, "unknown or finished lease")


def test_openapi_document_lists_the_spec_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/v1/status",
        "/v1/admissions",
        "/v1/leases/{lease_id}/heartbeat",
        "/v1/leases/{lease_id}",
        "/v1/maintenance",
        "/v1/windows/{window_id}/extend",
        "/v1/windows",
        "/v1/notices",
        "/v1/history",
        "/metrics",
        "/healthz",
    ):
        assert path in doc["paths"], path


# --------------------------------------------------------------------------- against the live daemon

LIVE = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
    email: [ops@acme.example]
  - id: beta
    name: Beta GmbH
policies:
  standard:
    default: deny
    rules:
      - allow: {{kind: [restore]}}
windows:
  - id: running
    start: {start}
    duration: 1h
    tenants: [acme]
  - id: later
    start: {later}
    duration: 1h
daemon:
  listen: "{{listen}}"
"""


@pytest.fixture
def live(daemon_factory):
    d = daemon_factory(LIVE.format(start=iso_in(-60), later=iso_in(86400)), args=("--dry-run",))
    d.wait_for(lambda s: s["mode"] == "maintenance", what="the running window")
    return d


def test_live_huge_bodies_are_refused_with_413_json_streamed_or_not(live) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    r = requests.post(
        live.url + "/v1/maintenance", data=b"{" + b" " * (2 * MAX_BODY) + b"}", headers=headers, timeout=10
    )
    assert_json_error(r, 413, "request body too large")

    def chunks():  # no Content-Length: Transfer-Encoding chunked, 8 MiB
        for _ in range(128):
            yield b" " * 65536

    r = requests.post(live.url + "/v1/maintenance", data=chunks(), headers=headers, timeout=10)
    assert_json_error(r, 413, "request body too large")
    # a small chunked body still works
    r = requests.post(
        live.url + "/v1/maintenance",
        data=iter([b'{"reason": ', b'"chunked", "for": "1m"}']),
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert live.proc.poll() is None


def test_live_bad_input_never_500(live) -> None:
    cases = [
        ("POST", "/v1/admissions", b'{"tenant": "acme", "kind": "backup", "expected_duration": NaN}'),
        ("POST", "/v1/admissions", b'{"tenant": "acme", "kind": "backup", "expected_duration": Infinity}'),
        ("POST", "/v1/admissions", b"\xff\xfe"),
        ("POST", "/v1/windows/%00/extend", b'{"by": "30m"}'),
        ("POST", "/v1/windows/running/extend", b'{"by": 1e999}'),
        ("POST", "/v1/maintenance", b'{"reason": "x", "for": -0.0}'),
        ("POST", "/v1/maintenance", b'{"reason": "\\ud800"}'),
        ("GET", "/v1/history?limit=99999999999999999999999999", b""),
    ]
    for method, path, raw in cases:
        r = requests.request(
            method,
            live.url + path,
            data=raw,
            timeout=10,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert r.status_code < 500, (path, raw, r.status_code, r.text)
        assert "Traceback" not in r.text
        if r.status_code >= 400:
            assert isinstance(r.json()["error"], str)
    assert "Traceback" not in live.log()


@pytest.mark.skipif(
    shutil.which("st") is None
    and subprocess.run([sys.executable, "-c", "import schemathesis"], capture_output=True).returncode != 0,
    reason="schemathesis is not installed (pip install -e '.[test]')",
)
def test_schemathesis_finds_no_server_error(live, tmp_path: Path) -> None:
    """The OpenAPI document, fuzzed against the live daemon: no 500 anywhere."""
    st = shutil.which("st")
    argv = [st] if st else [sys.executable, "-m", "schemathesis.cli"]
    report = tmp_path / "st-report.json"
    r = subprocess.run(
        argv
        + [
            "run",
            live.url + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),  # (--max-time would fuzz until it is spent)
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:] + live.log()[-3000:]
    assert live.proc.poll() is None
    assert "Traceback" not in live.log()


def test_a_manual_window_entered_at_a_sub_second_instant_stays_one_occurrence(daemon: Daemon) -> None:
    """The clock has microseconds; the journal keys occurrences by whole seconds. The manual
    window must still be one occurrence: started once, extended, ended once — never "removed"."""
    daemon.clock.now = T0 + timedelta(microseconds=654321)
    client = TestClient(create_app(daemon), headers=AUTH, raise_server_exceptions=False)
    out = client.post("/v1/maintenance", json={"reason": "x", "for": "1h", "tenants": ["beta"]}, headers=AUTH).json()
    assert out["start"] == "2027-03-10T12:00:00Z"
    for seconds in (1, 2, 3):
        daemon.clock.now = T0 + timedelta(seconds=seconds, microseconds=654321)
        daemon.reconciler.tick("test")
    r = client.post(f"/v1/windows/{out['window']}/extend", json={"by": "30m"}, headers=AUTH)
    assert r.json()["end"] == "2027-03-10T13:30:00Z"
    mine = [a for a in client.get("/v1/status").json()["active"] if a["window"] == out["window"]]
    assert [a["end"] for a in mine] == ["2027-03-10T13:30:00Z"]
    history = [h for h in client.get("/v1/history").json() if h["window"] == out["window"]]
    assert sorted(h["kind"] for h in history) == ["enter", "extend", "notice", "notice", "start"]
    assert sorted(h["detail"]["kind"] for h in history if h["kind"] == "notice") == ["extended", "started"]
