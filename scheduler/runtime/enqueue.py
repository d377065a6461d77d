"""Outbox rows for the notices a tick plans: one per tenant and channel, composed now
(the tenant's language, message and summary as of the tick) and sent later by the outbox."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import plan
from ..errors import StoreError
from ..model import Notice, Tenant, isoz
from ..notices import compose_notice, notice_seq
from ..notices import notice_to_json as notice_json
from .faults import StoreGuard
from .generation import Generations
from .snapshot import find_window

log = logging.getLogger("maintd")


class NoticeRows:
    def __init__(
        self,
        *,
        store,
        generations: Generations,
        guard: StoreGuard,
        evaluation: Callable[[], plan.Evaluation | None],
        dry_run: bool = False,
    ) -> None:
        self.store = store
        self.generations = generations
        self.guard = guard
        self.evaluation = evaluation  # the last tick's answer: it knows the manual windows
        self.dry_run = dry_run

    def build_notice(
        self,
        n: plan.NoticeAction,
        tenant: Tenant,
        *,
        summary: dict | None = None,
        create_secret: bool = True,
        now: datetime | None = None,
    ) -> Notice:
        """The notice ``n`` means for one tenant. ``create_secret=False`` inside a store
        transaction: making a tenant's first page secret is a write of its own, so the link
        is then left for delivery to fill in (``Outbox``)."""
        cfg = self.generations.config
        link = None
        if cfg.daemon.public_url:
            try:
                secret = self.store.tenant_secret(tenant.id, create=create_secret)
                link = f"{cfg.daemon.public_url}/t/{secret}/" if secret else None
            except StoreError:
                link = None
        if n.kind == "completed" and summary is None:
            summary = self.summary(n, tenant.id)
        window = find_window(cfg, self.evaluation(), n.window)
        return compose_notice(
            cfg, n, tenant, window=window, link=link, summary=summary, format_time=tenant_time(tenant), now=now
        )

    def summary(
        self,
        n: plan.NoticeAction,
        tenant: str,
        counts: dict | None = None,
        started: dict | None = None,
        now: datetime | None = None,
    ) -> dict:
        """What the tenant's ``completed`` notice reports, from the journal: its jobs refused
        (by kind), drained and stopped during the occurrence, and when maintenance really
        began and ended (later than planned when maintd was down at the edge).

        ``counts`` (``store.journal_counts``) and ``started`` (the start event) are read once
        per occurrence by :meth:`rows`; without them they are read here.
        """
        with self.guard() as g:
            if counts is None:
                counts = self.store.journal_counts(n.window, n.occurrence)
            if started is None:
                started = self.store.events(since=n.start).get((n.window, n.occurrence, "start"))
        if g.failed:
            counts = counts or {}
        actual_start = n.start
        if started:
            actual_start = started["recorded_at"] if started.get("late") else started["at"]
        actual_end = n.end
        if n.late and now is not None:
            actual_end = max(n.end, now)  # maintd was down at the end: released only now
        mine = (counts or {}).get(tenant) or {}
        return {
            "actual_start": isoz(actual_start),
            "actual_end": isoz(actual_end),
            "refused": dict(sorted((mine.get("refused") or {}).items())),
            "drained": int(mine.get("drained", 0)),
            "stopped": int(mine.get("stopped", 0)),
        }

    def rows(self, n: plan.NoticeAction, now: datetime) -> list[dict]:
        """Outbox rows for one notice action. Runs inside the tick's transaction (so reads
        only; see :meth:`build_notice`)."""
        generation = self.generations.current
        rows: list[dict] = []
        counts = started = None
        if n.kind == "completed":
            counts = self.store.journal_counts(n.window, n.occurrence)
            started = self.store.events(since=n.start).get((n.window, n.occurrence, "start")) or {}
        for tid in sorted(n.tenants):
            tenant = generation.config.tenants.get(tid)
            if tenant is None:
                continue
            summary = self.summary(n, tid, counts, started, now) if n.kind == "completed" else None
            notice = self.build_notice(n, tenant, summary=summary, create_secret=False, now=now)
            payload = notice_json(notice)
            for channel, notifier in generation.notifiers.items():
                if channel.startswith("ops:") or not notifier.applies_to(tenant):
                    continue
                rows.append(
                    {
                        "notice_id": notice.id,
                        "channel": channel,
                        "window": n.window,
                        "occurrence": n.occurrence,
                        "tenant": tid,
                        "kind": n.kind,
                        "lead": notice.lead,
                        "seq": notice_seq(notice),
                        # Every row carries its target, masked: what every view shows of it.
                        "payload": {**payload, "target": delivery_target(notifier, tenant)},
                        "created_at": now,
                        "late": n.late,
                        "status": "dry-run" if self.dry_run else "pending",
                    }
                )
                if self.dry_run:
                    dry_run_render(notifier, notice, tenant)
        return rows


def delivery_target(notifier: Any, tenant: Tenant) -> str | None:
    """Where a delivery goes, masked: an email address as is, a webhook URL without
    credentials, query or long path tokens, a chat URL as Apprise's privacy form."""
    target_for = getattr(notifier, "target_for", None)
    return target_for(tenant) if target_for is not None else getattr(notifier, "target", None)


def dry_run_render(notifier: Any, notice: Notice, tenant: Tenant) -> None:
    """A dry run renders what it would send (so template errors show now) and logs it."""
    channel = notifier.channel
    extra = {"action": "notice-dry-run", "window": notice.window, "tenant": tenant.id}
    try:
        if channel == "email":
            msg = notifier.build_message(notice, tenant)
            what = f"email to {msg['To']}: {msg['Subject']}"
        elif channel == "webhook":
            what = f"webhook {notice.payload()['type']} ({notice.id})"
        elif channel.startswith("apprise:"):
            what = f"{channel.split('#', 1)[0]} to {notifier.target}"
        else:
            what = channel
    except Exception as exc:  # noqa: BLE001 - report it like a send would, never break the tick
        log.warning(
            "dry-run: %s notice for %s to %s via %s cannot be rendered: %s",
            notice.kind,
            notice.window,
            tenant.id,
            channel,
            exc,
            extra=extra,
        )
        return
    log.info("dry-run: %s notice for %s to %s not sent (%s)", notice.kind, notice.window, tenant.id, what, extra=extra)


def tenant_time(tenant: Tenant) -> Callable[[datetime, Any], str]:
    """Dates of a tenant's message in its language (Babel; SPEC 4.3)."""
    from notifiers.i18n import format_local

    locale = getattr(tenant, "locale", "en") or "en"
    return lambda ts, zone: format_local(ts, zone, locale)
