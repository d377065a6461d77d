"""Delivery channels for notices: one small class per channel on the base in ``base.py``.

The daemon's outbox calls ``send(notice, tenant)`` and reads ``DeliveryError.permanent``
to decide between a retry and "failed"; nothing here retries or keeps state.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from scheduler.model import Notifiers, Tenant

from .base import Notifier, Rendered, Renderer, format_local
from .calendar import build_feed, build_ics
from .chat import ChatNotifier, check_apprise_url, mask_apprise_url
from .email import EmailNotifier
from .i18n import available_locales, template_locale
from .ops import OPS_EVENTS, OpsNotifier, render_ops
from .webhook import WebhookNotifier, sign

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
    built: dict[str, ChatNotifier] = {}
    for tenant in tenants:
        for url in getattr(tenant, "notify_urls", ()) or ():
            if url not in built:
                built[url] = ChatNotifier(url, renderer, timeout=timeout)
    return built
