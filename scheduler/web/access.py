"""Who may call what over HTTP (SPEC section 3): a bearer token of the right scope, the ops
page's session cookie (read-only GETs), or the unix socket. Never the peer address: behind a
reverse proxy on the same host every client looks like loopback, and X-Forwarded-For or
Forwarded headers are whatever the client chose to write.

An ASGI middleware in front of the whole app, so a route added later needs ``admin`` until
it is listed here (default deny), and ``/docs`` and ``/openapi.json`` are covered too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import Headers

from ..runtime.tokens import Tokens, session_digest

__all__ = ["COOKIE", "AccessControl", "UnixSocket", "bearer_token", "install_login", "is_local", "required_scope"]

COOKIE = "maintd_session"
SESSION_SECONDS = 12 * 3600
READ_PATHS = frozenset(
    {"/", "/v1/status", "/v1/windows", "/v1/notices", "/v1/history", "/metrics", "/openapi.json", "/docs"}
    | {"/docs/oauth2-redirect"}
)
OPEN_PATHS = frozenset({"/healthz", "/login", "/logout"})
_LEASE = re.compile(r"/v1/leases/[^/]+(/heartbeat)?")
_DISABLED = {
    # Said to a client that may well hold a token: the fix is on the daemon's side.
    "admin": "state-changing calls are disabled: no token is configured on the daemon (it was started without an "
    "admin token); set MAINTD_TOKEN or daemon.token_file for the daemon (in its environment or config) and restart it",
    "gate": "the gate is disabled over TCP: no gate or admin token is configured "
    "(set MAINTD_GATE_TOKEN or daemon.gate_token_file)",
    "read": "reads are disabled over TCP: no read or admin token is configured "
    "(set MAINTD_READ_TOKEN or daemon.read_token_file)",
}
_LOCAL = "maintd.unix_socket"  # an ASGI scope extension only UnixSocket sets: no client can forge it


def is_local(scope: Any) -> bool:
    """Whether a request came over the unix socket (admin scope there)."""
    return bool((scope.get("extensions") or {}).get(_LOCAL))


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs (None: open to all). Anything not listed needs ``admin``."""
    if path in OPEN_PATHS or path.startswith("/t/"):
        return None  # liveness, the login form, and tenant views behind their own secret
    if method == "GET" and path in READ_PATHS:
        return "read"
    if method == "POST" and path == "/v1/admissions":
        return "gate"
    lease = _LEASE.fullmatch(path)
    if lease and (method == "POST" if lease.group(1) else method == "DELETE"):
        return "gate"
    return "admin"


def bearer_token(headers: Headers) -> str | None:
    """The bearer token given (None: no Authorization header; '' another scheme)."""
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _cookie(headers: Headers) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def _login_page(failed: bool, status: int) -> HTMLResponse:
    from . import _env

    html = _env.get_template("login.html").render(failed=failed)
    headers = {"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status, headers=headers)


class AccessControl:
    """ASGI middleware: 401 (with ``WWW-Authenticate: Bearer``) without a valid credential,
    403 with a valid one of another scope. The session cookie counts only for read GETs, so
    a forged cross-site form can never change state (CSRF)."""

    def __init__(self, app: Any, tokens: Tokens) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_local(scope):
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = bearer_token(headers)
        if given is not None:
            have = self.tokens.scope_of(given) if given else None
        else:
            cookie = _cookie(headers) if needed == "read" else None
            have = self.tokens.session_scope(cookie) if cookie else None
        if self.tokens.allows(have, needed):
            await self.app(scope, receive, send)
            return
        await self._refuse(have, needed, scope)(scope, receive, send)

    def _refuse(self, have: str | None, needed: str, scope: Any) -> Response:
        if not self.tokens.configured(needed):
            return JSONResponse({"error": _DISABLED[needed]}, status_code=403)
        if have is not None:
            return JSONResponse({"error": f"this token has scope {have}; this call needs {needed}"}, status_code=403)
        if scope["path"] == "/" and scope["method"] == "GET":
            return _login_page(failed=False, status=401)
        message = f"missing or invalid bearer token (this call needs scope {needed})"
        return JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


class UnixSocket:
    """Wraps the app served on ``daemon.socket``: the file's mode (0660) is the access
    control there, so its requests carry admin scope without a token."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope, extensions={**(scope.get("extensions") or {}), _LOCAL: True})
        await self.app(scope, receive, send)


def install_login(app: FastAPI, tokens: Tokens) -> None:
    """``POST /login`` (a form with ``token``) and ``GET /logout`` for the ops page."""

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        scope = tokens.scope_of(token) if token else None
        if scope not in ("read", "admin"):
            return _login_page(failed=True, status=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            session_digest(token),
            max_age=SESSION_SECONDS,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @app.get("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict")
        return response
