"""The tenant page's Defer button (SPEC 9): a plain HTML form, no JavaScript.

Each form carries a hidden token, an HMAC of (tenant secret, window, occurrence) under a
key kept in the store (``tx.secrets.form_key``: drawn once, shared by every instance and
kept across restarts, so a page rendered by one answers on another); a POST without a
valid one is 403. The move itself is
:meth:`scheduler.runtime.manual.Manual.defer`; a refusal comes back as the page with its
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import MaintdError
from ..runtime.defer import form_token, token_ok

MAX_FORM = 4096  # bytes: three short fields


def add_tokens(view: dict, key: bytes, secret: str) -> dict:
    """The tenant view with a form token on every upcoming row that may be deferred."""
    for row in view.get("upcoming", []):
        if row.get("deferrable"):
            row["token"] = form_token(key, secret, row["window"], row["occurrence"])
    return view


def form_key(daemon: Any) -> bytes:
    """The store's form-token key (read per use: one indexed row)."""
    with daemon.store.transaction() as tx:
        return tx.secrets.form_key()


def mount_defer(app: FastAPI, daemon: Any, lookup: Callable, render: Callable[..., str]) -> Callable[[], bytes]:
    """Add ``POST /t/{secret}/defer``; returns how to get the form key (for the page's tokens)."""
    headers = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}

    @app.post("/t/{secret}/defer", response_class=HTMLResponse, include_in_schema=False)
    async def tenant_defer(secret: str, request: Request):
        tenant = lookup(secret)
        if tenant is None:
            return Response("Not Found\n", status_code=404, media_type="text/plain")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return Response("Request too large\n", status_code=413, media_type="text/plain")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}
        window, occurrence = form.get("window", ""), form.get("occurrence", "")
        key = form_key(daemon)
        if not token_ok(key, secret, window, occurrence, form.get("token", "")):
            return Response("Forbidden: invalid or missing form token\n", status_code=403, media_type="text/plain")
        try:
            out = daemon.manual.defer(tenant.id, window, occurrence)
        except MaintdError as exc:
            html = render(tenant, secret, key, error=f"Not deferred: {exc.message}")
            return HTMLResponse(html, status_code=409, headers=headers)
        return HTMLResponse(render(tenant, secret, key, done=out), headers=headers)

    return lambda: form_key(daemon)
