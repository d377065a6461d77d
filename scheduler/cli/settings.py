"""Where a client command finds the daemon, and which token it sends.

A client needs five keys of windows.yaml (``daemon.listen``, ``daemon.socket`` and the
three token files) and nothing else, so it reads only those: a config whose windows are
invalid, or whose webhook secrets name variables a cron shell does not set, must not
stop ``maintd status`` or ``maintd exec``. What it cannot do is guess: when even these
keys cannot be read (a missing file named by --config or MAINTD_CONFIG, broken YAML, an
unset variable in ``daemon.listen``) the command fails with ``FILE:LINE:COL`` and exit
2, never quietly talking to the default address, which may be another daemon or none.

``provider.timezone`` is read too, leniently: it is only the zone tables are shown in.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from ..errors import MaintdError

DEFAULT_LISTEN = "127.0.0.1:8787"
CLIENT_KEYS = ("listen", "socket", "token_file", "gate_token_file", "read_token_file")
MAX_BYTES = 64 * 1024 * 1024  # as the daemon's loader: beyond this is a mistake
MAX_TOKEN_BYTES = 4096
MAX_DEPTH = 64  # libyaml's composer crashes on deep input; events and a counter do not
# Which token each kind of call sends: the first scope that is configured.
SCOPES = {"admin": ("admin",), "gate": ("gate", "admin"), "read": ("read", "admin")}
_TOKEN_ENV = {
    "admin": ("MAINTD_TOKEN", "MAINTD_TOKEN_FILE", "token_file"),
    "gate": ("MAINTD_GATE_TOKEN", "MAINTD_GATE_TOKEN_FILE", "gate_token_file"),
    "read": ("MAINTD_READ_TOKEN", "MAINTD_READ_TOKEN_FILE", "read_token_file"),
}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULLS = {"", "~", "null", "Null", "NULL"}


class SettingsError(MaintdError):
    """The daemon's address or a token cannot be read from the config: exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Value:
    """A setting and where it came from (``FILE:LINE:COL`` or ``$VAR``), for error messages."""

    text: str
    where: str


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """How to reach the daemon: ``url`` over TCP, or ``socket`` (a unix socket, no token)."""

    config_path: str
    url: str
    socket: str | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    token_sources: Mapping[str, Value] = field(default_factory=dict, repr=False)  # scope -> literal or file

    def token(self, scope: str) -> str | None:
        """The token for a call of ``scope`` (admin, gate, read); None over the socket or when none is set.

        A token file that is configured but cannot be read is an error: sending no token
        (or another scope's) would only turn it into a puzzling 401 later.
        """
        if self.socket:
            return None
        for candidate in SCOPES[scope]:
            source = self.token_sources.get(candidate)
            if source is not None:
                return _token(source)
        return None


def load(
    config_path: str, *, explicit: bool, url: str | None = None, env: Mapping[str, str] | None = None
) -> ClientSettings:
    """Read the client's settings from ``config_path`` and the environment (see the module doc)."""
    env = os.environ if env is None else env
    keys: dict[str, Value] = {}
    zone = ZoneInfo("UTC")
    text = _read(config_path, explicit)
    base = os.path.dirname(os.path.abspath(config_path))
    if text is not None:
        found = _scan(text, config_path)
        keys = {k: v for k, v in ((k, _expanded(found, k, config_path, env)) for k in CLIENT_KEYS) if v is not None}
        zone = _zone(found.get(("provider", "timezone")))
    listen = keys.get("listen")
    if env.get("MAINTD_LISTEN"):
        listen = Value(env["MAINTD_LISTEN"], "$MAINTD_LISTEN")
    listen = listen or Value(DEFAULT_LISTEN, "default")
    _check_listen(listen)
    socket = Value(env["MAINTD_SOCKET"], "$MAINTD_SOCKET") if env.get("MAINTD_SOCKET") else keys.get("socket")
    sources: dict[str, Value] = {}
    for scope, (literal, file_var, key) in _TOKEN_ENV.items():
        if env.get(literal):
            sources[scope] = Value(env[literal], "")  # a literal token: empty `where`
        elif env.get(file_var):
            sources[scope] = Value(_beside(env[file_var], base), f"${file_var}")
        elif key in keys:
            sources[scope] = Value(_beside(keys[key].text, base), keys[key].where)
    socket_path = _beside(socket.text, base) if socket else None
    if url or not socket_path or not _is_socket(socket_path):
        return ClientSettings(
            config_path=config_path, url=(url or listen_url(listen.text)).rstrip("/"), zone=zone, token_sources=sources
        )
    return ClientSettings(config_path=config_path, url="http://maintd", socket=socket_path, zone=zone)


