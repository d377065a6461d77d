"""windows.yaml -> frozen model. The only module that knows the file format.

Three passes, each reporting *all* of its problems with ``FILE:LINE:COL``:

1. YAML -> plain values, remembering the position of every node (PyYAML marks) and
   expanding ``${VAR}`` in scalar values (never in keys or comments);
2. shape and types with pydantic v2 (the same models give ``maintd schema``);
3. cross-references and meaning, Alertmanager style (``undefined policy "x" used in
   window "y"``), then the frozen records of :mod:`scheduler.model`.

``load`` is the only part that touches the disk; ``parse`` is pure (the environment is
a parameter).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Callable, Literal, Mapping, Optional
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from . import messages, model, recurrence
from .duration import parse_duration
from .errors import ConfigError, ConfigIssue

MAX_BYTES = 4 * 1024 * 1024  # a windows.yaml of 10,000 tenants is ~2 MB; beyond this is a mistake
MAX_NODES = 2_000_000  # guards alias bombs ("billion laughs")

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
WINDOW_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path = tuple  # ("windows", 0, "start")

# ---------------------------------------------------------------------------
# pass 1: YAML with positions


@dataclass
class Source:
    """One parsed file: plain data plus the position of every value and key."""

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the nearest ancestor that has one."""
        table = self.key_marks if key else self.marks
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.marks:
                return self.marks[p]
            p = p[:-1]
        return self.marks.get((), (1, 1))

    def issue(self, path: Path, message: str, *, key: bool = False, severity: str = "error") -> ConfigIssue:
        line, col = self.at(path, key=key)
        return ConfigIssue(self.file, line, col, message, severity)


class _Collector:
    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def add(self, issue: ConfigIssue) -> None:
        if issue not in self.issues:
            self.issues.append(issue)

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "warning"]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


def _scalar(node: yaml.ScalarNode) -> Any:
    # Only numbers, booleans and null are typed here; timestamps stay text so every time
    # in the file is read by one rule (with the window's zone), not by YAML 1.1's.
    if node.style is None or node.style == "":
        if node.tag == _INT:
            return yaml.SafeLoader.construct_yaml_int(_DUMMY, node)
        if node.tag == _FLOAT:
            return yaml.SafeLoader.construct_yaml_float(_DUMMY, node)
        if node.tag == _BOOL:
            return yaml.SafeLoader.construct_yaml_bool(_DUMMY, node)
        if node.tag == _NULL:
            return None
    return node.value


class _Dummy(yaml.SafeLoader):
    def __init__(self) -> None:  # constructors above need only the class's tables
        pass


_DUMMY = _Dummy()


