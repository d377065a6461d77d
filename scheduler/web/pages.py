"""Data blocks the pages show besides the plan: time left, the next occurrence of every
window however far out, the ops page's jobs and recent history in the provider's zone,
and how soon a page should reload itself.

Pure over what it is given (config, journal, status, rows, ``now``): no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import plan, recurrence
from ..model import Config, Tenant
from ..notices import format_local, parse_time

REFRESH_MIN = 30  # seconds: a page never reloads more often
REFRESH_MAX = 300  # ... nor less often, so a banner is at most five minutes stale
HISTORY = 10  # recent journal entries on the ops page


def span_text(delta: timedelta) -> str:
    """``2h 05m``, ``3d 4h``, ``12m``: a compact duration for a page (never negative)."""
    secs = max(0, int(delta.total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{max(m, 1)}m" if secs else "0m"


def time_left(end: datetime | None, now: datetime) -> str:
    """What a running window's banner says about its end: ``2h 05m left``."""
    if end is None:
        return "until someone ends it"
    return f"{span_text(end - now)} left"


def refresh_after(now: datetime, instants: Iterable[datetime | None]) -> int:
    """Seconds until the page's answer changes (the next start or end), clamped to
    [REFRESH_MIN, REFRESH_MAX]: the meta refresh that updates a banner after the end."""
    ahead = [(t - now).total_seconds() for t in instants if t is not None and t > now]
    soonest = min(ahead, default=REFRESH_MAX)
    return int(min(REFRESH_MAX, max(REFRESH_MIN, soonest + 1)))


def next_beyond(cfg: Config, journal: Any, tenant: Tenant, listed: set[str], now: datetime) -> list[plan.Active]:
    """The next occurrence of each window affecting ``tenant`` that ``listed`` lacks
    (it starts past the page's horizon): a window four years out is still on the page."""
    out: list[plan.Active] = []
    for w in cfg.windows:
        if w.id in listed or w.cancelled or tenant.id not in w.tenants:
            continue
        occ = recurrence.next_start_after(w, now)
        if occ is None:
            continue
        found = [a for a in plan.effective_of([w], journal, occ.start, occ.end) if a.occ.key == occ.key]
        out.extend(found[:1])
    return sorted(out, key=lambda a: (a.occ.start, a.window.id))


def upcoming_rows(upcoming: list[plan.Active], beyond: list[plan.Active], limit: int = 20) -> list[plan.Active]:
    """The first ``limit`` upcoming occurrences, plus the next one of every window they
    leave out (a daily window must not push a yearly one off the page)."""
    shown = upcoming[:limit]
    ids = {a.window.id for a in shown}
    extra: dict[str, plan.Active] = {}
    for a in [*upcoming[limit:], *beyond]:
        if a.window.id not in ids and a.window.id not in extra:
            extra[a.window.id] = a
    return shown + sorted(extra.values(), key=lambda a: (a.occ.start, a.window.id))


def local(ts: Any, zone: ZoneInfo) -> str:
    """An instant (aware datetime or ISO text) in ``zone``; "" for none."""
    when = parse_time(ts)
    return format_local(when, zone) if when else ""


def ops_blocks(cfg: Config, status: Mapping, history: Iterable[Mapping], now: datetime) -> dict:
    """The ops page's active windows with time left, every running or draining job, and
    the recent history, all in the provider's zone."""
    zone = cfg.provider.zone
    active = []
    for a in status.get("active") or ():
        end = parse_time(a.get("end"))
        active.append(
            {
                "window": a["window"],
                "title": a.get("title") or "",
                "start": local(a.get("start"), zone),
                "end": local(end, zone) if end else "until exit",
                "left": time_left(end, now),
                "tenants": len(a.get("tenants") or ()),
                "wave": a.get("wave"),
            }
        )
    jobs = [
        {
            "id": lease["id"],
            "tenant": lease["tenant"],
            "kind": lease["kind"],
            "resource": lease.get("resource") or "",
            "state": "draining" if lease.get("drain") else "running",
            "since": local(lease.get("admitted_at"), zone),
            "deadline": local(lease.get("deadline"), zone),
            "overrun": bool(lease.get("overrun")),
        }
        for lease in (status.get("leases") or {}).get("items") or ()
    ]
    recent = [
        {
            "at": local(h.get("at"), zone),
            "kind": h.get("kind") or "",
            "window": h.get("window") or "",
            "message": h.get("message") or "",
        }
        for h in list(history)[:HISTORY]
    ]
    return {
        "zone": getattr(zone, "key", str(zone)),
        "now_local": format_local(now, zone),
        "active_rows": active,
        "jobs": jobs,
        "recent": recent,
        "refresh": REFRESH_MIN,  # jobs and notices change at any time
    }
