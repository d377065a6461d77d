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
import errno
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from . import messages, model, recurrence
from .duration import parse_duration
from .errors import ConfigError, ConfigIssue

MAX_BYTES = 4 * 1024 * 1024  # a windows.yaml of 10,000 tenants is ~2 MB; beyond this is a mistake
MAX_NODES = 2_000_000  # guards alias bombs ("billion laughs")
MAX_ALIASED = 250_000  # values that aliases may add; sharing a label set across 10,000 tenants is ~30,000
MAX_DEPTH = 64  # a config nests ~6 levels; libyaml's own composer crashes on deep input

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
        self._unset: set[tuple[str, int, int]] = set()

    def add(self, issue: ConfigIssue) -> None:
        # A value whose ${VAR} is unset was read as "": what later passes say about that
        # empty value ("invalid webhook secret") only repeats the one real problem.
        if (issue.file, issue.line, issue.col) in self._unset and issue.severity == "error":
            return
        if issue not in self.issues:
            self.issues.append(issue)

    def add_unset(self, issue: ConfigIssue) -> None:
        """An unset environment variable; later errors at the same place are dropped."""
        if issue not in self.issues:
            self.issues.append(issue)
        self._unset.add((issue.file, issue.line, issue.col))

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "warning"]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = yaml.resolver.Resolver()
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


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


def _resolve(ev: yaml.ScalarEvent) -> str:
    tag = ev.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return tag


def _typed(ev: yaml.ScalarEvent) -> Any:
    if ev.style:  # quoted and block scalars are always text
        return ev.value
    tag = _resolve(ev)
    if tag == _INT or tag == _FLOAT or tag == _BOOL or tag == _NULL:
        return _scalar(yaml.ScalarNode(tag, ev.value, style=ev.style))
    return ev.value


class _Dummy(yaml.SafeLoader):
    def __init__(self) -> None:  # constructors above need only the class's tables
        pass


_DUMMY = _Dummy()


