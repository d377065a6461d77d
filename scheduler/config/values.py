"""The rules of single values in windows.yaml: durations, zones, ids, names, secrets.

Each rule raises ValueError with a message that names what is expected; the Annotated
types at the end attach them to the fields of :mod:`.schema`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import unicodedata
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, WithJsonSchema

from .. import messages
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


_ZONES: set[str] = set()  # names that passed below: 100,000 tenants name a few dozen zones


def _zone(v: Any) -> str:
    if type(v) is str and v in _ZONES:
        return v
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected an IANA time zone such as Europe/Berlin, got {v!r}")
    if v.lower() in ("local", "localtime"):
        raise ValueError(f'"{v}" depends on the machine; write an IANA zone such as Europe/Berlin or UTC')
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f'unknown time zone "{v}"; expected an IANA name such as Europe/Berlin or UTC') from None
    if len(_ZONES) < 1024:
        _ZONES.add(v)
    return v


def _timestamp(v: Any) -> str:
    if isinstance(v, str):
        try:
            datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            return v.strip()
        except ValueError:
            pass
    raise ValueError(f"expected a time like 2026-12-05T22:00 (local) or 2026-12-05T21:00Z, got {v!r}")


def str_list(v: Any) -> list:
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
    if type(v) is str and v.isascii() and v.isprintable():  # what normalise_id leaves as it is
        return v
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


def id_or_same(v: Any) -> Any:
    try:
        return normalise_id(v) if isinstance(v, str) else v
    except ValueError:
        return v


def _kind(v: Any) -> Any:
    return _normalised(v, normalise_kind, "kind")


def _one_line(v: str, info: ValidationInfo) -> str:
    # A line break in a name splits an email header or a notice line; other control
    # characters cannot be shown at all.
    if v.isascii() and v.isprintable():  # most names: no line break or control character in them
        return v
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


# Only URLs that urlparse reads as http(s) with a host: the common case, without its cost.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/-]*)?")


def url(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected an http(s) URL, got {v!r}")
    if _PLAIN_URL.fullmatch(v):
        return v
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


def _socket_path(v: Any) -> Any:
    # sockaddr_un holds 108 bytes with the terminating NUL; bind() fails later, and less clearly
    if isinstance(v, str) and not v:
        raise ValueError("expected a path for the unix socket, got an empty string")
    if isinstance(v, str) and len(os.fsencode(v)) > 107:
        raise ValueError(f"socket path is {len(os.fsencode(v))} bytes; a unix socket path has at most 107")
    return v


def _at_least_1s(d: timedelta) -> timedelta:
    if d < timedelta(seconds=1):
        raise ValueError(f"expected at least 1s, got {format_duration(d)}")
    return d


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _rate(v: Any) -> float:
    """``50/s``, ``100/m``, ``1000/h`` -> messages per second (a relay's throttle)."""
    m = _RATE_RE.match(v) if isinstance(v, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"expected a rate like 50/s, 100/m or 1000/h (more than 0), got {v!r}")
    return float(m.group(1)) / _PER[m.group(2)]


_DUR_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "10m", "4h", "1h30m"]}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DUR_SCHEMA)]
Wait = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_at_least_1s), WithJsonSchema(_DUR_SCHEMA)]
Rate = Annotated[
    float,
    BeforeValidator(_rate),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?/[smh]$", "examples": ["50/s"]}),
]
Zone = Annotated[str, BeforeValidator(_zone), WithJsonSchema({"type": "string", "examples": ["Europe/Berlin"]})]
Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "examples": ["2026-12-05T22:00", "2026-12-05T21:00:00Z"]}),
]
Argv = Annotated[list[str], BeforeValidator(_argv)]
Kinds = Annotated[list[Annotated[str, BeforeValidator(_kind)]], BeforeValidator(str_list)]
TenantId = Annotated[str, BeforeValidator(_tenant_id)]
StrList = Annotated[list[str], BeforeValidator(str_list)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Email = Annotated[str, BeforeValidator(_email)]
Emails = Annotated[list[Email], BeforeValidator(str_list)]  # one address may be written alone
Url = Annotated[str, BeforeValidator(url)]
Secret = Annotated[str, BeforeValidator(_secret)]
Message = Annotated[str, BeforeValidator(_message)]
SkipDate = Annotated[date, BeforeValidator(_skip_date), WithJsonSchema({"type": "string", "format": "date"})]
Listen = Annotated[str, BeforeValidator(listen)]
SocketPath = Annotated[str, BeforeValidator(_socket_path)]
Name = Annotated[str, AfterValidator(_one_line)]  # shown in headers and notices: one printable line

# Field names whose values are never shown in a message (values from ${VAR} neither).
SECRET_FIELDS = frozenset({"password", "secret", "token", "api_key", "routing_key", "notify_urls", "urls"})
