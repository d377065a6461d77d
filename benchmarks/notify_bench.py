"""Notice delivery throughput: 2,000 tenants, one webhook receiver answering after 50 ms.

Measures, in one run and against the same receiver:

* baseline: signed POSTs from a single-threaded ``requests.Session`` loop (``--baseline``
  of them, 200 by default, extrapolated to the full count);
* maintd: a real in-process :class:`scheduler.daemon.Daemon` on SQLite learns of a window
  whose notify lead has passed (late ``scheduled`` notice to every tenant), and its outbox
  worker delivers them. Timed from constructing the daemon (config load, the first tick,
  enqueue) until every delivery is ``sent`` in the store;
* chaos: the same with the receiver failing 20 % of requests at random (503) and a 1 s
  retry base; verifies that no notice is lost or duplicated: the distinct ``webhook-id``s
  answered 2xx are exactly the tenants' notices, and none was answered 2xx twice.

The receiver runs in a separate process (so its threads do not compete with the daemon's
for the GIL) and verifies nothing; signatures are covered by the test suite.

    python benchmarks/notify_bench.py                     # defaults: 2000 tenants, 50 ms
    python benchmarks/notify_bench.py --workers 32 --skip-chaos

Before/after: the same bench measures another checkout through ``MAINTD_BENCH_ROOT``
(trees back to e2b71ce, which had the daemon's constants instead of ``Settings``):

    mkdir /tmp/nb-before && git archive e2b71ce | tar -x -C /tmp/nb-before
    MAINTD_BENCH_ROOT=/tmp/nb-before python benchmarks/notify_bench.py
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UTC = UTC
ROOT = Path(os.environ.get("MAINTD_BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))  # MAINTD_BENCH_ROOT: measure another checkout (before/after)


# --------------------------------------------------------------------------- the receiver


def _receiver_main(port_out, latency: float, fail_rate: float, seed: int) -> None:
    rng = random.Random(seed)
    lock = threading.Lock()
    ok: dict[str, int] = {}
    state = {"requests": 0, "failed": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: senders reuse their connections

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                twice = sorted(k for k, v in ok.items() if v > 1)
                body = json.dumps(
                    {
                        "requests": state["requests"],
                        "failed": state["failed"],
                        "ok_distinct": len(ok),
                        "ok_total": sum(ok.values()),
                        "ok_twice": twice[:20],
                        "ok_twice_count": len(twice),
                    }
                ).encode()
            self._reply(200, body)

        def do_DELETE(self) -> None:
            with lock:
                ok.clear()
                state.update(requests=0, failed=0)
            self._reply(200)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            msg_id = self.headers.get("webhook-id", "")
            with lock:
                state["requests"] += 1
                fail = rng.random() < state_fail[0]
                if fail:
                    state["failed"] += 1
                else:
                    ok[msg_id] = ok.get(msg_id, 0) + 1
            self._reply(503 if fail else 204)

        def do_PUT(self) -> None:  # set the failure rate: PUT /fail/0.2
            state_fail[0] = float(self.path.rsplit("/", 1)[1])
            self._reply(200)

    state_fail = [fail_rate]

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # 64 senders connecting at once must not hit a SYN retry

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


class Receiver:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        self.proc = ctx.Process(target=_receiver_main, args=(q, latency, 0.0, 7), daemon=True)
        self.proc.start()
        self.port = q.get(timeout=30)
        self.url = f"http://127.0.0.1:{self.port}"
        import requests

        self.http = requests.Session()

    def stats(self) -> dict:
        return self.http.get(self.url + "/stats", timeout=10).json()

    def reset(self, fail_rate: float = 0.0) -> None:
        self.http.delete(self.url + "/", timeout=10)
        self.http.put(f"{self.url}/fail/{fail_rate}", timeout=10)

    def cpu(self) -> float:
        """CPU seconds the receiver process used so far (it shares this machine's cores)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


# --------------------------------------------------------------------------- the config


def secret_for(i: int) -> str:
    return "whsec_" + base64.b64encode(hashlib.sha256(f"bench:{i}".encode()).digest()).decode()


def write_config(
    path: Path,
    *,
    tenants: int,
    receiver: str,
    retry_base: str,
    max_attempts: int,
    now: datetime,
    start_in: float = 3600,
) -> datetime:
    """The bench's windows.yaml (the notifiers keys every tree since the outbox reads); returns the start,
    ``start_in`` seconds after ``now`` (before the config is even loaded: on time is then a real bar)."""
    start = (now + timedelta(seconds=start_in)).replace(microsecond=0)
    lines = ["version: 1", "provider: {name: Bench Cloud, timezone: UTC}", "tenants:"]
    for i in range(tenants):
        lines.append(f'  - {{id: t{i:05d}, webhook: {{url: "{receiver}/hook/t{i:05d}", secret: "{secret_for(i)}"}}}}')
    lines += (
        [
            "notifiers:",
            "  webhook: {timeout: 5s}",
            f"  max_attempts: {max_attempts}",
        ]
        + ([f"  retry_base: {retry_base}"] if retry_base != "30s" else [])
        + [  # 30s: the default
            "windows:",
            "  - id: fw",
            "    title: Storage firmware update",
            f"    start: {start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "    duration: 2h",
            "    tenants: all",
            "    notify: [2h]   # passed: every tenant is told at once (late)",
            'daemon: {listen: "127.0.0.1:1", database: bench.db}',
        ]
    )
    path.write_text("\n".join(lines) + "\n")
    return start


# --------------------------------------------------------------------------- runs


def baseline(receiver: Receiver, count: int) -> float:
    """Signed POSTs, one after the other, from one requests.Session. Returns deliveries/s."""
    import requests

    from notifiers.webhook import sign

    session = requests.Session()
    t0 = time.perf_counter()
    for i in range(count):
        msg_id = f"ntc_baseline_{i:05d}"
        body = json.dumps(
            {"type": "maintenance.scheduled", "id": msg_id, "tenant": f"t{i:05d}"}, separators=(",", ":")
        ).encode()
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret_for(i), msg_id, ts, body),
        }
        r = session.post(f"{receiver.url}/hook/t{i:05d}", data=body, headers=headers, timeout=5)
        r.raise_for_status()
    return count / (time.perf_counter() - t0)


