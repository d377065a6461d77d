"""``maintd conflicts`` and the guardrail warnings of ``maintd validate`` (SPEC section 7).

Exit codes of ``conflicts``: 0 none in the range, 1 at least one, 2 invalid config. Every
kind counts: a freeze (a recurring occurrence the freeze skips), a blackout (an occurrence
meeting a tenant's blackout, in ``warn`` or ``skip`` mode) and redundancy.
``--ignore-skipped`` leaves out what the plan already handles (occurrences a freeze skips,
tenants ``blackouts: skip`` leaves out), for a CI that should fail only on what still
needs a person.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

import click

from ..errors import UsageError
from ..model import Config
from .common import clock, load_config, parse_time

HORIZON = timedelta(days=90)  # SPEC 7: the default range, and what validate warns about


def find(cfg: Config, frm: datetime, to: datetime) -> list:
    """Every conflict of ``cfg`` in ``[frm, to)`` (the rules compiled once per config)."""
    from ..guardrails import conflicts as all_conflicts
    from ..plan.guardrails import guard_of

    return all_conflicts(cfg, frm, to, guard_of(cfg).rules)


def _files(cfg: Config) -> dict[tuple[str, str], str]:
    """(tenant, blackouts[i]) -> the file that declares it (windows.yaml or its tenants_file)."""
    return {(t.id, b.label): b.file for t in cfg.tenants.values() for b in t.blackouts if b.file}


def located(cfg: Config, path: str, c: Any, files: dict[tuple[str, str], str]) -> dict[str, Any]:
    """A conflict's JSON with where it is: ``file`` (of the window) and ``other_file``."""
    out = c.to_json()
    out["file"] = path
    if c.kind == "blackout":
        out["other_file"] = files.get((c.tenant, c.other), path)
    elif c.other_line:
        out["other_file"] = path
    return out


def validate_warnings(cfg: Config, path: str, now: datetime) -> list[str]:
    """The guardrail warnings ``maintd validate`` prints: blackout conflicts of ``warn``
    windows and redundancy conflicts of recurring windows, in the next 90 days."""
    files = _files(cfg)
    lines = []
    for c in find(cfg, now, now + HORIZON):
        if c.severity != "warning" or c.kind == "freeze" or (c.kind == "blackout" and c.skipped):
            continue
        where = (
            f"blackout at {files.get((c.tenant, c.other), path)}:{c.other_line}"
            if c.kind == "blackout"
            else f'window "{c.other}" at {path}:{c.other_line}'
            if c.other
            else ""
        )
        lines.append(f"{path}:{c.line}: warning: {c.message}" + (f" [{where}]" if where else ""))
    return lines


@click.command()
@click.option("--from", "frm", default="now", show_default=True, help="Start of the range (ISO 8601 or now).")
@click.option("--to", "to", default=None, help="End of the range, exclusive (default: --from + 90 days).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of conflicts.")
@click.option(
    "--ignore-skipped", is_flag=True, help="Leave out what the plan already skips (freezes, blackouts: skip)."
)
@click.pass_context
def conflicts(ctx: click.Context, frm: str, to: str | None, as_json: bool, ignore_skipped: bool) -> None:
    """Freezes, blackouts and redundancy conflicts in the range (exit 0 none, 1 some, 2 invalid config)."""
    cfg = load_config(ctx)
    now = clock()
    start = parse_time(frm, cfg, now)
    end = parse_time(to, cfg, now) if to else start + HORIZON
    if end <= start:
        raise UsageError("--to must be after --from")
    found = [c for c in find(cfg, start, end) if not (ignore_skipped and c.skipped)]
    path = ctx.obj["config"]
    if as_json:
        files = _files(cfg)
        click.echo(json.dumps([located(cfg, path, c, files) for c in found], indent=2, ensure_ascii=False))
    else:
        _print_table(cfg, path, found, start, end)
    ctx.exit(1 if found else 0)


def _print_table(cfg: Config, path: str, found: list, start: datetime, end: datetime) -> None:
    from ..model import isoz
    from ..status_view import add_text, cell, console, needs_month, short_time, table

    out = console()
    if not found:
        out.print(f"No conflicts between {isoz(start)} and {isoz(end)}.")
        return
    zone = cfg.provider.zone
    month = needs_month([c.start for c in found] + [start, end])
    files = _files(cfg)
    name = os.path.basename(path)
    t = table(f"{len(found)} conflict{'s' if len(found) != 1 else ''} in {name}, times in {zone.key}")
    for column in ("when", "kind", "window", "at"):
        t.add_column(column, no_wrap=True)
    add_text(t, "with")
    for c in found:
        kind = c.kind + (" ERROR" if c.severity == "error" else " (skip)" if c.skipped else "")
        if c.kind == "blackout":
            other = f"{c.tenant} {c.other} ({os.path.basename(files.get((c.tenant, c.other), path))}:{c.other_line})"
        elif c.other:
            other = f"{c.other} ({name}:{c.other_line})" if c.other_line else c.other
        else:
            other = ", ".join(c.resources)
        if c.kind == "redundancy":
            other += f" on {', '.join(c.resources)}" if c.other else ""
        t.add_row(short_time(c.start, zone, month=month), kind, c.window, f"{name}:{c.line}", cell(other))
    out.print(t)
