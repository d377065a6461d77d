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
from typing import Any

import click

from . import config as config_mod
from . import plan as plan_mod
from .duration import parse_duration
from .errors import ConfigError, MaintdError, UsageError
from .model import NOTICE_KINDS, UTC, Config, isoz
from .recurrence import resolve_local

DEFAULT_CONFIG = "windows.yaml"


# ---------------------------------------------------------------------------
# helpers


def parse_time(text: str, config: Config | None, now: datetime) -> datetime:
    """ISO 8601 with or without offset (without: the provider's zone), or ``now``."""
    t = text.strip()
    if t.lower() == "now":
        return now
    try:
        ts = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f'invalid time "{text}"; expected ISO 8601 such as 2026-12-05T22:00, 2026-12-05T21:00Z or now'
        ) from None
    if ts.tzinfo is None:
        zone = config.provider.zone if config else UTC
        return resolve_local(ts, zone)
    return ts.astimezone(UTC)


class Duration(click.ParamType):
    """A positive duration such as 30m or 1h30m, checked where the flag is parsed; the
    text is passed on as written (the daemon parses it again)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            if parse_duration(value) <= timedelta(0):
                raise ValueError("expected a positive duration such as 30m")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


DURATION = Duration()


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
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    envvar="MAINTD_CONFIG",
    show_default=True,
    show_envvar=True,
    help="Path of windows.yaml.",
)
@click.option("--url", default=None, envvar="MAINTD_URL", help="Base URL of the daemon for client commands.")
@click.version_option(package_name="maintd")
@click.pass_context
def cli(ctx: click.Context, config_path: str, url: str | None) -> None:
    """maintd — planned maintenance for service providers.

    Declare windows in windows.yaml; maintd tells tenants in advance, gates and drains
    their jobs while a window runs, and shows where everything stands.
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    ctx.obj["url"] = url


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
    click.echo(
        f"{ctx.obj['config']}: OK ({len(cfg.tenants)} tenants, {len(cfg.windows)} windows, "
        f"{len(cfg.policies)} polic{'y' if len(cfg.policies) == 1 else 'ies'})"
    )


@cli.command()
@click.option("--from", "frm", default="now", show_default=True, help="Start of the range (ISO 8601 or now).")
@click.option("--to", "to", default=None, help="End of the range, exclusive (default: --from + 30 days).")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print SPEC's JSON array.")
@click.pass_context
def plan(ctx: click.Context, frm: str, to: str | None, tenant: str | None, as_json: bool) -> None:
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


def _print_plan_json(events: Any) -> None:
    # Streamed: a 10,000-tenant plan is hundreds of thousands of events.
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


def _print_plan_table(cfg: Config, events: list, start: datetime, end: datetime, tenant: str | None) -> None:
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
    for (at, _, event, window, _, kind, lead, late, _zkey), tenants in groups.items():
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


