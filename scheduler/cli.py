"""The ``maintd`` command line. It alone owns exit codes and stderr (STYLE.md 10).

Exit codes: 0 ok; 1 the daemon refused (4xx); 2 invalid config or usage; 3 the daemon
cannot be reached; 75 (EX_TEMPFAIL) ``exec`` denied by the gate.
"""
from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Optional

import click

from . import config as config_mod
from . import plan as plan_mod
from .duration import parse_duration
from .errors import ConfigError, MaintdError, UsageError
from .model import UTC, Config, isoz
from .recurrence import resolve_local

DEFAULT_CONFIG = "windows.yaml"


# ---------------------------------------------------------------------------
# helpers


def parse_time(text: str, config: Optional[Config], now: datetime) -> datetime:
    """ISO 8601 with or without offset (without: the provider's zone), or ``now``."""
    t = text.strip()
    if t.lower() == "now":
        return now
    try:
        ts = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f'invalid time "{text}"; expected ISO 8601 such as 2026-12-05T22:00, '
                         "2026-12-05T21:00Z or now") from None
    if ts.tzinfo is None:
        zone = config.provider.zone if config else UTC
        return resolve_local(ts, zone)
    return ts.astimezone(UTC)


def load_config(ctx: click.Context) -> Config:
    return config_mod.load(ctx.obj["config"])


def clock() -> datetime:
    """The CLI's one reading of the clock (commands pass it down)."""
    return datetime.now(UTC)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def local(ts: datetime, zone) -> str:
    return ts.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


# ---------------------------------------------------------------------------
# the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", default=DEFAULT_CONFIG, envvar="MAINTD_CONFIG", show_default=True,
              show_envvar=True, help="Path of windows.yaml.")
@click.version_option(package_name="maintd")
@click.pass_context
def cli(ctx: click.Context, config_path: str) -> None:
    """maintd — planned maintenance for service providers.

    Declare windows in windows.yaml; maintd tells tenants in advance, gates and drains
    their jobs while a window runs, and shows where everything stands.
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check the config; print each error as FILE:LINE:COL: message (exit 0 ok, 2 invalid)."""
    try:
        cfg = load_config(ctx)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue))
        n = len(exc.issues)
        click.echo(f"{ctx.obj['config']}: {n} error{'s' if n != 1 else ''}", err=True)
        ctx.exit(2)
    for w in cfg.warnings:
        click.echo(w, err=True)
    click.echo(f"{ctx.obj['config']}: OK ({len(cfg.tenants)} tenants, {len(cfg.windows)} windows, "
               f"{len(cfg.policies)} polic{'y' if len(cfg.policies) == 1 else 'ies'})")


@cli.command()
@click.option("--from", "frm", default="now", show_default=True, help="Start of the range (ISO 8601 or now).")
@click.option("--to", "to", default=None, help="End of the range, exclusive (default: --from + 30 days).")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print SPEC's JSON array.")
@click.pass_context
def plan(ctx: click.Context, frm: str, to: Optional[str], tenant: Optional[str], as_json: bool) -> None:
    """The timeline that would happen — notices, starts, ends per tenant — without sending anything."""
    cfg = load_config(ctx)
    now = clock()
    start = parse_time(frm, cfg, now)
    end = parse_time(to, cfg, now) if to else start + timedelta(days=30)
    if end <= start:
        raise UsageError("--to must be after --from")
    if tenant is not None and tenant not in cfg.tenants:
        raise UsageError(f'unknown tenant "{tenant}"; known: {", ".join(sorted(cfg.tenants)) or "none"}')
    events = plan_mod.timeline(cfg, start, end, tenant=tenant)
    if as_json:
        _print_plan_json(events)
        return
    _print_plan_table(cfg, events, start, end, tenant)


def _print_plan_json(events: list) -> None:
    # Streamed: a 10,000-tenant plan is hundreds of thousands of events.
    out = sys.stdout
    out.write("[")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    for i, e in enumerate(events):
        out.write(("\n  " if i == 0 else ",\n  ") + dumps(e.to_json()))
    out.write("\n]\n" if events else "]\n")


def _print_plan_table(cfg: Config, events: list, start: datetime, end: datetime, tenant: Optional[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"maintd plan {isoz(start)} .. {isoz(end)}" + (f" for {tenant}" if tenant else "")
    table = Table(title=title, title_justify="left")
    table.add_column("when (tenant's zone)", no_wrap=True)
    for col in ("event", "window", "tenants", "detail"):
        table.add_column(col)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for e in events:
        zone = cfg.tenants[e.tenant].zone
        groups[(e.at, e.rank, e.event, e.window, e.occurrence, e.kind, e.lead, e.late, zone.key)].append(e.tenant)
    for (at, _, event, window, _, kind, lead, late, zkey), tenants in groups.items():
        zone = cfg.tenants[tenants[0]].zone
        shown = ", ".join(tenants[:6]) + (f" +{len(tenants) - 6} more" if len(tenants) > 6 else "")
        detail = ""
        if event == "notice":
            detail = f"{kind}, {lead} ahead" + (" [late: sent at once]" if late else "")
        label = {"start": "[red]start[/]", "end": "[green]end[/]", "notice": "notice"}[event]
        table.add_row(local(at, zone), label, window, shown, detail)
    if not events:
        console.print(f"Nothing happens between {isoz(start)} and {isoz(end)}.")
        return
    console.print(table)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of windows.yaml (for editors and CI)."""
    echo_json(config_mod.json_schema())


# ---------------------------------------------------------------------------
# entry point


def main(argv: Optional[list[str]] = None) -> None:
    """Console script: the one place that prints ``Error: ...`` and exits."""
    try:
        rv = cli.main(args=argv, prog_name="maintd", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # usage errors: click's own message, exit 2
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = 130
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        click.echo("Error: invalid config (run `maintd validate` for details)", err=True)
        code = exc.exit_code
    except MaintdError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `maintd plan --json | head`: end quietly, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
