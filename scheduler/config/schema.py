"""Pass 2: the shapes of windows.yaml as pydantic v2 models (also ``maintd schema``).

Each setting is declared here once: its type, its default, its rule, and (for the daemon
block) its environment override. The build pass copies fields by name from these models
into the records of :mod:`scheduler.model`.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema

from .. import messages, model
from ..duration import format_duration, parse_duration
from ..model import normalise_id, normalise_kind

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
WINDOW_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DURATION_PATTERN = r"^(\d+[wdhms])+$"


def _duration(v: Any) -> timedelta:
    if isinstance(v, timedelta):
        return v
    if isinstance(v, bool) or not isinstance(v, str):
        raise ValueError(f"expected a duration like 30s, 10m, 4h, 7d or 1h30m, got {v!r}")
    return parse_duration(v)


def _zone(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected an IANA time zone such as Europe/Berlin, got {v!r}")
    if v.lower() in ("local", "localtime"):
        raise ValueError(f'"{v}" depends on the machine; write an IANA zone such as Europe/Berlin or UTC')
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f'unknown time zone "{v}"; expected an IANA name such as Europe/Berlin or UTC') from None
    return v


def _timestamp(v: Any) -> str:
    if isinstance(v, str):
        try:
            datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            return v.strip()
        except ValueError:
            pass
    raise ValueError(f"expected a time like 2026-12-05T22:00 (local) or 2026-12-05T21:00Z, got {v!r}")


def _str_list(v: Any) -> list:
    return [v] if isinstance(v, str) else v


def _argv(v: Any) -> Any:
    if isinstance(v, str):
        raise ValueError(
            'expected an argv list such as [pwsh, -NoProfile, -Command, "..."]; hooks never run a shell string'
        )
    if isinstance(v, list) and not v:
        raise ValueError("expected a non-empty argv list")
    if isinstance(v, list):
        if any(isinstance(x, bool) for x in v):
            raise ValueError('an argv item reads as a YAML boolean; quote it ("true") to run a command of that name')
        return [str(x) if isinstance(x, (int, float)) else x for x in v]
    return v


def _label_value(v: Any) -> Any:
    if isinstance(v, bool):
        # "True" would neither match what was written nor read well on a tenant page
        raise ValueError(
            'label value reads as a YAML boolean (yes/no/true/false/on/off); quote it to use it as text, e.g. "yes"'
        )
    if isinstance(v, (int, float)):
        return str(v)
    return _normalised(v, normalise_id, "label value")


def _normalised(v: Any, how: Any, what: str) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return how(v)
    except ValueError as exc:
        raise ValueError(f"{what} {v!r} {exc}") from None


def _tenant_id(v: Any) -> Any:
    return _normalised(v, normalise_id, "tenant id")


def _id_or_same(v: Any) -> Any:
    try:
        return normalise_id(v) if isinstance(v, str) else v
    except ValueError:
        return v


def _kind(v: Any) -> Any:
    return _normalised(v, normalise_kind, "kind")


def _one_line(v: str, info: ValidationInfo) -> str:
    # A line break in a name splits an email header or a notice line; other control
    # characters cannot be shown at all.
    for ch in v:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            what = "a line break" if ch in "\r\n\x85\u2028\u2029" else "a control character"
            raise ValueError(
                f"{info.field_name} contains {what} (U+{ord(ch):04X}); expected one line of printable text"
            )
    return v


def _skip_date(v: Any) -> date:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a local date like 2026-12-24, got {v!r}")


_ADDR = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+")
_PLAIN_ADDR = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z0-9-]+")


def _email(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected an email address, got {v!r}")
    if _PLAIN_ADDR.fullmatch(v):
        return v  # the common case, without parseaddr's cost (10,000 tenants)
    _, addr = parseaddr(v)
    if not addr or not _ADDR.fullmatch(addr):
        raise ValueError(f'invalid email address "{v}"; expected something like ops@example.com')
    return v


def url(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected an http(s) URL, got {v!r}")
    u = urlparse(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f'invalid URL "{v}"; expected http(s)://host/path')
    return v


def _secret(v: Any) -> str:
    # The message never echoes the value: it is a secret even when it is malformed.
    bad = ValueError(
        "invalid webhook secret; expected a Standard Webhooks secret: whsec_ followed by "
        "base64 of 24 to 64 random bytes"
    )
    if not isinstance(v, str) or not v.startswith("whsec_"):
        raise bad
    try:
        raw = base64.b64decode(v[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    if not 24 <= len(raw) <= 64:
        raise bad
    return v


def _message(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected text, got {v!r}")
    problem = messages.check_template(v)
    if problem:
        raise ValueError(problem)
    return v


def listen(v: Any) -> str:
    if isinstance(v, str):
        host, _, port = v.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return v
    raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8787, got {v!r}")


def _at_least_1s(d: timedelta) -> timedelta:
    if d < timedelta(seconds=1):
        raise ValueError(f"expected at least 1s, got {format_duration(d)}")
    return d


_DUR_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "10m", "4h", "1h30m"]}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DUR_SCHEMA)]
Wait = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_at_least_1s), WithJsonSchema(_DUR_SCHEMA)]
Zone = Annotated[str, BeforeValidator(_zone), WithJsonSchema({"type": "string", "examples": ["Europe/Berlin"]})]
Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "examples": ["2026-12-05T22:00", "2026-12-05T21:00:00Z"]}),
]
Argv = Annotated[list[str], BeforeValidator(_argv)]
Kinds = Annotated[list[Annotated[str, BeforeValidator(_kind)]], BeforeValidator(_str_list)]
TenantId = Annotated[str, BeforeValidator(_tenant_id)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Email = Annotated[str, BeforeValidator(_email)]
Url = Annotated[str, BeforeValidator(url)]
Secret = Annotated[str, BeforeValidator(_secret)]
Message = Annotated[str, BeforeValidator(_message)]
SkipDate = Annotated[date, BeforeValidator(_skip_date), WithJsonSchema({"type": "string", "format": "date"})]
Listen = Annotated[str, BeforeValidator(listen)]
Name = Annotated[str, AfterValidator(_one_line)]  # shown in headers and notices: one printable line

# Field names whose values are never shown in a message (values from ${VAR} neither).
SECRET_FIELDS = frozenset({"password", "secret", "token", "api_key", "routing_key"})


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class WebhookModel(_M):
    url: Url
    secret: Secret


class TenantModel(_M):
    id: TenantId = Field(pattern=ID_RE.pattern, description="[a-z0-9][a-z0-9_-]*, unique")
    name: Name | None = None
    timezone: Zone | None = None
    labels: dict[str, LabelValue] = {}
    email: Annotated[list[Email], BeforeValidator(_str_list)] = []
    webhook: WebhookModel | None = None


class TenantsFileModel(_M):
    tenants: list[TenantModel]


class ProviderModel(_M):
    name: Name
    timezone: Zone = "UTC"
    message: Message | None = None
    policy: str | None = None


class EmailModel(_M):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: Name = "maintd <maintd@localhost>"
    timeout: Duration = timedelta(seconds=10)


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
        return [_id_or_same(t) for t in v]
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


def _env(var: str, text: str, default: Any = None) -> Any:
    return Field(default=default, description=f"{text} (env {var})", json_schema_extra={"env": var})


class DaemonModel(_M):
    """SPEC section 5: every key has an environment override, named on its field."""

    listen: Listen = _env("MAINTD_LISTEN", "HOST:PORT of the API", "127.0.0.1:8787")
    database: str = _env("MAINTD_DATABASE", "SQLite path beside windows.yaml, or a SQLAlchemy URL", "maintd.db")
    token_file: str | None = _env("MAINTD_TOKEN_FILE", "admin bearer token; MAINTD_TOKEN wins")
    public_url: Url | None = _env("MAINTD_PUBLIC_URL", "base of links in notices")


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