class _Abort(Exception):
    """Reading cannot go on (too deep, alias bomb, recursive alias): this one issue only."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _Frame:
    __slots__ = ("path", "out", "is_map", "key", "anchor", "first", "record")

    def __init__(self, path: Path, is_map: bool, anchor: str | None, first: int) -> None:
        self.path = path
        self.is_map = is_map
        self.out: Any = {} if is_map else []
        self.key: Any = _NO_KEY
        self.anchor = anchor
        self.first = first  # node count when it opened: its expanded size at the end
        self.record: list | None = None


@dataclass
class _Anchor:
    value: Any
    size: int  # values it expands to
    marks: list  # [(relative path, (line, col))]
    key_marks: list


_NO_KEY = object()  # a mapping waits for its next key
_SKIP = object()  # the next value belongs to a rejected key: read and drop it
_OPEN = object()  # an anchor whose node is still being read


def read_yaml(text: str, file: str, env: Mapping[str, str], col: _Collector) -> Source | None:
    """YAML text -> Source; syntax errors and unset variables go to ``col``.

    Built straight from the parser's events with an explicit stack, not with
    ``yaml.compose``: libyaml's composer recurses once per nesting level (a few tens
    of thousands of ``[`` crash the process), and an alias bomb or a recursive alias
    must be refused before it is expanded, not after.
    """
    src = Source(file=file, data=None)
    marks, key_marks = src.marks, src.key_marks
    pending: list[ConfigIssue] = []  # kept only if the YAML itself is valid
    unset: list[ConfigIssue] = []
    anchors: dict[str, Any] = {}
    recorders: list[list] = []  # [prefix length, marks, key marks] of the anchors being read
    stack: list[_Frame] = []
    root: Any = None
    count = 0  # values read, aliases counted at their expanded size
    aliased = 0  # of which added by aliases
    docs = 0
    discard = 0  # nesting depth of a node being dropped

    def at(ev: Any) -> tuple[int, int]:
        return ev.start_mark.line + 1, ev.start_mark.column + 1

    def abort(ev: Any, message: str) -> _Abort:
        return _Abort(ConfigIssue(file, *at(ev), message))

    def deliver(value: Any) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        parent = stack[-1]
        if parent.is_map:
            parent.out[parent.key] = value
            parent.key = _NO_KEY
        else:
            parent.out.append(value)

    try:
        for ev in yaml.parse(text, Loader=_Loader):
            t = type(ev)
            if discard:
                if t is yaml.MappingStartEvent or t is yaml.SequenceStartEvent:
                    discard += 1
                elif t is yaml.MappingEndEvent or t is yaml.SequenceEndEvent:
                    discard -= 1
                continue
            if (
                t is yaml.ScalarEvent
                or t is yaml.MappingStartEvent
                or t is yaml.SequenceStartEvent
                or t is yaml.AliasEvent
            ):
                collection = t is yaml.MappingStartEvent or t is yaml.SequenceStartEvent
                parent = stack[-1] if stack else None
                if parent is None:
                    path: Path = ()
                elif parent.is_map:
                    if parent.key is _SKIP:
                        parent.key = _NO_KEY
                        discard = 1 if collection else 0
                        continue
                    if parent.key is _NO_KEY:  # this node is a key
                        if t is not yaml.ScalarEvent:
                            pending.append(
                                ConfigIssue(file, *at(ev), "expected a plain key, got a mapping, list or alias as key")
                            )
                            parent.key = _SKIP
                            discard = 1 if collection else 0
                            continue
                        key = ev.value
                        if key == "<<" and not ev.style and _resolve(ev) == _MERGE:
                            pending.append(
                                ConfigIssue(file, *at(ev), "merge keys (<<) are not supported; write the keys out")
                            )
                            parent.key = _SKIP
                            continue
                        kp = parent.path + (key,)
                        if key in parent.out or kp in key_marks:
                            first = key_marks.get(kp, (0, 0))[0]
                            pending.append(ConfigIssue(file, *at(ev), f'duplicate key "{key}" (first at line {first})'))
                            parent.key = _SKIP
                            continue
                        key_marks[kp] = at(ev)
                        for r in recorders:
                            r[2].append((kp[r[0] :], key_marks[kp]))
                        parent.key = key
                        continue
                    path = parent.path + (parent.key,)
                else:
                    path = parent.path + (len(parent.out),)

                mark = at(ev)
                count += 1
                if t is yaml.AliasEvent:
                    a = anchors.get(ev.anchor)
                    if a is None:
                        raise abort(ev, f'invalid YAML: undefined alias "*{ev.anchor}"')
                    if a is _OPEN:
                        raise abort(
                            ev,
                            f'alias "*{ev.anchor}" refers to the node that contains it; '
                            "expected a plain config without recursive aliases",
                        )
                    count += a.size - 1
                    aliased += a.size
                    if count > MAX_NODES or aliased > MAX_ALIASED:
                        raise abort(
                            ev,
                            f"aliases expand to more than {min(MAX_NODES, MAX_ALIASED)} values at "
                            f'"*{ev.anchor}" (an alias bomb?); expected a plain config',
                        )
                    for rel, pos in a.marks:
                        marks[path + rel] = pos
                    for rel, pos in a.key_marks:
                        key_marks[path + rel] = pos
                    marks[path] = mark  # the value as a whole: where it is used
                    for r in recorders:
                        r[1].extend((path[r[0] :] + rel, pos) for rel, pos in a.marks)
                        r[2].extend((path[r[0] :] + rel, pos) for rel, pos in a.key_marks)
                    deliver(a.value)
                    continue
                if ev.anchor is not None and ev.anchor in anchors:
                    raise abort(ev, f'invalid YAML: duplicate anchor "&{ev.anchor}"')
                marks[path] = mark
                for r in recorders:
                    r[1].append((path[r[0] :], mark))
                if t is yaml.ScalarEvent:
                    value = _typed(ev)
                    if isinstance(value, str) and "$" in value:

                        def report(msg: str, _mark: tuple[int, int] = mark) -> None:
                            unset.append(ConfigIssue(file, *_mark, msg))

                        value = _expand(value, env, report)
                    if ev.anchor is not None:
                        anchors[ev.anchor] = _Anchor(value=value, size=1, marks=[((), mark)], key_marks=[])
                    deliver(value)
                    continue
                if len(stack) >= MAX_DEPTH:
                    raise abort(ev, f"nested more than {MAX_DEPTH} levels deep; expected a plain config")
                frame = _Frame(path, t is yaml.MappingStartEvent, ev.anchor, count)
                if ev.anchor is not None:
                    anchors[ev.anchor] = _OPEN
                    frame.record = [len(path), [((), mark)], []]
                    recorders.append(frame.record)
                stack.append(frame)
            elif t is yaml.MappingEndEvent or t is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame.anchor is not None:
                    recorders.pop()  # anchored frames close innermost first
                    anchors[frame.anchor] = _Anchor(
                        value=frame.out, size=count - frame.first + 1, marks=frame.record[1], key_marks=frame.record[2]
                    )
                deliver(frame.out)
            elif t is yaml.DocumentStartEvent:
                docs += 1
                if docs > 1:
                    raise abort(
                        ev,
                        "invalid YAML: expected a single document, found a second one "
                        "(a --- line); put everything in one document",
                    )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        lines = text.split("\n", line)
        if mark and line <= len(lines) and lines[line - 1][column - 1 : column] == "\t":
            what = "a tab character; YAML is indented with spaces"
        col.add(ConfigIssue(file, line, column, f"invalid YAML: {what}"))
        return None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        col.add(
            ConfigIssue(
                file,
                line,
                column,
                f"invalid YAML: control character 0x{char:02x} is not allowed; expected printable text",
            )
        )
        return None
    except yaml.YAMLError as exc:
        col.add(ConfigIssue(file, 1, 1, f"invalid YAML: {exc}"))
        return None
    except _Abort as exc:
        col.add(exc.issue)
        return None
    if docs == 0:
        col.add(ConfigIssue(file, 1, 1, "the file is empty; expected a mapping with version: 1"))
        return None
    for issue in pending:
        col.add(issue)
    for issue in unset:
        col.add_unset(issue)
    src.data = root
    return src


def _expand(value: str, env: Mapping[str, str], report: Callable[[str], None]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got is None or (got == "" and default is not None):
            if default is not None:
                return default
            report(
                f'environment variable "{name}" is not set (set it, or write ${{{name}:-default}} to give a default)'
            )
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


def _url(v: Any) -> str:
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


def _listen(v: Any) -> str:
    if isinstance(v, str):
        host, _, port = v.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return v
    raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8787, got {v!r}")


_DUR_SCHEMA = {"type": "string", "pattern": r"^(\d+[wdhms])+$", "examples": ["30s", "10m", "4h", "1h30m"]}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DUR_SCHEMA)]
Zone = Annotated[str, BeforeValidator(_zone), WithJsonSchema({"type": "string", "examples": ["Europe/Berlin"]})]
Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "examples": ["2026-12-05T22:00", "2026-12-05T21:00:00Z"]}),
]
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
    name: str | None = None
    timezone: Zone | None = None
    labels: dict[str, LabelValue] = {}
    email: Annotated[list[Email], BeforeValidator(_str_list)] = []
    webhook: WebhookModel | None = None


class TenantsFileModel(_M):
    tenants: list[TenantModel]


class ProviderModel(_M):
    name: str
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
    sender: str = "maintd <maintd@localhost>"
    timeout: Duration = timedelta(seconds=10)


class WebhookSettingsModel(_M):
    timeout: Duration = timedelta(seconds=5)


def _retry_base(v: Any) -> timedelta:
    d = _duration(v)
    if d < timedelta(seconds=1):
        raise ValueError(f"retry_base must be at least 1s, got {v!r}")
    return d


class NotifiersModel(_M):
    email: EmailModel | None = None
    webhook: WebhookSettingsModel = WebhookSettingsModel()
    templates: str | None = Field(default=None, description="directory of your own notice templates")
    max_attempts: int = Field(default=8, ge=1, le=100, description="tries per delivery before it is failed")
    max_age: Duration = Field(
        default=timedelta(hours=24), description="a delivery older than this is failed instead of sent late"
    )
    retry_base: Annotated[timedelta, BeforeValidator(_retry_base), WithJsonSchema(_DUR_SCHEMA)] = Field(
        default=timedelta(seconds=30),
        description="delay before the first retry; doubles per attempt (with jitter), at most 1h",
    )


class MatchModel(_M):
    kind: StrList | None = None
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
    if v == "all" or isinstance(v, (list, dict)):
        return v
    if isinstance(v, str):  # a single id reads naturally: `tenants: acme`
        return [v]
    raise ValueError(f"expected all, a list of tenant ids, or {{labels: {{key: value}}}}, got {v!r}")


TenantSelector = Annotated[
    Any,
    BeforeValidator(_tenant_selector),
    WithJsonSchema(
        {
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
    ),
]


class WindowModel(_M):
    id: str = Field(pattern=WINDOW_ID_RE.pattern)
    title: str | None = None
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


class DaemonModel(_M):
    listen: Listen = "127.0.0.1:8787"
    database: str = "maintd.db"
    token_file: str | None = None
    public_url: Url | None = None


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


def _pydantic_issues(
    exc: ValidationError, src: Source, prefix: Path, model_cls: type[BaseModel], col: _Collector
) -> None:
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        kind = err["type"]
        rel = tuple(err["loc"])
        if kind == "missing":
            name = rel[-1] if rel else "?"
            where = _describe(loc[:-1], src.data)
            col.add(src.issue(loc[:-1], f'missing required key "{name}"{where}'))
        elif kind == "extra_forbidden":
            owner = _owner_model(model_cls, rel[:-1])
            expected = f" (expected one of: {_fields(owner)})" if owner else ""
            col.add(src.issue(loc, f'unknown key "{rel[-1]}"{_describe(loc[:-1], src.data)}{expected}', key=True))
        else:
            msg = err["msg"]
            for p in ("Value error, ", "Assertion failed, "):
                if msg.startswith(p):
                    msg = msg[len(p) :]
            if kind == "literal_error" and rel and rel[-1] == "version":
                got = err.get("input")
                msg = f"unsupported version {f'{got!r}' if isinstance(got, str) else got}; expected version: 1"
            elif kind == "string_pattern_mismatch":
                field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
                pattern = err.get("ctx", {}).get("pattern", "")
                shown = err.get("input")
                if field_name == "id" and pattern == ID_RE.pattern:
                    msg = (
                        f'invalid tenant id "{shown}"; expected lowercase letters, digits, "-" and "_", '
                        "starting with a letter or digit (e.g. acme-eu)"
                    )
                elif field_name == "id" and pattern == WINDOW_ID_RE.pattern:
                    msg = (
                        f'invalid window id "{shown}"; expected letters, digits, ".", "-" and "_", '
                        "starting with a letter or digit (e.g. storage-firmware)"
                    )
                else:
                    msg = f'invalid {field_name} "{shown}"; expected to match {pattern}'
            elif kind in (
                "int_parsing",
                "int_type",
                "bool_parsing",
                "bool_type",
                "string_type",
                "list_type",
                "dict_type",
                "model_type",
                "model_attributes_type",
                "literal_error",
                "greater_than_equal",
                "less_than_equal",
                "int_from_float",
            ):
                field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
                shown = (
                    "a mapping"
                    if isinstance(err.get("input"), dict)
                    else ("a list" if isinstance(err.get("input"), list) else repr(err.get("input")))
                )
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


_ITEM_NAMES = {"windows": "window", "tenants": "tenant"}


def _describe(path: Path, data: Any = None) -> str:
    """Where a problem is, in words: ' in window "patch"', ' in tenant "acme".webhook'."""
    node, where = data, []
    for part in path:
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
        if isinstance(part, int):
            if where and where[-1] in _ITEM_NAMES:
                label = _ITEM_NAMES[where[-1]]
                ident = node.get("id") if isinstance(node, dict) else None
                where[-1] = f'{label} "{ident}"' if isinstance(ident, str) else f"{label} {part + 1}"
            continue
        where.append(str(part))
    if not where:
        return ""
    return f" in {where[-1]}" if len(where) == 1 else f" in {'.'.join(where[-2:])}"


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


# ---------------------------------------------------------------------------
# pass 3: meaning and cross-references -> frozen model


def _to_utc(text: str, zone: ZoneInfo) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        return recurrence.resolve_local(ts, zone)
    return ts.astimezone(model.UTC)


def parse(
    text: str,
    file: str,
    env: Mapping[str, str] | None = None,
    read_file: Callable[[str], tuple[str, str]] | None = None,
) -> model.Config:
    """Parse windows.yaml text. ``read_file(relative)`` returns (display name, text) for
    ``tenants_file`` (``load`` supplies one that reads the disk); raises ConfigError."""
    env = {} if env is None else env
    col = _Collector()
    src = read_yaml(text, file, env, col)
    if src is None:
        raise ConfigError(_main_first(col.issues, file))
    if not isinstance(src.data, dict):
        col.add(src.issue((), "expected a mapping at the top level (version: 1, provider: ..., windows: ...)"))
        raise ConfigError(_main_first(col.issues, file))
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
    window_models: list[tuple[int, WindowModel | None, Any]] = []
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
    unreadable = False  # the tenants could not be read: windows' references cannot be checked
    if has_inline and tenants_file is not None:
        col.add(src.issue(("tenants_file",), "give either tenants or tenants_file, not both", key=True))
    elif tenants_file is not None:
        if not isinstance(tenants_file, str) or read_file is None:
            col.add(src.issue(("tenants_file",), "expected a path to a tenants file relative to this file"))
            unreadable = True
        else:
            try:
                name, ttext = read_file(tenants_file)
            except ConfigError as exc:
                for issue in exc.issues:
                    col.add(issue)
                name, ttext = None, None
                unreadable = True
            except FileNotFoundError as exc:
                col.add(
                    src.issue(
                        ("tenants_file",),
                        f'tenants_file "{tenants_file}" does not exist '
                        f"(looked for {exc.filename}); expected a path relative "
                        f"to {os.path.basename(file)}",
                    )
                )
                name, ttext = None, None
                unreadable = True
            except OSError as exc:
                col.add(
                    src.issue(("tenants_file",), f'cannot read tenants_file "{tenants_file}": {exc.strerror or exc}')
                )
                name, ttext = None, None
                unreadable = True
            if ttext is not None:
                tsrc = read_yaml(ttext, name, env, col)
                unreadable = tsrc is None
                if tsrc is not None:
                    if not isinstance(tsrc.data, dict) or "tenants" not in tsrc.data:
                        col.add(tsrc.issue((), "expected a mapping with a tenants: list"))
                        unreadable = True
                    else:
                        tenants_src, raw_tenants = tsrc, tsrc.data["tenants"]
                        # The file's own keys here; its tenants one by one below, like inline
                        # ones, so one bad tenant does not make the windows' references to
                        # the good ones fail too.
                        try:
                            TenantsFileModel.model_validate({**tsrc.data, "tenants": []})
                        except ValidationError as exc:
                            _pydantic_issues(exc, tsrc, (), TenantsFileModel, col)
    if raw_tenants is not None:
        if not isinstance(raw_tenants, list):
            col.add(tenants_src.issue(("tenants",), "expected a list of tenants"))
            raw_tenants = None
            unreadable = True
    # ids of tenants that did not validate: their own errors say why, so windows naming
    # them do not also get "unknown tenant"
    broken: Any = _EVERY_ID if unreadable else set()
    if raw_tenants is not None:
        for i, raw in enumerate(raw_tenants):
            try:
                tenant_models.append((i, TenantModel.model_validate(raw)))
            except ValidationError as exc:
                _pydantic_issues(exc, tenants_src, tenants_prefix + (i,), TenantModel, col)
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    broken.add(raw["id"])

    if cfg is None:
        # Still check what can be checked: references from windows to tenants and policies.
        cfg = ConfigModel.model_construct(
            version=1,
            provider=ProviderModel.model_construct(name="?", timezone="UTC", message=None, policy=None),
            policies={k: PolicyModel() for k in (data.get("policies") or {}) if isinstance(data.get("policies"), dict)}
            if isinstance(data.get("policies"), dict)
            else {},
            notifiers=NotifiersModel(),
            daemon=DaemonModel(),
            hooks=None,
        )
        _build(cfg, src, tenants_src, tenant_models, window_models, file, col, broken)
        raise ConfigError(_main_first(col.issues, file))
    result = _build(cfg, src, tenants_src, tenant_models, window_models, file, col, broken)
    result = _daemon_env(result, env, col)
    if col.errors:
        raise ConfigError(_main_first(col.issues, file))
    return result


class _EveryId:
    """Stands for the ids of a tenants file that could not be read: any id may be in it."""

    def __contains__(self, item: object) -> bool:
        return True

    def add(self, item: object) -> None:
        pass


_EVERY_ID = _EveryId()


def _main_first(issues: list[ConfigIssue], file: str) -> list[ConfigIssue]:
    """windows.yaml's own problems before those of its tenants_file (ConfigError keeps the
    files in the order they first appear)."""
    return sorted(issues, key=lambda i: i.file != file)


def _lead_labels(window: Any, leads: list[timedelta]) -> dict[timedelta, str]:
    raw = window.get("notify", []) if isinstance(window, dict) else []
    out: dict[timedelta, str] = {}
    for text, lead in zip(raw if isinstance(raw, list) else [], leads):
        out.setdefault(lead, str(text).strip())
    return out


def _check_refs(
    raw: Any,
    wp: Path,
    tenants: Mapping,
    policies: Mapping,
    src: Source,
    col: _Collector,
    broken: frozenset[str] | set[str] = frozenset(),
) -> None:
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
            if isinstance(tid, str) and tid not in tenants and tid not in broken:
                col.add(src.issue(wp + ("tenants", j), f'unknown tenant "{tid}" in window "{wid}"'))


def _select(
    tenants: Mapping[str, model.Tenant], labels: Mapping[str, str], by_label: Mapping[tuple[str, str], set[str]]
) -> frozenset[str]:
    """Tenants that carry every one of ``labels`` (no labels: all tenants)."""
    if not labels:
        return frozenset(tenants)
    sets = sorted((by_label.get(kv, set()) for kv in labels.items()), key=len)
    return frozenset(sets[0].intersection(*sets[1:]))


# SPEC section 5: every key of the daemon block has an environment override.
DAEMON_ENV = {
    "listen": "MAINTD_LISTEN",
    "database": "MAINTD_DATABASE",
    "token_file": "MAINTD_TOKEN_FILE",
    "public_url": "MAINTD_PUBLIC_URL",
}


def _daemon_env(cfg: model.Config, env: Mapping[str, str], col: _Collector) -> model.Config:
    changes: dict[str, str] = {}
    checks = {"listen": _listen, "public_url": _url}
    for key, var in DAEMON_ENV.items():
        value = env.get(var)
        if not value:
            continue
        try:
            value = checks[key](value) if key in checks else value
        except ValueError as exc:
            col.add(ConfigIssue(f"${var}", 1, 1, f"{var}: {exc}"))
            continue
        changes[key] = value.rstrip("/") if key == "public_url" else value
    if not changes:
        return cfg
    return replace(cfg, daemon=replace(cfg.daemon, **changes))


def _build(
    cfg: ConfigModel,
    src: Source,
    tsrc: Source,
    tenant_models: list,
    window_models: list,
    file: str,
    col: _Collector,
    broken: frozenset[str] | set[str] = frozenset(),
) -> model.Config:
    provider_zone = ZoneInfo(cfg.provider.timezone)
    provider = model.Provider(
        name=cfg.provider.name,
        zone=provider_zone,
        policy=cfg.provider.policy,
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
            id=t.id,
            name=t.name or t.id,
            zone=ZoneInfo(t.timezone) if t.timezone else provider_zone,
            labels=dict(t.labels),
            email=tuple(t.email),
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
            rules.append(
                model.Rule(
                    effect="allow" if r.allow is not None else "deny",
                    kinds=frozenset(match.kind) if match.kind else None,
                    resources=frozenset(match.resource) if match.resource else None,
                    labels=dict(match.labels),
                    message=r.message,
                )
            )
        policies[name] = model.Policy(name=name, default=p.default, rules=tuple(rules))
    if provider.policy is not None and provider.policy not in policies:
        col.add(src.issue(("provider", "policy"), f'undefined policy "{provider.policy}" used in provider'))

    def hooks_of(h: HooksModel | None) -> model.Hooks | None:
        if h is None:
            return None
        return model.Hooks(
            on_start=tuple(h.on_start) if h.on_start else None,
            on_end=tuple(h.on_end) if h.on_end else None,
            timeout=h.timeout,
        )

    # label -> tenants, built once: 300 windows x 10,000 tenants is 3 million comparisons
    by_label: dict[tuple[str, str], set[str]] = {}
    for t in tenants.values():
        for kv in t.labels.items():
            by_label.setdefault(kv, set()).add(t.id)

    windows: list[model.Window] = []
    seen: dict[str, int] = {}
    for i, w, raw in window_models:
        wp = ("windows", i)
        line = src.at(wp)[0]
        if w is None:
            _check_refs(raw, wp, tenants, policies, src, col, broken)
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
                if isinstance(tid, str) and tid in broken:
                    ok = False  # its own error is reported where it is declared
                elif not isinstance(tid, str) or tid not in tenants:
                    col.add(src.issue(wp + ("tenants", j), f'unknown tenant "{tid}" in window "{w.id}"'))
                    ok = False
                else:
                    chosen.add(tid)
            members = frozenset(chosen)
        else:
            try:
                labels = LabelSelectorModel.model_validate(sel).labels
            except ValidationError:
                col.add(src.issue(wp + ("tenants",), "expected all, a list of tenant ids, or {labels: {key: value}}"))
                continue
            members = _select(tenants, labels, by_label)
            if not members:
                shown = ", ".join(f"{k}: {v}" for k, v in labels.items())
                col.add(
                    src.issue(
                        wp + ("tenants",), f'labels {{{shown}}} in window "{w.id}" match no tenant', severity="warning"
                    )
                )
        # time
        start = end = None
        duration = w.duration
        if w.cron is not None:
            for bad in ("start", "end"):
                if getattr(w, bad) is not None:
                    col.add(
                        src.issue(
                            wp + (bad,), f'window "{w.id}" is recurring (cron); it takes duration, not {bad}', key=True
                        )
                    )
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
                col.add(
                    src.issue(
                        wp + ("skip",),
                        f'skip applies only to recurring windows (cron); window "{w.id}" is one-off',
                        key=True,
                    )
                )
                ok = False
            if w.start is None:
                col.add(src.issue(wp, f'window "{w.id}" needs start (one-off) or cron (recurring)'))
                ok = False
            else:
                start = _to_utc(w.start, zone)
                if w.end is not None and duration is not None:
                    col.add(
                        src.issue(wp + ("duration",), f'window "{w.id}" has both end and duration; give one', key=True)
                    )
                    ok = False
                elif w.end is not None:
                    end = _to_utc(w.end, zone)
                    if end <= start:
                        how = "equals" if end == start else "is before"
                        col.add(
                            src.issue(
                                wp + ("end",),
                                f"end {w.end} {how} start {w.start} in window "
                                f'"{w.id}"; expected an end after the start',
                            )
                        )
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
        windows.append(
            model.Window(
                id=w.id,
                title=w.title or w.id,
                zone=zone,
                tenants=members,
                start=start,
                end=end if end is not None else (start + duration if start is not None else None),
                duration=duration,
                cron=w.cron,
                resources=frozenset(w.resources) if w.resources else None,
                notify=tuple(sorted(set(w.notify), reverse=True)),
                lead_labels=_lead_labels(raw, w.notify),
                policy=w.policy,
                drain=model.Drain(grace=w.drain.grace, then=w.drain.then),
                message=w.message,
                cancelled=w.cancelled,
                hooks=hooks_of(w.hooks),
                skip=frozenset(w.skip),
                end_check=model.EndCheck(
                    run=tuple(w.end_check.run) if w.end_check.run else None,
                    url=w.end_check.url,
                    every=w.end_check.every,
                    max=w.end_check.max,
                )
                if w.end_check
                else None,
                line=line,
            )
        )

    n = cfg.notifiers
    if n.email is None:
        # Addresses with nowhere to send from: say so once, at the first tenant that has them.
        mailed = [(i, t) for i, t in tenant_models if t.email]
        if mailed:
            i, t = mailed[0]
            col.add(
                tsrc.issue(
                    ("tenants", i, "email"),
                    f'{len(mailed)} tenant(s) have email addresses (first: "{t.id}") but notifiers.email '
                    "is not configured; no email will be sent",
                    severity="warning",
                )
            )
    email = None
    if n.email is not None:
        e = n.email
        email = model.EmailSettings(
            host=e.host,
            port=e.port,
            starttls=e.starttls,
            ssl=e.ssl,
            username=e.username,
            password=e.password,
            sender=e.sender,
            timeout=e.timeout,
        )
    base_dir = os.path.dirname(os.path.abspath(file))
    templates = os.path.join(base_dir, n.templates) if n.templates else None
    notifiers = model.Notifiers(
        email=email,
        webhook=model.WebhookSettings(timeout=n.webhook.timeout),
        templates=templates,
        max_attempts=n.max_attempts,
        max_age=n.max_age,
        retry_base=n.retry_base,
    )
    d = cfg.daemon
    daemon = model.DaemonSettings(
        listen=d.listen,
        database=d.database,
        token_file=d.token_file,
        public_url=d.public_url.rstrip("/") if d.public_url else None,
    )
    return model.Config(
        path=os.path.abspath(file),
        provider=provider,
        tenants=tenants,
        windows=tuple(windows),
        policies=policies,
        notifiers=notifiers,
        daemon=daemon,
        hooks=hooks_of(cfg.hooks),
        warnings=tuple(str(i) for i in col.warnings),
    )


# ---------------------------------------------------------------------------
# the disk


def _read(path: str, display: str) -> str:
    """Read a config file as UTF-8 text, turning every way that fails into a ConfigIssue."""
    if not os.path.exists(path):
        raise ConfigError(
            ConfigIssue(
                display, 1, 1, "no such file; expected a windows.yaml (give --config PATH or set MAINTD_CONFIG)"
            )
        )
    if os.path.isdir(path):
        raise ConfigError(ConfigIssue(display, 1, 1, "is a directory; expected a YAML file"))
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise ConfigError(
                ConfigIssue(
                    display,
                    1,
                    1,
                    f"file is {size / 1048576:.1f} MiB; expected at most {MAX_BYTES // 1048576} MiB of YAML",
                )
            )
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
        raise ConfigError(
            ConfigIssue(display, line, col, f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; expected a UTF-8 text file")
        ) from None


def load(path: str, env: Mapping[str, str] | None = None) -> model.Config:
    """Read and parse ``path`` (and its tenants_file). Raises ConfigError."""
    env = os.environ if env is None else env
    text = _read(path, path)
    base = os.path.dirname(os.path.abspath(path))

    def read_file(rel: str) -> tuple[str, str]:
        full = rel if os.path.isabs(rel) else os.path.join(base, rel)
        display = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        if not os.path.exists(full):  # reported where windows.yaml names it, not as "no windows.yaml"
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), full)
        return display, _read(full, display)

    return parse(text, path, env, read_file)
