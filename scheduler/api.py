"""HTTP API of ``maintd run`` (SPEC section 3). Thin: validate, call the daemon, serialize.

Access (scopes ``admin``, ``gate``, ``read``; never the peer address) is decided before any
route by :class:`scheduler.web.access.AccessControl`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .duration import parse_duration
from .errors import ConflictError, MaintdError, NotFoundError, StoreError, UsageError
from .model import normalise_id, normalise_kind
from .runtime.daemon import Daemon
from .runtime.gate import MAX_EXPECTED_DURATION
from .web.server import RefuseNul

log = logging.getLogger("maintd.api")
MAX_BODY = 64 * 1024
# Longer than any real maintenance and far from datetime's limits (year 9999): a fuzzer's
# 1e300 seconds is a 422, not an OverflowError (a 500) when it is added to now.
MAX_DURATION = timedelta(days=3650)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers


def _duration(v: Any) -> timedelta | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 30m or a number of seconds")
    if isinstance(v, (int, float)):
        if v != v:  # NaN
            raise ValueError("expected a duration such as 30m or a number of seconds")
        if v < 0:
            raise ValueError("must not be negative")
        if v > MAX_DURATION.total_seconds():
            raise ValueError(f"must be at most {MAX_DURATION.days}d")
        return timedelta(seconds=v)
    if isinstance(v, str):
        try:
            d = parse_duration(v)
        except OverflowError:
            d = MAX_DURATION + MAX_DURATION  # "99999999999d": reported as too long, below
        if d > MAX_DURATION:
            raise ValueError(f"must be at most {MAX_DURATION.days}d")
        return d
    raise ValueError("expected a duration such as 30m or a number of seconds")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # A NUL byte in any string is a 422: C-string tools and logs would cut the value there.
        if _has_nul(data):
            raise ValueError("strings must not contain NUL bytes")
        return data


def _has_nul(v: Any, depth: int = 0) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if depth < 8 and isinstance(v, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(x, depth + 1) for k, x in v.items())
    if depth < 8 and isinstance(v, list):
        return any(_has_nul(x, depth + 1) for x in v)
    return False


class AdmissionIn(_In):
    """``POST /v1/admissions``: may this tenant start this job now?"""

    tenant: str = Field(min_length=1, max_length=200, description="tenant id from windows.yaml")
    kind: str = Field(min_length=1, max_length=100, description="job kind the policy matches, e.g. backup")
    resource: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="what the job runs on (windows with `resources` gate only those)",
    )
    expected_duration: float | str | None = Field(
        default=None,
        description="seconds, or a duration such as 2h; refused (would-overlap) if the job "
        "would still run when a window affecting it starts",
    )

    @field_validator("tenant", "kind", "resource")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.strip()
            if not v:
                raise ValueError("must not be blank")
        return v

    @field_validator("tenant", "resource")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return None if v is None else normalise_id(v)  # as the config compares ids

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return normalise_kind(v)  # "Backup" is "backup"; invisible characters are refused

    @field_validator("expected_duration", mode="before")  # before: lax mode would turn true into 1.0
    @classmethod
    def _check(cls, v: Any) -> Any:
        d = _duration(v)
        if d is not None and d > MAX_EXPECTED_DURATION:
            raise ValueError(f"must be at most {MAX_EXPECTED_DURATION.days}d")
        return v


class MaintenanceIn(_In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    reason: str = Field(min_length=1, max_length=1000)
    for_: float | str | None = Field(
        default=None,
        validation_alias=AliasChoices("for", "duration"),
        description="duration, e.g. 2h (also accepted as `duration`)",
    )
    tenants: list[str] | None = None
    policy: str | None = None
    override_freeze: str | None = Field(default=None, max_length=1000)  # SPEC 7: enter inside a freeze

    @field_validator("tenants", mode="before")
    @classmethod
    def _tenant_list(cls, v: Any) -> Any:
        # "acme,beta" reads as naturally as ["acme", "beta"]
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v

    @field_validator("for_", mode="before")
    @classmethod
    def _check(cls, v: Any) -> Any:
        d = _duration(v)
        if d is not None and d <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v


class ResumeIn(_In):
    at: str | None = Field(default=None, description="when the halted waves start again (ISO 8601; default now)")


class ExtendIn(_In):
    by: float | str = Field(
        validation_alias=AliasChoices("by", "duration", "for"),
        description="how much longer, e.g. 30m (also accepted as `duration`)",
    )

    @field_validator("by", mode="before")
    @classmethod
    def _check(cls, v: Any) -> Any:
        d = _duration(v)
        if d is None or d <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v


class ExitIn(_In):
    window: str | None = None


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="maintd",
        version="1",
        description="Planned maintenance for service providers.",
        docs_url="/docs",
        redoc_url=None,
    )
    from . import web
    from .web.access import AccessControl, install_login
    from .web.fastgate import GateFastPath
    from .web.server import BodyLimit

    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(RefuseNul)
    app.add_middleware(AccessControl, tokens=daemon.tokens)  # refused before a body is read
    fast: dict[str, Any] = dict(gate=daemon.gate, tokens=daemon.tokens, model=AdmissionIn, duration=_duration)
    app.add_middleware(GateFastPath, limit=MAX_BODY, **fast)  # outermost: the ordinary admission, as the route would
    _install_error_handlers(app)
    app.include_router(_ops_router(daemon, []))
    app.include_router(_manual_router(daemon, []))
    app.include_router(_gate_router(daemon, []))
    app.include_router(_tenant_url_router(daemon))  # admin scope (web.access): the URLs carry secrets
    install_login(app, daemon.tokens)
    web.mount(app, daemon)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(MaintdError)
    async def _maintd_error(request: Request, exc: MaintdError):
        status = {NotFoundError: 404, ConflictError: 409, UsageError: 400, StoreError: 503}.get(type(exc), 400)
        return JSONResponse({"error": exc.message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}" if loc else msg)
        return JSONResponse({"error": "; ".join(problems) or "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # never a traceback on the wire
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)


def _ops_router(daemon: Daemon, read: list) -> APIRouter:
    router = APIRouter(tags=["ops"])
    views, store = daemon.views, daemon.store

    @router.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @router.get("/v1/status", dependencies=read)
    def status() -> dict:
        return views.status()

    @router.get("/v1/windows", dependencies=read)
    def windows() -> list:
        return views.windows()

    @router.get("/v1/notices", dependencies=read)
    def notices(failed: bool = False, limit: int = 500, window: str | None = None, tenant: str | None = None) -> list:
        limit = max(1, min(limit, 10_000))
        rows = store.notices(failed_only=failed, limit=limit, window=window, tenant=tenant)
        return [_notice_row(r) for r in rows]

    @router.get("/v1/history", dependencies=read)
    def history(limit: int = 200, window: str | None = None) -> list:
        limit = max(1, min(limit, 10_000))
        views.flush()  # a refusal answered a moment ago is in the journal
        return store.history(limit=limit, window=window)

    @router.get("/metrics", dependencies=read)
    def metrics() -> PlainTextResponse:
        views.refresh_gauges()
        return PlainTextResponse(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failed: bool = Field(default=False, description="resend every failed delivery")


def _manual_router(daemon: Daemon, write: list) -> APIRouter:
    router = APIRouter(tags=["manual"], dependencies=write)
    manual = daemon.manual

    @router.post("/v1/maintenance")
    def enter(body: MaintenanceIn) -> dict:
        return manual.enter(
            reason=body.reason,
            duration=_duration(body.for_),
            tenants=body.tenants,
            policy=body.policy,
            actor="api",
            override_freeze=body.override_freeze,
        )

    @router.delete("/v1/maintenance")
    def exit_(window: str | None = None) -> dict:
        return manual.exit(window=window, actor="api")

    @router.post("/v1/windows/{window_id}/extend")
    def extend(window_id: str, body: ExtendIn) -> dict:
        return manual.extend(window_id, _duration(body.by) or timedelta(0), actor="api")

    @router.post("/v1/windows/{window_id}/resume")
    def resume(window_id: str, body: ResumeIn) -> dict:  # SPEC 8
        return manual.resume(window_id, body.at, actor="api")

    # SPEC 4.1 resends: failed deliveries back to pending (404 when there is none).
    @router.post("/v1/notices/retry", responses={404: {"description": "no failed delivery"}})
    def resend_failed(body: ResendIn) -> dict:
        if not body.failed:
            raise UsageError('say which: {"failed": true}, or POST /v1/notices/{id}/retry')
        return daemon.outbox.resend(failed=True)

    @router.post("/v1/notices/{notice_id}/retry", responses={404: {"description": "no failed delivery of it"}})
    def resend(notice_id: str) -> dict:
        return daemon.outbox.resend(notice_id)

    return router


def _gate_router(daemon: Daemon, gate_access: list) -> APIRouter:
    router = APIRouter(tags=["gate"], dependencies=gate_access)
    gate = daemon.gate
    lease_gone: dict[int | str, dict[str, Any]] = {404: {"description": "unknown, released or expired lease"}}

    @router.post(
        "/v1/admissions",
        responses={  # type: ignore[dict-item]
            423: {"description": "denied: maintenance or would-overlap (with Retry-After)"},
            404: {"description": "unknown tenant"},
        },
    )
    async def admissions(body: AdmissionIn):
        # async: the decision is in-memory and the write is group committed by the gate's
        # writer thread, so a job start never waits for a thread of the pool
        result = await gate.admit_async(body.tenant, body.kind, body.resource, _duration(body.expected_duration))
        if not result["admitted"]:
            return JSONResponse(result, status_code=423, headers={"Retry-After": str(result["retry_after"])})
        return JSONResponse(result)

    # {lease_id} is the secret an admission returned as `lease`; the public id status shows is unknown here
    @router.post("/v1/leases/{lease_id}/heartbeat", responses=lease_gone)
    async def heartbeat(lease_id: str):
        return JSONResponse(await gate.heartbeat_async(lease_id))

    @router.delete("/v1/leases/{lease_id}", responses=lease_gone)
    async def release(lease_id: str):
        return JSONResponse({"released": await gate.release_async(lease_id)})

    return router


def _notice_row(r: dict) -> dict:
    from .model import isoz

    return {
        "id": r["notice_id"],
        "delivery": r["id"],
        "channel": r["channel"].split("#", 1)[0],  # apprise:<scheme>#<url hash>: the hash is internal
        "target": (r.get("payload") or {}).get("target"),  # a chat URL, masked (SPEC 4.2)
        "kind": r["kind"],
        "window": r["window"],
        "occurrence": isoz(r["occurrence"]),
        "tenant": r["tenant"],
        "lead": r["lead"] or None,
        "late": bool(r.get("late")),
        "status": r["status"],
        "attempts": r["attempts"],
        "last_error": r["last_error"],
        "created_at": isoz(r["created_at"]),
        "sent_at": isoz(r.get("sent_at")),
        "next_attempt_at": isoz(r.get("next_attempt_at")),
    }


def _tenant_url_router(daemon: Daemon) -> APIRouter:
    """``maintd tenant-url``: the URLs with the secret of the database this daemon uses (a
    dry run's is not the real one), so the printed links are the ones it serves. Both need
    the admin scope: the URLs carry the tenant's secret."""
    router = APIRouter(tags=["tenants"])

    def urls(tenant_id: str, secret: str | None) -> dict:
        cfg = daemon.config
        base = cfg.daemon.public_url
        if not base:
            host, _, port = daemon.listen.rpartition(":")
            base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::', '[::]') else host}:{port}"
        base = base.rstrip("/")
        return {"tenant": tenant_id, "page": f"{base}/t/{secret}/", "calendar": f"{base}/t/{secret}/calendar.ics"}

    def known(tenant_id: str) -> None:
        if tenant_id not in daemon.config.tenants:
            raise NotFoundError(f'unknown tenant "{tenant_id}"')

    @router.get("/v1/tenants/{tenant_id}/url")
    def tenant_url(tenant_id: str) -> dict:
        known(tenant_id)
        return urls(tenant_id, daemon.store.tenant_secret(tenant_id))

    @router.post("/v1/tenants/{tenant_id}/url")
    def rotate_tenant_url(tenant_id: str) -> dict:
        known(tenant_id)
        return {**urls(tenant_id, daemon.store.rotate_secret(tenant_id)), "rotated": True}

    return router
