"""HA benchmark: admissions/s across 3 instances vs 1 on one PostgreSQL, and failover time.

    python benchmarks/ha_bench.py [--seconds 5] [--threads 16] [--kills 10]

Starts a throwaway PostgreSQL (tests/pgserver.py: Debian's binaries), then real
`maintd run` subprocesses on loopback. Prints requests/s and p50/p99 for one instance
and for three (load spread round-robin), their ratio, and the time from `kill -9` of the
leader until another instance reports itself leader (median and max over --kills).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pgserver import PostgresServer  # noqa: E402

CONFIG = """\
version: 1
provider: {name: Bench Cloud, timezone: UTC, policy: std}
tenants:
%s
policies:
  std: {default: deny, rules: [{allow: {kind: [restore]}}]}
windows:
  - id: later
    start: 2030-01-01T00:00:00Z
    duration: 1h
daemon:
  listen: "127.0.0.1:%d"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, workdir: Path, database: str, idx: int) -> None:
        self.port = free_port()
        self.path = workdir / f"windows-{idx}.yaml"
        tenants = "\n".join(f"  - id: t{i:03d}" for i in range(100))
        self.path.write_text(CONFIG % (tenants, self.port))
        self.env = {
            **os.environ,
            "MAINTD_DATABASE": database,
            "MAINTD_LEADER_POLL": "0.5",
            "MAINTD_TOKEN": "bench-token-0123456789abcdefghijklmn",
        }
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Instance:
        self.proc = subprocess.Popen(
            ["maintd", "--config", str(self.path), "run", "--log-level", "warning"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"instance on {self.port} did not start")

    def is_leader(self) -> bool:
        try:
            st = requests.get(self.url + "/v1/status", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return any(i.get("self") and i["leader"] for i in st.get("instances", []))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def load(urls: list[str], seconds: float, threads: int) -> tuple[float, float, float, int]:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.time() + seconds

    def worker(i: int) -> None:
        s = requests.Session()
        mine, n = [], i
        while time.time() < stop:
            url = urls[n % len(urls)]
            n += 1
            t0 = time.perf_counter()
            try:
                r = s.post(url + "/v1/admissions", json={"tenant": f"t{n % 100:03d}", "kind": "restore"}, timeout=5)
                ok = r.status_code == 200
                if ok:
                    s.delete(url + f"/v1/leases/{r.json()['lease']}", timeout=5)
            except requests.RequestException:
                ok = False
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.time() - t0
    lat.sort()
    return len(lat) / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000, errors[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--kills", type=int, default=10)
    args = ap.parse_args()
    pg = PostgresServer().start()
    work = Path(tempfile.mkdtemp(prefix="maintd-ha-bench-"))
    name = "bench_" + secrets.token_hex(3)
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    db = pg.url.rsplit("/", 1)[0] + "/" + name
    insts = [Instance(work, db, i).start() for i in range(3)]
    try:
        time.sleep(2)
        one = load([insts[0].url], args.seconds, args.threads)
        three = load([i.url for i in insts], args.seconds, args.threads)
        print(f"admissions, 1 instance : {one[0]:8.0f}/s  p50 {one[1]:.1f} ms  p99 {one[2]:.1f} ms  errors {one[3]}")
        print(
            f"admissions, 3 instances: {three[0]:8.0f}/s  p50 {three[1]:.1f} ms  p99 {three[2]:.1f} ms  "
            f"errors {three[3]}"
        )
        print(f"ratio 3/1: {three[0] / one[0]:.2f}x (machine: {os.cpu_count()} cores; the instances share them)")
        times = []
        for _k in range(args.kills):
            leader = None
            deadline = time.time() + 20
            while leader is None and time.time() < deadline:
                leader = next((i for i in insts if i.proc.poll() is None and i.is_leader()), None)
                time.sleep(0.05)
            if leader is None:
                raise RuntimeError("no leader")
            t0 = time.time()
            leader.kill9()
            new = None
            while new is None and time.time() - t0 < 30:
                new = next((i for i in insts if i is not leader and i.proc.poll() is None and i.is_leader()), None)
                if new is None:
                    time.sleep(0.02)
            if new is None:
                raise RuntimeError("no takeover within 30 s")
            times.append(time.time() - t0)
            leader.start()
        print(
            f"failover over {len(times)} leader kills: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s (target: 10 s)"
        )
    finally:
        for i in insts:
            i.stop()
        admin.dispose()
        pg.destroy()


if __name__ == "__main__":
    main()