def listen_url(listen: str) -> str:
    """``http://`` + a listen address; a wildcard host is reached on loopback."""
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _read(path: str, explicit: bool) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        if not explicit:
            return None  # no config here: the defaults (127.0.0.1:8787, MAINTD_* from the environment)
        raise SettingsError(f"{path}:1:1: no such file (named by --config or MAINTD_CONFIG)") from None
    except OSError as exc:
        raise SettingsError(f"{path}:1:1: cannot read the config: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SettingsError(f"{path}:1:1: the config is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}:1:1: the config is not UTF-8 ({exc.reason} at byte {exc.start})") from None


class _Frame:
    __slots__ = ("expect_key", "index", "is_map", "key", "path")

    def __init__(self, path: tuple | None, is_map: bool) -> None:
        self.path = path  # None inside a complex key: nothing there is ours
        self.is_map = is_map
        self.expect_key = True
        self.key: Any = None
        self.index = 0


def _scan(text: str, file: str) -> dict[tuple, Any]:
    """Scalar events at ``daemon.*`` and ``provider.*`` (other nodes there as their start mark).

    One pass over the parser's events, as the daemon's loader does; every YAML error
    anywhere is an error here too, since a broken file may hide a second ``daemon:``.
    """
    found: dict[tuple, Any] = {}
    try:
        for path, ev in _nodes(text, file):
            if path == ("daemon",) and not isinstance(ev, yaml.MappingStartEvent) and not _null(ev):
                raise _error(file, ev.start_mark, "daemon: expected a mapping of settings such as listen: HOST:PORT")
            if len(path) == 2 and path[0] in ("daemon", "provider"):
                if path in found:
                    raise _error(file, ev.start_mark, f"{'.'.join(path)}: duplicate key")
                found[path] = ev
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _error(file, mark, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{file}:1:1: invalid YAML: {exc}") from None
    return found


def _nodes(text: str, file: str) -> Iterator[tuple[tuple, Any]]:
    """(path, event) for every node that starts, values only (mapping keys are not yielded)."""
    stack: list[_Frame] = []
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, yaml.CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(ev, yaml.NodeEvent):
            continue
        parent = stack[-1] if stack else None
        path: tuple | None = ()
        if parent is not None and parent.is_map and parent.expect_key:
            parent.expect_key = False
            parent.key = ev.value if isinstance(ev, yaml.ScalarEvent) else None
            path = None  # a key: nothing below it is ours
        elif parent is not None:
            path = None if parent.path is None else (*parent.path, parent.key if parent.is_map else parent.index)
            parent.expect_key = True
            parent.index += 1
        if path is not None:
            yield path, ev
        if isinstance(ev, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise _error(file, ev.start_mark, f"nested deeper than {MAX_DEPTH} levels")
            stack.append(_Frame(path, isinstance(ev, yaml.MappingStartEvent)))


def _null(ev: Any) -> bool:
    return isinstance(ev, yaml.ScalarEvent) and ev.implicit[0] and ev.value in _NULLS


def _expanded(found: dict[tuple, Any], key: str, file: str, env: Mapping[str, str]) -> Value | None:
    """``daemon.<key>`` with ``${VAR}`` expanded; None when absent or null."""
    ev = found.get(("daemon", key))
    if ev is None or _null(ev):
        return None
    if not isinstance(ev, yaml.ScalarEvent):
        raise _error(file, ev.start_mark, f"daemon.{key}: expected a string")
    where = _where(file, ev.start_mark)

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got is None or (got == "" and default is not None):
            if default is not None:
                return default
            raise SettingsError(
                f'{where}: daemon.{key}: environment variable "{name}" is not set '
                f"(set it, or write ${{{name}:-default}} to give a default)"
            )
        return got

    return Value(_VAR.sub(sub, ev.value), where)


def _zone(ev: Any) -> ZoneInfo:
    if isinstance(ev, yaml.ScalarEvent) and "$" not in ev.value:
        try:
            return ZoneInfo(ev.value)
        except (ValueError, OSError):  # zoneinfo's errors; `maintd validate` names it
            pass
    return ZoneInfo("UTC")


def _check_listen(listen: Value) -> None:
    host, _, port = listen.text.rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise SettingsError(
            f"{listen.where}: daemon.listen: expected HOST:PORT such as 127.0.0.1:8787, got {listen.text!r}"
        )


def _token(source: Value) -> str:
    if not source.where:
        return source.text
    try:
        with open(source.text, "rb") as fh:
            token = fh.read(MAX_TOKEN_BYTES).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise SettingsError(
            f"{source.where}: cannot read the token file {source.text}: {exc.strerror or exc}"
        ) from None
    if not token:
        raise SettingsError(f"{source.where}: the token file {source.text} is empty")
    return token


def _beside(path: str, base: str) -> str:
    """A path relative to windows.yaml's directory, as the daemon resolves it."""
    return path if os.path.isabs(path) else os.path.join(base, path)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _where(file: str, mark: Any) -> str:
    return f"{file}:{mark.line + 1}:{mark.column + 1}"


def _error(file: str, mark: Any, message: str) -> SettingsError:
    return SettingsError(f"{_where(file, mark)}: {message}" if mark is not None else f"{file}:1:1: {message}")
