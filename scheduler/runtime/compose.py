"""Composing notices: what a planned action means for one tenant, and the outbox's JSON
form of a notice. Pure (no clock, store or network): the daemon and ``maintd preview``
compose notices the same way, so a preview is what would be sent.

(To move to ``scheduler/notices.py``.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import messages, plan
from ..model import Config, Notice, Tenant, Window, calendar_uid, isoz, notice_id


def parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _instant(text: Any) -> datetime:
    at = parse_time(text)
    if at is None:
        raise ValueError("a notice without its instants")
    return at


def tenant_message(
    cfg: Config, window: Window | None, tenant: Tenant, start: datetime, end: datetime, title: str, window_id: str
) -> str:
    """The tenant-facing message of a window (or the provider's), placeholders filled in."""
    text = (window.message if window and window.message else None) or cfg.provider.message
    return messages.render(
        text,
        provider=cfg.provider.name,
        title=title,
        start=start,
        end=end,
        window=window_id,
        tenant=tenant,
        zone=tenant.zone,
    )


def compose_notice(
    cfg: Config,
    n: plan.NoticeAction,
    tenant: Tenant,
    *,
    window: Window | None = None,
    link: str | None = None,
    summary: dict | None = None,
) -> Notice:
    """The Notice a planned action means for one tenant. Pure: the daemon and ``maintd
    preview`` build notices the same way, so a preview is what would be sent."""
    lead = n.lead if n.kind == "scheduled" else None
    seq_key = n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0
    return Notice(
        id=notice_id(n.window, n.occurrence, tenant.id, n.kind, lead, seq_key),
        kind=n.kind,
        window=n.window,
        occurrence=n.occurrence,
        tenant=tenant.id,
        title=n.title,
        start=n.start,
        end=n.end,
        message=tenant_message(cfg, window, tenant, n.start, n.end, n.title, n.window),
        provider=cfg.provider.name,
        lead=lead,
        late=n.late,
        uid=calendar_uid(n.window, n.occurrence, n.recurring),
        sequence=n.sequence,
        previous_start=n.previous[0] if n.previous else None,
        previous_end=n.previous[1] if n.previous else None,
        summary=summary if n.kind == "completed" else None,
        link=link,
    )


def notice_seq(n: Notice) -> int:
    return n.sequence if n.kind in ("rescheduled", "extended", "cancelled") else 0


def notice_json(n: Notice) -> dict:
    return {
        "id": n.id,
        "kind": n.kind,
        "window": n.window,
        "occurrence": isoz(n.occurrence),
        "tenant": n.tenant,
        "title": n.title,
        "start": isoz(n.start),
        "end": isoz(n.end),
        "message": n.message,
        "provider": n.provider,
        "lead": n.lead,
        "late": n.late,
        "uid": n.uid,
        "sequence": n.sequence,
        "previous_start": isoz(n.previous_start),
        "previous_end": isoz(n.previous_end),
        "summary": dict(n.summary) if n.summary else None,
        "link": n.link,
    }


def notice_from_json(d: dict) -> Notice:
    return Notice(
        id=d["id"],
        kind=d["kind"],
        window=d["window"],
        occurrence=_instant(d["occurrence"]),
        tenant=d["tenant"],
        title=d["title"],
        start=_instant(d["start"]),
        end=_instant(d["end"]),
        message=d["message"],
        provider=d["provider"],
        lead=d.get("lead"),
        late=bool(d.get("late")),
        uid=d.get("uid", ""),
        sequence=int(d.get("sequence") or 0),
        previous_start=parse_time(d.get("previous_start")),
        previous_end=parse_time(d.get("previous_end")),
        summary=d.get("summary"),
        link=d.get("link"),
    )
