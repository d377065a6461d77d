"""Terminal tables of ``plan``, ``notices`` and ``history``, designed for 80 columns.

Narrow (the default): short local times in the provider's zone, ids whole, one line per
row, free text (tenants, errors, messages) ellipsized to what is left. ``--wide``: every
field in full, UTC instants as the API gives them; ``--json`` for machines.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.padding import Padding
from rich.text import Text

from ..model import Config, isoz
from ..status_view import (
    add_text,
    cell,
    console,
    fitted,
    full_time,
    human,
    needs_month,
    short_time,
    table,
)

__all__ = ["full_time", "print_history", "print_notices", "print_plan", "tidy_message"]

# Python's str(timedelta) in a daemon message ("extended by 0:30:00"): written as maintd writes durations.
_TIMEDELTA = re.compile(r"\b(?:(\d+) days?, )?(\d{1,2}):(\d\d):(\d\d)\b")


_INSTANT = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)")


def tidy_message(text: str | None, zone: ZoneInfo | None = None) -> str:
    """A daemon message as the tables write things: ``0:30:00`` as ``30m``, and (given a
    zone) UTC instants as short local times."""

    def duration(m: re.Match) -> str:
        days, h, mi, s = (int(x or 0) for x in m.groups())
        return human(timedelta(days=days, hours=h, minutes=mi, seconds=s).total_seconds())

    text = _TIMEDELTA.sub(duration, text or "")
    if zone is not None:
        text = _INSTANT.sub(lambda m: short_time(m.group(0), zone), text)
    return text


def print_plan(
    cfg: Config, events: Sequence[Any], start: datetime, end: datetime, tenant: str | None, *, wide: bool
) -> None:
    out = console(wide)
    if not events:
        out.print(f"Nothing happens between {isoz(start)} and {isoz(end)}.")
        return
    zone = cfg.provider.zone
    suffix = f" for {tenant}" if tenant else ""
    if wide:
        title = f"maintd plan {isoz(start)} .. {isoz(end)}{suffix}, times in each tenant's zone"
    else:
        span = f"{short_time(start, zone, month=True)} .. {short_time(end, zone, month=True)}"
        title = f"maintd plan {span}{suffix}, times in {zone.key}"
    month = needs_month([events[0].at, events[-1].at])  # sorted by `at`
    groups: dict[tuple, list[str]] = defaultdict(list)
    for e in events:
        # narrow: one row for every tenant at once; wide: one per tenant's zone, in that zone
        zone_key = cfg.tenants[e.tenant].zone.key if wide and e.tenant is not None else ""
        # SPEC 7: a skipped occurrence says why; a tenant in a blackout (warn) is marked
        note = e.reason or ("BLACKOUT" if e.conflict else None)
        key = (e.at, e.rank, e.event, e.window, e.occurrence, e.kind, e.lead, e.late, zone_key, note, e.wave)
        groups[key].append(e.tenant if e.tenant is not None else "(all)")
    rows, tenants = [], []
    for (at, _, event, window, _, kind, lead, late, _zone, note, wave), ids in groups.items():
        window = window if wave is None else f"{window} (wave {wave})"  # SPEC 8
        first = cfg.tenants.get(ids[0])
        when = full_time(at, first.zone if first else zone) if wide else short_time(at, zone, month=month)
        what = event
        if event == "notice":
            what = (f"{kind} {lead}" if lead else kind) + (" LATE" if late else "")
        if note:
            what += f" ({note})" if event == "skipped" else f" {note}"
        rows.append([when, window, what])
        tenants.append(ids)
    out.print(Text(title))  # not the table's title: that wraps at the table's width
    out.print(fitted(None, ["when", "window", "event"], rows, tenants, width=out.width))
    if any(key[7] for key in groups):
        out.print("LATE: lead time passed at --from; sent at once, before the window starts.")


def print_notices(rows: list[dict], zone: ZoneInfo, *, failed: bool, wide: bool) -> None:
    out = console(wide)
    if not rows:
        out.print("No notices.")
        return
    title = "notices" + (" (failed)" if failed else "")
    if wide:
        t = table(title)
        for name in ("created", "sent", "id", "kind", "lead", "late", "window", "occurrence", "tenant"):
            t.add_column(name, no_wrap=True)
        for name in ("channel", "target", "status", "attempts", "next attempt", "error"):
            t.add_column(name, no_wrap=True)
        for r in rows:
            t.add_row(
                r["created_at"],
                r.get("sent_at") or "",
                r.get("id") or "",
                r["kind"],
                r.get("lead") or "",
                "late" if r.get("late") else "",
                r["window"],
                r.get("occurrence") or "",
                r["tenant"],
                r["channel"],
                r.get("target") or "",  # masked by the daemon (SPEC 4.2)
                r["status"],
                str(r["attempts"]),
                r.get("next_attempt_at") or "",
                cell(r.get("last_error")),
            )
        out.print(t)
        return
    # One table per window under its id: at 80 columns a window id beside each row leaves
    # no room for the status. Column widths are shared so the tables line up.
    month = needs_month([r["created_at"] for r in rows])
    cells = [
        (
            short_time(r["created_at"], zone, month=month),
            r["tenant"],
            r["kind"] + (f" {r['lead']}" if r.get("lead") else "") + (" late" if r.get("late") else ""),
            r["channel"],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r["window"]].append(i)
    out.print(f"{title}, times in {zone.key}")
    for n, (window, members) in enumerate(groups.items()):
        t = table()
        t.show_header = n == 0
        for name, width in zip(("created", "tenant", "kind", "via"), widths):
            t.add_column(name, no_wrap=True, min_width=width)
        add_text(t, "status")
        for i in members:
            t.add_row(*cells[i], cell(_state(rows[i])))
        out.print(Text(window, style="bold"))
        out.print(Padding(t, (0, 0, 0, 2)))
    _print_targets(out, rows)


def _print_targets(out: Any, rows: list[dict]) -> None:
    """Where the deliveries went, once per tenant and channel, the target masked by the daemon
    (SPEC 4.2). Its own table: beside every row a URL would leave the state a few characters
    at 80 columns, and a cut URL says nothing; here it folds onto the next line instead."""
    targets = sorted({(r["tenant"], r["channel"], r["target"]) for r in rows if r.get("target")})
    if not targets:
        return
    t = table()
    t.add_column("tenant", no_wrap=True)
    t.add_column("via", no_wrap=True)
    t.add_column("to", overflow="fold")
    for target in targets:
        t.add_row(*target)
    out.print(Text("delivery targets", style="bold"))
    out.print(Padding(t, (0, 0, 0, 2)))


def _state(r: dict) -> str:
    """``sent``, ``pending (1 try): connection refused``, ``failed (7 tries): HTTP 500``."""
    status, attempts = r["status"], r.get("attempts") or 0
    text = status
    if attempts and status != "sent":
        text += f" ({attempts} tr{'y' if attempts == 1 else 'ies'})"
    if r.get("last_error") and status != "sent":
        text += f": {r['last_error']}"
    return text


def print_history(rows: list[dict], zone: ZoneInfo, *, wide: bool) -> None:
    out = console(wide)
    if not rows:
        out.print("No history yet.")
        return
    if wide:
        t = table("history")
        for name in ("at", "kind", "window", "occurrence", "actor"):
            t.add_column(name, no_wrap=True)
        add_text(t, "message")
        for r in rows:
            t.add_row(
                r["at"],
                r["kind"],
                r.get("window") or "",
                r.get("occurrence") or "",
                r.get("actor") or "",
                cell(tidy_message(r.get("message"))),
            )
        out.print(t)
        return
    # The window's id leads the message (most messages start with it already): a column of
    # its own would leave the message a dozen characters at 80 columns.
    month = needs_month([r["at"] for r in rows])
    t = table(f"history, times in {zone.key}")
    for name in ("at", "kind", "actor"):
        t.add_column(name, no_wrap=True)
    add_text(t, "window: message")
    for r in rows:
        window, message = r.get("window") or "", tidy_message(r.get("message"), zone)
        if window and not message.startswith(window):
            message = f"{window}: {message}" if message else window
        t.add_row(short_time(r["at"], zone, month=month), r["kind"], r.get("actor") or "", cell(message))
    out.print(t)
