"""Benchmark of the guardrails engine: ``guardrails.conflicts()`` over 90 days.

    python benchmarks/conflicts_bench.py [--tenants 10000] [--runs 5] [--cli]

Builds the records directly (no YAML, so only the engine is timed): 10,000 tenants in
mixed zones, 300 windows shaped like benchmarks/gen_config.py's (200 one-off, 100
weekly/monthly; tenants picked by site, tier x region, region, a short list or all;
about a third name resources), ~5 % of tenants with blackouts (one-off and monthly/
weekly cron in the tenant's zone), 3 freezes and 5 redundancy groups. Prints the cold
first run, the median of ``--runs`` more, and the conflicts by kind. Target: the whole
``maintd conflicts`` under 2 s, so the engine should take a small part of that.

``--cli`` times that whole command instead: ``maintd conflicts --json`` over 90 days on
``gen_config.py --guardrails`` (10,000 tenants, 300 windows, 2 freezes, 3 redundant groups,
blackouts on ~5 % of tenants), as a subprocess: best wall time and its CPU (user + sys).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # time this checkout's scheduler
from scheduler.guardrails import Blackout, Freeze, Guardrails, conflicts  # noqa: E402
from scheduler.model import Config, Provider, Tenant, Window  # noqa: E402
from scheduler.recurrence import resolve_local  # noqa: E402

ZONES = [ZoneInfo(z) for z in ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")]
TIERS = ("gold", "silver", "bronze")
REGIONS = ("eu", "us", "apac", "uk")
GROUPS = tuple(frozenset(f"repo-{r}-{i}" for i in (1, 2)) for r in ("eu", "us", "apac", "uk")) + (
    frozenset({"db-eu-a", "db-eu-b", "db-eu-c"}),
)
RESOURCES = sorted({r for g in GROUPS for r in g} | {"repo-eu-3", "cache-1"})
BASE = datetime(2027, 1, 4, tzinfo=UTC)


def build_tenants(n: int, rng: random.Random) -> dict[str, Tenant]:
    tenants = {}
    for i in range(n):
        region = rng.choice(REGIONS)
        labels = {"tier": rng.choice(TIERS), "region": region, "site": f"{region}-{rng.randint(1, 10)}"}
        tid = f"t{i:05d}"
        tenants[tid] = Tenant(id=tid, name=f"Tenant {i}", zone=rng.choice(ZONES), labels=labels)
    return tenants


def _select(
    tenants: dict[str, Tenant], by_label: dict[tuple[str, str], set[str]], rng: random.Random
) -> frozenset[str]:
    r = rng.random()
    if r < 0.03:
        return frozenset(tenants)
    if r < 0.15:
        return frozenset(rng.sample(sorted(tenants), k=rng.randint(3, 20)))
    if r < 0.55:
        want = {"site": f"{rng.choice(REGIONS)}-{rng.randint(1, 10)}"}
    elif r < 0.85:
        want = {"tier": rng.choice(TIERS), "region": rng.choice(REGIONS)}
    else:
        want = {"region": rng.choice(REGIONS)}
    return frozenset(set.intersection(*(by_label.get(kv, set()) for kv in want.items())))


def build_windows(tenants: dict[str, Tenant], rng: random.Random, oneoff: int = 200, cron: int = 100) -> list[Window]:
    by_label: dict[tuple[str, str], set[str]] = {}
    for t in tenants.values():
        for kv in t.labels.items():
            by_label.setdefault(kv, set()).add(t.id)
    windows = []
    for i in range(oneoff + cron):
        kw: dict = {"zone": rng.choice(ZONES), "tenants": _select(tenants, by_label, rng), "line": 1000 + i}
        if rng.random() < 0.35:
            kw["resources"] = frozenset(rng.sample(RESOURCES, k=rng.choice((1, 1, 2))))
        if i < oneoff:
            start = BASE + timedelta(days=rng.randint(0, 120), hours=rng.randint(0, 23), minutes=rng.choice((0, 30)))
            kw.update(id=f"once-{i:03d}", start=start, end=start + timedelta(hours=rng.randint(1, 6)))
        else:
            minute, hour = rng.choice((0, 15, 30)), rng.randint(0, 5)
            expr = f"{minute} {hour} * * {rng.choice(('sun', 'sat', 'wed'))}" if i % 2 else f"{minute} {hour} 1 * *"
            kw.update(id=f"cron-{i:03d}", cron=expr, duration=timedelta(hours=rng.choice((1, 2, 3))))
        windows.append(Window(title=kw["id"], **kw))
    return windows


def build_blackouts(tenants: dict[str, Tenant], rng: random.Random, share: float = 0.05) -> dict[str, tuple]:
    chosen = rng.sample(sorted(tenants), k=int(len(tenants) * share))
    blackouts = {}
    for tid in chosen:
        zone, items = tenants[tid].zone, []
        for index in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                cron, duration = rng.choice((("0 0 1 * *", timedelta(days=1)), ("0 18 * * fri", timedelta(hours=12))))
                items.append(Blackout(tenant=tid, zone=zone, cron=cron, duration=duration, index=index))
            else:
                start = BASE + timedelta(days=rng.randint(0, 90), hours=rng.randint(0, 23))
                end = start + timedelta(hours=rng.randint(2, 48))
                items.append(Blackout(tenant=tid, zone=zone, start=start, end=end, index=index))
        blackouts[tid] = tuple(items)
    return blackouts


def build(n: int, seed: int = 1) -> tuple[Config, Guardrails]:
    rng = random.Random(seed)
    tenants = build_tenants(n, rng)
    windows = build_windows(tenants, rng)
    berlin = ZoneInfo("Europe/Berlin")
    spans = (
        ("carnival", "2027-02-08T00:00", "2027-02-10T00:00"),
        ("quarter-end", "2027-03-29T00:00", "2027-04-02T00:00"),
    )
    freezes = [
        Freeze(
            id=fid,
            start=resolve_local(datetime.fromisoformat(a), berlin),
            end=resolve_local(datetime.fromisoformat(b), berlin),
            zone=berlin,
        )
        for fid, a, b in spans
    ] + [Freeze(id="release", start=BASE + timedelta(days=20), end=BASE + timedelta(days=22), reason="Release")]
    provider = Provider(name="Bench Cloud", zone=berlin)
    config = Config(path="bench.yaml", provider=provider, tenants=tenants, windows=tuple(windows), policies={})
    guard = Guardrails(
        freezes=tuple(freezes),
        blackouts=build_blackouts(tenants, rng),
        redundant=GROUPS,
        overrides={w.id: "bench" for w in windows[:5]},
        modes={w.id: "skip" for w in windows if w.line % 3 == 0},
    )
    return config, guard


def bench_cli(tenants: int, runs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gen_config import generate

    work = tempfile.mkdtemp(prefix="maintd-conflicts-")
    try:
        path = generate(os.path.join(work, "gen.yaml"), tenants=tenants, guardrails=True)
        maintd = shutil.which("maintd")
        argv = [maintd] if maintd else [sys.executable, "-c", "from scheduler.cli import main; main()"]
        argv += ["--config", path, "conflicts", "--from", BASE.isoformat(), "--json"]
        best = (float("inf"), 0.0, 0)
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ})
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if proc.returncode not in (0, 1):
                raise SystemExit(proc.stderr)
            if wall < best[0]:
                best = (wall, cpu, proc.stdout.count('"kind"'))
        wall, cpu, found = best
        verdict = "ok" if wall < 2.0 else "MISSED"
        print(
            f"maintd conflicts --json over 90 days, {tenants} tenants / 300 windows: best of {runs} "
            f"wall {wall:.2f} s (cpu {cpu:.2f} s), {found} conflicts (target < 2 s: {verdict})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cli", action="store_true", help="time the whole `maintd conflicts` command")
    args = ap.parse_args()
    if args.cli:
        bench_cli(args.tenants, args.runs)
        return
    t0 = time.perf_counter()
    config, guard = build(args.tenants)
    print(
        f"build: {time.perf_counter() - t0:.2f} s ({len(config.tenants)} tenants, {len(config.windows)} windows, "
        f"{len(guard.blackouts)} tenants with blackouts, {len(guard.freezes)} freezes, {len(guard.redundant)} groups)"
    )
    frm, to = BASE, BASE + timedelta(days=90)
    times = []
    for _ in range(args.runs + 1):
        t0 = time.perf_counter()
        found = conflicts(config, frm, to, guard)
        times.append(time.perf_counter() - t0)
    kinds = Counter((c.kind, c.severity) for c in found)
    print(
        f"conflicts() over 90 days: first {times[0] * 1000:.0f} ms, median of {args.runs} more "
        f"{statistics.median(times[1:]) * 1000:.0f} ms; {len(found)} conflicts: "
        + ", ".join(f"{k} {s} {n}" for (k, s), n in sorted(kinds.items()))
    )


if __name__ == "__main__":
    main()
