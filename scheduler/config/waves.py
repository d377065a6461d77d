"""Windows' ``waves:`` (SPEC 8) and ``defer:`` (SPEC 9): validated shapes -> model specs.

Every problem is reported at its FILE:LINE:COL; a window with one is left out, as any
other invalid window.
"""

from __future__ import annotations

from typing import Any

from .. import model
from ..waves import parse_size
from .schema import WindowModel
from .source import Collector, Path, Source


def specs(
    w: WindowModel, raw: Any, wp: Path, src: Source, col: Collector
) -> tuple[bool, model.WaveSpec | None, model.DeferSpec | None]:
    """(valid, waves, defer) of one window."""
    waves, ok_w = _waves(w, wp, src, col)
    defer, ok_d = _defer(w, raw, wp, src, col)
    return ok_w and ok_d, waves, defer


def _waves(w: WindowModel, wp: Path, src: Source, col: Collector) -> tuple[model.WaveSpec | None, bool]:
    if w.waves is None:
        return None, True
    where = wp + ("waves",)
    try:
        size, percent = parse_size(w.waves.size)
    except ValueError as e:
        col.add(src.issue(where + ("size",), f'{e} in window "{w.id}"'))
        return None, False
    if w.waves.halt_on == "end_check" and w.end_check is None:
        col.add(src.issue(where + ("halt_on",), f'halt_on: end_check needs an end_check on window "{w.id}"'))
        return None, False
    try:
        spec = model.WaveSpec(
            size=size,
            percent=percent,
            every=w.waves.every,
            order=tuple(dict(sel.labels) for sel in w.waves.order),
            halt_on=w.waves.halt_on,
        )
    except ValueError as e:
        col.add(src.issue(where + ("every",), f'{e} in window "{w.id}"'))
        return None, False
    return spec, True


def _defer(w: WindowModel, raw: Any, wp: Path, src: Source, col: Collector) -> tuple[model.DeferSpec | None, bool]:
    if w.defer is None:
        return None, True
    where = wp + ("defer",)
    if w.defer.max < 1:
        col.add(src.issue(where + ("max",), f'defer: max must be at least 1 in window "{w.id}", got {w.defer.max}'))
        return None, False
    if w.cron is None and w.waves is None:
        message = f'window "{w.id}" is one-off without waves: its tenants have no later slot to defer to'
        col.add(src.issue(where, message, key=True, severity="warning"))
    written = (
        raw.get("defer", {}).get("until") if isinstance(raw, dict) and isinstance(raw.get("defer"), dict) else None
    )
    label = str(written).strip() if written is not None else None
    return model.DeferSpec(max=w.defer.max, until=w.defer.until, until_label=label), True