def run_daemon(
    receiver: Receiver,
    *,
    tenants: int,
    retry_base: str,
    max_attempts: int,
    timeout: float,
    start_in: float = 3600,
    writer=write_config,
) -> dict:
    """Construct a Daemon on a fresh SQLite file, start it, wait until the outbox is done."""
    from scheduler.daemon import Daemon

    with tempfile.TemporaryDirectory(prefix="maintd-bench-") as tmp:
        cfg = Path(tmp) / "windows.yaml"
        time.sleep(1 - time.time() % 1)  # on a whole second: the start is exactly start_in after it
        start = writer(
            cfg,
            tenants=tenants,
            receiver=receiver.url,
            retry_base=retry_base,
            max_attempts=max_attempts,
            now=datetime.now(UTC),
            start_in=start_in,
        )
        t0, wall0, cpu0 = time.perf_counter(), datetime.now(UTC), _cpu()
        d = Daemon(str(cfg), env={})
        t_loaded = time.perf_counter()
        d.start()  # the first tick enqueues; the outbox worker starts delivering
        t_enqueued = None
        counts = {}
        try:
            while time.perf_counter() - t0 < timeout:
                counts = d.store.notice_counts()
                total = sum(counts.values())
                if t_enqueued is None and total >= tenants:
                    t_enqueued = time.perf_counter()
                if total >= tenants and counts["pending"] == 0:
                    break
                time.sleep(0.1)  # the figures come from sent_at; polling faster only takes the daemon CPU
            cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
            rows = d.store.notices(limit=tenants * 3)
        finally:
            d.stop()
        # Once the start passed, "started" notices follow; the figures are about the scheduled ones:
        # timed until the last of them was sent, on time when sent before the window started.
        scheduled = [r for r in rows if r["kind"] == "scheduled"]
        sent = [_utc(r["sent_at"]) for r in scheduled if r["status"] == "sent"]
        elapsed = ((max(sent) - wall0).total_seconds() if sent else time.perf_counter() - t0) or 1e-9
        late = [r for r in scheduled if r.get("late")]
        on_time = sum(1 for r in late if r["status"] == "sent" and _utc(r["sent_at"]) < start)
        return {
            "elapsed": elapsed,
            "load": t_loaded - t0,
            "cpu": cpu,
            "wall": wall,
            "enqueued": (t_enqueued or t0) - t0,
            "counts": counts,
            "scheduled": len(scheduled),
            "scheduled_sent": len(sent),
            "settled": all(r["status"] in ("sent", "superseded") for r in scheduled),
            "late": len(late),
            "on_time": on_time,
        }


