"""Chat channels, the provider's ops room and tenant languages (SPEC 4.2, 4.3) at load.

Apprise URLs are secrets (tokens, passwords, webhook paths): an error names the URL's
position and what is wrong, never the URL. Checking a URL parses it with Apprise's own
plugins and sends nothing; the check lives in :mod:`notifiers.chat` (the one Apprise
user), imported only when a file has a URL, so a config without one never loads Apprise.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import model
from .source import Collector, Source

__all__ = ["ops_settings", "tenant_channels"]


def _check_url(url: str, src: Source, path: tuple, col: Collector) -> bool:
    from notifiers.chat import check_apprise_url

    try:
        check_apprise_url(url)
    except ValueError as exc:
        col.add(src.issue(path, f"{path[-2]}[{path[-1]}]: {exc}"))
        return False
    return True


def _locale(tag: str | None, src: Source, path: tuple, col: Collector) -> str:
    if tag is None:  # before the import: a file without locales never loads Babel
        return "en"
    from notifiers.i18n import template_locale

    try:
        template_locale(tag)
    except ValueError as exc:
        col.add(src.issue(path, str(exc)))
        return "en"
    return tag


def tenant_channels(
    src: Source, shapes: list[tuple[int, Any]], tenants: dict[str, model.Tenant], col: Collector
) -> dict[str, model.Tenant]:
    """``tenants`` with their ``notify_urls`` and ``locale`` from the validated shapes.

    ``src`` is where the tenants are (windows.yaml or its tenants_file); ``shapes`` the
    (index, TenantModel) pairs the tenants were built from.
    """
    out = dict(tenants)
    seen: set[str] = set()
    for i, t in shapes:
        if t.id not in out or t.id in seen:  # a duplicate id: reported by the tenants pass
            continue
        seen.add(t.id)
        path = ("tenants", i)
        urls: list[str] = []
        for j, url in enumerate(t.notify_urls):
            if url in urls:
                col.add(src.issue(path + ("notify_urls", j), f"notify_urls[{j}]: the same URL is listed twice"))
            elif _check_url(url, src, path + ("notify_urls", j), col):
                urls.append(url)
        locale = _locale(t.locale, src, path + ("locale",), col)
        if urls or locale != "en":
            out[t.id] = replace(out[t.id], notify_urls=tuple(urls), locale=locale)
    return out


def ops_settings(src: Source, ops: Any, col: Collector) -> model.OpsSettings | None:
    """``provider.ops`` checked: each URL with Apprise, each event against the known ones."""
    if ops is None:
        return None
    from notifiers.ops import OPS_EVENTS

    base = ("provider", "ops")
    urls = tuple(url for j, url in enumerate(ops.urls) if _check_url(url, src, base + ("urls", j), col))
    events = tuple(ops.events) if ops.events is not None else OPS_EVENTS
    for j, event in enumerate(events if ops.events is not None else ()):
        if event not in OPS_EVENTS:
            message = f'unknown ops event "{event}"; expected one of: {", ".join(OPS_EVENTS)}'
            col.add(src.issue(base + ("events", j), message))
    return model.OpsSettings(urls=urls, events=tuple(e for e in events if e in OPS_EVENTS))
