"""Benchmarks of the gate (issue "Gate and drain").

    python benchmarks/gate_bench.py                 # all three parts
    python benchmarks/gate_bench.py --part a        # decide() in-process
    python benchmarks/gate_bench.py --part b --seconds 10 --concurrency 16
    python benchmarks/gate_bench.py --part b --seconds 5 --rounds 3 --concurrency 4   # medians
    python benchmarks/gate_bench.py --part c --leases 100000

(a) ``policy.decide()`` decisions per second, in-process, with 10,000 tenants and a
    50-rule policy, every request meeting an active window (the policy is evaluated on
    every call) and a share asking with ``expected_duration`` against upcoming windows.
    Target: >= 200,000/s.
(b) ``POST /v1/admissions`` requests/s and p50/p99 latency against a real ``maintd run``
    subprocess (10,000 tenants, 200 windows from ``gen_config.py``) under concurrent
    keep-alive load, next to a minimal FastAPI endpoint (same JSON body, constant answer;
    once as ``async def``, once as ``def``) served by uvicorn with the same settings and
    listening socket, in the same run. The load generator is ``wrk`` when it is on PATH
    (or ``--install-wrk`` apt-get installs it), else a threaded ``http.client`` keep-alive
    client (which competes with the servers for CPU: expect lower ratios). Target (issue
    "the gate near the bare-server floor"): >= 80% of the faster bare endpoint's
    throughput at 4 and at 16 connections, p99 < 5 ms. Run it at both:
    ``--part b --concurrency 4`` and ``--part b --concurrency 16``.
(c) the daemon's RSS while 100,000 leases are admitted and released over HTTP, printed
    at 0, 25k, 50k and 100k. Target: flat.

Everything runs on this machine: the load generator competes with the servers for CPU,
so compare the ratio, not the absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

UTC = UTC
TOKEN = "bench-token-0123456789abcdefghijklmn"  # the daemon's admin token (MAINTD_TOKEN); the gate needs one over TCP
AUTH = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


# --------------------------------------------------------------------------- (a) decide()


def bench_decide(tenants: int = 10_000, rules: int = 50, requests: int = 200_000, repeat: int = 5) -> float:
    from scheduler.model import Occurrence, Policy, Provider, Rule, Tenant, Window
    from scheduler.policy import Gating, Request, compile_policies, decide

    rng = random.Random(7)
    zones = [ZoneInfo(z) for z in ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")]
    tiers, regions = ("gold", "silver", "bronze"), ("eu", "us", "apac", "uk")
    kinds = [f"kind-{i}" for i in range(30)] + ["backup", "backup-copy", "restore", "replication"]
    resources = [f"repo-{i}" for i in range(8)]
    rule_list = []
    for i in range(rules - 2):
        # kinds, labels and resources mixed the way a provider's policy grows
        rule_list.append(
            Rule(
                effect=rng.choice(("allow", "deny")),
                kinds=frozenset(rng.sample(kinds, rng.randint(1, 4))) if i % 10 else None,
                resources=frozenset(rng.sample(resources, 2)) if i % 7 == 0 else None,
                labels={"tier": rng.choice(tiers)}
                if i % 3 == 0
                else ({"tier": rng.choice(tiers), "region": rng.choice(regions)} if i % 5 == 0 else {}),
                message="Paused until {end}." if i % 2 else None,
            )
        )
    rule_list.append(Rule(effect="allow", kinds=frozenset({"restore", "replication"})))
    rule_list.append(
        Rule(
            effect="deny",
            kinds=frozenset({"backup", "backup-copy"}),
            message="Backups are paused until {end}; they resume automatically.",
        )
    )
    policy = Policy(name="big", default="deny", rules=tuple(rule_list))
    compiled = compile_policies({"big": policy})
    provider = Provider(name="Bench Cloud", zone=zones[0])
    people = [
        Tenant(
            id=f"t{i:05d}",
            name=f"Tenant {i}",
            zone=rng.choice(zones),
            labels={"tier": rng.choice(tiers), "region": rng.choice(regions)},
        )
        for i in range(tenants)
    ]
    now = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
    everyone = frozenset(t.id for t in people)

    def gating(wid: str, start: datetime, hours: int) -> Gating:
        w = Window(
            id=wid,
            title=wid,
            zone=zones[0],
            tenants=everyone,
            start=start,
            end=start + timedelta(hours=hours),
            policy="big",
        )
        occ = Occurrence(start=start, end=start + timedelta(hours=hours), window=wid, key=start)
        return Gating(window=w, occurrence=occ, policy=policy, period_end=occ.end)

    active = [gating("now", now - timedelta(hours=1), 3)]
    upcoming = [gating("later", now + timedelta(hours=6), 2)]
    reqs = []
    for i in range(requests):
        t = people[rng.randrange(tenants)]
        reqs.append(
            Request(
                tenant=t,
                kind=rng.choice(kinds),
                resource=rng.choice(resources) if rng.random() < 0.5 else None,
                expected_duration=timedelta(hours=rng.choice((1, 8))) if i % 4 == 0 else None,
            )
        )
    # the daemon passes the gatings of the tenant; here every tenant has the same two
    best = 0.0
    admitted = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        admitted = 0
        for r in reqs:
            if decide(
                r,
                active if r.expected_duration is None else (),
                upcoming if r.expected_duration else (),
                now,
                provider=provider,
                compiled=compiled,
            ).admitted:
                admitted += 1
        rate = len(reqs) / (time.perf_counter() - t0)
        best = max(best, rate)
    print(
        f"(a) decide(): {best:,.0f} decisions/s (best of {repeat} x {requests:,}; {tenants:,} tenants, "
        f"{rules} rules; {admitted / len(reqs):.0%} admitted)  target >= 200,000/s  "
        f"{'OK' if best >= 200_000 else 'MISSED'}"
    )
    return best


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                c.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on {port} not ready after {timeout}s")


# The bare endpoint: a FastAPI app with one POST that validates the same JSON body and
# returns a constant, run by uvicorn with the settings and listening socket of
# scheduler/runner.py; as `async def` (FastAPI's minimal example) and as plain `def`
# (served from the thread pool).
BARE_APP = textwrap.dedent("""
    import sys
    from typing import Optional, Union
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Body(BaseModel):
        tenant: str
        kind: str
        resource: Optional[str] = None
        expected_duration: Optional[Union[float, str]] = None

    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    if sys.argv[2] == "async":
        @app.post("/v1/admissions")
        async def admissions(body: Body):
            return {"admitted": True, "lease": "lse_000000000000000000000000", "heartbeat": 10}
    else:
        @app.post("/v1/admissions")
        def admissions(body: Body):
            return {"admitted": True, "lease": "lse_000000000000000000000000", "heartbeat": 10}

    from scheduler.runner import bind  # the listening socket exactly as `maintd run` makes it

    sock = bind("127.0.0.1:" + sys.argv[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                  timeout_graceful_shutdown=5)).run(sockets=[sock])