@cli.command()
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

    from .notices import compose_notice

    cfg = load_config(ctx)
    now = clock()
    w = cfg.window(window_id)
    if w is None:
        raise UsageError(f'unknown window "{window_id}"; known: {", ".join(x.id for x in cfg.windows) or "none"}')
    tenant = cfg.tenants.get(tenant_id)
    if tenant is None:
        raise UsageError(f'unknown tenant "{tenant_id}"; known: {", ".join(sorted(cfg.tenants)) or "none"}')
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
    summary = None
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
    notice = compose_notice(cfg, action, tenant, window=w, link=link, summary=summary)
    renderer = Renderer(cfg.provider.name, cfg.notifiers.templates)
    problems = renderer.check()
    if problems:
        raise UsageError("the notice templates do not render:\n  " + "\n  ".join(problems))
    sender = cfg.notifiers.email.sender if cfg.notifiers.email else None
    rendered = renderer.render(notice, tenant, organizer=sender, now=now)

    def section(title: str, note: str = "") -> None:
        click.echo(f"\n===== {title} " + (f"({note}) " if note else "") + "=" * max(3, 60 - len(title) - len(note)))

    click.echo(
        f"Preview of the {kind} notice for {tenant.id} about {w.id}, occurrence {isoz(occ.key)} "
        f"({local(occ.start, tenant.zone)} .. {local(occ.end, tenant.zone)}). Nothing is sent."
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


# ---------------------------------------------------------------------------
# the daemon


@cli.command()
@click.option("--dry-run", is_flag=True, help="Render and journal notices instead of sending them.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.pass_context
def run(ctx: click.Context, dry_run: bool, log_format: str, log_level: str) -> None:
    """Run the daemon in the foreground (SIGHUP reloads, SIGTERM stops gracefully)."""
    from .runner import serve

    serve(ctx.obj["config"], dry_run=dry_run, log_format=log_format, log_level=log_level)


# ---------------------------------------------------------------------------
# client commands: they talk to the daemon over its API


def url_option(f):
    return click.option(
        "--url",
        default=None,
        envvar="MAINTD_URL",
        show_envvar=True,
        help="Base URL of the daemon (default: http:// + the config's listen address).",
    )(f)


class Client:
    def __init__(self, ctx: click.Context, url: str | None) -> None:
        import requests

        self.requests = requests
        self.session = requests.Session()
        self.config_path = ctx.obj["config"]
        cfg = None
        try:
            cfg = config_mod.load(self.config_path)
        except MaintdError:
            cfg = None  # the daemon may run elsewhere; fall back to defaults
        url = url or ctx.obj.get("url")
        if not url:
            listen = os.environ.get("MAINTD_LISTEN") or (cfg.daemon.listen if cfg else "127.0.0.1:8787")
            host, _, port = listen.rpartition(":")
            if host in ("0.0.0.0", "", "::", "[::]"):
                host = "127.0.0.1"
            url = f"http://{host}:{port}"
        self.url = url.rstrip("/")
        token = os.environ.get("MAINTD_TOKEN")
        if not token and cfg and cfg.daemon.token_file:
            path = cfg.daemon.token_file
            if not os.path.isabs(path):
                path = os.path.join(os.path.dirname(os.path.abspath(self.config_path)), path)
            try:
                with open(path, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError:
                token = None
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict | None = None,
        timeout: float = 15.0,
        ok_statuses: tuple = (),
    ) -> tuple[int, Any]:
        from .errors import RefusedError, UnreachableError

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = self.session.request(
                method, self.url + path, json=json_body, params=params, headers=headers, timeout=timeout
            )
        except self.requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, self.requests.ConnectionError):
                reason = "connection refused or host unreachable"
            elif isinstance(exc, self.requests.Timeout):
                reason = "timed out"
            raise UnreachableError(f"cannot reach maintd at {self.url} ({reason}); is `maintd run` running?") from None
        try:
            body = resp.json()
        except ValueError:
            body = {"error": resp.text[:300]}
        if resp.status_code in ok_statuses or resp.status_code < 300:
            return resp.status_code, body
        message = body.get("error") if isinstance(body, dict) else None
        message = message or f"HTTP {resp.status_code}"
        if 400 <= resp.status_code < 500:
            raise RefusedError(message)
        raise MaintdError(f"maintd at {self.url} failed: {message}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print SPEC's JSON object.")
@url_option
@click.pass_context
def status(ctx: click.Context, as_json: bool, url: str | None) -> None:
    """Mode, active and next windows, tenants, leases, notices, last reload (exit 3: unreachable)."""
    _, st = Client(ctx, url).call("GET", "/v1/status")
    if as_json:
        echo_json(st)
        return
    from .status_view import render_status

    render_status(st, clock())


@cli.command()
@click.option("--reason", required=True, help="Why (shown in history and to tenants).")
@click.option("--for", "for_", type=DURATION, default=None, help="How long, e.g. 2h (default: until `maintd exit`).")
@click.option("--tenants", multiple=True, help="Tenant ids, comma-separated or repeated (default: all).")
@click.option("--policy", default=None, help="Policy that gates jobs (default: provider.policy).")
@url_option
@click.pass_context
def enter(
    ctx: click.Context, reason: str, for_: str | None, tenants: tuple[str, ...], policy: str | None, url: str | None
) -> None:
    """Enter maintenance now (the Enable-...MaintenanceMode equivalent)."""
    ids = [t.strip() for group in tenants for t in group.split(",") if t.strip()] or None
    body: dict[str, Any] = {"reason": reason}
    if for_:
        body["for"] = for_
    if ids:
        body["tenants"] = ids
    if policy:
        body["policy"] = policy
    _, out = Client(ctx, url).call("POST", "/v1/maintenance", json_body=body)
    click.echo(
        f"maintenance entered: {out['window']} until {out['end'] or 'maintd exit'} ({len(out['tenants'])} tenants)"
    )


@cli.command(name="exit")
@click.option("--window", default=None, help="Only this window (default: everything active).")
@url_option
@click.pass_context
def exit_(ctx: click.Context, window: str | None, url: str | None) -> None:
    """End a manual or running window early (tenants get the end notice)."""
    _, out = Client(ctx, url).call("DELETE", "/v1/maintenance", params={"window": window} if window else None)
    for e in out.get("ended", []):
        click.echo(f"ended {e['window']} ({e['occurrence']})")


@cli.command()
@click.argument("window")
@click.argument("duration", type=DURATION)
@url_option
@click.pass_context
def extend(ctx: click.Context, window: str, duration: str, url: str | None) -> None:
    """Extend the active occurrence of WINDOW by DURATION (e.g. 30m); tenants get an "extended" notice."""
    _, out = Client(ctx, url).call("POST", f"/v1/windows/{window}/extend", json_body={"by": duration})
    click.echo(f"{out['window']} now ends at {out['end']}")


@cli.command()
@click.option("--failed", is_flag=True, help="Only deliveries that failed for good.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
@url_option
@click.pass_context
def notices(ctx: click.Context, failed: bool, as_json: bool, limit: int, url: str | None) -> None:
    """The delivery log."""
    params: dict[str, Any] = {"limit": limit}
    if failed:
        params["failed"] = "true"
    _, rows = Client(ctx, url).call("GET", "/v1/notices", params=params)
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="notices" + (" (failed)" if failed else ""), title_justify="left")
    for col in ("created", "kind", "window", "tenant", "channel", "status", "attempts", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["created_at"],
            r["kind"] + (f" {r['lead']}" if r.get("lead") else ""),
            r["window"],
            r["tenant"],
            r["channel"],
            r["status"],
            str(r["attempts"]),
            (r.get("last_error") or "")[:60],
        )
    Console().print(table if rows else "No notices.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
@url_option
@click.pass_context
def history(ctx: click.Context, as_json: bool, limit: int, url: str | None) -> None:
    """Audit trail: transitions, reloads, manual actions, drains, hooks."""
    _, rows = Client(ctx, url).call("GET", "/v1/history", params={"limit": limit})
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="history", title_justify="left")
    for col in ("at", "kind", "window", "actor", "message"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["at"], r["kind"], r.get("window") or "", r.get("actor") or "", r.get("message") or "")
    Console().print(table if rows else "No history yet.")


@cli.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--tenant", required=True)
@click.option("--kind", required=True)
@click.option("--resource", default=None)
@click.option(
    "--expected-duration", type=DURATION, default=None, help="e.g. 2h: refused if it would run into a window."
)
@click.option(
    "--if-unreachable",
    type=click.Choice(["allow", "deny"]),
    default="allow",
    show_default=True,
    help="When the daemon is down: run anyway (with a warning) or refuse (exit 75).",
)
@url_option
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context,
    tenant: str,
    kind: str,
    resource: str | None,
    expected_duration: str | None,
    if_unreachable: str,
    url: str | None,
    cmd: tuple[str, ...],
) -> None:
    """Ask the gate, run CMD if admitted, heartbeat, and stop CMD gracefully on drain."""
    from .execjob import run_gated

    code = run_gated(
        Client(ctx, url),
        tenant=tenant,
        kind=kind,
        resource=resource,
        expected_duration=expected_duration,
        if_unreachable=if_unreachable,
        cmd=list(cmd),
    )
    ctx.exit(code)


