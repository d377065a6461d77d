"""Terminal tables of ``plan``, ``notices`` and ``history``, designed for 80 columns.

Narrow (the default): short local times in the provider's zone, ids whole, one line per
row, free text (tenants, errors, messages) ellipsized to what is left. ``--wide``: every
field in full, UTC instants as the API gives them; ``--json`` for machines.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..model import Config, isoz
from ..status_view import (
    add_id,
    add_text,
    cell,
    console,
    full_time,
    human,
    needs_month,
    short_time,
    table,
    tenants_text,
)

__all__ = ["full_time", "print_history", "print_notices", "print_plan", "tidy_message"]

# Python's str(timedelta) in a daemon message ("extended by 0:30:00"): written as maintd writes durations.
_TIMEDELTA = re.compile(r"\b(?:(\d+) days?, )?(\d{1,2}):(\d\d):(\d\d)\b")


def tidy_message(text: str | None) -> str:
    def sub(m: re.Match) -> str:
        days, h, mi, s = (int(x or 0) for x in m.groups())
        return human(timedelta(days=days, hours=h, minutes=mi, seconds=s).total_seconds())

    return _TIMEDELTA.sub(sub, text or "")


def print_plan(cfg: Config, events: list, start: datetime, end: datetime, tenant: str | None, *, wide: bool) -> None:
    out = console(wide)
    if not events:
        out.print(f"Nothing happens between {isoz(start)} and {isoz(end)}.")
        return
    suffix = f" for {tenant}" if tenant else ""
    if wide:
        t = table(f"maintd plan {isoz(start)} .. {isoz(end)}{suffix}")
        t.add_column("when (tenant's zone)", no_wrap=True)
    else:
        zone = cfg.provider.zone
        month = needs_month([e.at for e in events])
        t = table(f"maintd plan {short_time(start, zone, month=True)} .. {short_time(end, zone, month=True)}{suffix}")
        t.add_column(f"when ({zone.key})", no_wrap=True)
    t.add_column("event", no_wrap=True)
    add_id(t, "window")
    t.add_column("detail", no_wrap=True)
    add_text(t, "tenants")
    groups: dict[tuple, list[str]] = defaultdict(list)
    for e in events:
        # narrow: one row for every tenant at once; wide: one per tenant's zone, in that zone
        zone_key = cfg.tenants[e.tenant].zone.key if wide else ""
        groups[(e.at, e.rank, e.event, e.window, e.occurrence, e.kind, e.lead, e.late, zone_key)].append(e.tenant)
    for (at, _, event, window, _, kind, lead, late, _zone), tenants in groups.items():
        if wide:
            when = full_time(at, cfg.tenants[tenants[0]].zone)
        else:
            when = short_time(at, cfg.provider.zone, month=month)
        detail = ""
        if event == "notice":
            detail = f"{kind} {lead}" if lead else kind
            if late:
                detail += " LATE"
        label = {"start": "[red]start[/]", "end": "[green]end[/]", "notice": "notice"}.get(event, event)
        shown = ", ".join(tenants) if wide else tenants_text(tenants, limit=6)
        t.add_row(when, label, window, detail, cell(shown))
    out.print(t)
    if any(key[7] for key in groups):
        out.print("LATE: its lead time has passed at --from; sent at once, before the window starts.")


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
        for name in ("channel", "status", "attempts", "next attempt", "error"):
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
                r["status"],
                str(r["attempts"]),
                r.get("next_attempt_at") or "",
                cell(r.get("last_error")),
            )
        out.print(t)
        return
    month = needs_month([r["created_at"] for r in rows])
    t = table(f"{title}, times in {zone.key}")
    t.add_column("created", no_wrap=True)
    add_id(t, "window")
    add_id(t, "tenant")
    t.add_column("kind", no_wrap=True)
    t.add_column("via", no_wrap=True)
    add_text(t, "status")
    for r in rows:
        kind = r["kind"] + (f" {r['lead']}" if r.get("lead") else "") + (" late" if r.get("late") else "")
        t.add_row(
            short_time(r["created_at"], zone, month=month),
            r["window"],
            r["tenant"],
            kind,
            r["channel"],
            cell(_state(r)),
        )
    out.print(t)


def _state(r: dict) -> str:
    """``sent``, ``pending, try 3 in 5m``, ``failed after 7 tries: connection refused``."""
    status, attempts = r["status"], r.get("attempts") or 0
    text = status
    if status == "failed" and attempts:
        text += f" after {attempts} tr{'y' if attempts == 1 else 'ies'}"
    elif status == "pending" and attempts:
        text += f", {attempts} failed tr{'y' if attempts == 1 else 'ies'}"
    if r.get("last_error") and status != "sent":
        text += f": {r['last_error']}"
    return text


def print_history(rows: list[dict], zone: ZoneInfo, *, wide: bool) -> None:
    out = console(wide)
    if not rows:
        out.print("No history yet.")
        return
    t = table("history" if wide else f"history, times in {zone.key}")
    t.add_column("at", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    add_id(t, "window")
    if wide:
        t.add_column("occurrence", no_wrap=True)
    t.add_column("actor", no_wrap=True)
    add_text(t, "message")
    month = needs_month([r["at"] for r in rows])
    for r in rows:
        at = r["at"] if wide else short_time(r["at"], zone, month=month)
        row: list[Any] = [at, r["kind"], r.get("window") or ""]
        if wide:
            row.append(r.get("occurrence") or "")
        row += [r.get("actor") or "", cell(tidy_message(r.get("message")))]
        t.add_row(*row)
    out.print(t)
