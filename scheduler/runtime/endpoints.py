"""Disabled endpoints as the outbox and status see them (SPEC 4.1).

An endpoint is what a channel sends a tenant's notices to; for webhooks the URL and its
signing secret, hashed (:func:`endpoint_of`). A ``410 Gone`` stores that hash as disabled;
a reload that changes the URL or the secret hashes differently, so the stored row stops
matching and the endpoint is enabled again. Status shows only rows that still match the
config, with the URL masked (a webhook URL often carries a token in its path or query).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from ..model import Tenant, isoz
from ..store.endpoints import endpoint_hash

__all__ = ["ENDPOINT_DISABLED", "disabled_json", "endpoint_of", "mask_url"]

ENDPOINT_DISABLED = "endpoint disabled"  # the recorded error of a notice not sent for that reason


def endpoint_of(tenant: Tenant, channel: str) -> str | None:
    """The hash naming where ``channel`` sends ``tenant``'s notices, or None when a 410
    there cannot disable anything (channels other than webhooks)."""
    if channel == "webhook" and tenant.webhook is not None:
        return endpoint_hash(tenant.webhook.url, tenant.webhook.secret)
    return None


def mask_url(url: str) -> str:
    """``https://hooks.example.com/…``: scheme and host only, no path, query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    return f"{parts.scheme}://{host}{port}/…" if host else "…"


def disabled_json(tenants: Mapping[str, Tenant], rows: Iterable[dict]) -> list[dict]:
    """``[{"tenant", "channel", "since", "url", "reason"}]`` for the stored rows that still
    match the tenant's configured endpoint."""
    out = []
    for r in rows:
        tenant = tenants.get(r["tenant"])
        if tenant is None or endpoint_of(tenant, r["channel"]) != r["endpoint"]:
            continue
        url = tenant.webhook.url if r["channel"] == "webhook" and tenant.webhook else ""
        out.append(
            {
                "tenant": r["tenant"],
                "channel": r["channel"],
                "since": isoz(r["since"]),
                "url": mask_url(url),
                "reason": r["reason"],
            }
        )
    return out