def _cpu() -> float:
    """CPU seconds (user + system) this process used so far: the daemon's, the receiver is another."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _settings() -> tuple[int, int]:
    """Delivery workers and claim batch of the measured tree (older trees had module constants)."""
    try:
        from scheduler.runtime.settings import Settings
    except ImportError:  # before the runtime split (e.g. e2b71ce)
        from scheduler import daemon

        return getattr(daemon, "WORKERS"), getattr(daemon, "CLAIM_BATCH")  # noqa: B009 - absent from this tree
    settings = Settings.from_env(os.environ)
    return settings.workers, settings.claim_batch


def _tree() -> str:
    """Which checkout is measured: its path and commit (``git`` when it is a repository)."""
    import subprocess

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{ROOT} @ {head.stdout.strip() or 'no git'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.05, help="receiver delay per request, seconds")
    ap.add_argument("--baseline", type=int, default=200, help="POSTs in the single-threaded baseline")
    ap.add_argument("--workers", type=int, default=None, help="MAINTD_DELIVERY_WORKERS (default: maintd's)")
    ap.add_argument("--claim-batch", type=int, default=None, help="MAINTD_CLAIM_BATCH")
    ap.add_argument("--skip-chaos", action="store_true")
    ap.add_argument(
        "--start-in", type=float, default=4.0, help="the window starts this many seconds after the config is written"
    )
    ap.add_argument("--target", type=float, default=50.0, help="required speed-up over the baseline")
    args = ap.parse_args()
    if args.workers:
        os.environ["MAINTD_DELIVERY_WORKERS"] = str(args.workers)
    if args.claim_batch:
        os.environ["MAINTD_CLAIM_BATCH"] = str(args.claim_batch)
    import logging

    logging.basicConfig(level=logging.WARNING)  # the daemon logs every delivery at INFO
    import scheduler

    workers, claim_batch = _settings()
    print(f"measuring {_tree()} (scheduler from {Path(scheduler.__file__).parent}); load average {os.getloadavg()}")

    receiver = Receiver(args.latency)
    ok = True
    try:
        receiver.reset()
        base_rate = baseline(receiver, args.baseline)
        print(
            f"baseline: single-threaded requests.Session, {args.baseline} signed POSTs: "
            f"{base_rate:.1f} deliveries/s -> {args.tenants} would take {args.tenants / base_rate:.1f} s"
        )

        receiver.reset()
        rcpu = receiver.cpu()
        r = run_daemon(
            receiver, tenants=args.tenants, retry_base="30s", max_attempts=8, timeout=300, start_in=args.start_in
        )
        rcpu = receiver.cpu() - rcpu
        st = receiver.stats()
        rate = r["scheduled_sent"] / r["elapsed"]
        print(
            f"maintd:   {args.tenants} tenants, {workers} workers, claim batch "
            f"{claim_batch}: {r['scheduled_sent']} scheduled notices sent in {r['elapsed']:.2f} s "
            f"(config load {r['load']:.2f} s, daemon CPU {r['cpu']:.2f} s in {r['wall']:.2f} s, "
            f"enqueued at {r['enqueued']:.2f} s) = {rate:.1f} deliveries/s, "
            f"{rate / base_rate:.1f}x the baseline (target {args.target:g}x)"
        )
        phase = r["scheduled_sent"] / max(1e-9, r["elapsed"] - r["enqueued"])
        print(
            f"          sending alone (from the first tick's enqueue to the last send): {phase:.1f} deliveries/s; "
            f"receiver CPU {rcpu:.2f} s; machine load {os.getloadavg()[0]:.2f}"
        )
        good = (
            r["scheduled"] == args.tenants
            and r["settled"]
            and st["ok_distinct"] == r["counts"].get("sent")
            and st["ok_twice_count"] == 0
        )
        print(
            f"          store {r['counts']}, receiver {st['ok_distinct']} distinct ids answered 2xx, "
            f"{st['ok_twice_count']} twice -> {'OK' if good else 'WRONG'}; late notices on time "
            f"(sent before the start): {r['on_time']} of {r['late']}"
        )
        ok &= good and rate / base_rate >= args.target

        if not args.skip_chaos:
            receiver.reset(fail_rate=0.2)
            r = run_daemon(receiver, tenants=args.tenants, retry_base="1s", max_attempts=25, timeout=600)
            st = receiver.stats()
            good = (
                r["counts"].get("sent") == args.tenants
                and r["counts"].get("failed") == 0
                and st["ok_distinct"] == args.tenants
                and st["ok_total"] == args.tenants
                and st["ok_twice_count"] == 0
            )
            print(
                f"chaos:    20% of requests fail (503), retry base 1s: {st['requests']} requests, "
                f"{st['failed']} failed; all sent in {r['elapsed']:.2f} s; store {r['counts']}; "
                f"{st['ok_distinct']} distinct webhook-ids answered 2xx, {st['ok_twice_count']} answered 2xx "
                f"twice -> {'no notice lost or duplicated' if good else 'LOST OR DUPLICATED'}"
            )
            ok &= good
    finally:
        receiver.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
