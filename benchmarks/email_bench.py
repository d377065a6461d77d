"""Email fan-out: 2,000 tenants through one local SMTP relay (aiosmtpd) answering DATA after 20 ms.

Measures, in one run and against the same relay:

* baseline: the same messages (built by maintd's ``EmailNotifier.build_message``, untimed)
  sent one after the other over ONE reused ``smtplib`` connection (``--baseline`` of them,
  200 by default);
* maintd: a real in-process Daemon on SQLite learns of a window whose notify lead has
  passed and that starts ``--start-in`` seconds (4) after the config is written: a late
  ``scheduled`` email to every tenant. Timed from constructing the daemon until the last
  of them was sent; on time = sent before the window started.

The relay runs in its own process and counts messages and SMTP sessions (EHLOs): with
connection reuse there are far fewer sessions than messages.

    python benchmarks/email_bench.py                       # 2000 tenants, 20 ms
    python benchmarks/email_bench.py --rate 200/s          # with notifiers.email.rate

Before/after: ``MAINTD_BENCH_ROOT`` as in notify_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notify_bench as nb  # noqa: E402 - the daemon runner, the tree and its settings


def _relay_main(conn, latency: float) -> None:
    from aiosmtpd.controller import Controller

    stats = {"messages": 0, "sessions": 0}

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            stats["sessions"] += 1
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(latency)
            stats["messages"] += 1
            return "250 Message accepted"

    import socket

    with socket.socket() as probe:  # Controller checks it is up by connecting: it needs the real port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    conn.send(port)
    while True:
        command = conn.recv()
        if command == "reset":
            stats.update(messages=0, sessions=0)
        conn.send(dict(stats))


class Relay:
    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_relay_main, args=(child, latency), daemon=True)
        self.proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the SMTP relay did not start")
        self.port = self._conn.recv()
        self.url = f"127.0.0.1:{self.port}"

    def stats(self, reset: bool = False) -> dict:
        self._conn.send("reset" if reset else "stats")
        return self._conn.recv()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


def write_config(
    path: Path, *, tenants: int, receiver: str, retry_base: str, max_attempts: int, now: datetime, start_in: float
) -> datetime:
    host, port = receiver.split(":")
    start = (now + timedelta(seconds=start_in)).replace(microsecond=0)
    lines = ["version: 1", "provider: {name: Bench Cloud, timezone: UTC}", "tenants:"]
    lines += [f"  - {{id: t{i:05d}, email: ops@t{i:05d}.example}}" for i in range(tenants)]
    rate = os.environ.get("BENCH_EMAIL_RATE")
    lines += [
        "notifiers:",
        f"  email: {{host: {host}, port: {port}, sender: noc@bench.example, timeout: 10s"
        + (f", rate: {rate}" if rate else "")
        + "}",
        f"  max_attempts: {max_attempts}",
        "windows:",
        "  - id: fw",
        "    title: Storage firmware update",
        f"    start: {start.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "    duration: 2h",
        "    tenants: all",
        "    notify: [2h]   # passed: every tenant is told at once (late)",
        'daemon: {listen: "127.0.0.1:1", database: bench.db}',
    ]
    path.write_text("\n".join(lines) + "\n")
    return start


def baseline(relay: Relay, count: int) -> float:
    """The same kind of message, one after the other over one smtplib connection. Returns messages/s."""
    from notifiers import EmailNotifier, Renderer
    from scheduler.model import EmailSettings, Notice, Tenant, notice_id

    settings = EmailSettings(host="127.0.0.1", port=relay.port, sender="noc@bench.example")
    notifier = EmailNotifier(settings, Renderer("Bench Cloud"))
    start = datetime.now(nb.UTC).replace(microsecond=0) + timedelta(hours=1)
    messages = []
    for i in range(count):
        tenant = Tenant(id=f"t{i:05d}", name=f"t{i:05d}", zone=ZoneInfo("UTC"), email=(f"ops@t{i:05d}.example",))
        notice = Notice(
            kind="scheduled",
            id=notice_id("fw", start, tenant.id, "scheduled", "2h", 0),
            window="fw",
            occurrence=start,
            tenant=tenant.id,
            title="Storage firmware update",
            start=start,
            end=start + timedelta(hours=2),
            message="Bench Cloud is under scheduled maintenance.",
            provider="Bench Cloud",
            lead="2h",
            late=True,
        )
        messages.append(notifier.build_message(notice, tenant))
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        t0 = time.perf_counter()
        for msg in messages:
            smtp.send_message(msg)
        return count / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.02, help="relay delay per message (DATA), seconds")
    ap.add_argument("--baseline", type=int, default=200, help="messages in the single-connection baseline")
    ap.add_argument("--workers", type=int, default=None, help="MAINTD_DELIVERY_WORKERS (default: maintd's)")
    ap.add_argument("--start-in", type=float, default=4.0, help="the window starts this long after the config")
    ap.add_argument("--rate", default=None, help="notifiers.email.rate, e.g. 200/s (default: none)")
    ap.add_argument("--target", type=float, default=5.0, help="required speed-up over the baseline")
    args = ap.parse_args()
    if args.workers:
        os.environ["MAINTD_DELIVERY_WORKERS"] = str(args.workers)
    if args.rate:
        os.environ["BENCH_EMAIL_RATE"] = args.rate
    import logging

    logging.basicConfig(level=logging.WARNING)
    import scheduler

    workers, _ = nb._settings()
    print(f"measuring {nb._tree()} (scheduler from {Path(scheduler.__file__).parent}); load average {os.getloadavg()}")
    relay = Relay(args.latency)
    try:
        base_rate = baseline(relay, args.baseline)
        st = relay.stats()
        relay.stats(reset=True)
        print(
            f"baseline: one smtplib connection, {args.baseline} messages: {base_rate:.1f} messages/s "
            f"({st['sessions']} session)"
        )
        r = nb.run_daemon(
            relay,  # type: ignore[arg-type]
            tenants=args.tenants,
            retry_base="30s",
            max_attempts=8,
            timeout=300,
            start_in=args.start_in,
            writer=write_config,
        )
        st = relay.stats()
        rate = r["scheduled_sent"] / r["elapsed"]
        good = r["scheduled"] == args.tenants and r["settled"] and st["messages"] == r["counts"].get("sent")
        print(
            f"maintd:   {args.tenants} tenants, {workers} workers{', rate ' + args.rate if args.rate else ''}: "
            f"{r['scheduled_sent']} scheduled emails sent in {r['elapsed']:.2f} s (config load {r['load']:.2f} s, "
            f"daemon CPU {r['cpu']:.2f} s in {r['wall']:.2f} s, enqueued at {r['enqueued']:.2f} s) = {rate:.1f} messages/s, "
            f"{rate / base_rate:.1f}x the baseline (target {args.target:g}x)"
        )
        print(
            f"          store {r['counts']}; relay {st['messages']} messages over {st['sessions']} SMTP sessions "
            f"-> {'OK' if good else 'WRONG'}; late emails on time (sent before the start {args.start_in:g} s "
            f"away): {r['on_time']} of {r['late']}"
        )
    finally:
        relay.close()
    return 0 if good and rate / base_rate >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
