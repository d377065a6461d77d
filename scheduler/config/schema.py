"""Pass 2: the shapes of windows.yaml as pydantic v2 models (also ``maintd schema``).

Each setting is declared here once: its type, its default, its rule (from :mod:`.values`),
and (for the daemon block) its environment override. The build pass copies fields by
name from these models into the records of :mod:`scheduler.model`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema

from .. import model
from ..duration import format_duration
from .values import (
    ID_RE,
    SECRET_FIELDS,
    WINDOW_ID_RE,
    Argv,
    Duration,
    Emails,
    Kinds,
    LabelValue,
    Listen,
    Message,
    Name,
    Rate,
    Secret,
    SkipDate,
    SocketPath,
    StrList,
    TenantId,
    Timestamp,
    Url,
    Wait,
    Zone,
    id_or_same,
)

__all__ = ["ID_RE", "SECRET_FIELDS", "WINDOW_ID_RE", "Duration"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class WebhookModel(_M):
    url: Url
    secret: Secret


# SPEC 7 (guardrails): the meaning of these shapes is checked in .guardrails.
class BlackoutModel(_M):
    """A tenant's no-maintenance time in its zone: {start, end} | {start, duration} | {cron, duration}."""

    start: Timestamp | None = None
    end: Timestamp | None = None
    duration: Duration | None = None
    cron: str | None = None


class FreezeModel(_M):
    id: str = Field(pattern=WINDOW_ID_RE.pattern)
    start: Timestamp
    end: Timestamp
    timezone: Zone | None = None
    reason: Name = ""


# A hashable default: pydantic deep-copies an unhashable one ([]) for every tenant that
# leaves the field out, a fifth of validating a tenant (issue 19: 100,000 tenants).
_EMPTY: Any = ()


class TenantModel(_M):
    id: TenantId = Field(pattern=ID_RE.pattern, description="[a-z0-9][a-z0-9_-]*, unique")
    name: Name | None = None
    timezone: Zone | None = None
    labels: dict[str, LabelValue] = {}
    email: Emails = []
    webhook: WebhookModel | None = None
    blackouts: list[BlackoutModel] = _EMPTY
    notify_urls: list[str] = Field(default=_EMPTY, description="Apprise URLs (chat and push channels)")
    locale: str | None = Field(default=None, description="language of notices and the tenant page (BCP 47)")


class TenantsFileModel(_M):
    tenants: list[TenantModel]


class OpsModel(_M):
    urls: list[str] = Field(default=[], description="Apprise URLs of the provider's own room")
    events: list[str] | None = Field(default=None, description="ops events the room hears (default: all)")


class ProviderModel(_M):
    name: Name
    timezone: Zone = "UTC"
    message: Message | None = None
    policy: str | None = None
    redundant: list[StrList] = Field(default=[], description="groups of resources never in maintenance together")
    ops: OpsModel | None = None
    integrations: list[str] = Field(default=[], description="integration targets of windows that list none")


class EmailModel(_M):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: Name = "maintd <maintd@localhost>"
    timeout: Duration = timedelta(seconds=10)
    rate: Rate | None = Field(default=None, description="the relay's limit, e.g. 50/s or 100/m (default: unlimited)")
    connections: int = Field(default=16, ge=1, le=100, description="SMTP connections kept open to the relay at once")


class WebhookSettingsModel(_M):
    timeout: Duration = timedelta(seconds=5)


class RetryModel(_M):
    """SPEC section 4.1; the defaults are Standard Webhooks'."""

    schedule: list[Wait] = Field(
        default=list(model.Retry().schedule), description="the wait after each failed try (each +/-10% jitter)"
    )
    max_age: Duration = Field(default=model.Retry().max_age, description="no try later than this after it was due")


def _deprecated(text: str) -> Any:
    return Field(default=None, description=f"deprecated ({text}): write notifiers.retry", json_schema_extra=_DEPRECATED)


_DEPRECATED: dict[str, Any] = {"deprecated": True}


class NotifiersModel(_M):
    email: EmailModel | None = None
    webhook: WebhookSettingsModel = WebhookSettingsModel()
    templates: str | None = Field(default=None, description="directory of your own notice templates")
    retry: RetryModel | None = None
    # The keys before notifiers.retry: still read, translated, and warned about (build.py).
    max_attempts: Annotated[int, Field(ge=1, le=100)] | None = _deprecated("tries per delivery")
    max_age: Duration | None = _deprecated("oldest delivery still sent")
    retry_base: Wait | None = _deprecated("first wait, doubled per try up to 1h")


class MatchModel(_M):
    kind: Kinds | None = None
    resource: StrList | None = None
    labels: dict[str, LabelValue] = {}


class RuleModel(_M):
    allow: MatchModel | None = None
    deny: MatchModel | None = None
    message: Message | None = None


class PolicyModel(_M):
    default: Literal["allow", "deny"] = "deny"
    rules: list[RuleModel] = []


class DrainModel(_M):
    grace: Duration = timedelta(minutes=10)
    then: Literal["stop", "keep"] = "stop"


class HooksModel(_M):
    on_start: Argv | None = None
    on_end: Argv | None = None
    timeout: Duration = timedelta(minutes=2)


class EndCheckModel(_M):
    run: Argv | None = None
    url: Url | None = None
    every: Duration = timedelta(minutes=10)
    max: Duration = timedelta(hours=2)