def read_yaml(text: str, file: str, env: Mapping[str, str], col: _Collector) -> Optional[Source]:
    """YAML text -> Source; syntax errors and unset variables go to ``col``."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        col.add(ConfigIssue(file, line, column, f"invalid YAML: {what}"))
        return None
    except yaml.YAMLError as exc:
        col.add(ConfigIssue(file, 1, 1, f"invalid YAML: {exc}"))
        return None
    src = Source(file=file, data=None)
    if root is None:
        col.add(ConfigIssue(file, 1, 1, "the file is empty; expected a mapping with version: 1"))
        return None
    count = [0]

    def build(node: yaml.Node, path: Path) -> Any:
        count[0] += 1
        if count[0] > MAX_NODES:
            raise _TooBig()
        src.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    col.add(ConfigIssue(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                        "expected a plain key, got a mapping or list as key"))
                    continue
                if key_node.tag == "tag:yaml.org,2002:merge":
                    col.add(ConfigIssue(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                        "merge keys (<<) are not supported; write the keys out"))
                    continue
                key = _scalar(key_node)
                if not isinstance(key, (str, int, bool)) or key is None:
                    key = str(key_node.value)
                key = key if isinstance(key, str) else str(key_node.value)
                kp = path + (key,)
                if key in out:
                    first = src.key_marks.get(kp, (0, 0))[0]
                    col.add(ConfigIssue(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                        f'duplicate key "{key}" (first at line {first})'))
                    continue
                src.key_marks[kp] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, kp)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        value = _scalar(node)
        if isinstance(value, str) and "$" in value:
            value = _expand(value, env, lambda msg: col.add(src.issue(path, msg)))
        return value

    try:
        src.data = build(root, ())
    except _TooBig:
        col.add(ConfigIssue(file, 1, 1, f"the document expands to more than {MAX_NODES} values "
                                         "(an alias bomb?); expected a plain config"))
        return None
    return src


class _TooBig(Exception):
    pass


def _expand(value: str, env: Mapping[str, str], report: Callable[[str], None]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got is None or (got == "" and default is not None):
            if default is not None:
                return default
            report(f'environment variable "{name}" is not set '
                   f"(set it, or write ${{{name}:-default}} to give a default)")
            return ""
        return got

    return _VAR.sub(sub, value)


# ---------------------------------------------------------------------------
# pass 2: shape and types (pydantic). These models are also the published JSON Schema.


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
        raise ValueError("expected an argv list such as [pwsh, -NoProfile, -Command, \"...\"]; "
                         "hooks never run a shell string")
    if isinstance(v, list) and not v:
        raise ValueError("expected a non-empty argv list")
    if isinstance(v, list):
        return [str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x for x in v]
    return v


def _label_value(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
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


def _email(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected an email address, got {v!r}")
    _, addr = parseaddr(v)
    if not addr or not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+", addr):
        raise ValueError(f'invalid email address "{v}"; expected something like ops@example.com')
    return v


def _url(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected an http(s) URL, got {v!r}")
    u = urlparse(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f'invalid URL "{v}"; expected http(s)://host/path')
    return v


def _secret(v: Any) -> str:
    # The message never echoes the value: it is a secret even when it is malformed.
    bad = ValueError("invalid webhook secret; expected a Standard Webhooks secret: whsec_ followed by "
                     "base64 of 24 to 64 random bytes")
    if not isinstance(v, str) or not v.startswith("whsec_"):
        raise bad
    try:
        raw = base64.b64decode(v[len("whsec_"):], validate=True)
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


def _listen(v: Any) -> str:
    if isinstance(v, str):
        host, _, port = v.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return v
    raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8787, got {v!r}")


_DUR_SCHEMA = {"type": "string", "pattern": r"^(\d+[wdhms])+$", "examples": ["30s", "10m", "4h", "1h30m"]}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DUR_SCHEMA)]
Zone = Annotated[str, BeforeValidator(_zone), WithJsonSchema({"type": "string", "examples": ["Europe/Berlin"]})]
Timestamp = Annotated[str, BeforeValidator(_timestamp),
                      WithJsonSchema({"type": "string", "examples": ["2026-12-05T22:00", "2026-12-05T21:00:00Z"]})]
Argv = Annotated[list[str], BeforeValidator(_argv)]
StrList = Annotated[list[str], BeforeValidator(_str_list)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Email = Annotated[str, BeforeValidator(_email)]
Url = Annotated[str, BeforeValidator(_url)]
Secret = Annotated[str, BeforeValidator(_secret)]
Message = Annotated[str, BeforeValidator(_message)]
SkipDate = Annotated[date, BeforeValidator(_skip_date), WithJsonSchema({"type": "string", "format": "date"})]
Listen = Annotated[str, BeforeValidator(_listen)]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class WebhookModel(_M):
    url: Url
    secret: Secret


class TenantModel(_M):
    id: str = Field(pattern=ID_RE.pattern, description="[a-z0-9][a-z0-9_-]*, unique")
    name: Optional[str] = None
    timezone: Optional[Zone] = None
    labels: dict[str, LabelValue] = {}
    email: Annotated[list[Email], BeforeValidator(_str_list)] = []
    webhook: Optional[WebhookModel] = None


class TenantsFileModel(_M):
    tenants: list[TenantModel]


class ProviderModel(_M):
    name: str
    timezone: Zone = "UTC"
    message: Optional[Message] = None
    policy: Optional[str] = None


class EmailModel(_M):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: Optional[str] = None
    password: Optional[str] = None
    sender: str = "maintd <maintd@localhost>"
    timeout: Duration = timedelta(seconds=10)


class WebhookSettingsModel(_M):
    timeout: Duration = timedelta(seconds=5)


class NotifiersModel(_M):
    email: Optional[EmailModel] = None
    webhook: WebhookSettingsModel = WebhookSettingsModel()
    templates: Optional[str] = Field(default=None, description="directory of your own notice templates")
    max_attempts: int = Field(default=8, ge=1, le=100)
    max_age: Duration = timedelta(hours=24)


class MatchModel(_M):
    kind: Optional[StrList] = None
    resource: Optional[StrList] = None
    labels: dict[str, LabelValue] = {}


class RuleModel(_M):
    allow: Optional[MatchModel] = None
    deny: Optional[MatchModel] = None
    message: Optional[Message] = None


class PolicyModel(_M):
    default: Literal["allow", "deny"] = "deny"
    rules: list[RuleModel] = []


class DrainModel(_M):
    grace: Duration = timedelta(minutes=10)
    then: Literal["stop", "keep"] = "stop"


class HooksModel(_M):
    on_start: Optional[Argv] = None
    on_end: Optional[Argv] = None
    timeout: Duration = timedelta(minutes=2)


class EndCheckModel(_M):
    run: Optional[Argv] = None
    url: Optional[Url] = None
    every: Duration = timedelta(minutes=10)
    max: Duration = timedelta(hours=2)


class LabelSelectorModel(_M):
    labels: dict[str, LabelValue]


def _tenant_selector(v: Any) -> Any:
    if v == "all" or isinstance(v, (list, dict)):
        return v
    if isinstance(v, str):  # a single id reads naturally: `tenants: acme`
        return [v]
    raise ValueError(f"expected all, a list of tenant ids, or {{labels: {{key: value}}}}, got {v!r}")


TenantSelector = Annotated[
    Any, BeforeValidator(_tenant_selector),
    WithJsonSchema({"anyOf": [{"const": "all"}, {"type": "array", "items": {"type": "string"}},
                              {"type": "object", "properties": {"labels": {"type": "object"}},
                               "required": ["labels"], "additionalProperties": False}]}),
]


class WindowModel(_M):
    id: str = Field(pattern=WINDOW_ID_RE.pattern)
    title: Optional[str] = None
    start: Optional[Timestamp] = None
    end: Optional[Timestamp] = None
    duration: Optional[Duration] = None
    cron: Optional[str] = None
    timezone: Optional[Zone] = None
    tenants: TenantSelector = "all"
    resources: Optional[StrList] = None
    notify: list[Duration] = []
    policy: Optional[str] = None
    drain: DrainModel = DrainModel()
    message: Optional[Message] = None
    cancelled: bool = False
    hooks: Optional[HooksModel] = None
    skip: list[SkipDate] = []
    end_check: Optional[EndCheckModel] = None


class DaemonModel(_M):
    listen: Listen = "127.0.0.1:8787"
    database: str = "maintd.db"
    token_file: Optional[str] = None
    public_url: Optional[Url] = None


class ConfigModel(_M):
    """windows.yaml (maintd)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="maintd windows.yaml")
    version: Literal[1]
    provider: ProviderModel
    tenants: Optional[list[TenantModel]] = None
    tenants_file: Optional[str] = None
    notifiers: NotifiersModel = NotifiersModel()
    policies: dict[str, PolicyModel] = {}
    windows: list[WindowModel] = []
    daemon: DaemonModel = DaemonModel()
    hooks: Optional[HooksModel] = None


