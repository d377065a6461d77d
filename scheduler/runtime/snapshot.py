"""The journal as ``plan`` sees it: one read of the store per tick (and per page view)."""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import plan
from ..model import Config, Window
from ..notices import parse_time
from .waves import read_waves

OPEN_ENDED = timedelta(days=3650)  # `maintd enter` without --for lasts until `maintd exit`


def read_journal(store, cfg: Config, now: datetime) -> plan.Journal:
    """What the store says happened, from the catch-up floor on."""
    since = now - plan.CATCHUP - timedelta(days=2)
    return plan.Journal(
        last_tick=store.get_meta_time("last_tick"),
        events=frozenset(store.events(since=since)),
        open=_open_occurrences(store),
        overrides={k: v["end"] for k, v in store.overrides().items()},
        manual=tuple(_manual_windows(store, cfg, since)),
        announced=_announced(store),
        sent_leads=frozenset(store.sent_leads(since)),
        **read_waves(store),
    )


def _open_occurrences(store) -> dict:
    out = {}
    for row in store.open_occurrences():
        d = row.get("detail") or {}
        out[(row["window"], row["occurrence"])] = plan.OpenOccurrence(
            window=row["window"],
            key=row["occurrence"],
            start=row["at"],
            end=parse_time(d.get("end")) or row["at"],
            tenants=frozenset(d.get("tenants", ())),
            title=d.get("title", row["window"]),
        )
    return out


def _manual_windows(store, cfg: Config, since: datetime) -> list[Window]:
    out = []
    for m in store.manual_windows(active_only=False):
        end = m["ended_at"] or m["end"] or (m["start"] + OPEN_ENDED)
        if m["end"] is not None and m["ended_at"] is None:
            end = m["end"]
        if end < since:
            continue
        tenants = frozenset(m["tenants"]) if m["tenants"] is not None else frozenset(cfg.tenants)
        out.append(
            Window(
                id=m["id"],
                title=f"Manual maintenance: {m['reason']}",
                zone=cfg.provider.zone,
                tenants=tenants,
                start=m["start"],
                end=max(end, m["start"] + timedelta(seconds=1)),
                policy=m["policy"] or cfg.provider.policy,
                manual=True,
                message=None,
            )
        )
    return out


def _announced(store) -> dict:
    return {
        (wid, anc): plan.Announcement(
            start=a["start"],
            end=a["end"],
            title=a["title"],
            sequence=a["sequence"],
            tenants=frozenset(a["tenants"] or ()),
            status=a["status"],
            occurrence=a.get("occurrence_key"),
        )
        for (wid, anc), a in store.announcements().items()
    }


def find_window(cfg: Config, ev: plan.Evaluation | None, window_id: str) -> Window | None:
    """A window of the file, or a manual one the last evaluation knows."""
    w = cfg.window(window_id)
    if w is None and ev is not None:
        for a in ev.active + ev.upcoming:
            if a.window.id == window_id:
                return a.window
    return w
