"""Chat channels, the ops room and tenant languages end to end (SPEC 4.2, 4.3): a real
`maintd run`, real Apprise sending ``json://`` and ``ntfy://`` to a local HTTP receiver.

One delivery row per notice, tenant and URL (channel ``apprise:<scheme>``); the password of
a URL shows in no CLI output, API answer, log line or page; the provider's room hears the
start, the end and a failed notice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TOKEN, free_port, iso_in

pytestmark = pytest.mark.slow

PASSWORD = "s3cr3t"


class Receiver:
    """Records every POST (path, headers, body); answers 500 on paths under /fail."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
                body = self.rfile.read(length)
                with owner.lock:
                    owner.requests.append((self.path, dict(self.headers), body))
                code = 500 if self.path.startswith("/fail") else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "x"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.timeout = 5
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posts(self, prefix: str) -> list[tuple[str, dict, bytes]]:
        """Requests to ``prefix``; ntfy posts JSON to ``/`` and names the topic in the body."""
        with self.lock:
            return [r for r in self.requests if r[0].startswith(prefix) or _topic(r) == prefix.strip("/")]

    def texts(self, prefix: str) -> list[str]:
        out = []
        for _path, headers, body in self.posts(prefix):
            title = headers.get("X-Title") or headers.get("Title") or ""
            out.append(f"{title}\n{body.decode(errors='replace')}")
        return out


def _topic(request: tuple[str, dict, bytes]) -> str | None:
    if request[0] != "/":
        return None
    try:
        return json.loads(request[2]).get("topic")
    except ValueError:
        return None


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, log: Callable[[], str]) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log()[-4000:]}")


CONFIG = """
version: 1
daemon: {{listen: "{{listen}}", database: maintd.db}}
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  ops:
    urls: ["json://127.0.0.1:{port}/ops"]
    events: [started, ended, notice_failed]
tenants:
  - id: acme
    notify_urls: ["json://user:{password}@127.0.0.1:{port}/acme", "ntfy://127.0.0.1:{port}/topic"]
  - id: brokenco
    notify_urls: ["json://127.0.0.1:{port}/fail"]
notifiers:
  retry: {{schedule: [1s], max_age: 5s}}
windows:
  - id: fw
    title: Storage firmware update
    start: {start}
    duration: 3s
    notify: [1h]
"""


def test_chat_urls_get_every_notice_and_the_ops_room_hears_start_end_and_failure(daemon_factory, receiver):
    text = CONFIG.format(port=receiver.port, password=PASSWORD, start=iso_in(12))
    d = daemon_factory(text)

    wait_until(lambda: len(receiver.posts("/acme")) >= 3, 30, "three notices at the json URL", d.log)
    wait_until(lambda: len(receiver.posts("/topic")) >= 3, 10, "three notices at the ntfy URL", d.log)
    for prefix in ("/acme", "/topic"):
        texts = receiver.texts(prefix)
        assert all("Storage firmware update" in t for t in texts), texts
    acme = [json.loads(body) for _p, _h, body in receiver.posts("/acme")]
    assert all(set(m) >= {"title", "message"} for m in acme)

    ops = wait_until(
        lambda: (t := receiver.texts("/ops")) and sum("Maintenance ended" in x for x in t) and t,
        15,
        "the ops room hears the start and the end",
        d.log,
    )
    assert any("Maintenance started: Storage firmware update" in t for t in ops)
    wait_until(
        lambda: any("Notices failed" in t for t in receiver.texts("/ops")), 20, "the ops room hears a failure", d.log
    )

    rows = d.get("/v1/notices", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    rows = rows.get("notices", rows) if isinstance(rows, dict) else rows
    acme_rows = [r for r in rows if r["tenant"] == "acme"]
    channels = sorted({r["channel"] for r in acme_rows})
    assert channels == ["apprise:json", "apprise:ntfy"]
    for kind in ("scheduled", "started", "completed"):
        per_url = [r for r in acme_rows if r["kind"] == kind]
        assert sorted(r["channel"] for r in per_url) == ["apprise:json", "apprise:ntfy"], (kind, per_url)
    assert all(r["target"] and PASSWORD not in r["target"] for r in acme_rows)
    failed = [r for r in rows if r["tenant"] == "brokenco" and r["status"] == "failed"]
    assert failed, rows

    status = d.status()
    counted = sum(status["notices"][k] for k in ("sent", "pending", "failed"))
    # status counts a row being sent (claimed, its result not yet written) as pending
    live = ("sent", "pending", "sending", "failed")
    tenant_rows = [r for r in rows if r["tenant"] != "@ops" and r["status"] in live]
    assert counted == len(tenant_rows)  # the ops room's messages are not tenant notices

    outputs = [
        d.cli("notices").stdout,
        d.cli("notices", "--json").stdout,
        d.cli("notices", "--failed").stdout,
        d.cli("status").stdout,
        d.cli("status", "--json").stdout,
        d.cli("history").stdout,
        d.cli("history", "--json").stdout,
        json.dumps(rows),
        json.dumps(status),
        d.get("/v1/history", headers={"Authorization": f"Bearer {TOKEN}"}).text,
        d.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text,
    ]
    assert "apprise:json" in outputs[1]
    wide = d.cli("notices", "--wide").stdout
    assert f"json://user:****@127.0.0.1:{receiver.port}/acme" in wide  # the masked target (SPEC 4.2)
    outputs.append(wide)
    for out in outputs:
        assert PASSWORD not in out
    assert d.stop() == 0
    assert PASSWORD not in d.log()
