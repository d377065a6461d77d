"""Waves and deferrals at run time (SPEC 8 and 9): what the tick stores, what an end check
halts, what ``maintd resume`` and a tenant's Defer button change.

Every write goes through ``tx.waves`` (:mod:`scheduler.store.waves`) in the caller's
transaction; the plan side (:mod:`scheduler.plan.waves`) turns the stored rows into waves.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .. import plan
from ..model import Config, isoz
from ..plan import waves as plan_waves

log = logging.getLogger("maintd")


def read_waves(store) -> dict:
    """The journal fields of :class:`plan.Journal` that waves and deferrals add."""
    with store.read() as r:
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


def halt_after_check(
    tx, cfg: Config, ev: plan.Evaluation | None, window: str, key: datetime, *, error: str, now: datetime
) -> str | None:
    """Halt the later waves when the end check of wave ``key`` of ``window`` fails at ``max``.

    Returns the journal message, or None when nothing halted (no ``halt_on``, not a wave,
    halted already).
    """
    w = cfg.window(window)
    if w is None or w.waves is None or w.waves.halt_on != "end_check" or ev is None:
        return None
    wave = next((a for a in ev.active + ev.upcoming if a.window.id == window and a.occ.key == key), None)
    if wave is None or wave.wave is None or wave.base is None:
        return None
    reason = f"end check of wave {wave.wave} still failing at max ({error})"
    if not tx.waves.halt(window, wave.base, after=wave.wave, reason=reason, at=now):
        return None
    message = f"{window}: waves after wave {wave.wave} halted: {reason}"
    detail = {"base": isoz(wave.base), "after": wave.wave, "reason": reason}
    tx.journal("halt", at=now, window=window, occurrence=wave.base, actor="end-check", message=message, detail=detail)
    log.warning(message, extra={"action": "halt", "window": window})
    return message


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
