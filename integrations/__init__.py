"""Outside systems that follow each occurrence: mute the alerting, tell the status page.

``TYPES`` maps a config ``type`` to its class; ``TYPES[t].SETTINGS`` are the keys a target
may set (config validation refuses others); ``build(name, settings)`` makes one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifiers.http import HttpClient

from .alertmanager import Alertmanager
from .base import Integration, IntegrationError, Occurrence, Reason, State
from .pagerduty import PagerDuty
from .statuspage import Statuspage

TYPES: dict[str, type[Integration]] = {
    "alertmanager": Alertmanager,
    "pagerduty": PagerDuty,
    "statuspage": Statuspage,
}

# Per type, the keys a target's settings may hold (besides "type").
SETTINGS: dict[str, frozenset[str]] = {name: cls.SETTINGS for name, cls in TYPES.items()}


def build(name: str, settings: Mapping[str, Any], *, http: HttpClient | None = None) -> Integration:
    """One integration from its config mapping (with ``type``); ValueError names the problem."""
    kind = settings.get("type")
    if kind not in TYPES:
        known = ", ".join(sorted(TYPES))
        raise ValueError(f"integration {name!r}: unknown type {kind!r} (known: {known})")
    return TYPES[str(kind)](name, {k: v for k, v in settings.items() if k != "type"}, http=http)


__all__ = [
    "SETTINGS",
    "TYPES",
    "Alertmanager",
    "Integration",
    "IntegrationError",
    "Occurrence",
    "PagerDuty",
    "Reason",
    "State",
    "Statuspage",
    "build",
]
