"""How long one loop iteration of the daemon takes at scale, and whether memory stays flat.

Builds the 10,000-tenant / 300-window config (``benchmarks/gen_config.py``), a ``Daemon``
in-process on a SQLite file in a temporary directory (dry run: notices are rendered and
journaled, not sent) and an injected clock that advances ``--step`` (1 min) per
iteration, across window starts and ends. Each iteration is one ``Daemon.tick()``; in the
same run it times a bare ``plan.evaluate()`` on the same journal snapshot, so the ratio
says what the daemon adds to the pure planning (store reads and writes, notices, gauges).

    python benchmarks/daemon_bench.py                # 1,000 iterations
    python benchmarks/daemon_bench.py --iterations 300 --tenants 2000

Targets: iteration p99 < 100 ms; RSS < 200 MB and flat (reported at 100 / 500 / 1,000).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from scheduler import plan  # noqa: E402
from scheduler.daemon import Daemon  # noqa: E402

try:
    from gen_config import generate  # noqa: E402
except ImportError:  # pragma: no cover - the shared generator is not there yet
    generate = None

UTC = UTC


def _minimal_generate(
    path: str, tenants: int = 10_000, oneoff: int = 200, cron: int = 100, seed: int = 1, **_: object
) -> str:
    """A stand-in for gen_config.generate: same shape, fewer flourishes."""
    import random

    rng = random.Random(seed)
    out = [
        "version: 1",
        "provider: {name: Bench Cloud, timezone: Europe/Berlin, policy: standard}",
        "policies:",
        "  standard: {default: deny, rules: [{allow: {kind: [restore]}}]}",
        "tenants:",
    ]
    for i in range(tenants):
        out.append(
            f"  - {{id: t{i:05d}, name: T{i}, labels: {{tier: {rng.choice(('gold', 'silver'))}, "
            f"region: {rng.choice(('eu', 'us'))}}}, email: [ops@t{i:05d}.example]}}"
        )
    out.append("windows:")
    base = datetime(2027, 1, 4)
    for i in range(oneoff):
        start = base + timedelta(days=rng.randint(0, 180), hours=rng.randint(0, 23))
        out.append(
            f"  - {{id: once-{i:03d}, start: '{start:%Y-%m-%dT%H:%M}', duration: 2h, notify: [24h, 1h], "
            f"tenants: {{labels: {{region: {rng.choice(('eu', 'us'))}}}}}}}"
        )
    for i in range(cron):
        out.append(
            f"  - {{id: cron-{i:03d}, cron: '{rng.choice((0, 30))} {rng.randint(0, 5)} * * "
            f"{rng.randint(0, 6)}', duration: 1h, notify: [1h], tenants: {{labels: {{tier: gold}}}}}}"
        )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")
    return path


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc; ru_maxrss elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--oneoff", type=int, default=200)
    ap.add_argument("--cron", type=int, default=100)
    ap.add_argument("--step", type=float, default=60.0, help="seconds the clock advances per iteration")
    ap.add_argument(
        "--start",
        default="2027-01-10T20:00:00+00:00",
        help="first instant (default: a Sunday evening, so weekly windows start and end)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the iterations; print the top entries")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="maintd-bench-")
    path = os.path.join(tmp, "windows.yaml")
    gen = generate or _minimal_generate
    t = time.perf_counter()
    gen(path, tenants=args.tenants, oneoff=args.oneoff, cron=args.cron)
    print(
        f"config: {args.tenants} tenants, {args.oneoff + args.cron} windows "
        f"({'benchmarks/gen_config.py' if generate else 'local generator'}), "
        f"written in {time.perf_counter() - t:.1f}s to {tmp}"
    )

    clock = Clock(datetime.fromisoformat(args.start).astimezone(UTC))
    t = time.perf_counter()
    daemon = Daemon(path, dry_run=True, clock=clock, env={})
    print(f"load: {time.perf_counter() - t:.2f}s; rss {rss_mb():.0f} MB")

    # The first tick catches up on everything already due (late advance notices for two
    # weeks of windows): a one-off cost at start-up, reported apart from the steady loop.
    t = time.perf_counter()
    daemon.reconciler.tick("start")
    first = time.perf_counter() - t
    print(f"first tick (start-up catch-up): {first * 1000:.0f} ms; rss {rss_mb():.0f} MB")

    step = timedelta(seconds=args.step)
    ticks: list[float] = []
    bare: list[float] = []
    slow: list[tuple[float, str, int, int]] = []
    transitions = notices = 0
    rss: dict[int, float] = {}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    gc.collect()
    for i in range(1, args.iterations + 1):
        clock.now += step
        if profiler:
            profiler.enable()
        t = time.perf_counter()
        ev = daemon.reconciler.tick("bench")
        dt = time.perf_counter() - t
        if profiler:
            profiler.disable()
        ticks.append(dt)
        transitions += len(ev.transitions)
        n = sum(len(x.tenants) for x in ev.notices)
        notices += n
        if dt > 0.1:
            slow.append((dt, clock.now.isoformat(), len(ev.transitions), n))
        # the bare planner on the same snapshot, same instant (snapshot read not timed)
        journal = daemon.reconciler.journal(clock.now)
        t = time.perf_counter()
        plan.evaluate(daemon.config, journal, clock.now)
        bare.append(time.perf_counter() - t)
        if i in (100, 500, 1000) or i == args.iterations:
            rss[i] = rss_mb()

    ms = [x * 1000 for x in ticks]
    bare_ms = [x * 1000 for x in bare]
    print(
        f"iterations: {len(ticks)} (clock {args.start} + {args.step:g}s each); "
        f"{transitions} transitions, {notices} tenant notices rendered"
    )
    print(f"tick:          median {statistics.median(ms):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   max {max(ms):7.2f} ms")
    print(
        f"plan.evaluate: median {statistics.median(bare_ms):7.2f} ms   p99 {pct(bare_ms, 99):7.2f} ms   "
        f"max {max(bare_ms):7.2f} ms"
    )
    print(
        f"ratio tick / evaluate: median {statistics.median(ms) / statistics.median(bare_ms):.2f}x   "
        f"p99 {pct(ms, 99) / pct(bare_ms, 99):.2f}x"
    )
    print("rss: " + ", ".join(f"{k} it {v:.0f} MB" for k, v in sorted(rss.items())))
    if slow:
        print(f"iterations over 100 ms: {len(slow)}")
        for dt, at, tr, n in sorted(slow, reverse=True)[:5]:
            print(f"  {dt * 1000:7.1f} ms at {at}: {tr} transitions, {n} tenant notices")
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    ok_p99 = pct(ms, 99) < 100
    values = [rss[k] for k in sorted(rss)]
    ok_rss = max(values) < 200 and (len(values) < 2 or values[-1] - values[0] < 20)
    print(f"targets: p99 < 100 ms {'OK' if ok_p99 else 'MISSED'}; RSS < 200 MB and flat {'OK' if ok_rss else 'MISSED'}")
    daemon.store.close()
    return 0 if ok_p99 and ok_rss else 1


if __name__ == "__main__":
    sys.exit(main())