class LabelSelectorModel(_M):
    labels: dict[str, LabelValue]


def _tenant_selector(v: Any) -> Any:
    if v == "all" or isinstance(v, dict):
        return v
    if isinstance(v, str):  # a single id reads naturally: `tenants: acme`
        v = [v]
    if isinstance(v, list):  # an id that cannot be normalised is reported by the reference pass, at its item
        return [id_or_same(t) for t in v]
    raise ValueError(f"expected all, a list of tenant ids, or {{labels: {{key: value}}}}, got {v!r}")


_SELECTOR_SCHEMA = {
    "anyOf": [
        {"const": "all"},
        {"type": "array", "items": {"type": "string"}},
        {
            "type": "object",
            "properties": {"labels": {"type": "object"}},
            "required": ["labels"],
            "additionalProperties": False,
        },
    ]
}
TenantSelector = Annotated[Any, BeforeValidator(_tenant_selector), WithJsonSchema(_SELECTOR_SCHEMA)]


class WavesModel(_M):
    """SPEC 8: ``size`` is a count or a percentage ("25%"); checked by :mod:`.waves`."""

    size: int | str = Field(json_schema_extra={"examples": [3, "25%"]})
    every: Duration
    order: list[LabelSelectorModel] = []
    halt_on: Literal["end_check"] | None = None


class DeferModel(_M):
    """SPEC 9: at most ``max`` deferrals per tenant and occurrence, none later than ``until`` before it."""

    max: int = 1
    until: Duration = timedelta(0)


# A list of target names, or names with settings merged over the target's (config/integrations.py checks them).
_WINDOW_INTEGRATIONS_SCHEMA = {
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "additionalProperties": {"anyOf": [{"type": "object"}, {"type": "null"}]}},
        {"type": "null"},
    ]
}
WindowIntegrations = Annotated[Any, WithJsonSchema(_WINDOW_INTEGRATIONS_SCHEMA)]


class WindowModel(_M):
    id: str = Field(pattern=WINDOW_ID_RE.pattern)
    title: Name | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    duration: Duration | None = None
    cron: str | None = None
    timezone: Zone | None = None
    tenants: TenantSelector = "all"
    resources: StrList | None = None
    notify: list[Duration] = []
    policy: str | None = None
    drain: DrainModel = DrainModel()
    message: Message | None = None
    cancelled: bool = False
    hooks: HooksModel | None = None
    skip: list[SkipDate] = []
    end_check: EndCheckModel | None = None
    waves: WavesModel | None = None
    defer: DeferModel | None = None
    override_freeze: Name | None = Field(default=None, description="why this window may run inside a freeze")
    blackouts: Literal["warn", "skip"] = "warn"
    integrations: WindowIntegrations = None


def _env(var: str, text: str, default: Any = None) -> Any:
    return Field(default=default, description=f"{text} (env {var})", json_schema_extra={"env": var})


class DaemonModel(_M):
    """SPEC section 5: every key has an environment override, named on its field."""

    listen: Listen = _env("MAINTD_LISTEN", "HOST:PORT of the API", "127.0.0.1:8787")
    database: str = _env("MAINTD_DATABASE", "SQLite path beside windows.yaml, or a SQLAlchemy URL", "maintd.db")
    token_file: str | None = _env("MAINTD_TOKEN_FILE", "file with the admin token; MAINTD_TOKEN wins")
    public_url: Url | None = _env("MAINTD_PUBLIC_URL", "base of links in notices")
    gate_token_file: str | None = _env(
        "MAINTD_GATE_TOKEN_FILE", "file with the gate token (admissions, heartbeats); MAINTD_GATE_TOKEN wins"
    )
    read_token_file: str | None = _env(
        "MAINTD_READ_TOKEN_FILE", "file with the read token (status, metrics, ops page); MAINTD_READ_TOKEN wins"
    )
    socket: SocketPath | None = _env("MAINTD_SOCKET", "unix socket serving the API without a token, mode 0660")
    show_resources: bool = _env("MAINTD_SHOW_RESOURCES", "tenant pages list internal resource names", False)


DAEMON_ENV: dict[str, str] = {
    name: str(info.json_schema_extra["env"])  # type: ignore[index,call-overload]
    for name, info in DaemonModel.model_fields.items()
}


class ConfigModel(_M):
    """windows.yaml (maintd)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="maintd windows.yaml")
    version: Literal[1]
    provider: ProviderModel
    tenants: list[TenantModel] | None = None
    tenants_file: str | None = None
    notifiers: NotifiersModel = NotifiersModel()
    policies: dict[str, PolicyModel] = {}
    windows: list[WindowModel] = []
    daemon: DaemonModel = DaemonModel()
    hooks: HooksModel | None = None
    freezes: list[FreezeModel] = []
    integrations: dict[str, dict[str, Any]] = Field(default={}, description="named targets (SPEC 6)")


class _Schema(GenerateJsonSchema):
    """Defaults written as the file would write them (``10m``, not ISO ``PT10M``), so that
    every default validates against its own property's schema."""

    def encode_default(self, dft: Any) -> Any:
        return super().encode_default(_as_written(dft))


def _as_written(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, BaseModel):
        value = {k: getattr(value, k) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _as_written(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_written(v) for v in value]
    return value


def json_schema() -> dict:
    """The JSON Schema of windows.yaml (``maintd schema``)."""
    schema = ConfigModel.model_json_schema(schema_generator=_Schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
