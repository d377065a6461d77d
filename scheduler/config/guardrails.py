"""Guardrails in windows.yaml (SPEC section 7): freezes, tenant blackouts, redundant resources.

Shapes come from :mod:`.schema` (``FreezeModel``, ``BlackoutModel``, ``provider.redundant``,
window ``override_freeze`` / ``blackouts``); this module gives them meaning (local times
resolved in their zone by the window rules) and checks what is wrong whatever the date:
a one-off window inside a freeze without ``override_freeze``, and one-off windows taking
two redundant resources down together. What depends on "now" (recurring conflicts, blackouts
in the next 90 days) is not a parse error: ``maintd validate`` and ``maintd conflicts`` ask
:func:`scheduler.guardrails.conflicts` with the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from .. import model, recurrence
from ..guardrails import oneoff_freeze_errors, redundancy_conflicts
from .source import Collector, Path, Source
from .windows import to_utc


def freezes(cfg: Any, src: Source, provider_zone: ZoneInfo, col: Collector) -> tuple[model.Freeze, ...]:
    """``freezes:`` as records; a freeze that ends before it starts or repeats an id is an error."""
    out: list[model.Freeze] = []
    seen: dict[str, int] = {}
    for i, f in enumerate(getattr(cfg, "freezes", None) or ()):
        path: Path = ("freezes", i)
        line = src.at(path)[0]
        if f.id in seen:
            col.add(src.issue(path + ("id",), f'duplicate freeze id "{f.id}" (first defined at line {seen[f.id]})'))
            continue
        seen[f.id] = line
        zone = ZoneInfo(f.timezone) if f.timezone else provider_zone
        start, end = to_utc(f.start, zone), to_utc(f.end, zone)
        if end <= start:
            message = (
                f'end {f.end} of freeze "{f.id}" is not after its start {f.start}; expected an end after the start'
            )
            col.add(src.issue(path + ("end",), message))
            continue
        out.append(model.Freeze(id=f.id, start=start, end=end, reason=f.reason, zone=zone, line=line))
    return tuple(out)


def redundant(cfg: Any, src: Source, col: Collector) -> tuple[frozenset[str], ...]:
    """``provider.redundant``: groups of at least two different resources."""
    groups = []
    for k, group in enumerate(getattr(cfg.provider, "redundant", None) or ()):
        members = frozenset(group)
        if len(members) < 2:
            message = f"provider.redundant[{k}] names {len(members)} resource(s); expected a group of at least two"
            col.add(src.issue(("provider", "redundant", k), message))
            continue
        groups.append(members)
    return tuple(groups)


# Hundreds of tenants share a few blackout crons ("0 0 1 * *"); croniter's check is slow.
_cron_problem = lru_cache(maxsize=256)(recurrence.validate_cron)


def blackouts(shape: Any, tid: str, zone: ZoneInfo, tsrc: Source, path: Path, col: Collector) -> tuple:
    """A tenant's ``blackouts:`` in its zone: ``{start, end}``, ``{start, duration}`` or ``{cron, duration}``."""
    out = []
    for j, b in enumerate(getattr(shape, "blackouts", None) or ()):
        bp = path + ("blackouts", j)
        line = tsrc.at(bp)[0]
        what = f'blackouts[{j}] of tenant "{tid}"'
        if b.cron is not None:
            problem = _cron_problem(b.cron)
            if b.start is not None or b.end is not None or b.duration is None:
                col.add(tsrc.issue(bp, f"{what}: a cron blackout takes duration (and no start or end)"))
            elif problem:
                col.add(tsrc.issue(bp + ("cron",), problem))
            elif b.duration <= timedelta(0):
                col.add(tsrc.issue(bp + ("duration",), f"{what}: duration must be positive"))
            else:
                out.append(
                    model.Blackout(
                        tenant=tid, zone=zone, cron=b.cron, duration=b.duration, index=j, line=line, file=tsrc.file
                    )
                )
            continue
        if b.start is None or (b.end is None) == (b.duration is None):
            col.add(tsrc.issue(bp, f"{what}: expected {{start, end}}, {{start, duration}} or {{cron, duration}}"))
            continue
        start = to_utc(b.start, zone)
        end = to_utc(b.end, zone) if b.end is not None else start + b.duration
        if end <= start:
            col.add(tsrc.issue(bp + ("end" if b.end is not None else "duration",), f"{what}: ends before it starts"))
            continue
        out.append(model.Blackout(tenant=tid, zone=zone, start=start, end=end, index=j, line=line, file=tsrc.file))
    return tuple(out)


def check(config: model.Config, src: Source, positions: Mapping[str, Path], col: Collector) -> None:
    """Errors whatever the date: one-off windows inside a freeze without ``override_freeze``,
    and one-off windows overlapping on two resources of one ``provider.redundant`` group.
    Each at the window's line (``positions``: window id -> its path in the file)."""
    windows = [w for w in config.windows if not w.recurring and not w.cancelled]
    overrides = {w.id: w.override_freeze for w in windows}
    for w in windows:
        for _line, _col, message in oneoff_freeze_errors([w], config.freezes, overrides):
            col.add(src.issue(positions[w.id], message))
    if not config.provider.redundant:
        return
    occs = {w: recurrence.occurrences(w, w.start, w.start + timedelta(seconds=1)) for w in windows if w.start}
    for c in redundancy_conflicts(occs, config.provider.redundant):
        if c.severity == "error":
            col.add(src.issue(positions[c.window], c.message))
