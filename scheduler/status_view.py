"""The at-a-glance ``maintd status`` for ops at 2 a.m. (rich), and the terminal's way of
writing times and durations that the other tables share.

Designed for 80 columns (also the width when output is not a terminal): local times in
the provider's zone written short (``Sat 05 02:30``), ids never cut, one line per row,
the occurrences of one recurring window folded into one row. ``--json`` has everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .duration import format_duration

WIDE = 100_000  # --wide: no width limit; nothing is cut


def ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def short_time(when: datetime | str | None, zone: ZoneInfo, *, month: bool = False) -> str:
    """``Sat 05 02:30`` in ``zone`` (``Sat 05 Dec 02:30`` with ``month``); ``-`` for none."""
    t = ts(when) if isinstance(when, str) or when is None else when
    if t is None:
        return "-"
    return t.astimezone(zone).strftime("%a %d %b %H:%M" if month else "%a %d %H:%M")


def needs_month(times: Sequence[datetime | str | None]) -> bool:
    """Weekday and day of month name one day only within four weeks: beyond, show the month."""
    got = [t for t in (ts(x) if isinstance(x, str) or x is None else x for x in times) if t is not None]
    return bool(got) and max(got) - min(got) > timedelta(days=27)


def full_time(when: datetime, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def human(seconds: float) -> str:
    """A duration as maintd writes them, rounded to what a reader needs: ``45s``, ``30m``,
    ``2h30m``, ``5d4h`` (never ``0:30:00``)."""
    s = max(0, round(seconds))
    if s >= 86400:
        s = round(s / 3600) * 3600
    elif s >= 3600:
        s = round(s / 60) * 60
    elif s >= 60:
        s = -(-s // 60) * 60  # up: "retry in 1m" for 59 s would be early
    return format_duration(timedelta(seconds=s))


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def console(wide: bool = False) -> Console:
    """The terminal's width, COLUMNS, or 80 when not a terminal; unlimited with --wide."""
    return Console(width=WIDE) if wide else Console()


def table(title: str | None = None) -> Table:
    """A borderless table: every column of an 80-column screen goes to data."""
    return Table(
        title=title,
        title_justify="left",
        box=None,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        padding=(0, 1),
    )


def add_id(t: Table, name: str) -> None:
    t.add_column(name, no_wrap=True)  # never cut or folded: people copy ids into commands


def add_text(t: Table, name: str, ratio: int | None = None) -> None:
    """A free-text column: it gives way to the others (its cells are ellipsized, one line)."""
    t.add_column(name, ratio=ratio)


def cell(text: str | None) -> Text:
    return Text(text or "", no_wrap=True, overflow="ellipsis")


def tenants_text(ids: Sequence[str], budget: int = 20) -> str:
    """Whole tenant ids while they fit in ``budget`` characters, then how many more
    (``acme, beta +8``); only the count when not even one id fits. Never a cut id."""
    if not ids:
        return "none"
    shown: list[str] = []
    for i in ids:
        rest = len(ids) - len(shown) - 1
        if len(", ".join([*shown, i])) + (len(f" +{rest}") if rest else 0) > budget:
            break
        shown.append(i)
    if not shown:
        return plural(len(ids), "tenant") if len(plural(len(ids), "tenant")) <= budget else str(len(ids))
    more = len(ids) - len(shown)
    return ", ".join(shown) + (f" +{more}" if more else "")


def fitted(
    title: str | None,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    tenants: Sequence[Sequence[str]],
    notes: Sequence[str | None] | None = None,
    *,
    width: int,
    note_header: str = "title",
) -> Table:
    """A borderless table for ``width`` columns: ``header`` columns never cut (times, ids,
    words), then the tenants (whole ids while they fit, then a count), then a free-text
    note (ellipsized) when there is room for one."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    left = width - sum(widths) - 2 * len(widths)
    budget = left if notes is None else min(left, 24)
    shown = [tenants_text(ids, max(budget, 1)) for ids in tenants]
    with_notes = notes is not None and left - max([7] + [len(x) for x in shown]) - 2 >= 8
    t = table(title)
    for h in header:
        t.add_column(h, no_wrap=True)
    t.add_column("tenants" if left >= len("tenants") else "#", no_wrap=True)
    if with_notes:
        add_text(t, note_header)
    for i, (row, who) in enumerate(zip(rows, shown)):
        t.add_row(*row, who, *([cell(notes[i])] if with_notes and notes else []))
    return t


# --------------------------------------------------------------------------- status


def _left(end: str | None, now: datetime) -> str:
    e = ts(end)
    if e is None:
        return "until exit"
    secs = (e - now).total_seconds()
    return human(secs) if secs > 0 else "ending"


def _every(starts: list[datetime], zone: ZoneInfo) -> str:
    """How a recurring window's next occurrences repeat: ``every Sat 02:30``, ``daily 02:30``."""
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    local = starts[0].astimezone(zone)
    if gaps <= {timedelta(days=7), timedelta(days=7, hours=1), timedelta(days=6, hours=23)}:
        return f"every {local:%a %H:%M}"
    if gaps <= {timedelta(days=1), timedelta(hours=25), timedelta(hours=23)}:
        return f"daily {local:%H:%M}"
    if len(gaps) == 1:
        return f"every {human(next(iter(gaps)).total_seconds())} from {local:%a %d %H:%M}"
    return f"{len(starts)} times from {local:%a %d %H:%M}"


