"""Commands that need no daemon: validate, plan, schema, preview, tenant-url, and run (the daemon itself)."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

import click

from ..errors import ConfigError, UsageError
from ..model import NOTICE_KINDS, isoz
from .common import clock, echo_json, load_config, parse_time, unknown


@click.command()
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
    from .conflicts import validate_warnings  # SPEC 7: guardrail warnings of the next 90 days

    for w in validate_warnings(cfg, ctx.obj["config"], clock()):
        click.echo(w, err=True)
    n_t, n_w, n_p = len(cfg.tenants), len(cfg.windows), len(cfg.policies)
    click.echo(
        f"{ctx.obj['config']}: OK ({n_t} tenant{'s' if n_t != 1 else ''}, {n_w} window{'s' if n_w != 1 else ''}, "
        f"{n_p} polic{'y' if n_p == 1 else 'ies'})"
    )


@click.command()
@click.option("--from", "frm", default="now", show_default=True, help="Start of the range (ISO 8601 or now).")
@click.option("--to", "to", default=None, help="End of the range, exclusive (default: --from + 30 days).")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the timeline as one JSON array of events (see docs/reference.md)."
)
@click.option("--wide", is_flag=True, help="One row per tenant's zone, full dates and every tenant.")
@click.pass_context
def plan(ctx: click.Context, frm: str, to: str | None, tenant: str | None, as_json: bool, wide: bool) -> None:
    """The timeline that would happen — notices, starts, ends per tenant — without sending anything."""
    from .. import plan as plan_mod

    cfg = load_config(ctx)
    now = clock()
    start = parse_time(frm, cfg, now)
    end = parse_time(to, cfg, now) if to else start + timedelta(days=30)
    if end <= start:
        raise UsageError("--to must be after --from")
    if tenant is not None and tenant not in cfg.tenants:
        raise unknown("tenant", tenant, sorted(cfg.tenants))
    events = plan_mod.timeline(cfg, start, end, tenant=tenant)
    if as_json:
        _print_plan_json(events)
        return
    from . import tables  # rich: only for the table

    tables.print_plan(cfg, events, start, end, tenant, wide=wide)


def _print_plan_json(events: Any) -> None:
    # Streamed: a 10,000-tenant plan is hundreds of thousands of events.
    from .. import plan as plan_mod

    out = sys.stdout
    try:
        out.write("[")
        first = True
        for line in plan_mod.json_lines(events):
            out.write(("\n  " if first else ",\n  ") + line)
            first = False
        out.write("]\n" if first else "\n]\n")
        out.flush()
    except BrokenPipeError:
        # `maintd plan --json | head`: the reader has what it wanted; end quietly with 0.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@click.command()
def schema() -> None:
    """Print the JSON Schema of windows.yaml (for editors and CI)."""
    from .. import config as config_mod

    echo_json(config_mod.json_schema())


@click.command()
@click.option("--window", "window_id", required=True, help="Window id from windows.yaml.")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option(
    "--kind",
    type=click.Choice(list(NOTICE_KINDS)),
    default="scheduled",
    show_default=True,
    help="Notice kind (scheduled uses the window's first lead time).",
)
@click.pass_context
def preview(ctx: click.Context, window_id: str, tenant_id: str, kind: str) -> None:
    """Render a notice for the window's next occurrence — email text, HTML, .ics and webhook
    JSON — without sending anything."""
    from notifiers import Renderer

    from .. import plan as plan_mod
    from ..notices import compose_notice

    cfg = load_config(ctx)
    now = clock()
    w = cfg.window(window_id)
    if w is None:
        raise unknown("window", window_id, [x.id for x in cfg.windows])
    tenant = cfg.tenants.get(tenant_id)
    if tenant is None:
        raise unknown("tenant", tenant_id, sorted(cfg.tenants))
    if tenant.id not in w.tenants:
        raise UsageError(f'tenant "{tenant_id}" is not affected by window "{window_id}", so it never gets its notices')
    # The next occurrence (or the running one); a one-off that is over still previews.
    occ = next(iter(plan_mod.occurrences(w, now, now + timedelta(days=400))), None)
    if occ is None and not w.recurring:
        occ = next(iter(plan_mod.occurrences(w, plan_mod.EPOCH, now + timedelta(days=400))), None)
    if occ is None:
        raise UsageError(f'window "{window_id}" has no occurrence in the next 400 days to preview')
    lead = w.lead_label(w.notify[0]) if kind == "scheduled" and w.notify else None
    changed = kind in ("rescheduled", "extended", "cancelled")
    action = plan_mod.NoticeAction(
        kind=kind,
        window=w.id,
        occurrence=occ.key,
        tenants=frozenset({tenant.id}),
        start=occ.start,
        end=occ.end,
        title=w.title,
        lead=lead,
        sequence=1 if changed else 0,
        previous=(occ.start, occ.end) if kind in ("rescheduled", "extended") else None,
        recurring=w.recurring,
    )
    summary: dict[str, Any] | None = None
    if kind == "completed":
        summary = {
            "actual_start": isoz(occ.start),
            "actual_end": isoz(occ.end),
            "refused": {},
            "drained": 0,
            "stopped": 0,
        }
    # The real link carries the tenant's secret from the daemon's database (`maintd tenant-url`).
    link = f"{cfg.daemon.public_url}/t/TENANT-SECRET/" if cfg.daemon.public_url else None
    from ..runtime.enqueue import tenant_time  # the daemon's dates in the tenant's language

    notice = compose_notice(cfg, action, tenant, window=w, link=link, summary=summary, format_time=tenant_time(tenant))
    renderer = Renderer(cfg.provider.name, cfg.notifiers.templates)
    problems = renderer.check()
    if problems:
        raise UsageError("the notice templates do not render:\n  " + "\n  ".join(problems))
    sender = cfg.notifiers.email.sender if cfg.notifiers.email else None
    rendered = renderer.render(notice, tenant, organizer=sender, now=now)
    _print_preview(cfg, kind, tenant, w, occ, notice, rendered, sender)
    _print_chat(renderer, notice, tenant)


def _print_chat(renderer: Any, notice: Any, tenant: Any) -> None:
    """Each notify_url's title and Markdown body, the URL masked (it holds secrets)."""
    if not tenant.notify_urls:
        return
    from notifiers import mask_apprise_url
    from notifiers.chat import check_apprise_url

    title, body = renderer.render_chat(notice, tenant)
    for url in tenant.notify_urls:
        head = f"Chat apprise:{check_apprise_url(url)} ({mask_apprise_url(url)}) "
        click.echo(f"\n===== {head}" + "=" * max(3, 60 - len(head)))
        click.echo(f"Title: {title}")
        click.echo(body.rstrip("\n"))


