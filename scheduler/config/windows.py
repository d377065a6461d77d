"""Windows: validated window shapes -> ``model.Window`` records (their meaning, not their refs)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .. import model, recurrence
from .schema import LabelSelectorModel, WindowModel
from .source import Collector, Path, Source


def to_utc(text: str, zone: ZoneInfo) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        return recurrence.resolve_local(ts, zone)
    return ts.astimezone(model.UTC)


def label_index(tenants: Mapping[str, model.Tenant]) -> dict[tuple[str, str], set[str]]:
    """label -> tenants, built once: 300 windows x 10,000 tenants is 3 million comparisons."""
    by_label: dict[tuple[str, str], set[str]] = {}
    for t in tenants.values():
        for kv in t.labels.items():
            by_label.setdefault(kv, set()).add(t.id)
    return by_label


def members(
    w: WindowModel,
    wp: Path,
    tenants: Mapping[str, model.Tenant],
    by_label: Mapping[tuple[str, str], set[str]],
    src: Source,
    col: Collector,
) -> frozenset[str] | None:
    """The tenants a window affects; None when its selector is not one of the three forms."""
    sel = w.tenants
    if sel == "all":
        return frozenset(tenants)
    if isinstance(sel, list):  # unknown ids are the reference pass's to report
        return frozenset(t for t in sel if isinstance(t, str) and t in tenants)
    try:
        labels = LabelSelectorModel.model_validate(sel).labels
    except ValidationError:
        col.add(src.issue(wp + ("tenants",), "expected all, a list of tenant ids, or {labels: {key: value}}"))
        return None
    if labels:
        sets = sorted((by_label.get(kv, set()) for kv in labels.items()), key=len)
        chosen = frozenset(sets[0].intersection(*sets[1:]))
    else:
        chosen = frozenset(tenants)
    if not chosen:
        shown = ", ".join(f"{k}: {v}" for k, v in labels.items())
        col.add(
            src.issue(wp + ("tenants",), f'labels {{{shown}}} in window "{w.id}" match no tenant', severity="warning")
        )
    return chosen


def _recurring_ok(w: WindowModel, wp: Path, src: Source, col: Collector) -> bool:
    ok = True
    for bad in ("start", "end"):
        if getattr(w, bad) is not None:
            message = f'window "{w.id}" is recurring (cron); it takes duration, not {bad}'
            col.add(src.issue(wp + (bad,), message, key=True))
            ok = False
    problem = recurrence.validate_cron(w.cron or "")
    if problem:
        col.add(src.issue(wp + ("cron",), problem))
        ok = False
    if w.duration is None:
        col.add(src.issue(wp, f'missing required key "duration" in recurring window "{w.id}"'))
        ok = False
    return ok


def _one_off(
    w: WindowModel, wp: Path, zone: ZoneInfo, src: Source, col: Collector
) -> tuple[bool, datetime | None, datetime | None]:
    """(valid, start, end) of a one-off window; its end is the start plus duration when not given."""
    ok = True
    if w.skip:
        message = f'skip applies only to recurring windows (cron); window "{w.id}" is one-off'
        col.add(src.issue(wp + ("skip",), message, key=True))
        ok = False
    if w.start is None:
        col.add(src.issue(wp, f'window "{w.id}" needs start (one-off) or cron (recurring)'))
        return False, None, None
    start = to_utc(w.start, zone)
    end = None
    if w.end is not None and w.duration is not None:
        col.add(src.issue(wp + ("duration",), f'window "{w.id}" has both end and duration; give one', key=True))
        ok = False
    elif w.end is not None:
        end = to_utc(w.end, zone)
        if end <= start:
            how = "equals" if end == start else "is before"
            message = f'end {w.end} {how} start {w.start} in window "{w.id}"; expected an end after the start'
            col.add(src.issue(wp + ("end",), message))
            ok = False
    elif w.duration is None:
        col.add(src.issue(wp, f'window "{w.id}" needs end or duration'))
        ok = False
    else:
        end = start + w.duration
    return ok, start, end


def _settings_ok(w: WindowModel, wp: Path, src: Source, col: Collector) -> bool:
    ok = True
    if w.duration is not None and w.duration <= timedelta(0):
        col.add(src.issue(wp + ("duration",), f'duration of window "{w.id}" must be positive'))
        ok = False
    if w.end_check is not None and (w.end_check.run is None) == (w.end_check.url is None):
        col.add(src.issue(wp + ("end_check",), f'end_check of window "{w.id}" needs exactly one of run or url'))
        ok = False
    if any(lead <= timedelta(0) for lead in w.notify):
        col.add(src.issue(wp + ("notify",), "notify lead times must be positive"))
        ok = False
    return ok


def when(w: WindowModel, wp: Path, zone: ZoneInfo, src: Source, col: Collector) -> tuple[bool, Any, Any]:
    """Check a window's time and settings: (valid, start, end); start and end are None for cron."""
    if w.cron is not None:
        ok, start, end = _recurring_ok(w, wp, src, col), None, None
    else:
        ok, start, end = _one_off(w, wp, zone, src, col)
    return _settings_ok(w, wp, src, col) and ok, start, end


def lead_labels(window: Any, leads: list[timedelta]) -> dict[timedelta, str]:
    """Lead times as written ("24h" stays "24h"), for notices."""
    raw = window.get("notify", []) if isinstance(window, dict) else []
    out: dict[timedelta, str] = {}
    for text, lead in zip(raw if isinstance(raw, list) else [], leads):
        out.setdefault(lead, str(text).strip())
    return out
