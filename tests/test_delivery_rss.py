"""A receiver answering 500 with a 300 MB body, end to end (issue 13, SPEC 4.1): the daemon
reads at most 64 KiB of any answer (notifiers/http.py), so a real `maintd run` stays far
below 300 MB of peak RSS while the delivery is retried and fails normally, and it stays
healthy. The receiver streams the body in chunks; it never holds it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"rss-secret-0123456789-abcdefgh").decode()
HUGE = 300 * 1024 * 1024
CHUNK = b"x" * 65536


class HugeBody(BaseHTTPRequestHandler):
    """Answers every POST 500 with a 300 MB body, written chunk by chunk; counts what got out."""

    lock = threading.Lock()
    posts: list[dict] = []
    written: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = json.loads(self.rfile.read(length))
        with self.lock:
            type(self).posts.append({"id": self.headers["webhook-id"], "kind": body["type"]})
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        sent = 0
        self.connection.settimeout(10)
        try:
            while sent < HUGE:
                self.wfile.write(CHUNK)
                sent += len(CHUNK)
        except OSError:  # the daemon hung up after its 64 KiB
            pass
        with self.lock:
            type(self).written.append(sent)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_a_300_mb_error_body_keeps_the_daemon_small_and_the_delivery_fails_normally(daemon_factory) -> None:
    HugeBody.posts, HugeBody.written = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HugeBody)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    start = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        d = daemon_factory(f"""\
version: 1
provider: {{name: RSS Cloud, timezone: UTC}}
tenants:
  - {{id: acme, webhook: {{url: "{url}", secret: "{SECRET}"}}}}
notifiers:
  webhook: {{timeout: 5s}}
  retry: {{schedule: [1s, 1s], max_age: 1h}}
windows:
  - id: fw
    start: {start}
    duration: 1h
    notify: [1h]
daemon: {{listen: "{{listen}}", database: maintd.db}}
""")
        # the 1h lead has passed: a late notice at once, tried 3 times (two waits), then failed
        st = d.wait_for(lambda s: s["notices"]["failed"] == 1, timeout=30, what="the delivery failed for good")
        assert st["notices"]["sent"] == 0 and st["notices"]["pending"] == 0
        peak = peak_rss_mb(d.proc.pid)
        assert peak < 300, f"peak RSS {peak:.0f} MB"
        deadline = time.monotonic() + 10
        while len(HugeBody.written) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(HugeBody.posts) == 3 and len({p["id"] for p in HugeBody.posts}) == 1, HugeBody.posts
        # the daemon hung up long before the end of each body (socket buffers take a few MB)
        assert HugeBody.written and max(HugeBody.written) < HUGE // 4, HugeBody.written
        rows = json.loads(d.cli("notices", "--failed", "--json").stdout)
        assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 3)]
        assert "500" in rows[0]["last_error"], rows[0]["last_error"]
        assert d.get("/healthz", token=None).ok and d.proc.poll() is None
        print(
            f"\npeak RSS (VmHWM) {peak:.0f} MB after {len(HugeBody.posts)} answers of 500 with a {HUGE >> 20} MB body; "
            f"the receiver got out at most {max(HugeBody.written) / 1e6:.1f} MB of one before the daemon hung up"
        )
        assert d.stop() == 0
    finally:
        server.shutdown()
        server.server_close()