def json_schema() -> dict:
    """The JSON Schema of windows.yaml (``maintd schema``)."""
    schema = ConfigModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _fields(model_cls: type[BaseModel]) -> str:
    return ", ".join(model_cls.model_fields)


def _unwrap_model(ann: Any) -> Any:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _pydantic_issues(exc: ValidationError, src: Source, prefix: Path, model_cls: type[BaseModel],
                     col: _Collector) -> None:
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        kind = err["type"]
        rel = tuple(err["loc"])
        if kind == "missing":
            name = rel[-1] if rel else "?"
            where = _describe(loc[:-1])
            col.add(src.issue(loc[:-1], f'missing required key "{name}"{where}'))
        elif kind == "extra_forbidden":
            owner = _owner_model(model_cls, rel[:-1])
            expected = f" (expected one of: {_fields(owner)})" if owner else ""
            col.add(src.issue(loc, f'unknown key "{rel[-1]}"{_describe(loc[:-1])}{expected}', key=True))
        else:
            msg = err["msg"]
            for p in ("Value error, ", "Assertion failed, "):
                if msg.startswith(p):
                    msg = msg[len(p):]
            if kind == "literal_error" and rel and rel[-1] == "version":
                msg = "expected version: 1"
            elif kind == "string_pattern_mismatch":
                field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
                pattern = err.get("ctx", {}).get("pattern", "")
                msg = f'invalid {field_name} {err.get("input")!r}; expected to match {pattern}'
            elif kind in ("int_parsing", "int_type", "bool_parsing", "bool_type", "string_type",
                          "list_type", "dict_type", "model_type", "model_attributes_type", "literal_error",
                          "greater_than_equal", "less_than_equal", "int_from_float"):
                field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
                shown = "a mapping" if isinstance(err.get("input"), dict) else (
                    "a list" if isinstance(err.get("input"), list) else repr(err.get("input")))
                msg = f"{field_name}: {msg[0].lower() + msg[1:]}, got {shown}"
            col.add(src.issue(loc, msg))