""")


class Servers:
    """The maintd daemon (big generated config) and the bare app, as subprocesses."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def maintd(self, *, tenants: int = 10_000, heartbeat: int = 10) -> tuple[int, subprocess.Popen]:
        from gen_config import generate

        cfg = self.workdir / "windows.yaml"
        if not cfg.exists():
            # gen_config's tenants and one-off windows, moved 60 days out: no notice is due
            # during the run, so the outbox worker is idle and the gate is measured alone
            # (the recurring windows would have notices due at once, sent to fake hosts).
            base = (datetime.now() + timedelta(days=60)).replace(hour=0, minute=0, second=0, microsecond=0)
            generate(str(cfg), tenants=tenants, oneoff=200, cron=0, base=base)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
        env.update(
            {
                "MAINTD_LISTEN": f"127.0.0.1:{port}",
                "MAINTD_DATABASE": str(self.workdir / f"m{port}.db"),
                "MAINTD_TOKEN": TOKEN,
                "MAINTD_HEARTBEAT": str(heartbeat),
            }
        )
        argv = [
            sys.executable,
            "-c",
            "from scheduler.cli import main; main()",
            "--config",
            str(cfg),
            "run",
            "--log-level",
            "warning",
        ]
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"maintd-{port}.log", "wb"),
        )
        self.procs.append(proc)
        wait_http(port, proc, timeout=120)
        return port, proc

    def bare(self, flavour: str = "async") -> tuple[int, subprocess.Popen]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(port), flavour],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        wait_http(port, proc)
        return port, proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- load


