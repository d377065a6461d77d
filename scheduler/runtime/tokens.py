"""Scoped bearer tokens (SPEC section 3): ``admin`` does everything, ``gate`` admits jobs and
keeps their leases, ``read`` sees status, history and the ops page.

Trust never comes from the peer address: behind a reverse proxy on the same host every
client is "loopback", and forwarded headers are whatever the client wrote. Only a token, or
the unix socket (whose file mode is the access control), grants anything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MaintdError

__all__ = ["MIN_TOKEN_LENGTH", "SCOPES", "TokenError", "Tokens", "load_tokens", "session_digest"]

MIN_TOKEN_LENGTH = 32
MAX_TOKEN_BYTES = 4096
# scope -> (literal env variable, config key of its file); the env variable wins
SCOPES: dict[str, tuple[str, str]] = {
    "admin": ("MAINTD_TOKEN", "token_file"),
    "gate": ("MAINTD_GATE_TOKEN", "gate_token_file"),
    "read": ("MAINTD_READ_TOKEN", "read_token_file"),
}
# which scopes a token of each scope covers
GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "gate", "read"}),
    "gate": frozenset({"gate"}),
    "read": frozenset({"read"}),
}
_SESSION = b"maintd ops session v1"


class TokenError(MaintdError):
    """A token that cannot be read or is too short: ``maintd run`` refuses to start."""

    exit_code = 2


def session_digest(token: str) -> str:
    """What the ops page's cookie holds for ``token``: an HMAC keyed by the token, never the
    token itself. It stays valid across restarts and instances and dies with the token."""
    return hmac.new(token.encode(), _SESSION, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Tokens:
    """The configured tokens by scope (a scope without a token grants nothing)."""

    by_scope: Mapping[str, str]

    def scope_of(self, given: str) -> str | None:
        """The scope of a presented token, or None; every configured token is compared in
        constant time, so the answer's timing says nothing about which one came close."""
        found = None
        raw = given.encode()
        for scope, token in self.by_scope.items():
            if hmac.compare_digest(raw, token.encode()) and found is None:
                found = scope
        return found

    def session_scope(self, digest: str) -> str | None:
        """The scope of a session cookie: only ``read`` or ``admin`` tokens log in, and a
        cookie grants ``read`` whichever of the two made it (it never changes state)."""
        ok = False
        raw = digest.encode()
        for scope in ("read", "admin"):
            token = self.by_scope.get(scope)
            if token is not None and hmac.compare_digest(raw, session_digest(token).encode()):
                ok = True
        return "read" if ok else None

    def allows(self, scope: str | None, needed: str) -> bool:
        return scope is not None and needed in GRANTS[scope]

    def configured(self, needed: str) -> bool:
        """Whether any configured token grants ``needed`` (else the call is disabled over TCP)."""
        return any(needed in GRANTS[scope] for scope in self.by_scope)

    @property
    def admin(self) -> str | None:
        return self.by_scope.get("admin")


def load_tokens(daemon: Any, env: Mapping[str, str], base: str) -> Tokens:
    """Read each scope's token from its env variable or file (relative to ``base``); raises
    :class:`TokenError` naming the token when a file cannot be read or a token is short."""
    found: dict[str, str] = {}
    for scope, (var, key) in SCOPES.items():
        literal = (env.get(var) or "").strip()
        path = getattr(daemon, key, None)
        if literal:
            token, where = literal, f"${var}"
        elif path:
            full = path if os.path.isabs(path) else os.path.join(base, path)
            token, where = _read(full, scope, key), f"daemon.{key} ({full})"
        else:
            continue
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenError(
                f"the {scope} token from {where} is {len(token)} characters; tokens must be at least "
                f"{MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)"
            )
        found[scope] = token
    return Tokens(found)


def _read(full: str, scope: str, key: str) -> str:
    try:
        with open(full, "rb") as fh:
            token = fh.read(MAX_TOKEN_BYTES).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the {scope} token file {full} (daemon.{key}): {exc.strerror or exc}") from None
    if not token:
        raise TokenError(f"the {scope} token file {full} (daemon.{key}) is empty")
    return token
