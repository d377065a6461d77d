"""``maintd integrations WINDOW --dry-run``: what each integration target of a window would
be sent for its next occurrence (SPEC 6), without sending anything. Tokens are never shown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from ..errors import UsageError
from ..model import Config, Tenant, Window, isoz
from .common import clock, echo_json, load_config, unknown


def requests_for(cfg: Config, w: Window, occ: Any) -> list[dict]:
    """Per target of ``w``: the first request its ``apply`` sends for ``occ`` (method, URL, body)."""
    import integrations as clients
    from notifiers.http import mask_url

    from ..config.integrations import chosen
    from ..notices import tenant_message

    nobody = Tenant(id="", name="", zone=cfg.provider.zone)
    message = tenant_message(cfg, w, nobody, occ.start, occ.end, w.title, w.id)
    record = clients.Occurrence(
        window=w.id,
        title=w.title,
        occurrence=occ.key,
        start=occ.start,
        end=occ.end,
        tenants=tuple(sorted(w.tenants)),
        message=message,
    )
    out = []
    for name, kind, settings in chosen(cfg, w):
        target: Any = clients.build(name, {"type": kind, **settings})
        if kind == "alertmanager":
            url, body = target.url + "/api/v2/silences", target.silence(record)
        elif kind == "pagerduty":
            url, body = target.url + "/maintenance_windows", target.body(record, start=occ.start, end=occ.end)
        else:
            incident = {
                "name": w.title,
                "status": "scheduled",
                "scheduled_for": isoz(occ.start),
                "scheduled_until": isoz(occ.end),
                "body": record.fill(message) or w.title,
                "component_ids": target.components,
            }
            url, body = f"{target.url}/v1/pages/{target.page}/incidents", {"incident": incident}
        out.append(
            {"name": name, "type": kind, "action": "apply", "method": "POST", "url": mask_url(url), "body": body}
        )
    return out


@click.command("integrations")
@click.argument("window_id", metavar="WINDOW")
@click.option("--dry-run", is_flag=True, help="Show what would be sent (the only mode: nothing is ever sent).")
@click.pass_context
def integrations_command(ctx: click.Context, window_id: str, dry_run: bool) -> None:
    """Show what the window's integrations would be sent for its next occurrence (JSON)."""
    from .. import plan as plan_mod

    if not dry_run:
        raise UsageError("maintd integrations only shows what would be sent: add --dry-run")
    cfg = load_config(ctx)
    w = cfg.window(window_id)
    if w is None:
        raise unknown("window", window_id, [x.id for x in cfg.windows])
    now = clock()
    occ = next(iter(plan_mod.occurrences(w, now, now + timedelta(days=400))), None)
    if occ is None:
        raise UsageError(f'window "{window_id}" has no occurrence in the next 400 days')
    echo_json({"window": w.id, "occurrence": isoz(occ.key), "integrations": requests_for(cfg, w, occ)})


COMMANDS = (integrations_command,)