def _owner_model(model_cls: type[BaseModel], rel: tuple) -> type[BaseModel] | None:
    current: Any = model_cls
    for part in rel:
        if isinstance(part, int):
            continue
        if current is ConfigModel and part == "policies":
            current = dict
            continue
        if current is dict:
            current = PolicyModel
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap_model(current.model_fields[part].annotation)
        if part in ("allow", "deny"):
            current = MatchModel
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(path: Path) -> str:
    named = [p for p in path if isinstance(p, str)]
    if not named:
        return ""
    return f" in {named[-1]}" if len(named) == 1 else f" in {'.'.join(named[-2:])}"


# ---------------------------------------------------------------------------
# pass 3: meaning and cross-references -> frozen model


def _to_utc(text: str, zone: ZoneInfo) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        return recurrence.resolve_local(ts, zone)
    return ts.astimezone(model.UTC)


def parse(text: str, file: str, env: Mapping[str, str] | None = None,
          read_file: Callable[[str], tuple[str, str]] | None = None) -> model.Config:
    """Parse windows.yaml text. ``read_file(relative)`` returns (display name, text) for
    ``tenants_file`` (``load`` supplies one that reads the disk); raises ConfigError."""
    env = {} if env is None else env
    col = _Collector()
    src = read_yaml(text, file, env, col)
    if src is None:
        raise ConfigError(col.issues)
    if not isinstance(src.data, dict):
        col.add(src.issue((), "expected a mapping at the top level (version: 1, provider: ..., windows: ...)"))
        raise ConfigError(col.issues)
    data = dict(src.data)
    raw_tenants = data.pop("tenants", None)
    has_inline = "tenants" in src.data
    # Windows are validated one by one so that one bad window does not hide the
    # cross-reference errors of the others (all errors of a file in one run).
    raw_windows = data.pop("windows", [])
    try:
        cfg = ConfigModel.model_validate(data)
    except ValidationError as exc:
        _pydantic_issues(exc, src, (), ConfigModel, col)
        cfg = None
    window_models: list[tuple[int, Optional[WindowModel], Any]] = []
    if raw_windows is None:
        raw_windows = []
    if not isinstance(raw_windows, list):
        col.add(src.issue(("windows",), "expected a list of windows"))
        raw_windows = []
    for i, raw in enumerate(raw_windows):
        try:
            window_models.append((i, WindowModel.model_validate(raw), raw))
        except ValidationError as exc:
            _pydantic_issues(exc, src, ("windows", i), WindowModel, col)
            window_models.append((i, None, raw))

    # Tenants: inline or from tenants_file; errors name the file they are in.
    tenants_src, tenants_prefix, tenant_models = src, ("tenants",), []
    tenants_file = data.get("tenants_file")
    if has_inline and tenants_file is not None:
        col.add(src.issue(("tenants_file",), "give either tenants or tenants_file, not both", key=True))
    elif tenants_file is not None:
        if not isinstance(tenants_file, str) or read_file is None:
            col.add(src.issue(("tenants_file",), "expected a path to a tenants file relative to this file"))
        else:
            try:
                name, ttext = read_file(tenants_file)
            except ConfigError as exc:
                for issue in exc.issues:
                    col.add(issue)
                name, ttext = None, None
            except OSError as exc:
                col.add(src.issue(("tenants_file",), f'cannot read tenants_file "{tenants_file}": '
                                                     f"{exc.strerror or exc}"))
                name, ttext = None, None
            if ttext is not None:
                tsrc = read_yaml(ttext, name, env, col)
                if tsrc is not None:
                    if not isinstance(tsrc.data, dict) or "tenants" not in tsrc.data:
                        col.add(tsrc.issue((), "expected a mapping with a tenants: list"))
                    else:
                        tenants_src, raw_tenants = tsrc, tsrc.data["tenants"]
                        try:
                            TenantsFileModel.model_validate(tsrc.data)
                        except ValidationError as exc:
                            _pydantic_issues(exc, tsrc, (), TenantsFileModel, col)
                            raw_tenants = None
    if raw_tenants is not None and tenants_src is src:
        if not isinstance(raw_tenants, list):
            col.add(src.issue(("tenants",), "expected a list of tenants"))
            raw_tenants = None
    if raw_tenants is not None:
        for i, raw in enumerate(raw_tenants):
            try:
                tenant_models.append((i, TenantModel.model_validate(raw)))
            except ValidationError as exc:
                _pydantic_issues(exc, tenants_src, tenants_prefix + (i,), TenantModel, col)

    if cfg is None:
        # Still check what can be checked: references from windows to tenants and policies.
        cfg = ConfigModel.model_construct(
            version=1, provider=ProviderModel.model_construct(name="?", timezone="UTC", message=None, policy=None),
            policies={k: PolicyModel() for k in (data.get("policies") or {}) if isinstance(data.get("policies"), dict)}
            if isinstance(data.get("policies"), dict) else {},
            notifiers=NotifiersModel(), daemon=DaemonModel(), hooks=None)
        _build(cfg, src, tenants_src, tenant_models, window_models, file, col)
        raise ConfigError(col.issues)
    result = _build(cfg, src, tenants_src, tenant_models, window_models, file, col)
    if col.errors:
        raise ConfigError(col.issues)
    return result