def bodies(tenants: int, n: int = 4096, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    kinds = ("backup", "backup-copy", "restore", "replication", "agent-backup")
    out = []
    for _ in range(n):
        body = {"tenant": f"t{rng.randrange(tenants):05d}", "kind": rng.choice(kinds)}
        if rng.random() < 0.3:
            body["resource"] = f"repo-{rng.randrange(4)}"
        if rng.random() < 0.3:
            body["expected_duration"] = rng.choice(("30m", "2h", "8h"))
        out.append(json.dumps(body).encode())
    return out


class _Conn(http.client.HTTPConnection):
    """Keep-alive connection with Nagle off: http.client writes headers and body in two
    sends, and Nagle plus delayed ACK would add 40 ms to every request."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def python_load(port: int, payloads: list[bytes], seconds: float, concurrency: int) -> dict:
    """Threads, one keep-alive ``http.client`` connection each, for ``seconds``."""
    stop = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def worker(i: int) -> None:
        conn = _Conn("127.0.0.1", port, timeout=30)
        mine = lat[i]
        seen: dict[int, int] = {}
        k = i
        headers = AUTH
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            try:
                conn.request("POST", "/v1/admissions", body=payloads[k % len(payloads)], headers=headers)
                resp = conn.getresponse()
                resp.read()
                seen[resp.status] = seen.get(resp.status, 0) + 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = _Conn("127.0.0.1", port, timeout=30)
                continue
            mine.append(time.perf_counter() - t0)
            k += concurrency
        conn.close()
        with lock:
            for s, c in seen.items():
                statuses[s] = statuses.get(s, 0) + c

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for part in lat for x in part)
    return {
        "rps": len(all_lat) / elapsed,
        "p50_ms": _pct(all_lat, 50) * 1000,
        "p99_ms": _pct(all_lat, 99) * 1000,
        "requests": len(all_lat),
        "errors": sum(errors),
        "statuses": statuses,
        "tool": "python",
    }


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


WRK_LUA = textwrap.dedent("""
    local bodies = {}
    local i = 0
    init = function(args)
      for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
      args_token = args[2]
    end
    request = function()
      i = i + 1
      return wrk.format("POST", "/v1/admissions", {["Content-Type"] = "application/json",
                        ["Authorization"] = "Bearer " .. args_token}, bodies[(i % #bodies) + 1])
    end
    done = function(summary, latency, requests)
      io.write(string.format("JSON {\\"requests\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
        .. "\\"non2xx\\": %d, \\"errors\\": %d}\\n", summary.requests, latency:percentile(50),
        latency:percentile(99), summary.errors.status, summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout))
    end
""")


def wrk_load(port: int, payloads: list[bytes], seconds: float, concurrency: int, workdir: Path) -> dict:
    lua = workdir / "admit.lua"
    lua.write_text(WRK_LUA)
    data = workdir / "bodies.txt"
    data.write_bytes(b"\n".join(payloads) + b"\n")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(2, concurrency)),
            "-c",
            str(concurrency),
            "-d",
            f"{int(seconds)}s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}",
            "--",
            str(data),
            TOKEN,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
    d = json.loads(line[5:])
    rps = next(float(ln.split(":")[1]) for ln in out.splitlines() if ln.strip().startswith("Requests/sec"))
    return {
        "rps": rps,
        "p50_ms": d["p50_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "requests": d["requests"],
        "errors": d["errors"],
        "statuses": {"non-2xx": d["non2xx"]},
        "tool": "wrk",
    }


def find_wrk(install: bool) -> bool:
    if shutil.which("wrk"):
        return True
    if install and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("wrk") is not None


def bench_http(
    workdir: Path, *, seconds: float, concurrency: int, tool: str, install_wrk: bool, tenants: int, rounds: int = 1
) -> dict:
    use_wrk = tool == "wrk" or (tool == "auto" and find_wrk(install_wrk))
    if tool == "wrk" and not find_wrk(install_wrk):
        raise SystemExit("wrk is not installed (try --install-wrk)")
    servers = Servers(workdir)
    try:
        mport, _ = servers.maintd(tenants=tenants)
        aport, _ = servers.bare("async")
        sport, _ = servers.bare("sync")
        payloads = bodies(tenants)

        def load(port: int, secs: float) -> dict:
            if use_wrk:
                return wrk_load(port, payloads, secs, concurrency, workdir)
            return python_load(port, payloads, secs, concurrency)

        for port in (aport, sport, mport):  # warm up (imports, first connections, SQLite pages)
            load(port, 2)
        runs: list[tuple[str, dict]] = []
        for _ in range(rounds):  # interleaved: a drifting or noisy machine hits all three alike
            runs.append(("bare endpoint (async def)", load(aport, seconds)))
            runs.append(("bare endpoint (def)", load(sport, seconds)))
            runs.append(("POST /v1/admissions", load(mport, seconds)))
        # the bare ones again, so a drift during the last admissions run shows up in the numbers
        runs.append(("bare endpoint (async def)", load(aport, seconds)))
        runs.append(("bare endpoint (def)", load(sport, seconds)))
    finally:
        servers.close()
    for name, r in runs:
        print(
            f"(b) {name:26s} {r['rps']:8,.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"({r['requests']:,} requests, {r['errors']} errors, {r['statuses']}, {r['tool']}, "
            f"{concurrency} connections)"
        )

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for n, r in runs if n == name)

    gate = {"rps": median("POST /v1/admissions", "rps"), "p99_ms": median("POST /v1/admissions", "p99_ms")}
    bare_async = median("bare endpoint (async def)", "rps")
    bare_sync = median("bare endpoint (def)", "rps")
    bare = max(bare_async, bare_sync)  # the target is against the faster one
    ratio = gate["rps"] / bare
    of = f"the median of {rounds} runs each" if rounds > 1 else "one run, the bare endpoints' median of two"
    print(
        f"(b) admissions/bare = {ratio:.0%} of the faster bare endpoint ({gate['rps'] / bare_async:.0%} of "
        f"async def, {gate['rps'] / bare_sync:.0%} of def; {of})  target >= 80% {'OK' if ratio >= 0.8 else 'MISSED'}; "
        f"p99 {gate['p99_ms']:.2f} ms target < 5 ms {'OK' if gate['p99_ms'] < 5 else 'MISSED'}"
    )
    return {"bare": bare, "gate": gate, "ratio": ratio, "runs": runs}


# --------------------------------------------------------------------------- (c) RSS


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_rss(workdir: Path, *, leases: int, concurrency: int, tenants: int) -> list[tuple[int, int]]:
    servers = Servers(workdir)
    marks = sorted({0, leases // 4, leases // 2, leases})
    out: list[tuple[int, int]] = []
    try:
        port, proc = servers.maintd(tenants=tenants)
        payloads = bodies(tenants)
        done = [0]
        lock = threading.Lock()
        errors = [0]

        def worker(count: int, offset: int) -> None:
            conn = _Conn("127.0.0.1", port, timeout=30)
            headers = AUTH
            for k in range(count):
                try:
                    conn.request("POST", "/v1/admissions", body=payloads[(offset + k) % len(payloads)], headers=headers)
                    resp = conn.getresponse()
                    body = json.loads(resp.read())
                    if resp.status == 200:
                        conn.request("DELETE", f"/v1/leases/{body['lease']}", headers=AUTH)
                        r2 = conn.getresponse()
                        r2.read()
                        if r2.status != 200:
                            errors[0] += 1
                    else:
                        errors[0] += 1
                except (OSError, http.client.HTTPException, ValueError):
                    errors[0] += 1
                    conn.close()
                    conn = _Conn("127.0.0.1", port, timeout=30)
            conn.close()
            with lock:
                done[0] += count

        t0 = time.perf_counter()
        out.append((0, rss_kb(proc.pid)))
        print(f"(c) RSS at {0:>7,} leases: {out[-1][1] / 1024:7.1f} MiB", flush=True)
        prev = 0
        for mark in marks[1:]:
            step = mark - prev
            share = [step // concurrency + (1 if i < step % concurrency else 0) for i in range(concurrency)]
            threads = [threading.Thread(target=worker, args=(n, prev + i * 7919)) for i, n in enumerate(share)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            prev = mark
            out.append((mark, rss_kb(proc.pid)))
            print(
                f"(c) RSS at {mark:>7,} leases: {out[-1][1] / 1024:7.1f} MiB  "
                f"({time.perf_counter() - t0:.0f} s, {errors[0]} errors)",
                flush=True,
            )
    finally:
        servers.close()
    growth = (out[-1][1] - out[1][1]) / 1024 if len(out) > 2 else 0.0
    print(
        f"(c) growth from {marks[1]:,} to {marks[-1]:,} leases: {growth:+.1f} MiB  "
        f"target flat {'OK' if growth < 10 else 'MISSED'}"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("a", "b", "c", "all"), default="all")
    ap.add_argument("--seconds", type=float, default=10.0, help="(b) length of each measured run")
    ap.add_argument("--rounds", type=int, default=1, help="(b) interleaved rounds of the three servers; medians")
    ap.add_argument("--concurrency", type=int, default=16, help="(b, c) keep-alive connections")
    ap.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto", help="(b) load generator")
    ap.add_argument("--install-wrk", action="store_true", help="(b) apt-get install wrk when it is missing")
    ap.add_argument("--leases", type=int, default=100_000, help="(c) leases to admit and release")
    ap.add_argument("--tenants", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        workdir = Path(tmp)
        if args.part in ("a", "all"):
            bench_decide(tenants=args.tenants)
        if args.part in ("b", "all"):
            bench_http(
                workdir,
                seconds=args.seconds,
                concurrency=args.concurrency,
                tool=args.tool,
                install_wrk=args.install_wrk,
                tenants=args.tenants,
                rounds=args.rounds,
            )
        if args.part in ("c", "all"):
            bench_rss(workdir, leases=args.leases, concurrency=min(args.concurrency, 8), tenants=args.tenants)


if __name__ == "__main__":
    main()
