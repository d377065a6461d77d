"""A tenant defers its own slot (SPEC 9): the checks of :func:`scheduler.waves.defer_target`,
then one transaction that stores the move, moves the tenant between the announcements of
the two slots, enqueues its ``rescheduled`` notice (with ``previous``) and journals it with
the tenant as actor. The plan reads the stored move (``journal.deferrals``), so ``plan``,
status, the pages and calendars show the new slot, across restarts and reloads.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from .. import plan, recurrence
from ..errors import ConflictError, NotFoundError
from ..guardrails import Guardrails
from ..model import Config, Occurrence, Tenant, isoz
from ..plan import waves as plan_waves
from ..waves import Wave, defer_target, next_slot

LOOK_AHEAD = timedelta(days=400)


def form_token(key: bytes, secret: str, window: str, occurrence: str) -> str:
    """The hidden input of one Defer form: an HMAC of (tenant secret, occurrence) under the daemon's key."""
    return hmac.new(key, f"{secret}|{window}|{occurrence}".encode(), hashlib.sha256).hexdigest()


def token_ok(key: bytes, secret: str, window: str, occurrence: str, token: str) -> bool:
    return hmac.compare_digest(form_token(key, secret, window, occurrence).encode(), (token or "").encode())


def current_slot(
    cfg: Config, journal: plan.Journal, tenant: str, window: str, key: datetime, now: datetime
) -> plan.Active:
    """The tenant's upcoming occurrence (or wave) ``key`` of ``window``."""
    for a in plan.effective(cfg, journal, now, now + LOOK_AHEAD):
        if a.window.id == window and a.occ.key == key and tenant in a.window.tenants:
            return a
    raise NotFoundError("no such upcoming maintenance for you")


def _base(cfg: Config, a: plan.Active) -> Occurrence:
    w = cfg.window(a.window.id)
    key = a.base or a.occ.key
    found = recurrence.occurrences(w, key - timedelta(seconds=1), key + timedelta(seconds=1)) if w else []
    return next((o for o in found if o.key == key), a.occ)


def target(
    cfg: Config, journal: plan.Journal, tenant: Tenant, a: plan.Active, count: int, now: datetime
) -> tuple[Occurrence, Wave | Occurrence | str]:
    """(the base occurrence, where deferring ``a`` moves ``tenant`` or why it may not)."""
    w = cfg.window(a.window.id)
    if w is None:
        raise NotFoundError("no such upcoming maintenance for you")
    base = _base(cfg, a)
    guard = getattr(cfg, "guardrails", None)  # freezes and blackouts, once the config carries them
    guard = guard if isinstance(guard, Guardrails) else None
    if w.waves is not None and a.wave is not None:
        waves = plan_waves.waves_at(cfg, journal, w, base)
        current = next(x for x in waves if x.number == a.wave)
        members = plan_waves.membership(cfg, journal, w)
        nxt = next_slot(w, base.key, tenant.id, members, w.waves)
        found = defer_target(
            w,
            tenant,
            current,
            waves=waves,
            next_occurrence=nxt,
            deferred_count=count,
            spec=w.defer,
            now=now,
            guard=guard,
        )
        return base, found
    nxt = next_slot(w, base.key, tenant.id, {}, None)
    found = defer_target(
        w, tenant, a.occ, next_occurrence=nxt, deferred_count=count, spec=w.defer, now=now, guard=guard
    )
    return base, found


def defer(
    tx, cfg: Config, journal: plan.Journal, tenant: Tenant, window: str, key: datetime, *, now: datetime, rows
) -> dict:
    """Move ``tenant`` out of its slot ``key`` of ``window``; ConflictError(reason) when refused."""
    a = current_slot(cfg, journal, tenant.id, window, key, now)
    moved = tx.waves.deferrals()
    base_key = a.base or a.occ.key
    count = (moved.get((window, base_key), {}).get(tenant.id) or {}).get("count", 0)
    base, found = target(cfg, journal, tenant, a, count, now)
    if isinstance(found, str):
        raise ConflictError(found)
    same = found.number if isinstance(found, Wave) and found.base == base.key else None  # a later wave
    new_key = found.occurrence if isinstance(found, Wave) else found.key
    tx.waves.defer(
        window,
        base.key,
        tenant.id,
        target_wave=same,
        target_base=None if same is not None else (found.base if isinstance(found, Wave) else found.key),
        count=count + 1,
        at=now,
    )
    old_anchor = plan.anchor(a.window, a.occ, a.wave)
    slot = found.as_occurrence() if isinstance(found, Wave) else found
    new_anchor = plan.anchor(a.window, slot, found.number if isinstance(found, Wave) else None)
    _move_announcement(tx, journal, window, old_anchor, new_anchor, tenant.id, now)
    title = a.window.title
    n = plan.NoticeAction(
        kind="rescheduled",
        window=window,
        occurrence=new_key,
        tenants=frozenset({tenant.id}),
        start=found.start,
        end=found.end,
        title=title,
        sequence=count + 1,
        previous=(a.occ.start, a.occ.end),
        recurring=True,
    )
    out_rows = rows(n, now)
    if out_rows:
        tx.enqueue(out_rows)
    actor = f"tenant:{tenant.id}"
    message = f"{tenant.id} deferred {window} from {isoz(a.occ.start)} to {isoz(found.start)}"
    detail = {"tenant": tenant.id, "from": isoz(a.occ.start), "to": isoz(found.start), "count": count + 1}
    tx.journal("defer", at=now, window=window, occurrence=a.occ.key, actor=actor, message=message, detail=detail)
    return {"window": window, "occurrence": isoz(new_key), "start": isoz(found.start), "end": isoz(found.end)}


def _move_announcement(
    tx, journal: plan.Journal, window: str, old: datetime, new: datetime, tenant: str, now: datetime
) -> None:
    """The tenant was told of the old slot and is told of the new one by its ``rescheduled``:
    neither a ``cancelled`` for the old nor a late ``scheduled`` for the new may follow."""
    for key, change in ((old, lambda t: t - {tenant}), (new, lambda t: t | {tenant})):
        ann = journal.announced.get((window, key))
        if ann is None:
            continue
        tx.announce(
            window,
            key,
            start=ann.start,
            end=ann.end,
            title=ann.title,
            sequence=ann.sequence,
            tenants=change(ann.tenants),
            status=ann.status,
            at=now,
            occurrence_key=ann.occurrence,
        )