def _lead_labels(window: Any, leads: list[timedelta]) -> dict[timedelta, str]:
    raw = window.get("notify", []) if isinstance(window, dict) else []
    out: dict[timedelta, str] = {}
    for text, lead in zip(raw if isinstance(raw, list) else [], leads):
        out.setdefault(lead, str(text).strip())
    return out


def _check_refs(raw: Any, wp: Path, tenants: Mapping, policies: Mapping, src: Source, col: _Collector) -> None:
    """References of a window that failed validation, so their errors show in the same run."""
    if not isinstance(raw, dict):
        return
    wid = raw.get("id", "?")
    pol = raw.get("policy")
    if isinstance(pol, str) and pol not in policies:
        col.add(src.issue(wp + ("policy",), f'undefined policy "{pol}" used in window "{wid}"'))
    sel = raw.get("tenants")
    if isinstance(sel, list):
        for j, tid in enumerate(sel):
            if isinstance(tid, str) and tid not in tenants:
                col.add(src.issue(wp + ("tenants", j), f'unknown tenant "{tid}" in window "{wid}"'))


def _build(cfg: ConfigModel, src: Source, tsrc: Source, tenant_models: list, window_models: list, file: str,
           col: _Collector) -> model.Config:
    provider_zone = ZoneInfo(cfg.provider.timezone)
    provider = model.Provider(
        name=cfg.provider.name, zone=provider_zone, policy=cfg.provider.policy,
        message=cfg.provider.message or model.Provider.__dataclass_fields__["message"].default,
    )

    tenants: dict[str, model.Tenant] = {}
    for i, t in tenant_models:
        path = ("tenants", i)
        if t.id in tenants:
            first = tenants[t.id].line
            col.add(tsrc.issue(path + ("id",), f'duplicate tenant id "{t.id}" (first defined at line {first})'))
            continue
        tenants[t.id] = model.Tenant(
            id=t.id, name=t.name or t.id, zone=ZoneInfo(t.timezone) if t.timezone else provider_zone,
            labels=dict(t.labels), email=tuple(t.email),
            webhook=model.Webhook(url=t.webhook.url, secret=t.webhook.secret) if t.webhook else None,
            line=tsrc.at(path)[0],
        )

    policies: dict[str, model.Policy] = {}
    for name, p in cfg.policies.items():
        rules = []
        for j, r in enumerate(p.rules):
            rp = ("policies", name, "rules", j)
            if (r.allow is None) == (r.deny is None):
                col.add(src.issue(rp, f'rule {j + 1} of policy "{name}" needs exactly one of allow or deny'))
                continue
            match = r.allow if r.allow is not None else r.deny
            rules.append(model.Rule(
                effect="allow" if r.allow is not None else "deny",
                kinds=frozenset(match.kind) if match.kind else None,
                resources=frozenset(match.resource) if match.resource else None,
                labels=dict(match.labels), message=r.message,
            ))
        policies[name] = model.Policy(name=name, default=p.default, rules=tuple(rules))
    if provider.policy is not None and provider.policy not in policies:
        col.add(src.issue(("provider", "policy"), f'undefined policy "{provider.policy}" used in provider'))

    def hooks_of(h: Optional[HooksModel]) -> Optional[model.Hooks]:
        if h is None:
            return None
        return model.Hooks(on_start=tuple(h.on_start) if h.on_start else None,
                           on_end=tuple(h.on_end) if h.on_end else None, timeout=h.timeout)

    windows: list[model.Window] = []
    seen: dict[str, int] = {}
    for i, w, raw in window_models:
        wp = ("windows", i)
        line = src.at(wp)[0]
        if w is None:
            _check_refs(raw, wp, tenants, policies, src, col)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                seen.setdefault(raw["id"], line)
            continue
        if w.id in seen:
            col.add(src.issue(wp + ("id",), f'duplicate window id "{w.id}" (first defined at line {seen[w.id]})'))
            continue
        seen[w.id] = line
        zone = ZoneInfo(w.timezone) if w.timezone else provider_zone
        ok = True
        if w.policy is not None and w.policy not in policies:
            col.add(src.issue(wp + ("policy",), f'undefined policy "{w.policy}" used in window "{w.id}"'))
            ok = False
        # tenants
        sel = w.tenants
        if sel == "all":
            members = frozenset(tenants)
        elif isinstance(sel, list):
            chosen = set()
            for j, tid in enumerate(sel):
                if not isinstance(tid, str) or tid not in tenants:
                    col.add(src.issue(wp + ("tenants", j), f'unknown tenant "{tid}" in window "{w.id}"'))
                    ok = False
                else:
                    chosen.add(tid)
            members = frozenset(chosen)
        else:
            try:
                labels = LabelSelectorModel.model_validate(sel).labels
            except ValidationError:
                col.add(src.issue(wp + ("tenants",), "expected all, a list of tenant ids, or "
                                                     "{labels: {key: value}}"))
                continue
            members = frozenset(t.id for t in tenants.values()
                                if all(t.labels.get(k) == v for k, v in labels.items()))
            if not members:
                shown = ", ".join(f"{k}: {v}" for k, v in labels.items())
                col.add(src.issue(wp + ("tenants",), f'labels {{{shown}}} in window "{w.id}" match no tenant',
                                  severity="warning"))
        # time
        start = end = None
        duration = w.duration
        if w.cron is not None:
            for bad in ("start", "end"):
                if getattr(w, bad) is not None:
                    col.add(src.issue(wp + (bad,), f'window "{w.id}" is recurring (cron); it takes duration, '
                                                   f"not {bad}", key=True))
                    ok = False
            problem = recurrence.validate_cron(w.cron)
            if problem:
                col.add(src.issue(wp + ("cron",), problem))
                ok = False
            if duration is None:
                col.add(src.issue(wp, f'missing required key "duration" in recurring window "{w.id}"'))
                ok = False
        else:
            if w.skip:
                col.add(src.issue(wp + ("skip",), f'skip applies only to recurring windows (cron); '
                                                  f'window "{w.id}" is one-off', key=True))
                ok = False
            if w.start is None:
                col.add(src.issue(wp, f'window "{w.id}" needs start (one-off) or cron (recurring)'))
                ok = False
            else:
                start = _to_utc(w.start, zone)
                if w.end is not None and duration is not None:
                    col.add(src.issue(wp + ("duration",), f'window "{w.id}" has both end and duration; '
                                                          "give one", key=True))
                    ok = False
                elif w.end is not None:
                    end = _to_utc(w.end, zone)
                    if end <= start:
                        col.add(src.issue(wp + ("end",), f'end is not after start in window "{w.id}" '
                                                         f"({w.end} <= {w.start})"))
                        ok = False
                elif duration is None:
                    col.add(src.issue(wp, f'window "{w.id}" needs end or duration'))
                    ok = False
        if duration is not None and duration <= timedelta(0):
            col.add(src.issue(wp + ("duration",), f'duration of window "{w.id}" must be positive'))
            ok = False
        if w.end_check is not None and (w.end_check.run is None) == (w.end_check.url is None):
            col.add(src.issue(wp + ("end_check",), f'end_check of window "{w.id}" needs exactly one of run or url'))
            ok = False
        if any(lead <= timedelta(0) for lead in w.notify):
            col.add(src.issue(wp + ("notify",), "notify lead times must be positive"))
            ok = False
        if not ok:
            continue
        windows.append(model.Window(
            id=w.id, title=w.title or w.id, zone=zone, tenants=members,
            start=start, end=end if end is not None else (start + duration if start is not None else None),
            duration=duration, cron=w.cron,
            resources=frozenset(w.resources) if w.resources else None,
            notify=tuple(sorted(set(w.notify), reverse=True)),
            lead_labels=_lead_labels(raw, w.notify),
            policy=w.policy, drain=model.Drain(grace=w.drain.grace, then=w.drain.then),
            message=w.message, cancelled=w.cancelled, hooks=hooks_of(w.hooks),
            skip=frozenset(w.skip),
            end_check=model.EndCheck(run=tuple(w.end_check.run) if w.end_check.run else None,
                                     url=w.end_check.url, every=w.end_check.every, max=w.end_check.max)
            if w.end_check else None,
            line=line,
        ))

    n = cfg.notifiers
    email = None
    if n.email is not None:
        e = n.email
        email = model.EmailSettings(host=e.host, port=e.port, starttls=e.starttls, ssl=e.ssl,
                                    username=e.username, password=e.password, sender=e.sender, timeout=e.timeout)
    base_dir = os.path.dirname(os.path.abspath(file))
    templates = os.path.join(base_dir, n.templates) if n.templates else None
    notifiers = model.Notifiers(email=email, webhook=model.WebhookSettings(timeout=n.webhook.timeout),
                                templates=templates, max_attempts=n.max_attempts, max_age=n.max_age)
    d = cfg.daemon
    daemon = model.DaemonSettings(listen=d.listen, database=d.database, token_file=d.token_file,
                                  public_url=d.public_url.rstrip("/") if d.public_url else None)
    return model.Config(
        path=os.path.abspath(file), provider=provider, tenants=tenants, windows=tuple(windows),
        policies=policies, notifiers=notifiers, daemon=daemon, hooks=hooks_of(cfg.hooks),
        warnings=tuple(str(i) for i in col.warnings),
    )


