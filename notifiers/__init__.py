"""Delivery channels for notices: one small class per channel on the base in ``base.py``.

The daemon's outbox calls ``send(notice, tenant)`` and reads ``DeliveryError.permanent``
to decide between a retry and "failed"; nothing here retries or keeps state.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from scheduler.model import Notifiers, Tenant

from .base import Notifier, Rendered, Renderer, format_local
from .calendar import build_feed, build_ics
from .email import EmailNotifier
from .i18n import available_locales, template_locale
from .webhook import WebhookNotifier, sign

if TYPE_CHECKING:
    from .chat import ChatNotifier, check_apprise_url, mask_apprise_url
    from .ops import OPS_EVENTS, OpsNotifier, render_ops

# Apprise takes a few hundred milliseconds to import; a process that never talks to a chat
# service (validate, preview, a daemon without notify_urls) should not pay for it.
_LAZY = {
    "ChatNotifier": "chat",
    "check_apprise_url": "chat",
    "mask_apprise_url": "chat",
    "OPS_EVENTS": "ops",
    "OpsNotifier": "ops",
    "render_ops": "ops",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OPS_EVENTS",
    "ChatNotifier",
    "EmailNotifier",
    "OpsNotifier",
    "Notifier",
    "Rendered",
    "Renderer",
    "WebhookNotifier",
    "available_locales",
    "build_chat_notifiers",
    "build_feed",
    "build_ics",
    "build_notifiers",
    "check_apprise_url",
    "format_local",
    "mask_apprise_url",
    "render_ops",
    "sign",
    "template_locale",
]


def build_notifiers(settings: Notifiers, provider_name: str, renderer: Renderer | None = None) -> list[Notifier]:
    """Email when configured; webhooks always (a tenant without one is simply skipped).

    Pass the ``renderer`` whose ``check()`` passed, so mail uses exactly those templates.
    """
    notifiers: list[Notifier] = []
    if settings.email is not None:
        notifiers.append(EmailNotifier(settings.email, renderer or Renderer(provider_name, settings.templates)))
    notifiers.append(WebhookNotifier(settings.webhook))
    return notifiers


def build_chat_notifiers(
    tenants: Iterable[Tenant], renderer: Renderer, *, timeout: timedelta = timedelta(seconds=10)
) -> dict[str, ChatNotifier]:
    """One ``ChatNotifier`` per distinct Apprise URL in the tenants' ``notify_urls``, keyed
    by the URL (the outbox stores one delivery per notice, tenant and URL)."""
    from .chat import ChatNotifier

    built: dict[str, ChatNotifier] = {}
    for tenant in tenants:
        for url in getattr(tenant, "notify_urls", ()) or ():
            if url not in built:
                built[url] = ChatNotifier(url, renderer, timeout=timeout)
    return built
