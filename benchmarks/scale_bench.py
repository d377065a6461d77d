"""Scale (issue 19): ``maintd validate`` and the daemon on 100,000 tenants x 30 windows.

Generates the config with ``benchmarks/gen_config.py``, then runs, each in its own
process so that its peak memory is its own:

- ``maintd validate --config FILE`` (``--runs`` times): wall, user CPU and peak RSS;
- ``benchmarks/daemon_bench.py`` (``--iterations`` ticks): load, first tick, steady
  tick, RSS after load and peak RSS.

    python benchmarks/scale_bench.py                       # 100,000 tenants, 20 + 10 windows
    python benchmarks/scale_bench.py --tenants 10000 --runs 3

Targets from the issue: validate < 2 s, one tick < 2 s, daemon RSS < 500 MB. The floor
of validate is PyYAML's: creating its ~2.2 million Python event objects alone is ~2.3 s.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gen_config import generate  # noqa: E402


def run(argv: list[str]) -> tuple[float, float, float, str]:
    """(wall s, user s, peak RSS MB, stdout+stderr) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):  # daemon_bench says 1 when its own 10,000-tenant targets are missed
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out}")
    return wall, usage.ru_utime, usage.ru_maxrss / 1024, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=100_000)
    ap.add_argument("--oneoff", type=int, default=20)
    ap.add_argument("--cron", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3, help="validate runs (the best is the figure)")
    ap.add_argument("--iterations", type=int, default=30, help="daemon ticks")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="maintd-scale-") as tmp:
        path = os.path.join(tmp, "windows.yaml")
        generate(path, tenants=args.tenants, oneoff=args.oneoff, cron=args.cron)
        size = os.path.getsize(path) / 2**20
        print(f"config: {args.tenants} tenants, {args.oneoff + args.cron} windows, {size:.1f} MiB")
        validate = [sys.executable, "-m", "scheduler.cli", "validate", "--config", path]
        runs = [run(validate) for _ in range(args.runs)]
        wall, user, rss, out = min(runs)
        if "OK" not in out:
            raise SystemExit(f"validate did not pass:\n{out}")
        print(f"validate: wall {wall:.2f} s, user {user:.2f} s, max RSS {rss:.0f} MB (best of {args.runs})")

    sizes = ["--tenants", str(args.tenants), "--oneoff", str(args.oneoff), "--cron", str(args.cron)]
    bench = [sys.executable, os.path.join(HERE, "daemon_bench.py"), *sizes, "--iterations", str(args.iterations)]
    _, _, peak, out = run(bench)
    got = {
        name: float(m.group(1)) if (m := re.search(pattern, out)) else float("nan")
        for name, pattern in {
            "load": r"load: ([\d.]+)s",
            "first": r"first tick \(start-up catch-up\): (\d+) ms",
            "median": r"tick:\s+median\s+([\d.]+) ms",
            "p99": r"tick:.*p99\s+([\d.]+) ms",
            "rss": r"rss: \d+ it (\d+) MB",
        }.items()
    }
    print(
        f"daemon: load {got['load']:.2f} s, first tick {got['first']:.0f} ms, "
        f"tick median {got['median']:.1f} ms p99 {got['p99']:.1f} ms, "
        f"RSS {got['rss']:.0f} MB after {args.iterations} ticks, peak {peak:.0f} MB"
    )
    ok_validate, ok_tick, ok_rss = wall < 2, got["first"] < 2000, got["rss"] < 500
    print(
        f"targets: validate < 2 s {'OK' if ok_validate else 'MISSED'}; tick < 2 s {'OK' if ok_tick else 'MISSED'}; "
        f"daemon RSS < 500 MB {'OK' if ok_rss else 'MISSED'}"
    )
    return 0 if ok_validate and ok_tick and ok_rss else 1


if __name__ == "__main__":
    sys.exit(main())
