"""SPEC 6 in windows.yaml: named integration targets, the provider's default list, and
each window's choice (a list of names, or names with settings merged over the target's).

Config stays pure, so it does not import the clients in ``integrations/``: the keys each
type takes are declared here again (tests/test_integrations_config.py checks that they
agree with ``integrations.SETTINGS``). A token is a secret: no message shows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from .. import model
from ..duration import parse_duration
from .issues import secret_reason
from .schema import WINDOW_ID_RE
from .source import Collector, Path, Source
from .values import url

_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected text")
    return v


def _ids(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError("expected a list of ids, e.g. [PABC123]")
    return tuple(v)


def _matchers(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of Alertmanager matchers, e.g. ['cluster=\"eu-1\"']")
    for m in v:
        found = _MATCHER.match(m)
        value = found.group(3) if found else ""
        quoted = len(value) >= 2 and value[0] == value[-1] == '"'
        if found is None or (not quoted and '"' in value):
            raise ValueError(f'matcher {m!r} is not like name="value", name!="...", name=~"..." or name!~"..."')
        if quoted:
            try:
                json.loads(value)
            except ValueError:
                raise ValueError(f"matcher {m!r}: the quoted value is not a valid string") from None
    return tuple(v)


def _duration(v: Any) -> timedelta:
    try:
        return parse_duration(str(v))
    except ValueError:
        raise ValueError("expected a duration such as 5m") from None


Check = Callable[[Any], Any]
KEYS: dict[str, dict[str, Check]] = {
    "alertmanager": {"url": url, "token": _text, "matchers": _matchers, "ahead": _duration},
    "pagerduty": {"url": url, "token": _text, "from": _text, "services": _ids},
    "statuspage": {"url": url, "token": _text, "page": _text, "components": _ids},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "alertmanager": ("url", "matchers"),
    "pagerduty": ("token", "from", "services"),
    "statuspage": ("token", "page"),
}


def targets(src: Source, raw: Mapping[str, Any], col: Collector) -> dict[str, model.IntegrationTarget]:
    """The top-level ``integrations:`` mapping -> targets; every problem at its place."""
    out: dict[str, model.IntegrationTarget] = {}
    for name, body in raw.items():
        path = ("integrations", name)
        if not WINDOW_ID_RE.match(name):
            message = f'invalid integration name "{name}"; expected letters, digits, ".", "-" and "_"'
            col.add(src.issue(path, message, key=True))
            continue
        kind = body.get("type")
        if kind is None:
            col.add(src.issue(path, f'missing required key "type" in integrations.{name}'))
            continue
        if kind not in KEYS:
            known = ", ".join(KEYS)
            col.add(
                src.issue(
                    path + ("type",),
                    f'unknown integration type "{kind}" in integrations.{name} (expected one of: {known})',
                )
            )
            continue
        where = f"integrations.{name}"
        settings = _settings(src, path, kind, {k: v for k, v in body.items() if k != "type"}, where, col)
        if settings is not None and _complete(src, path, kind, settings, where, col):
            out[name] = model.IntegrationTarget(name=name, type=kind, settings=settings, line=src.at(path)[0])
    return out


def _settings(
    src: Source, path: Path, kind: str, values: Mapping[str, Any], where: str, col: Collector
) -> dict[str, Any] | None:
    """The values checked and normalised (durations, tuples); None when one is wrong."""
    keys = KEYS[kind]
    out: dict[str, Any] = {}
    ok = True
    for key, value in values.items():
        kp = path + (key,)
        if key not in keys:
            expected = ", ".join(keys)
            col.add(src.issue(kp, f'unknown key "{key}" in {where} ({kind} takes: {expected})', key=True))
            ok = False
            continue
        try:
            out[key] = keys[key](value)
        except ValueError as exc:
            reason = secret_reason(src, kp)
            message = f"{key}: {exc}" if reason is None else f"{key}: invalid value (not shown: {reason})"
            col.add(src.issue(kp, message))
            ok = False
    return out if ok else None


def _complete(src: Source, path: Path, kind: str, settings: Mapping[str, Any], where: str, col: Collector) -> bool:
    missing = [k for k in REQUIRED[kind] if k not in settings or settings[k] in ("", ())]
    for key in missing:
        col.add(src.issue(path, f'missing required key "{key}" in {where} ({kind} needs: {", ".join(REQUIRED[kind])})'))
    return not missing


def provider_choice(src: Source, names: list[str], known: Mapping[str, Any], col: Collector) -> tuple[str, ...]:
    for j, name in enumerate(names):
        if name not in known:
            col.add(src.issue(("provider", "integrations", j), f'undefined integration "{name}" used in provider'))
    return tuple(n for n in names if n in known)


def window_choice(
    src: Source,
    wp: Path,
    wid: str,
    raw: Any,
    known: Mapping[str, model.IntegrationTarget],
    col: Collector,
    defined: Any = None,
) -> tuple[tuple[str, Mapping[str, Any]], ...] | None:
    """A window's ``integrations:`` -> ((name, merged settings), ...); None: the provider's list.

    ``defined`` holds every name written under ``integrations:`` (also those with errors of
    their own), so a window naming a broken target does not get "undefined" as well.
    """
    if raw is None:
        return None
    path = wp + ("integrations",)
    defined = known if defined is None else defined
    if isinstance(raw, list):
        raw = {name: None for name in raw} if all(isinstance(n, str) for n in raw) else raw
        if not isinstance(raw, dict):
            col.add(src.issue(path, "expected a list of integration names or a mapping name -> settings"))
            return ()
        named = [(name, path + (j,), False) for j, name in enumerate(raw)]
    elif isinstance(raw, dict):
        named = [(name, path + (name,), True) for name in raw]
    else:
        col.add(src.issue(path, "expected a list of integration names or a mapping name -> settings"))
        return ()
    out: list[tuple[str, Mapping[str, Any]]] = []
    for name, np, is_key in named:
        target = known.get(name)
        if target is None:
            if name not in defined:
                col.add(src.issue(np, f'undefined integration "{name}" used in window "{wid}"', key=is_key))
            continue
        over = raw[name] if is_key else None
        if over is not None and not isinstance(over, dict):
            col.add(src.issue(np, f'expected a mapping of settings to merge over integration "{name}"'))
            continue
        where = f'window "{wid}" integration "{name}"'
        checked = _settings(src, np, target.type, over or {}, where, col)
        if checked is None:
            continue
        merged = {**target.settings, **checked}
        if _complete(src, np, target.type, merged, where, col):
            out.append((name, merged))
    return tuple(out)


def chosen(cfg: model.Config, window: model.Window) -> tuple[tuple[str, str, Mapping[str, Any]], ...]:
    """(name, type, settings) of the targets that follow ``window``'s occurrences."""
    if window.integrations is not None:
        pairs = window.integrations
    else:
        pairs = tuple((n, cfg.integrations[n].settings) for n in cfg.provider.integrations if n in cfg.integrations)
    return tuple((name, cfg.integrations[name].type, s) for name, s in pairs if name in cfg.integrations)
