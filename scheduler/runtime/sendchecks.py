"""What the outbox checks before and after a send: whether a claimed notice is still true
(:func:`stale`), the tenant page link it was enqueued without (:func:`with_link`), and the
pause a 429/503 asked for (:func:`retry_after_of`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..errors import StoreError
from ..model import Notice, calendar_uid

STARTED = "the window started before this notice could be delivered"


def started(notice: Notice | None, now: datetime) -> bool:
    """A ``scheduled`` notice whose window has started: never sent after the start (SPEC 4)."""
    return notice is not None and notice.kind == "scheduled" and now >= notice.start


def stale(store, row: dict, notice: Notice, now: datetime, later: list[dict] | None = None) -> str | None:
    """Why sending this delivery now would be wrong, or None.

    Never after the start (SPEC 4): the start supersedes pending ``scheduled`` notices, this
    catches one claimed just before. And news that a later ``rescheduled`` or ``cancelled``
    (for a one-off window: of any occurrence, its key moves with its start) made untrue is
    dropped instead of being retried into a tenant's calendar. ``later``: the window's
    changes for this tenant (``store.changes_after``).
    """
    if started(notice, now):
        return STARTED
    if notice.kind in ("scheduled", "rescheduled"):
        if later is None:
            later = [c for c in store.changes_after([row["window"]], row["id"]) if c["tenant"] == row["tenant"]]
        one_off = notice.uid == calendar_uid(notice.window, None, recurring=False)
        for c in later:
            if (
                c["id"] > row["id"]
                and c["notice_id"] != row["notice_id"]
                and (one_off or c["occurrence"] == row["occurrence"])
            ):
                return f"a later {c['kind']} notice replaces it"
    return None


def retry_after_of(exc: Any) -> timedelta | None:
    """The pause a 429/503 asked for (``Retry-After``), if any."""
    status = getattr(exc, "status", None) or (getattr(exc, "detail", None) or {}).get("status")
    if status is not None and status not in (429, 503):
        return None
    after = getattr(exc, "retry_after", None)
    if isinstance(after, timedelta):
        return after
    seconds = (getattr(exc, "detail", None) or {}).get("retry_after")
    return timedelta(seconds=seconds) if isinstance(seconds, int) and seconds > 0 else None


def with_link(store, notice: Notice, base: str | None) -> Notice:
    """Fill in the tenant page link a notice was enqueued without (see ``NoticeRows``)."""
    if notice.link or not base:
        return notice
    try:
        # Read first: creating takes the write lock, which every sender would queue for.
        secret = store.tenant_secret(notice.tenant, create=False) or store.tenant_secret(notice.tenant)
    except StoreError:
        return notice
    return replace(notice, link=f"{base}/t/{secret}/")