@cli.command(name="tenant-url")
@click.argument("tenant")
@click.option("--rotate", is_flag=True, help="Make a new secret; the old URLs stop working at once.")
@click.pass_context
def tenant_url(ctx: click.Context, tenant: str, rotate: bool) -> None:
    """Print TENANT's page and calendar-feed URLs (each behind a per-tenant secret)."""
    from .store import Store, database_url

    cfg = load_config(ctx)
    if tenant not in cfg.tenants:
        raise UsageError(f'unknown tenant "{tenant}"; known: {", ".join(sorted(cfg.tenants)) or "none"}')
    db = os.environ.get("MAINTD_DATABASE") or cfg.daemon.database
    store = Store(database_url(db, os.path.dirname(os.path.abspath(ctx.obj["config"]))))
    try:
        secret = store.rotate_secret(tenant) if rotate else store.tenant_secret(tenant)
    finally:
        store.close()
    if cfg.daemon.public_url:
        base = cfg.daemon.public_url
    else:
        listen = os.environ.get("MAINTD_LISTEN") or cfg.daemon.listen
        host, _, port = listen.rpartition(":")
        base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}"
    click.echo(f"page:     {base}/t/{secret}/")
    click.echo(f"calendar: {base}/t/{secret}/calendar.ics")
    if rotate:
        click.echo("rotated: the previous URLs no longer work", err=True)


def _config_here(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)
        ctx.obj["config"] = value  # the group's dict: every layer of the command sees it


# `--config` is global (`maintd --config x validate`), and people also write it after the
# command (`maintd validate --config x`): accept it in both places.
for _command in cli.commands.values():
    _command.params.insert(
        0,
        click.Option(
            ["--config"],
            default=None,
            expose_value=False,
            is_eager=True,
            callback=_config_here,
            metavar="PATH",
            help="Path of windows.yaml (same as the global option).",
        ),
    )


# ---------------------------------------------------------------------------
# entry point


def main(argv: list[str] | None = None) -> None:
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
        missing = len(exc.issues) == 1 and "no such file" in exc.issues[0].message
        click.echo(
            "Error: no config file" if missing else "Error: invalid config (run `maintd validate` for details)",
            err=True,
        )
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
