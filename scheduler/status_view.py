"""The at-a-glance ``maintd status`` for ops at 2 a.m. (rich)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _short(text: str | None) -> str:
    """2026-12-05T21:00:00Z -> 12-05 21:00Z: readable in an 80-column terminal."""
    ts = _ts(text)
    return ts.strftime("%m-%d %H:%MZ") if ts else "-"


def _left(end: str | None, now: datetime) -> str:
    e = _ts(end)
    if e is None:
        return "until `maintd exit`"
    secs = int((e - now).total_seconds())
    if secs <= 0:
        return "ending"
    h, rem = divmod(secs, 3600)
    m = rem // 60
    return f"{h}h{m:02d}m left" if h else f"{m}m left" if m else f"{secs}s left"


def _until(start: str | None, now: datetime) -> str:
    s = _ts(start)
    if s is None:
        return ""
    secs = int((s - now).total_seconds())
    d, rem = divmod(max(secs, 0), 86400)
    h, rem = divmod(rem, 3600)
    return f"in {d}d{h}h" if d else f"in {h}h{rem // 60:02d}m"


def _tenants(ts: list[str]) -> str:
    return ", ".join(ts[:5]) + (f" +{len(ts) - 5} more" if len(ts) > 5 else "")


def render_status(st: dict[str, Any], now: datetime) -> None:
    console = Console()
    colour = {"normal": "green", "maintenance": "yellow", "draining": "red"}[st["mode"]]
    head = f"[bold {colour}]{st['mode'].upper()}[/]"
    if st.get("dry_run"):
        head += "  [dim](dry run: notices are rendered, not sent)[/]"
    console.print(Panel(head, title="maintd", expand=False))
    if st["active"]:
        t = Table(title="active", title_justify="left")
        t.add_column("window", overflow="fold")
        t.add_column("title")
        t.add_column("since", no_wrap=True)
        t.add_column("ends", no_wrap=True)
        t.add_column("tenants")
        for a in st["active"]:
            t.add_row(
                a["window"],
                a.get("title", ""),
                _short(a["start"]),
                f"{_short(a['end']) if a['end'] else 'on exit'}\n{_left(a['end'], now)}",
                _tenants(a["tenants"]),
            )
        console.print(t)
    if st["next"]:
        t = Table(title="next", title_justify="left")
        t.add_column("window", overflow="fold")
        t.add_column("title")
        t.add_column("start", no_wrap=True)
        t.add_column("end", no_wrap=True)
        t.add_column("tenants")
        for a in st["next"]:
            t.add_row(
                a["window"],
                a.get("title", ""),
                f"{_short(a['start'])}\n{_until(a['start'], now)}",
                _short(a["end"]),
                _tenants(a["tenants"]),
            )
        console.print(t)
    leases, notices = st["leases"], st["notices"]
    console.print(
        f"jobs: {leases['running']} running, "
        f"[{'red' if leases['draining'] else 'default'}]{leases['draining']} draining[/]"
    )
    for lease in leases.get("items", []):
        if lease["drain"]:
            flag = " [red]OVERRUN[/]" if lease.get("overrun") else ""
            console.print(
                f"  draining {lease['id']} {lease['tenant']}/{lease['kind']} "
                f"deadline {lease['deadline'] or 'none (may finish)'}{flag}"
            )
    console.print(
        f"notices: {notices['sent']} sent, {notices['pending']} pending, "
        f"[{'red' if notices['failed'] else 'default'}]{notices['failed']} failed[/]"
    )
    hooks = st.get("hooks") or {}
    if hooks.get("pending") or hooks.get("failed"):
        console.print(f"hooks: {hooks.get('pending', 0)} pending, {hooks.get('failed', 0)} failed")
    cfg = st["config"]
    line = f"config: {cfg['path']} loaded {cfg['loaded_at']}"
    console.print(line)
    if cfg.get("error"):
        console.print(
            f"[bold red]last reload failed ({cfg.get('reloaded_at')}), still running the config "
            f"loaded {cfg['loaded_at']}:[/] {cfg['error']}"
        )
    for f in st.get("faults", []):
        console.print(f"[red]fault[/] {f['what']}: {f['message']} (since {f['since']})")
