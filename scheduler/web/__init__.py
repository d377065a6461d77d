"""Tenant views and the ops page, served by ``maintd run`` (SPEC section 5).

- ``/t/{secret}/`` and ``/t/{secret}/calendar.ics``: one tenant's page and calendar feed,
  behind a per-tenant secret (``maintd tenant-url ID``). An unknown or rotated secret is a
  plain 404 and nothing of another tenant is ever rendered: every query below is filtered
  by the one tenant the secret names.
- ``/``: the ops page (a read token or the login form's cookie; see :mod:`.access`).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import messages, plan
from ..model import Config, Policy, Tenant, calendar_uid, isoz
from ..plan.waves import wave_numbers
from . import pages
from .defer import add_tokens, mount_defer
from .strings import feed_strings, page_strings

log = logging.getLogger("maintd.web")
_env = Environment(
    loader=FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=365)
PAGE_AHEAD = timedelta(days=90)


def _countdown(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    if secs <= 0:
        return "now"
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"in {d}d {h}h"
    if h:
        return f"in {h}h {m:02d}m"
    return f"in {max(m, 1)}m"


def _language(tenant: Tenant) -> tuple[str, Any, Any]:
    """The tenant page's language: its template locale, dates and countdown in it (SPEC 4.3)."""
    from notifiers.i18n import format_local, humanize_span, template_locale_or_default

    tag = getattr(tenant, "locale", "en") or "en"
    lang = template_locale_or_default(tag)
    if lang == "en":
        return lang, lambda ts: messages.format_local(ts, tenant.zone), _countdown
    words = page_strings(lang)

    def countdown(delta: timedelta) -> str:
        if delta.total_seconds() <= 0:
            return words["now"]
        # Two units at most, as the English countdown: "2 Tage, 3 Stunden" (Babel's unit lists
        # also have no three-item pattern in some locales).
        step = timedelta(hours=1) if delta >= timedelta(days=1) else timedelta(minutes=1)
        return words["in"].format(span=humanize_span(max(delta // step * step, timedelta(minutes=1)), tag))

    return lang, lambda ts: format_local(ts, tenant.zone, tag), countdown


def policy_summary(policy: Policy) -> dict:
    """What a tenant may still do while a window runs: allowed and paused job kinds."""
    allowed: list[str] = []
    paused: list[str] = []
    for r in policy.rules:
        kinds = sorted(r.kinds) if r.kinds else ["everything else"]
        (allowed if r.effect == "allow" else paused).extend(k for k in kinds if k not in allowed + paused)
    return {"allowed": allowed, "paused": paused, "default": policy.default}


def tenant_view(daemon: Any, tenant: Tenant, now: datetime) -> dict:
    cfg: Config = daemon.config
    journal = daemon.reconciler.journal(now)
    items = [
        a
        for a in plan.effective(cfg, journal, now - timedelta(days=1), now + PAGE_AHEAD)
        if tenant.id in a.window.tenants
    ]
    active = [a for a in items if now in a.occ]
    upcoming = [a for a in items if a.occ.start > now]
    lang, local, countdown = _language(tenant)

    def row(a: plan.Active) -> dict:
        w = a.window
        text = messages.localized(w.message or cfg.provider.message, tenant)
        return {
            "window": w.id,
            "title": w.title,
            "start": local(a.occ.start),
            "end": local(a.occ.end),
            "start_iso": isoz(a.occ.start),
            "end_iso": isoz(a.occ.end),
            "countdown": countdown(a.occ.start - now),
            "message": messages.render(
                text,
                provider=cfg.provider.name,
                title=w.title,
                start=a.occ.start,
                end=a.occ.end,
                window=w.id,
                tenant=tenant,
                zone=tenant.zone,
                format_time=lambda ts, _zone: local(ts),
            ),
            "policy": policy_summary(cfg.policy_for(w)) if (w.policy is None or w.policy in cfg.policies) else None,
            # internal names (repo-eu-1, san-array-7): only when the provider opts in
            "resources": sorted(w.resources) if w.resources and cfg.daemon.show_resources else None,
            # SPEC 8 and 9: the wave, and whether the tenant may defer this slot
            "wave": a.wave,
            "occurrence": isoz(a.occ.key),
            "deferrable": bool((declared := cfg.window(w.id)) and declared.defer and a.occ.start > now),
        }

    period_end = plan.period_end(items, tenant.id, now) if active else None
    beyond = pages.next_beyond(cfg, journal, tenant, {a.window.id for a in items}, now)
    upcoming = pages.upcoming_rows(upcoming, beyond)
    cancelled = []
    for (_wid, _anc), ann in journal.announced.items():
        if ann.status == "cancelled" and tenant.id in ann.tenants and ann.start > now:
            cancelled.append({"title": ann.title, "start": local(ann.start)})
    return {
        "lang": lang,
        "t": page_strings(lang),
        "tenant": {"name": tenant.name, "zone": tenant.zone.key},
        "provider": cfg.provider.name,
        "now": local(now),
        "in_maintenance": bool(active),
        "until": local(period_end) if period_end else None,
        "active": [{**row(a), "left": pages.time_left(a.occ.end, now)} for a in active],
        "upcoming": [row(a) for a in upcoming],
        "cancelled": cancelled,
        "left": pages.time_left(period_end, now) if period_end else None,
        "refresh": pages.refresh_after(now, [period_end] + [a.occ.start for a in upcoming[:1]]),
    }


def tenant_feed(daemon: Any, tenant: Tenant, now: datetime) -> bytes:
    from notifiers.calendar import build_feed

    from .. import recurrence

    cfg: Config = daemon.config
    journal = daemon.reconciler.journal(now)
    lang, local, _countdown = _language(tenant)
    words = feed_strings(lang)

    def describe(text: str, title: str, wid: str, start: datetime, end: datetime) -> str:
        """The DESCRIPTION in the tenant's language, dates as its page shows them (SPEC 4.3)."""
        return messages.fill_message(cfg, text, tenant, start, end, title, wid, format_time=lambda ts, _zone: local(ts))

    events = []
    live = set()
    frozen: dict[str, list] = {}  # window id -> starts a freeze skips, once per window
    blacked: dict[str, list] = {}  # window id -> starts `blackouts: skip` leaves this tenant out of
    for a in plan.effective(cfg, journal, now - FEED_PAST, now + FEED_AHEAD, include_cancelled=True):
        w = a.window
        if tenant.id not in w.tenants:
            continue
        anc = plan.anchor(w, a.occ, a.wave)
        live.add((w.id, anc))
        ann = journal.announced.get((w.id, anc))
        cancelled = w.cancelled or (ann is not None and ann.status == "cancelled")
        exdates = []
        if w.recurring and w.skip:
            # The instants the skipped days would have started at (SPEC: the feed carries them as EXDATE).
            unskipped = recurrence.occurrences(_without_skip(w), now - FEED_PAST, now + FEED_AHEAD)
            starts = {o.start for o in recurrence.occurrences(w, now - FEED_PAST, now + FEED_AHEAD)}
            exdates = [o.start for o in unskipped if o.start not in starts]
        if w.recurring:  # SPEC 7: occurrences a freeze skips are EXDATE too
            exdates = sorted({*exdates, *_frozen_out(cfg, w, now, frozen), *_blacked_out(cfg, w, tenant, now, blacked)})
        events.append(
            {
                "uid": calendar_uid(w.id, a.occ.key, w.recurring or a.wave is not None),  # a wave: its own UID
                "sequence": feed_sequence(ann, a.occ.start, a.occ.end),
                "start": a.occ.start,
                "end": a.occ.end,
                "title": words["summary"].format(provider=cfg.provider.name, title=w.title),
                "message": describe(
                    words["cancelled"] if cancelled else (w.message or cfg.provider.message),
                    w.title,
                    w.id,
                    a.occ.start,
                    a.occ.end,
                ),
                "cancelled": cancelled,
                "exdates": exdates if w.recurring else [],
            }
        )
    for (wid, anc), ann in journal.announced.items():
        if (wid, anc) in live or ann.status != "cancelled" or tenant.id not in ann.tenants:
            continue
        recurring = anc != plan.EPOCH
        events.append(
            {
                "uid": calendar_uid(wid, ann.occurrence or anc, recurring),
                "sequence": ann.sequence,
                "start": ann.start,
                "end": ann.end,
                "title": words["summary"].format(provider=cfg.provider.name, title=ann.title),
                "message": describe(words["cancelled"], ann.title, wid, ann.start, ann.end),
                "cancelled": True,
            }
        )
    return build_feed(events, name=words["name"].format(provider=cfg.provider.name, name=tenant.name), now=now)


def _frozen_out(cfg: Config, w: Any, now: datetime, memo: dict[str, list]) -> list:
    """Starts of ``w``'s occurrences in the feed's range that a freeze skips (SPEC 7)."""
    from .. import recurrence
    from ..plan.guardrails import freeze_skipped

    if w.id not in memo:
        occs = recurrence.occurrences(w, now - FEED_PAST, now + FEED_AHEAD)
        memo[w.id] = [o.start for o in freeze_skipped(cfg, w, occs)]
    return memo[w.id]


def _blacked_out(cfg: Config, w: Any, tenant: Tenant, now: datetime, memo: dict[str, list]) -> list:
    """Starts of ``w``'s occurrences in the feed's range that ``blackouts: skip`` leaves
    ``tenant`` out of: gone from its feed like frozen ones, so EXDATE too (SPEC 7)."""
    from .. import recurrence
    from ..plan.guardrails import blackout_skipped

    if w.id not in memo:
        occs = recurrence.occurrences(w, now - FEED_PAST, now + FEED_AHEAD)
        memo[w.id] = [o.start for o in blackout_skipped(cfg, w, tenant.id, occs)]
    return memo[w.id]


def feed_sequence(ann: Any, start: datetime, end: datetime) -> int:
    """The event's SEQUENCE: the announcement's, one more when its times have changed since
    (an exit or extension the next tick has not announced yet; RFC 5546: any change of
    DTSTART or DTEND raises it)."""
    if ann is None:
        return 0
    return ann.sequence + (1 if (ann.start, ann.end) != (start, end) else 0)


def _without_skip(w):
    from dataclasses import replace

    return replace(w, skip=frozenset())


def ops_view(daemon: Any, now: datetime) -> dict:
    cfg: Config = daemon.config
    journal = daemon.reconciler.journal(now)
    horizon = now + timedelta(days=30)
    items = plan.effective(cfg, journal, now, horizon)
    waves = wave_numbers(items)
    membership: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(items):
        for t in a.window.tenants:
            membership[t].append(i)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for t, indices in membership.items():
        groups[tuple(indices)].append(t)
    span = (horizon - now).total_seconds()
    rows = []
    for idx, tenants in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        occs = [(items[i].occ.start, items[i].occ.end, items[i].window.id, items[i].occ.key) for i in idx]
        bars = []
        for start, end, opener, _closer in plan.merge_periods(sorted(occs)):
            left = max(0.0, (start - now).total_seconds() / span * 100)
            width = max(0.4, (min(end, horizon) - max(start, now)).total_seconds() / span * 100)
            bars.append(
                {
                    "left": round(left, 2),
                    "width": round(width, 2),
                    "label": opener[0] + (f" wave {waves[opener]}" if opener in waves else ""),  # SPEC 8
                    "when": messages.format_local(start, cfg.provider.zone),
                    "title": f"{opener[0]}: {isoz(start)} .. {isoz(end)}",
                }
            )
        rows.append({"tenants": sorted(tenants), "count": len(tenants), "bars": bars})
    st = daemon.views.status()
    failed = daemon.store.notices(failed_only=True, limit=50)
    history = daemon.store.history(limit=pages.HISTORY)
    return {
        **pages.ops_blocks(cfg, st, history, now),
        "status": st,
        "rows": rows[:200],
        "now": isoz(now),
        "horizon": isoz(horizon),
        "days": [
            {"left": round(d / 30 * 100, 2), "label": (now + timedelta(days=d)).strftime("%d %b")}
            for d in range(0, 30, 5)
        ],
        "drains": [lease for lease in st["leases"]["items"] if lease["drain"]],
        "failed": [
            {
                "tenant": f["tenant"],
                "kind": f["kind"],
                "window": f["window"],
                "channel": " ".join(
                    x for x in (f["channel"].split("#", 1)[0], (f.get("payload") or {}).get("target")) if x
                ),
                "error": f["last_error"],
                "at": pages.local(f["updated_at"], cfg.provider.zone),
            }
            for f in failed
        ],
    }


class HeadAsGet:
    """Answer ``HEAD`` like ``GET`` without the body (RFC 9110 9.3.2): uptime checkers and
    calendar clients send HEAD to the pages, the feed and ``/healthz``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body"):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def mount(app: FastAPI, daemon: Any, *, allowed: Any = None) -> None:
    """Add the tenant views and the ops page to the API app. Who may see the ops page is
    decided before it by :class:`.access.AccessControl`; ``allowed(request)``, when given,
    is an extra check."""
    app.add_middleware(HeadAsGet)

    def lookup(secret: str) -> Tenant | None:
        if not secret or len(secret) > 200:
            return None
        tid = daemon.store.tenant_for_secret(secret)
        tenant = daemon.config.tenants.get(tid) if tid else None
        if tenant is None:
            return None
        # Compare again in constant time: the index found it, this keeps the answer honest.
        stored = daemon.store.tenant_secret(tenant.id, create=False) or ""
        return tenant if hmac.compare_digest(stored.encode(), secret.encode()) else None

    not_found = Response("Not Found\n", status_code=404, media_type="text/plain")

    def render(tenant: Tenant, secret: str, key: bytes, **extra: Any) -> str:
        view = add_tokens(tenant_view(daemon, tenant, daemon.clock()), key, secret)
        return _env.get_template("tenant.html").render(**view, secret=secret, **extra)

    form_key = mount_defer(app, daemon, lookup, render)  # SPEC 9: POST /t/{secret}/defer

    def tenant_route(secret: str, what: str, answer: Any) -> Response:
        # A failure is logged with the tenant's id (or "unknown tenant"), never the secret:
        # the path of the request is the tenant's password.
        tenant: Tenant | None = None
        try:
            tenant = lookup(secret)
            return not_found if tenant is None else answer(tenant, secret)
        except Exception as exc:  # noqa: BLE001 - logged without the request's path
            who = f"tenant {tenant.id}" if tenant is not None else "unknown tenant"
            log.error("%s of %s failed: %s: %s", what, who, type(exc).__name__, exc, extra={"action": "tenant-view"})
            return Response("Internal Server Error\n", status_code=500, media_type="text/plain")

    def page(tenant: Tenant, secret: str) -> Response:
        html = render(tenant, secret, form_key())
        return HTMLResponse(
            html, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}
        )

    def feed(tenant: Tenant, _secret: str) -> Response:
        return Response(
            tenant_feed(daemon, tenant, daemon.clock()),
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/t/{secret}/", response_class=HTMLResponse, include_in_schema=False)
    def tenant_page(secret: str):
        return tenant_route(secret, "tenant page", page)

    @app.get("/t/{secret}/calendar.ics", include_in_schema=False)
    def tenant_calendar(secret: str):
        return tenant_route(secret, "calendar feed", feed)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def ops_page(request: Request):
        if allowed is not None and not allowed(request):
            return Response(
                "Unauthorized: the ops page needs a read token\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return HTMLResponse(_env.get_template("ops.html").render(**ops_view(daemon, daemon.clock())))
