"""Waves and deferrals at run time (SPEC 8 and 9): what the tick stores, what an end check
halts, what ``maintd resume`` and a tenant's Defer button change.

Every write goes through ``tx.waves`` (:mod:`scheduler.store.waves`) in the caller's
transaction; the plan side (:mod:`scheduler.plan.waves`) turns the stored rows into waves.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .. import plan, recurrence
from ..errors import ConflictError, NotFoundError, UsageError
from ..model import UTC, Config, Occurrence, isoz
from ..plan import waves as plan_waves

log = logging.getLogger("maintd")


def read_waves(store) -> dict:
    """The journal fields of :class:`plan.Journal` that waves and deferrals add."""
    with store.read() as r:
        return waves_journal(r)


def waves_journal(r) -> dict:
    """:func:`read_waves` inside a transaction ``r``."""
    members = r.waves.members()
    halts = r.waves.halts()
    moved = r.waves.deferrals()
    return {
        "wave_members": members,
        "wave_halts": {
            k: plan.WaveHalt(after=h["after"], reason=h["reason"], at=h["at"], resume_at=h["resume_at"])
            for k, h in halts.items()
        },
        "deferrals": {
            k: {t: (d["target_base"] if d["target_wave"] is None else d["target_wave"]) for t, d in rows.items()}
            for k, rows in moved.items()
        },
    }


def store_members(tx, cfg: Config, ev: plan.Evaluation, now: datetime) -> None:
    """Store the membership of every window with waves the tick planned (stable from then on)."""
    planned = {a.window.id for a in ev.active + ev.upcoming if a.wave is not None}
    if not planned:
        return
    stored = tx.waves.members()
    journal = plan.Journal(wave_members=stored)
    for wid in sorted(planned):
        w = cfg.window(wid)
        if w is None or w.waves is None:
            continue
        have = stored.get(wid, {})
        new = {t: n for t, n in plan_waves.membership(cfg, journal, w).items() if t not in have}
        if new and tx.waves.store_members(wid, new, now=now):
            what = ", ".join(f"{t}: wave {n}" for t, n in sorted(new.items())[:20])
            tx.journal("waves", at=now, window=wid, message=f"wave membership stored ({what})", detail=new)


def halt_after_check(tx, cfg: Config, window: str, key: datetime, *, error: str, now: datetime) -> dict | None:
    """Halt the later waves when the end check of wave ``key`` of ``window`` fails at ``max``.

    Returns what the ops room is told (an ``end_check_failing`` record with ``halted``: the
    wave, the reason, the tenants whose waves will not start), or None when nothing halted
    (no ``halt_on``, not a wave, halted already).
    """
    w = cfg.window(window)
    if w is None or w.waves is None or w.waves.halt_on != "end_check":
        return None
    # the wave ended (held for its check) by now: find it in the plan around its key
    journal = plan.Journal(**waves_journal(tx))
    items = plan.effective(cfg, journal, key, key + timedelta(seconds=1))
    wave = next((a for a in items if a.window.id == window and a.occ.key == key), None)
    if wave is None or wave.wave is None or wave.base is None:
        return None
    reason = f"end check of wave {wave.wave} still failing at max ({error})"
    if not tx.waves.halt(window, wave.base, after=wave.wave, reason=reason, at=now):
        return None
    message = f"{window}: waves after wave {wave.wave} halted: {reason}"
    detail = {"base": isoz(wave.base), "after": wave.wave, "reason": reason}
    tx.journal("halt", at=now, window=window, occurrence=wave.base, actor="end-check", message=message, detail=detail)
    log.warning(message, extra={"action": "halt", "window": window})
    stopped = [x for x in plan_waves.waves_at(cfg, journal, w, _base_of(w, wave)) if x.number > wave.wave]
    return {
        "halted": True,
        "window": window,
        "title": w.title,
        "occurrence": key,
        "start": wave.occ.start,
        "end": wave.occ.end,
        "wave": wave.wave,
        "reason": reason,
        "error": error[:300],
        "tenants": sorted({t for x in stopped for t in x.tenants}),
        "waves": [x.number for x in stopped],
        "seq": HALT_SEQ,
    }


# The ops row of a halt: an ``end_check_failing`` of the same wave as its extensions (seq 0),
# told apart from them by this seq so it is neither dropped as their repeat nor sent twice.
HALT_SEQ = -1


def _base_of(w, wave: plan.Active) -> Occurrence:
    """The window occurrence ``wave`` belongs to (its waves' base)."""
    assert wave.base is not None
    found = recurrence.occurrences(w, wave.base - timedelta(seconds=1), wave.base + timedelta(seconds=1))
    length = wave.occ.end - wave.occ.start
    return next((o for o in found if o.key == wave.base), None) or Occurrence(
        start=wave.base, end=wave.base + length, window=w.id, key=wave.base
    )


def halted(journal: plan.Journal, window: str, now: datetime) -> dict | None:
    """The halt of ``window`` still in force (not resumed), as status shows it."""
    for (wid, base), h in sorted(journal.wave_halts.items(), key=lambda kv: kv[0][1]):
        if wid == window and h.resume_at is None:
            return {"base": isoz(base), "after": h.after, "reason": h.reason, "at": isoz(h.at)}
    return None


def halted_windows(cfg: Config, journal: plan.Journal, now: datetime) -> list[dict]:
    """Status's ``halted``: every window whose later waves are halted and not resumed."""
    out = []
    for w in cfg.windows:
        h = halted(journal, w.id, now)
        if h is not None:
            out.append({"window": w.id, "halted": True, **h})
    return out


def window_waves(w, journal: plan.Journal, now: datetime) -> dict:
    """The fields ``/v1/windows`` adds for a window with waves: ``halted`` (and why)."""
    if w.waves is None:
        return {}
    h = halted(journal, w.id, now)
    return {"halted": h is not None, **({"halt": h} if h else {})}


def parse_at(text: str | datetime | None, zone: ZoneInfo, now: datetime) -> datetime:
    """``--at``: ISO 8601 (without an offset: in the provider's zone), ``now`` or nothing (now)."""
    if isinstance(text, datetime):
        return text.astimezone(UTC)
    if text is None or text.strip().lower() in ("", "now"):
        return now
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f'invalid time "{text}"; expected ISO 8601 such as 2027-02-03T01:00 or now') from None
    return recurrence.resolve_local(ts, zone) if ts.tzinfo is None else ts.astimezone(UTC)


def resume(tx, cfg: Config, journal: plan.Journal, window: str, at: datetime, *, now: datetime, actor: str) -> dict:
    """Plan the halted waves of ``window`` again from ``at`` (``maintd resume``)."""
    w = cfg.window(window)
    if w is None:
        raise NotFoundError(f'unknown window "{window}"')
    bases = [base for (wid, base), h in journal.wave_halts.items() if wid == window and h.resume_at is None]
    if w.waves is None or not bases:
        raise ConflictError(f'window "{window}" is not halted; nothing to resume')
    for base in sorted(bases):
        tx.waves.resume(window, base, at=at)
        tx.journal(
            "resume",
            at=now,
            window=window,
            occurrence=base,
            actor=actor,
            message=f"{window}: halted waves planned again from {isoz(at)} by {actor}",
            detail={"base": isoz(base), "at": isoz(at)},
        )
    return {"window": window, "resumed": [isoz(b) for b in sorted(bases)], "at": isoz(at)}
