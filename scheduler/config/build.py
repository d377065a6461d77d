"""Pass 3: validated shapes -> the frozen records of :mod:`scheduler.model`.

Records are filled from the shapes field by field by name (:func:`record`), so a setting
is declared once, in :mod:`.schema`. Names used across the file are checked in one pass
(:func:`check_references`), Alertmanager style: ``undefined policy "x" used in window "y"``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Container, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .. import model
from ..duration import format_duration
from ..errors import ConfigIssue
from . import channels
from . import guardrails as guard
from . import integrations as integ
from . import waves as wv
from . import windows as win
from .issues import secret_reason
from .schema import DAEMON_ENV, ConfigModel, DaemonModel, EmailModel, NotifiersModel, WindowModel
from .source import Collector, Source


@dataclass
class Shapes:
    """What pass 2 made of a file: the whole, and tenants and windows one by one."""

    cfg: ConfigModel
    src: Source  # windows.yaml
    tsrc: Source  # where the tenants are: windows.yaml or its tenants_file
    tenants: list[tuple[int, Any]]  # (index, TenantModel) of the tenants that validated
    windows: list[tuple[int, WindowModel | None, Any]]  # (index, shape or None, raw node)
    file: str
    broken: Container[str] = frozenset()  # ids of tenants whose own errors are reported


def record(cls: type, shape: Any, **extra: Any) -> Any:
    """``cls`` filled from the same-named fields of ``shape`` (lists become tuples)."""
    if shape is None:
        return None
    names = type(shape).model_fields
    values = {
        f.name: _frozen(getattr(shape, f.name))
        for f in dataclasses.fields(cls)
        if f.name in names and f.name not in extra
    }
    return cls(**values, **extra)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value) if value else None
    if isinstance(value, dict):
        return dict(value)
    return value


def build(s: Shapes, col: Collector) -> model.Config:
    cfg = s.cfg
    message: dict[str, Any] = {"message": cfg.provider.message} if cfg.provider.message else {}  # else the default
    targets = integ.targets(s.src, cfg.integrations, col)
    provider = model.Provider(
        name=cfg.provider.name,
        zone=ZoneInfo(cfg.provider.timezone),
        policy=cfg.provider.policy,
        integrations=integ.provider_choice(s.src, cfg.provider.integrations, cfg.integrations, col),
        **message,
    )
    provider = replace(provider, redundant=guard.redundant(cfg, s.src, col))  # SPEC 7
    tenants = _tenants(s, provider.zone, col)
    tenants = channels.tenant_channels(s.tsrc, s.tenants, tenants, col)  # notify_urls, locale (SPEC 4.2, 4.3)
    provider = replace(provider, ops=channels.ops_settings(s.src, cfg.provider.ops, col))
    policies = _policies(cfg, s.src, col)
    refs = check_references(s, tenants, policies, col)
    config = model.Config(
        path=os.path.abspath(s.file),
        provider=provider,
        tenants=tenants,
        windows=_windows(s, tenants, provider.zone, refs, col, targets),
        policies=policies,
        notifiers=_notifiers(s, col),
        daemon=record(model.DaemonSettings, cfg.daemon, public_url=_strip(cfg.daemon.public_url)),
        hooks=record(model.Hooks, cfg.hooks),
        warnings=tuple(str(i) for i in col.warnings),
        freezes=guard.freezes(cfg, s.src, provider.zone, col),  # SPEC 7
        integrations=targets,
    )
    guard.check(config, s.src, {w.id: ("windows", i) for i, w, _ in s.windows if w is not None}, col)
    return replace(config, warnings=tuple(str(i) for i in col.warnings))


def _strip(url: str | None) -> str | None:
    return url.rstrip("/") if url else None


def _tenants(s: Shapes, provider_zone: ZoneInfo, col: Collector) -> dict[str, model.Tenant]:
    tenants: dict[str, model.Tenant] = {}
    for i, t in s.tenants:
        path = ("tenants", i)
        if t.id in tenants:
            first = tenants[t.id].line
            col.add(s.tsrc.issue(path + ("id",), f'duplicate tenant id "{t.id}" (first defined at line {first})'))
            continue
        zone = ZoneInfo(t.timezone) if t.timezone else provider_zone
        tenants[t.id] = model.Tenant(
            id=t.id,
            name=t.name or t.id,
            zone=zone,
            labels=dict(t.labels),
            email=tuple(t.email),
            webhook=record(model.Webhook, t.webhook),
            line=s.tsrc.at(path)[0],
            blackouts=guard.blackouts(t, t.id, zone, s.tsrc, path, col),  # SPEC 7
        )
    return tenants


def _policies(cfg: ConfigModel, src: Source, col: Collector) -> dict[str, model.Policy]:
    policies: dict[str, model.Policy] = {}
    for name, p in cfg.policies.items():
        rules = []
        for j, r in enumerate(p.rules):
            if (r.allow is None) == (r.deny is None):
                where = ("policies", name, "rules", j)
                col.add(src.issue(where, f'rule {j + 1} of policy "{name}" needs exactly one of allow or deny'))
                continue
            match = r.allow if r.allow is not None else r.deny
            assert match is not None
            rules.append(
                model.Rule(
                    effect="allow" if r.allow is not None else "deny",
                    kinds=frozenset(match.kind) if match.kind else None,
                    resources=frozenset(match.resource) if match.resource else None,
                    labels=dict(match.labels),
                    message=r.message,
                )
            )
        policies[name] = model.Policy(name=name, default=p.default, rules=tuple(rules))
    return policies


def _shown(src: Source, path: tuple, name: object) -> str:
    """A name used in a reference, quoted; never one that came from ${VAR}."""
    reason = secret_reason(src, path)
    return f'"{name}"' if reason is None else f"(not shown: {reason})"


def _refs_of(w: WindowModel | None, raw: Any) -> tuple[Any, Any, Any]:
    if w is not None:
        return w.id, w.policy, w.tenants
    if not isinstance(raw, dict):
        return None, None, None
    return raw.get("id", "?"), raw.get("policy"), raw.get("tenants")


def check_references(
    s: Shapes, tenants: Mapping[str, model.Tenant], policies: Mapping[str, model.Policy], col: Collector
) -> tuple[set[int], set[int]]:
    """The second pass: window ids are unique and every name used is defined.

    Returns the indexes of duplicate windows (not built at all) and of windows that use an
    undefined name (checked, not built). Windows that failed validation are checked too,
    so all errors of a file show in one run.
    """
    src = s.src
    used = s.cfg.provider.policy
    if used is not None and used not in policies:
        col.add(src.issue(("provider", "policy"), f'undefined policy "{used}" used in provider'))
    duplicate: set[int] = set()
    bad: set[int] = set()
    seen: dict[str, int] = {}
    for i, w, raw in s.windows:
        wp = ("windows", i)
        wid, policy, sel = _refs_of(w, raw)
        if w is not None and wid in seen:
            col.add(src.issue(wp + ("id",), f'duplicate window id "{wid}" (first defined at line {seen[wid]})'))
            duplicate.add(i)
            continue
        if isinstance(wid, str) and (w is not None or isinstance(raw.get("id"), str)):
            seen.setdefault(wid, src.at(wp)[0])
        if isinstance(policy, str) and policy not in policies:
            name = _shown(src, wp + ("policy",), policy)
            col.add(src.issue(wp + ("policy",), f'undefined policy {name} used in window "{wid}"'))
            bad.add(i)
        for j, tid in enumerate(sel if isinstance(sel, list) else []):
            if isinstance(tid, str):
                try:
                    tid = model.normalise_id(tid)
                except ValueError as exc:
                    col.add(src.issue(wp + ("tenants", j), f"tenant id {tid!r} {exc}"))
                    bad.add(i)
                    continue
            if isinstance(tid, str) and tid in s.broken:
                bad.add(i)  # its own error is reported where it is declared
            elif (isinstance(tid, str) or w is not None) and tid not in tenants:
                name = _shown(src, wp + ("tenants", j), tid)
                col.add(src.issue(wp + ("tenants", j), f'unknown tenant {name} in window "{wid}"'))
                bad.add(i)
    return duplicate, bad


def _windows(
    s: Shapes,
    tenants: Mapping[str, model.Tenant],
    provider_zone: ZoneInfo,
    refs: tuple[set[int], set[int]],
    col: Collector,
    targets: Mapping[str, model.IntegrationTarget] | None = None,
) -> tuple[model.Window, ...]:
    src = s.src
    duplicate, bad = refs
    by_label = win.label_index(tenants)
    out: list[model.Window] = []
    for i, w, raw in s.windows:
        if w is None or i in duplicate:
            continue
        wp = ("windows", i)
        zone = ZoneInfo(w.timezone) if w.timezone else provider_zone
        chosen = win.members(w, wp, tenants, by_label, src, col)
        if chosen is None:
            continue
        ok, start, end = win.when(w, wp, zone, src, col)
        waves_ok, waves, defer = wv.specs(w, raw, wp, src, col)
        chosen_integrations = integ.window_choice(src, wp, w.id, w.integrations, targets or {}, col, s.cfg.integrations)
        if ok and waves_ok and i not in bad:
            window = _window(w, raw, zone, chosen, start, end, src.at(wp)[0], chosen_integrations)
            out.append(replace(window, waves=waves, defer=defer) if waves or defer else window)
    return tuple(out)


def _window(
    w: WindowModel,
    raw: Any,
    zone: ZoneInfo,
    chosen: frozenset[str],
    start: Any,
    end: Any,
    line: int,
    integrations: Any = None,
) -> Any:
    return model.Window(
        id=w.id,
        title=w.title or w.id,
        zone=zone,
        tenants=chosen,
        start=start,
        end=end,
        duration=w.duration,
        cron=w.cron,
        resources=frozenset(w.resources) if w.resources else None,
        notify=tuple(sorted(set(w.notify), reverse=True)),
        lead_labels=win.lead_labels(raw, w.notify),
        policy=w.policy,
        drain=record(model.Drain, w.drain),
        message=w.message,
        cancelled=w.cancelled,
        hooks=record(model.Hooks, w.hooks),
        skip=frozenset(w.skip),
        end_check=record(model.EndCheck, w.end_check),
        line=line,
        override_freeze=w.override_freeze,  # SPEC 7
        blackouts=w.blackouts,
        integrations=integrations,
    )


def _notifiers(s: Shapes, col: Collector) -> model.Notifiers:
    n = s.cfg.notifiers
    mailed = [(i, t) for i, t in s.tenants if t.email] if n.email is None else []
    if mailed:
        # Addresses with nowhere to send from: say so once, at the first tenant that has them.
        i, t = mailed[0]
        message = (
            f'{len(mailed)} tenant(s) have email addresses (first: "{t.id}") but notifiers.email '
            "is not configured; no email will be sent"
        )
        col.add(s.tsrc.issue(("tenants", i, "email"), message, severity="warning"))
    if n.email is not None:
        _check_email(n.email, s.src, col)
    templates = os.path.join(os.path.dirname(os.path.abspath(s.file)), n.templates) if n.templates else None
    retry, legacy = _retry(n, s.src, col)
    return model.Notifiers(
        email=record(model.EmailSettings, n.email),
        webhook=record(model.WebhookSettings, n.webhook),
        templates=templates,
        retry=retry,
        **legacy,
    )


_OLD_RETRY_KEYS = ("max_attempts", "retry_base", "max_age")


def _retry(n: NotifiersModel, src: Source, col: Collector) -> tuple[model.Retry, dict[str, Any]]:
    """notifiers.retry, or its translation from the old keys (with a warning that says what to write).

    Also the old attributes of model.Notifiers, for readers that have not moved to ``retry``.
    """
    old = {k: getattr(n, k) for k in _OLD_RETRY_KEYS if getattr(n, k) is not None}
    where = ("notifiers", min(old, key=lambda k: src.at(("notifiers", k), key=True)) if old else "")
    named = ", ".join(f"notifiers.{k}" for k in old)
    if n.retry is not None:
        retry = model.Retry(schedule=tuple(n.retry.schedule), max_age=n.retry.max_age)
        if old:
            message = (
                f"{named} {'is' if len(old) == 1 else 'are'} deprecated and ignored: notifiers.retry is set; remove"
            )
            col.add(src.issue(where, f"{message} {'it' if len(old) == 1 else 'them'}", key=True, severity="warning"))
        first = retry.schedule[0] if retry.schedule else model.Notifiers().retry_base
        return retry, {"max_attempts": len(retry.schedule) + 1, "max_age": retry.max_age, "retry_base": first}
    if not old:
        return model.Retry(), {}
    legacy = {**{k: getattr(model.Notifiers(), k) for k in _OLD_RETRY_KEYS}, **old}
    # The old rule: retry_base doubled per attempt, at most 1h, max_attempts tries in all.
    waits = tuple(min(legacy["retry_base"] * 2**k, timedelta(hours=1)) for k in range(legacy["max_attempts"] - 1))
    retry = model.Retry(schedule=waits, max_age=legacy["max_age"])
    written = ", ".join(format_duration(w) for w in waits)
    message = (
        f"{named} {'is' if len(old) == 1 else 'are'} deprecated; under notifiers write instead: "
        f"retry: {{schedule: [{written}], max_age: {format_duration(retry.max_age)}}}"
    )
    col.add(src.issue(where, message, key=True, severity="warning"))
    return retry, legacy


def _loopback(host: str) -> bool:
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def _check_email(e: EmailModel, src: Source, col: Collector) -> None:
    """Credentials travel only encrypted, unless the relay is on this machine."""
    given = [k for k in ("username", "password") if getattr(e, k)]
    if given and not (e.starttls or e.ssl) and not _loopback(e.host):
        message = (
            f"notifiers.email would send {' and '.join(given)} unencrypted; set starttls: true or ssl: true "
            "(only a loopback host such as localhost or 127.0.0.1 may go without)"
        )
        col.add(src.issue(("notifiers", "email", given[0]), message, key=True))


def daemon_env(cfg: model.Config, env: Mapping[str, str], col: Collector) -> model.Config:
    """The daemon block's environment overrides (SPEC section 5), checked by the block's own rules."""
    changes: dict[str, Any] = {}
    for key, var in DAEMON_ENV.items():
        value = env.get(var)
        if not value:
            continue
        try:
            changes[key] = getattr(DaemonModel.model_validate({key: value}), key)
        except ValidationError as exc:
            msg = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            col.add(ConfigIssue(f"${var}", 1, 1, f"{var}: {msg}"))
    if "public_url" in changes:
        changes["public_url"] = _strip(changes["public_url"])
    if not changes:
        return cfg
    return replace(cfg, daemon=replace(cfg.daemon, **changes))
