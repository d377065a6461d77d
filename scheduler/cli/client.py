"""Commands that talk to the daemon over its API: status, enter, exit, extend, notices, history, exec.

Each finds the daemon through ``settings`` (``--url``, the unix socket, or the config's
listen address; never a guess) and sends the token of its scope: ``read`` for what only
looks, ``admin`` for what changes state, ``gate`` for ``exec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from ..errors import MaintdError, RefusedError, UnreachableError
from . import settings as settings_mod
from .common import DURATION, clock, echo_json

if TYPE_CHECKING:
    import httpx

MAX_BODY = 64 * 1024 * 1024  # a notices list of 10,000 rows is a few MB


class Client:
    """One daemon, one token scope; ``call`` returns (status, JSON body) or raises a MaintdError."""

    def __init__(self, settings: settings_mod.ClientSettings, scope: str) -> None:
        self.settings = settings
        self.url = settings.url
        self.where = f"unix socket {settings.socket}" if settings.socket else settings.url
        self.token = settings.token(scope)
        # Plain HTTP needs no CA bundle, and loading it is a third of a second of every `maintd exec`.
        verify = settings.url.startswith("https:")
        import httpx  # here, not at the top: offline commands (validate, plan, conflicts) never load it

        transport = httpx.HTTPTransport(uds=settings.socket, verify=verify) if settings.socket else None
        self.http = httpx.Client(base_url=settings.url, transport=transport, trust_env=False, verify=verify)

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
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with self.http.stream(
                method, path, json=json_body, params=params, headers=headers, timeout=timeout
            ) as resp:
                raw = _read_bounded(resp)
        except httpx.TimeoutException:
            raise self._unreachable("timed out") from None
        except httpx.TransportError:
            raise self._unreachable("connection refused or host unreachable") from None
        try:
            body = httpx.Response(resp.status_code, content=raw).json() if raw else None
        except ValueError:
            body = {"error": raw[:300].decode("utf-8", "replace")}
        if resp.status_code in ok_statuses or resp.status_code < 300:
            return resp.status_code, body
        message = (body.get("error") if isinstance(body, dict) else None) or f"HTTP {resp.status_code}"
        if 400 <= resp.status_code < 500:
            raise RefusedError(message)
        raise MaintdError(f"maintd at {self.where} failed: {message}")

    def _unreachable(self, reason: str) -> UnreachableError:
        return UnreachableError(f"cannot reach maintd at {self.where} ({reason}); is `maintd run` running?")


def _read_bounded(resp: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            raise MaintdError(f"the daemon's answer is larger than {MAX_BODY // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def connect(ctx: click.Context, url: str | None, scope: str) -> Client:
    """The client of a command: ``--url`` (or MAINTD_URL) wins, else the config's daemon settings."""
    obj = ctx.obj
    settings = settings_mod.load(obj["config"], explicit=obj.get("config_explicit", False), url=url or obj.get("url"))
    return Client(settings, scope)


def url_option(f):
    return click.option(
        "--url",
        default=None,
        envvar="MAINTD_URL",
        show_envvar=True,
        help="Base URL of the daemon (default: the config's daemon.socket if it exists, else its listen address).",
    )(f)


def wide_option(f):
    return click.option("--wide", is_flag=True, help="Every field in full (lines as long as they need).")(f)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object (see docs/reference.md).")
@wide_option
@url_option
@click.pass_context
def status(ctx: click.Context, as_json: bool, wide: bool, url: str | None) -> None:
    """Mode, active and next windows, tenants, leases, notices, last reload (exit 3: unreachable)."""
    client = connect(ctx, url, "read")
    _, st = client.call("GET", "/v1/status")
    if as_json:
        echo_json(st)
        return
    from ..status_view import render_status

    render_status(st, clock(), client.settings.zone, wide=wide)


