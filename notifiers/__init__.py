"""Delivery channels for notices: one small class per channel on the base in ``base.py``.

The daemon's outbox calls ``send(notice, tenant)`` and reads ``DeliveryError.permanent``
to decide between a retry and "failed"; nothing here retries or keeps state.
"""

from __future__ import annotations

from scheduler.model import Notifiers

from .base import Notifier, Rendered, Renderer, format_local
from .calendar import build_feed, build_ics
from .email import EmailNotifier
from .webhook import WebhookNotifier, sign

__all__ = [
    "EmailNotifier",
    "Notifier",
    "Rendered",
    "Renderer",
    "WebhookNotifier",
    "build_feed",
    "build_ics",
    "build_notifiers",
    "format_local",
    "sign",
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
