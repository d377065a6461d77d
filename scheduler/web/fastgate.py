"""``POST /v1/admissions`` without FastAPI's routing on the way (issue: the gate near the
bare-server floor).

Every backup job asks the gate before it starts, so this one route is the daemon's hot path.
Profiled under load, most of an admission's time on the event loop went to the layers
around a decision that takes microseconds: routing, the dependency machinery, the
exception and body-limit wrappers, each wrapping ``send`` again. This middleware answers the
ordinary admission itself: a bearer token of ``gate`` scope (or the unix socket), a JSON
body under the limit that validates as :class:`AdmissionIn`, a known tenant. It validates
with the same model, decides with the same :class:`~scheduler.runtime.gate.Gate` and
answers with the same :class:`JSONResponse` as the route, so the two cannot drift.

Anything else (no or a wrong token, another content type, a chunked or oversized body, a
body that does not validate, an unknown tenant) is handed to the full app unchanged, body
included, and answered there exactly as before: the 401/403/413/422/404 texts have one
home. The route stays declared in the app for OpenAPI and for that fallback.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import Headers

from ..errors import MaintdError
from .access import bearer_token, is_local
from .server import replaying

PATH = "/v1/admissions"


class GateFastPath:
    """ASGI middleware; ``model`` is the route's body model, ``duration`` its duration parser."""

    def __init__(self, app: Any, *, gate: Any, tokens: Any, model: Any, duration: Any, limit: int) -> None:
        self.app, self.gate, self.tokens = app, gate, tokens
        self.model, self.duration, self.limit = model, duration, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not self._ordinary(scope):
            await self.app(scope, receive, send)
            return
        body, complete = await self._read(receive)
        if complete:
            answer = await self._answer(body)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, replaying(body, receive, more_body=not complete), send)

    def _ordinary(self, scope: Any) -> bool:
        """A request the route would take as it is: authorised for the gate (the bearer token
        read as :class:`~.access.AccessControl` reads it), a JSON body of a stated length
        under the limit."""
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > self.limit:
            return False
        ctype = headers.get("content-type")
        if ctype is None or ctype.split(";", 1)[0].strip().lower() != "application/json":
            return False
        if b"%00" in (scope.get("raw_path") or b"") or scope.get("query_string"):
            return False
        if is_local(scope):
            return True
        given = bearer_token(headers)
        return bool(given) and self.tokens.allows(self.tokens.scope_of(given), "gate")

    async def _read(self, receive: Any) -> tuple[bytes, bool]:
        """The body, up to the limit; ``complete`` is False if the client went away or sent more."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit:
                return b"".join(chunks), False
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _answer(self, body: bytes) -> JSONResponse | None:
        try:
            request = self.model.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
            return None
        try:
            result = await self.gate.admit_async(
                request.tenant, request.kind, request.resource, self.duration(request.expected_duration)
            )
        except MaintdError:  # unknown tenant, bad duration: raised before any write; the app says it
            return None
        if not result["admitted"]:
            return JSONResponse(result, status_code=423, headers={"Retry-After": str(result["retry_after"])})
        return JSONResponse(result)