def _print_preview(cfg: Any, kind: str, tenant: Any, w: Any, occ: Any, notice: Any, rendered: Any, sender: Any) -> None:
    from .tables import full_time

    changed = kind in ("rescheduled", "extended", "cancelled")

    def section(title: str, note: str = "") -> None:
        click.echo(f"\n===== {title} " + (f"({note}) " if note else "") + "=" * max(3, 60 - len(title) - len(note)))

    click.echo(
        f"Preview of the {kind} notice for {tenant.id} about {w.id}, occurrence {isoz(occ.key)} "
        f"({full_time(occ.start, tenant.zone)} .. {full_time(occ.end, tenant.zone)}), "
        f"in {getattr(tenant, 'locale', 'en')}. Nothing is sent."
    )
    if changed:
        click.echo(
            "Sequence 1 and, where shown, the previous times are sample values: "
            "the daemon fills in what tenants were actually told."
        )
    no_mail = "" if tenant.email else "tenant has no email address: not sent by email"
    if tenant.email and not cfg.notifiers.email:
        no_mail = "notifiers.email is not configured: not sent by email"
    section("Email headers", no_mail)
    click.echo(f"Subject: {rendered.subject}")
    if sender:
        click.echo(f"From: {sender}")
    click.echo(f"To: {', '.join(tenant.email) or '(none)'}")
    section("Email text/plain")
    click.echo(rendered.text.rstrip("\n"))
    section("Email text/html")
    click.echo(rendered.html.rstrip("\n"))
    section("Calendar attachment " + ("cancel.ics" if kind == "cancelled" else "invite.ics"))
    click.echo(rendered.ics.decode("utf-8").replace("\r\n", "\n").rstrip("\n"))
    hook = tenant.webhook
    section("Webhook JSON", f"POST {hook.url}" if hook else "tenant has no webhook: not sent")
    click.echo(f"webhook-id: {notice.id}")
    click.echo("webhook-signature: v1,... (Standard Webhooks, signed at send time)")
    click.echo(json.dumps(rendered.payload, indent=2, ensure_ascii=False))