def _fold(items: list[dict]) -> list[tuple[dict, int]]:
    """The next occurrences, one row per window: its first, and how many are listed."""
    first: dict[str, dict] = {}
    count: dict[str, int] = {}
    for a in items:
        first.setdefault(a["window"], a)
        count[a["window"]] = count.get(a["window"], 0) + 1
    return [(a, count[w]) for w, a in first.items()]


def render_status(st: dict[str, Any], now: datetime, zone: ZoneInfo | None = None, *, wide: bool = False) -> None:
    zone = zone or ZoneInfo("UTC")
    out = console(wide)
    colour = {"normal": "green", "maintenance": "yellow", "draining": "red"}[st["mode"]]
    head = f"[bold {colour}]{st['mode'].upper()}[/]"
    if st.get("dry_run"):
        head += "  [dim](dry run: notices are rendered, not sent)[/]"
    out.print(Panel(head, title="maintd", expand=False))
    if st["active"]:
        out.print(_active(st["active"], now, zone, out, wide))
    if st["next"]:
        out.print(_next(st["next"], now, zone, out, wide))
    _print_counts(out, st, zone)


def _active(items: list[dict], now: datetime, zone: ZoneInfo, out: Console, wide: bool) -> Table:
    month = needs_month([now] + [a["start"] for a in items] + [a["end"] for a in items])
    header = ["window", *(["since"] if wide else []), "ends", "left"]
    rows = []
    for a in items:
        since = [short_time(a["start"], zone, month=month)] if wide else []
        ends = short_time(a["end"], zone, month=month) if a["end"] else "on exit"
        rows.append([a["window"], *since, ends, _left(a["end"], now)])
    title = f"active (times in {zone.key})"
    notes = [a.get("title") for a in items]
    return fitted(title, header, rows, [a["tenants"] for a in items], notes, width=out.width)


def _next(items: list[dict], now: datetime, zone: ZoneInfo, out: Console, wide: bool) -> Table:
    firsts = [(a, 1) for a in items] if wide else _fold(items)
    month = needs_month([now] + [a["start"] for a, _ in firsts])
    rows = []
    for a, n in firsts:
        starts = [x for x in (ts(b["start"]) for b in items if b["window"] == a["window"]) if x]
        when = _every(starts, zone) if n > 1 else short_time(a["start"], zone, month=month)
        start, end = ts(a["start"]), ts(a["end"])
        lasts = human((end - start).total_seconds()) if start and end else "-"
        rows.append([a["window"], when, _in(start, now), lasts])
    title = f"next (times in {zone.key})"
    notes = [a.get("title") for a, _ in firsts]
    tenants = [a["tenants"] for a, _ in firsts]
    return fitted(title, ["window", "starts", "in", "for"], rows, tenants, notes, width=out.width)


def _join(shown: Sequence[str] | str) -> str:
    return shown if isinstance(shown, str) else ", ".join(shown)


def _in(start: datetime | None, now: datetime) -> str:
    if start is None:
        return ""
    secs = (start - now).total_seconds()
    return human(secs) if secs > 0 else "now"


def _print_counts(out: Console, st: dict[str, Any], zone: ZoneInfo) -> None:
    leases, notices = st["leases"], st["notices"]
    out.print(
        f"{plural(leases['running'], 'job')} running, "
        f"[{'red' if leases['draining'] else 'default'}]{leases['draining']} draining[/]"
    )
    for lease in leases.get("items", []):
        if lease["drain"]:
            flag = " [red]OVERRUN[/]" if lease.get("overrun") else ""
            deadline = short_time(lease["deadline"], zone) if lease.get("deadline") else "none (may finish)"
            line = Text(f"  draining {lease['id']} {lease['tenant']}/{lease['kind']} deadline {deadline}")
            out.print(line, Text.from_markup(flag) if flag else "", sep="")
    extra = "".join(f", {notices[k]} {k}" for k in ("superseded",) if notices.get(k))
    out.print(
        f"notices: {notices['sent']} sent, {notices['pending']} pending, "
        f"[{'red' if notices['failed'] else 'default'}]{notices['failed']} failed[/]{extra}"
    )
    hooks = st.get("hooks") or {}
    if hooks.get("pending") or hooks.get("failed"):
        out.print(f"hooks: {hooks.get('pending', 0)} pending, {hooks.get('failed', 0)} failed")
    cfg = st["config"]
    out.print(Text(f"config loaded {short_time(cfg['loaded_at'], zone)} from {cfg['path']}"))
    if cfg.get("error"):
        out.print(
            f"[bold red]last reload failed ({short_time(cfg.get('reloaded_at'), zone)}), still running the config "
            f"loaded {short_time(cfg['loaded_at'], zone)}:[/]",
            Text(cfg["error"]),
        )
    for f in st.get("faults", []):
        out.print(
            Text.assemble(("fault", "red"), f" {f['what']}: {f['message']} (since {short_time(f['since'], zone)})")
        )
    for h in st.get("halted", []):  # SPEC 8
        out.print(Text.assemble(("halted", "red"), f" {h['window']} after wave {h['after']}: {h['reason']}"))