# ---------------------------------------------------------------------------
# the disk


def _read(path: str, display: str) -> str:
    """Read a config file as UTF-8 text, turning every way that fails into a ConfigIssue."""
    if not os.path.exists(path):
        raise ConfigError(ConfigIssue(display, 1, 1, "no such file; expected a windows.yaml "
                                                     "(give --config PATH or set MAINTD_CONFIG)"))
    if os.path.isdir(path):
        raise ConfigError(ConfigIssue(display, 1, 1, "is a directory; expected a YAML file"))
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise ConfigError(ConfigIssue(display, 1, 1, f"file is {size / 1048576:.1f} MiB; expected at most "
                                                         f"{MAX_BYTES // 1048576} MiB of YAML"))
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(ConfigIssue(display, 1, 1, f"cannot read: {exc.strerror or exc}")) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(ConfigIssue(display, line, col, f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; "
                                                          "expected a UTF-8 text file")) from None


def load(path: str, env: Mapping[str, str] | None = None) -> model.Config:
    """Read and parse ``path`` (and its tenants_file). Raises ConfigError."""
    env = os.environ if env is None else env
    text = _read(path, path)
    base = os.path.dirname(os.path.abspath(path))

    def read_file(rel: str) -> tuple[str, str]:
        full = rel if os.path.isabs(rel) else os.path.join(base, rel)
        display = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        return display, _read(full, display)

    return parse(text, path, env, read_file)