@click.command(name="tenant-url")
@click.argument("tenant")
@click.option("--rotate", is_flag=True, help="Make a new secret; the old URLs stop working at once.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="When the daemon is down: read the database of `maintd run --dry-run` (maintd.dry-run.db).",
)
@click.option("--url", default=None, envvar="MAINTD_URL", show_envvar=True, help="Base URL of the daemon.")
@click.pass_context
def tenant_url(ctx: click.Context, tenant: str, rotate: bool, dry_run: bool, url: str | None) -> None:
    """Print TENANT's page and calendar-feed URLs (each behind a per-tenant secret).

    Asks the running daemon, so the URLs are the ones it serves (a dry run keeps its own
    database); reads the database directly only when the daemon cannot be reached."""
    from ..errors import UnreachableError

    cfg = load_config(ctx)
    if tenant not in cfg.tenants:
        raise unknown("tenant", tenant, sorted(cfg.tenants))
    try:
        page, calendar = _tenant_url_from_daemon(ctx, url, tenant, rotate)
    except UnreachableError:
        page, calendar = _tenant_url_from_database(ctx, cfg, tenant, rotate, dry_run)
    click.echo(f"page:     {page}")
    click.echo(f"calendar: {calendar}")
    if rotate:
        click.echo("rotated: the previous URLs no longer work", err=True)


def _tenant_url_from_daemon(ctx: click.Context, url: str | None, tenant: str, rotate: bool) -> tuple[str, str]:
    from .client import connect

    client = connect(ctx, url, "admin")
    _, body = client.call("POST" if rotate else "GET", f"/v1/tenants/{tenant}/url", timeout=5.0)
    return body["page"], body["calendar"]


def _tenant_url_from_database(
    ctx: click.Context, cfg: Any, tenant: str, rotate: bool, dry_run: bool
) -> tuple[str, str]:
    from ..runtime.daemon import _database
    from ..store import Store, database_url

    db = _database(os.environ.get("MAINTD_DATABASE") or cfg.daemon.database, dry_run)
    store = Store(database_url(db, os.path.dirname(os.path.abspath(ctx.obj["config"]))))
    try:
        secret = store.rotate_secret(tenant) if rotate else store.tenant_secret(tenant)
    finally:
        store.close()
    if cfg.daemon.public_url:
        base = cfg.daemon.public_url.rstrip("/")
    else:
        from .settings import listen_url

        base = listen_url(os.environ.get("MAINTD_LISTEN") or cfg.daemon.listen)
    return f"{base}/t/{secret}/", f"{base}/t/{secret}/calendar.ics"


@click.command()
@click.option("--dry-run", is_flag=True, help="Render and journal notices instead of sending them.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.pass_context
def run(ctx: click.Context, dry_run: bool, log_format: str, log_level: str) -> None:
    """Run the daemon in the foreground (SIGHUP reloads, SIGTERM stops gracefully)."""
    from ..runner import serve

    serve(ctx.obj["config"], dry_run=dry_run, log_format=log_format, log_level=log_level)


from .conflicts import conflicts  # noqa: E402  (SPEC 7)

COMMANDS = (validate, plan, schema, preview, tenant_url, run, conflicts)
