"""Lease secrets that carry their admission, sealed with the daemon's key.

The gate answers an admission before its lease row is committed (the row follows with the
next group commit, normally within a millisecond). So that a crash in between loses
nothing a job depends on, the secret it hands out says what was admitted (public id,
tenant, kind, resource, when, heartbeat interval) under an HMAC with a key kept in the
store: a heartbeat of a lease the store does not know re-creates it, and only a lease the
daemon really issued can be re-created. The store still keeps only the secret's hash.

Pure: no clock, no store; the key is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

from .model import UTC

__all__ = ["seal", "unseal"]

_MAC_BYTES = 16
_MAX = 1024  # a longer string is not one of ours; never decoded


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, text: str) -> str:
    return _b64(hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES])


def seal(key: bytes, lease: dict[str, Any]) -> str:
    """A new secret for ``lease`` (id, tenant, kind, resource, admitted_at, interval_s)."""
    fields = [
        lease["id"],
        lease["tenant"],
        lease["kind"],
        lease["resource"],
        int(lease["admitted_at"].timestamp()),
        lease["interval_s"],
    ]
    body = f"{secrets.token_urlsafe(18)}.{_b64(json.dumps(fields, separators=(',', ':')).encode())}"
    return f"{body}.{_mac(key, body)}"


def unseal(key: bytes, secret: str) -> dict[str, Any] | None:
    """The lease a secret was sealed for, or None (not ours, altered, or another key's)."""
    if len(secret) > _MAX or secret.count(".") != 2:
        return None
    body, _, mac = secret.rpartition(".")
    try:
        if not hmac.compare_digest(mac, _mac(key, body)):
            return None
        lease_id, tenant, kind, resource, admitted, interval = json.loads(_unb64(body.split(".", 1)[1]))
    except (ValueError, TypeError, UnicodeError):
        return None
    return {
        "id": lease_id,
        "tenant": tenant,
        "kind": kind,
        "resource": resource,
        "admitted_at": datetime.fromtimestamp(admitted, UTC),
        "interval_s": interval,
    }