@click.command()
@click.option("--reason", required=True, help="Why (shown in history and to tenants).")
@click.option("--for", "for_", type=DURATION, default=None, help="How long, e.g. 2h (default: until `maintd exit`).")
@click.option("--tenants", multiple=True, help="Tenant ids, comma-separated or repeated (default: all).")
@click.option("--policy", default=None, help="Policy that gates jobs (default: provider.policy).")
@click.option("--override-freeze", default=None, metavar="REASON", help="Enter inside a change freeze (journaled).")
@url_option
@click.pass_context
def enter(
    ctx: click.Context,
    reason: str,
    for_: str | None,
    tenants: tuple[str, ...],
    policy: str | None,
    url: str | None,
    override_freeze: str | None,
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
    if override_freeze:
        body["override_freeze"] = override_freeze
    _, out = connect(ctx, url, "admin").call("POST", "/v1/maintenance", json_body=body)
    n = len(out["tenants"])
    click.echo(
        f"maintenance entered: {out['window']} until {out['end'] or 'maintd exit'} ({n} tenant{'s' if n != 1 else ''})"
    )


@click.command(name="exit")
@click.option("--window", default=None, help="Only this window (default: everything active).")
@url_option
@click.pass_context
def exit_(ctx: click.Context, window: str | None, url: str | None) -> None:
    """End a manual or running window early (tenants get the end notice)."""
    params = {"window": window} if window else None
    _, out = connect(ctx, url, "admin").call("DELETE", "/v1/maintenance", params=params)
    for e in out.get("ended", []):
        click.echo(f"ended {e['window']} ({e['occurrence']})")


@click.command()
@click.argument("window")
@click.argument("duration", type=DURATION)
@url_option
@click.pass_context
def extend(ctx: click.Context, window: str, duration: str, url: str | None) -> None:
    """Extend the active occurrence of WINDOW by DURATION (e.g. 30m); tenants get an "extended" notice."""
    _, out = connect(ctx, url, "admin").call("POST", f"/v1/windows/{window}/extend", json_body={"by": duration})
    click.echo(f"{out['window']} now ends at {out['end']}")


@click.command()
@click.argument("window")
@click.option("--at", "at", default="now", show_default=True, help="When the halted waves start again (ISO 8601).")
@url_option
@click.pass_context
def resume(ctx: click.Context, window: str, at: str, url: str | None) -> None:
    """Plan the halted waves of WINDOW again from --at; exit 1 when WINDOW is not halted."""
    _, out = connect(ctx, url, "admin").call("POST", f"/v1/windows/{window}/resume", json_body={"at": at})
    click.echo(f"{out['window']}: halted waves planned again from {out['at']}")


@click.command()
@click.option("--failed", is_flag=True, help="Only deliveries that failed for good.")
@click.option(
    "--retry", "retry", is_flag=True, help="Put the failed deliveries named (or, with --failed, all) back to pending."
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
@wide_option
@url_option
@click.argument("ids", nargs=-1)
@click.pass_context
def notices(
    ctx: click.Context, failed: bool, retry: bool, as_json: bool, limit: int, wide: bool, url: str | None, ids: tuple
) -> None:
    """The delivery log; `--retry IDS` or `--retry --failed` resend failed deliveries (exit 1: none)."""
    if retry:
        _retry(connect(ctx, url, "admin"), ids, failed, as_json)
        return
    if ids:
        raise click.UsageError("notice ids are taken only with --retry")
    params: dict[str, Any] = {"limit": limit}
    if failed:
        params["failed"] = "true"
    client = connect(ctx, url, "read")
    _, rows = client.call("GET", "/v1/notices", params=params)
    if as_json:
        echo_json(rows)
        return
    from . import tables

    tables.print_notices(rows, client.settings.zone, failed=failed, wide=wide)


def _retry(client: Client, ids: tuple, failed: bool, as_json: bool) -> None:
    if not ids and not failed:
        raise click.UsageError("--retry needs notice ids or --failed")
    outs = []
    calls: list[tuple[str, dict | None]] = [("/v1/notices/retry", {"failed": True})] if failed and not ids else []
    calls += [(f"/v1/notices/{quote(str(notice_id), safe='')}/retry", None) for notice_id in ids]
    for path, body in calls:
        # 404: nothing failed under that id; the others are still resent (exit 1 only if none was)
        status, out = client.call("POST", path, json_body=body, ok_statuses=(404,))
        outs.append({"retried": 0, "ids": [], "error": (out or {}).get("error")} if status == 404 else out)
    count = sum(_count(o.get("retried") if isinstance(o, dict) else o) for o in outs)
    if as_json:
        echo_json(outs if ids else outs[0])
    if not count:
        raise MaintdError("no failed delivery to resend")
    if as_json:
        return
    click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} back to pending")


def _count(retried: Any) -> int:
    """``{"retried": 3}`` or a list of the ids put back."""
    if isinstance(retried, list):
        return len(retried)
    return retried if isinstance(retried, int) and not isinstance(retried, bool) else 0


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
@wide_option
@url_option
@click.pass_context
def history(ctx: click.Context, as_json: bool, limit: int, wide: bool, url: str | None) -> None:
    """Audit trail: transitions, reloads, manual actions, drains, hooks."""
    client = connect(ctx, url, "read")
    _, rows = client.call("GET", "/v1/history", params={"limit": limit})
    if as_json:
        echo_json(rows)
        return
    from . import tables

    tables.print_history(rows, client.settings.zone, wide=wide)


@click.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
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
    from ..execjob import run_gated

    # Settings errors end here (exit 2): --if-unreachable is for a daemon that is down, not
    # for not knowing where it is.
    client = connect(ctx, url, "gate")
    code = run_gated(
        client,
        tenant=tenant,
        kind=kind,
        resource=resource,
        expected_duration=expected_duration,
        if_unreachable=if_unreachable,
        cmd=list(cmd),
    )
    ctx.exit(code)


COMMANDS = (status, enter, exit_, extend, notices, history, exec_, resume)
