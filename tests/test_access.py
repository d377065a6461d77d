"""Access (issue 12): trust never comes from the peer address.

A real ``maintd run`` behind a real forwarding proxy on loopback (which, like nginx's
``proxy_pass``, makes every client look local, and may add ``X-Forwarded-For: 127.0.0.1``
that uvicorn honours with ``FORWARDED_ALLOW_IPS=*``): only a token of the right scope, the
ops page's cookie (read GETs only) or the unix socket opens anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import requests
import sqlalchemy as sa
from conftest import TOKEN, DaemonProc, free_port, maintd_argv

from scheduler.store import LATEST_VERSION, Store
from scheduler.store.engine import make_engine
from scheduler.store.migrations import migrate

GATE = "gate-token-" + "g" * 30
READ = "read-token-" + "r" * 30
CONFIG = """\
version: 1
provider: {name: Test Cloud, timezone: UTC, policy: standard}
tenants:
  - {id: acme, name: ACME Corp}
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [backup]}
daemon:
  listen: "{listen}"
  socket: maintd.sock
windows: []
"""
# every route but liveness and the tenant views, with the scope it needs
ROUTES = [
    ("GET", "/", None, "read"),
    ("GET", "/v1/status", None, "read"),
    ("GET", "/v1/windows", None, "read"),
    ("GET", "/v1/notices", None, "read"),
    ("GET", "/v1/history", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", "/openapi.json", None, "read"),
    ("GET", "/docs", None, "read"),
    ("POST", "/v1/admissions", {"tenant": "acme", "kind": "restore"}, "gate"),
    ("POST", "/v1/leases/nope/heartbeat", None, "gate"),
    ("DELETE", "/v1/leases/nope", None, "gate"),
    ("POST", "/v1/maintenance", {"reason": "x", "for": "1h"}, "admin"),
    ("DELETE", "/v1/maintenance", None, "admin"),
    ("POST", "/v1/windows/nope/extend", {"by": "5m"}, "admin"),
]
# what a token of each scope gets on a route of each scope (the route's own answer is fine)
ALLOWED = {"admin": {"admin", "gate", "read"}, "gate": {"gate"}, "read": {"read"}}


class ForwardingProxy:
    """A tiny TCP proxy on loopback, as a same-host reverse proxy is: bytes in, bytes out,
    optionally with ``X-Forwarded-For: 127.0.0.1`` added after each request line it sees
    first on a connection. Bounded: every read has a size and the loop a deadline on stop."""

    def __init__(self, target_port: int, forwarded_for: bool) -> None:
        self.target_port, self.forwarded_for = target_port, forwarded_for
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        first = await reader.readuntil(b"\r\n")
        if self.forwarded_for:
            first += b"X-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\n"
        up_writer.write(first)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
            dst.close()

        await asyncio.wait_for(asyncio.gather(pump(reader, up_writer), pump(up_reader, writer)), 20)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("access")
    stale = socket.socket(socket.AF_UNIX)  # a socket file left behind by a daemon that died
    stale.bind(str(base / "maintd.sock"))
    stale.close()
    port = free_port()
    path = base / "windows.yaml"
    path.write_text(CONFIG.replace("{listen}", f"127.0.0.1:{port}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    env.update({"MAINTD_TOKEN": TOKEN, "MAINTD_GATE_TOKEN": GATE, "MAINTD_READ_TOKEN": READ})
    env.update({"FORWARDED_ALLOW_IPS": "*", "MAINTD_HEARTBEAT": "5", "PYTHONUNBUFFERED": "1"})
    d = DaemonProc(config_path=path, port=port, env=env).start()
    yield d
    assert d.stop() == 0
    assert not (base / "maintd.sock").exists()  # removed on stop


def call(url: str, method: str, path: str, body, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, url + path, json=body, headers=headers, timeout=10, allow_redirects=False, **kw)


@pytest.mark.parametrize("forwarded_for", [False, True], ids=["plain_proxy_pass", "x_forwarded_for_loopback"])
def test_through_a_local_proxy_without_a_token_every_non_tenant_route_is_401(daemon, forwarded_for) -> None:
    with ForwardingProxy(daemon.port, forwarded_for) as proxy:
        for method, path, body, _scope in ROUTES:
            r = call(proxy.url, method, path, body)
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            assert r.headers["www-authenticate"] == "Bearer"
            wrong = call(proxy.url, method, path, body, token="x" * 40)
            assert wrong.status_code == 401, (method, path)
        assert call(proxy.url, "GET", "/healthz", None).json() == {"ok": True}
        assert call(proxy.url, "GET", "/t/not-a-secret/", None).status_code == 404  # its own secret, no token
        assert call(proxy.url, "GET", "/v1/status", None, token=READ).status_code == 200


@pytest.mark.parametrize("scope", ["admin", "gate", "read"])
def test_each_token_opens_its_scope_and_gets_403_elsewhere(daemon, scope) -> None:
    token = {"admin": TOKEN, "gate": GATE, "read": READ}[scope]
    for method, path, body, needed in ROUTES:
        if method == "POST" and path == "/v1/maintenance" and needed in ALLOWED[scope]:
            body = {"reason": "x", "for": "1h", "tenants": ["nobody"]}  # refused by validation, changes nothing
        r = call(daemon.url, method, path, body, token=token)
        if needed in ALLOWED[scope]:
            assert r.status_code not in (401, 403), (scope, method, path, r.status_code, r.text[:200])
        else:
            assert r.status_code == 403, (scope, method, path, r.status_code)
            assert f"scope {scope}" in r.json()["error"]
    assert daemon.status()["mode"] == "normal"


def test_status_shows_public_lease_ids_that_cannot_heartbeat_or_delete(daemon) -> None:
    out = call(daemon.url, "POST", "/v1/admissions", {"tenant": "acme", "kind": "backup"}, token=GATE).json()
    secret = out["lease"]
    status = call(daemon.url, "GET", "/v1/status", None, token=READ)
    [item] = [i for i in status.json()["leases"]["items"] if i["kind"] == "backup"]
    public = item["id"]
    assert public.startswith("lse_") and secret not in status.text
    for token in (GATE, TOKEN):
        assert call(daemon.url, "POST", f"/v1/leases/{public}/heartbeat", None, token=token).status_code == 404
        assert call(daemon.url, "DELETE", f"/v1/leases/{public}", None, token=token).status_code == 404
    beat = call(daemon.url, "POST", f"/v1/leases/{secret}/heartbeat", None, token=GATE)
    assert beat.json() == {"drain": False, "deadline": None}
    assert call(daemon.url, "DELETE", f"/v1/leases/{secret}", None, token=GATE).json() == {"released": public}
    assert secret not in call(daemon.url, "GET", "/v1/history", None, token=READ).text


def test_the_login_form_sets_a_read_only_cookie(daemon) -> None:
    page = call(daemon.url, "GET", "/", None)
    assert page.status_code == 401 and '<form method="post" action="/login">' in page.text
    for bad in ("wrong", GATE):  # only read or admin tokens open the ops page
        r = requests.post(daemon.url + "/login", data={"token": bad}, allow_redirects=False, timeout=10)
        assert r.status_code == 401 and "set-cookie" not in r.headers
    r = requests.post(daemon.url + "/login", data={"token": READ}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path"} <= parts and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in parts  # plain http here; https sets Secure
    assert READ not in cookie
    jar = {"maintd_session": r.cookies["maintd_session"]}
    ops = requests.get(daemon.url + "/", cookies=jar, timeout=10)
    assert ops.status_code == 200 and "Next 30 days" in ops.text and 'href="/logout"' in ops.text
    assert requests.get(daemon.url + "/v1/status", cookies=jar, timeout=10).status_code == 200
    # never a state change on a cookie (CSRF), nor the gate
    enter = requests.post(daemon.url + "/v1/maintenance", json={"reason": "x"}, cookies=jar, timeout=10)
    assert enter.status_code == 401
    admit = requests.post(daemon.url + "/v1/admissions", json={"tenant": "acme", "kind": "x"}, cookies=jar, timeout=10)
    assert admit.status_code == 401
    assert daemon.status()["mode"] == "normal"
    forged = {"maintd_session": "0" * 64}
    assert requests.get(daemon.url + "/v1/status", cookies=forged, timeout=10).status_code == 401
    out = requests.get(daemon.url + "/logout", cookies=jar, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and 'maintd_session=""' in out.headers["set-cookie"]


def test_the_unix_socket_serves_without_a_token_and_has_mode_0660(daemon) -> None:
    path = str(daemon.config_path.parent / "maintd.sock")
    assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://maintd", timeout=10) as client:
        assert client.get("/v1/status").json()["mode"] == "normal"
        assert client.get("/metrics").status_code == 200
    env = {k: v for k, v in daemon.env.items() if k not in ("MAINTD_TOKEN", "MAINTD_READ_TOKEN", "MAINTD_GATE_TOKEN")}
    r = subprocess.run(
        maintd_argv() + ["--config", str(daemon.config_path), "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and '"mode": "normal"' in r.stdout, r.stderr


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"MAINTD_TOKEN": "a" * 20}, "the admin token from $MAINTD_TOKEN is 20 characters"),
        ({"MAINTD_GATE_TOKEN": "g" * 31}, "the gate token from $MAINTD_GATE_TOKEN is 31 characters"),
        ({"MAINTD_READ_TOKEN_FILE": "read.token"}, "the read token from daemon.read_token_file"),
    ],
    ids=["admin_env_20", "gate_env_31", "read_file_short"],
)
def test_a_short_token_refuses_the_start(tmp_path: Path, env: dict, needle: str) -> None:
    (tmp_path / "read.token").write_text("short\n")
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG.replace("{listen}", f"127.0.0.1:{free_port()}"))
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")} | env
    r = subprocess.run(
        maintd_argv() + ["--config", str(path), "run"], env=e, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "at least 32 characters" in r.stderr, r.stderr
    assert not (tmp_path / "maintd.db").exists() and not (tmp_path / "maintd.sock").exists()


def test_a_running_lease_from_before_lease_secrets_keeps_working_under_a_new_public_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        assert migrate(conn, target=3) == 3
        for lease_id, status in (("lse_running", "running"), ("lse_done", "released")):
            conn.execute(
                sa.text(
                    "INSERT INTO leases (id, tenant, kind, admitted_at, heartbeat_at, interval_s, expires_at, status) "
                    "VALUES (:id, 'acme', 'backup', '2027-01-01 00:00:00.000000', '2027-01-01 00:00:00.000000', "
                    "10, '2099-01-01 00:00:00.000000', :status)"
                ),
                {"id": lease_id, "status": status},
            )
    engine.dispose()
    from datetime import UTC, datetime

    with Store(url) as store:
        assert store.schema_version() == LATEST_VERSION
        ids = {row["id"] for row in store.leases(None)}
        assert "lse_running" not in ids and "lse_done" in ids  # the secret is no longer shown
        with store.transaction() as tx:
            row = tx.leases.heartbeat_secret(hashlib.sha256(b"lse_running").hexdigest(), datetime.now(UTC))
            assert row is not None and row["id"] in ids and row["id"] != "lse_running"
