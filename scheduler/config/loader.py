"""The passes in order, and the disk: ``parse`` (pure; the environment is a parameter) and ``load``."""

from __future__ import annotations

import errno
import gc
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import model
from ..errors import ConfigError, ConfigIssue
from .build import Shapes, build, daemon_env
from .issues import shape_issues
from .schema import (
    ConfigModel,
    DaemonModel,
    NotifiersModel,
    PolicyModel,
    ProviderModel,
    TenantModel,
    TenantsFileModel,
    WindowModel,
)
from .source import Collector, Path, Source, read_yaml

MAX_BYTES = 64 * 1024 * 1024  # 100,000 tenants are ~17 MB of windows.yaml; beyond this is a mistake

ReadFile = Callable[[str], tuple[str, str]]


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


def _validate(cls: type[BaseModel], data: Any, src: Source, prefix: Path, col: Collector) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        shape_issues(exc, src, prefix, cls, col)
        return None


def parse(
    text: str,
    file: str,
    env: Mapping[str, str] | None = None,
    read_file: ReadFile | None = None,
) -> model.Config:
    """Parse windows.yaml text. ``read_file(relative)`` returns (display name, text) for
    ``tenants_file`` (``load`` supplies one that reads the disk); raises ConfigError."""
    env = {} if env is None else env
    # A large file makes a few hundred thousand small, acyclic objects (values, paths,
    # marks); cyclic GC passes over them would add a quarter to the parse, and find nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, file, env, read_file)
    finally:
        if enabled:
            gc.enable()


def _parse(text: str, file: str, env: Mapping[str, str], read_file: ReadFile | None) -> model.Config:
    col = Collector()
    src = read_yaml(text, file, env, col)
    if src is None:
        raise ConfigError(_main_first(col.issues, file))
    if not isinstance(src.data, dict):
        col.add(src.issue((), "expected a mapping at the top level (version: 1, provider: ..., windows: ...)"))
        raise ConfigError(_main_first(col.issues, file))
    data = dict(src.data)
    has_inline = "tenants" in data
    raw_tenants = data.pop("tenants", None)
    # Windows and tenants are validated one by one so that one bad window does not hide
    # the cross-reference errors of the others (all errors of a file in one run).
    raw_windows = data.pop("windows", [])
    cfg = _validate(ConfigModel, data, src, (), col)
    windows = _window_shapes(raw_windows, src, col)
    tsrc, raw_tenants, unreadable = src, raw_tenants, False
    if has_inline and data.get("tenants_file") is not None:
        col.add(src.issue(("tenants_file",), "give either tenants or tenants_file, not both", key=True))
    elif data.get("tenants_file") is not None:
        tsrc, raw_tenants, unreadable = _tenants_file(src, data["tenants_file"], env, read_file, col)
    tenants, broken = _tenant_shapes(tsrc, raw_tenants, unreadable, col)
    # Without a valid whole, still check what can be checked: references from windows.
    shapes = Shapes(cfg or _stand_in(data), src, tsrc, tenants, windows, file, broken)
    result = build(shapes, col)
    if cfg is not None:
        result = daemon_env(result, env, col)
    if cfg is None or col.errors:
        raise ConfigError(_main_first(col.issues, file))
    return result


def _stand_in(data: dict) -> ConfigModel:
    policies = data.get("policies")
    return ConfigModel.model_construct(
        version=1,
        provider=ProviderModel.model_construct(name="?", timezone="UTC", message=None, policy=None),
        policies={k: PolicyModel() for k in policies} if isinstance(policies, dict) else {},
        notifiers=NotifiersModel(),
        daemon=DaemonModel(),
        hooks=None,
    )


def _window_shapes(raw_windows: Any, src: Source, col: Collector) -> list[tuple[int, WindowModel | None, Any]]:
    if raw_windows is None:
        return []
    if not isinstance(raw_windows, list):
        col.add(src.issue(("windows",), "expected a list of windows"))
        return []
    return [(i, _validate(WindowModel, raw, src, ("windows", i), col), raw) for i, raw in enumerate(raw_windows)]


def _tenant_shapes(tsrc: Source, raw_tenants: Any, unreadable: bool, col: Collector) -> tuple[list, Any]:
    """(index, TenantModel) of the tenants that validate, and the ids of those that do not:
    their own errors say why, so windows naming them do not also get "unknown tenant"."""
    if raw_tenants is not None and not isinstance(raw_tenants, list):
        col.add(tsrc.issue(("tenants",), "expected a list of tenants"))
        raw_tenants, unreadable = None, True
    broken: Any = _EVERY_ID if unreadable else set()
    shapes = []
    for i, raw in enumerate(raw_tenants or []):
        shape = _validate(TenantModel, raw, tsrc, ("tenants", i), col)
        if shape is not None:
            shapes.append((i, shape))
        elif isinstance(raw, dict) and isinstance(raw.get("id"), str):
            broken.add(raw["id"])
        # The shape holds all later passes need; dropping each raw tenant once read keeps
        # the peak, and so a daemon's RSS (CPython seldom returns memory), ~70 MB lower at
        # 100,000 tenants.
        raw_tenants[i] = None
    return shapes, broken


def _tenants_file(
    src: Source, rel: Any, env: Mapping[str, str], read_file: ReadFile | None, col: Collector
) -> tuple[Source, Any, bool]:
    """(where the tenants are, the raw tenants list, whether it could not be read); errors name the file they are in."""
    failed = src, None, True
    if not isinstance(rel, str) or read_file is None:
        col.add(src.issue(("tenants_file",), "expected a path to a tenants file relative to this file"))
        return failed
    try:
        name, ttext = read_file(rel)
    except ConfigError as exc:
        for issue in exc.issues:
            col.add(issue)
        return failed
    except FileNotFoundError as exc:
        message = (
            f'tenants_file "{rel}" does not exist (looked for {exc.filename}); '
            f"expected a path relative to {os.path.basename(src.file)}"
        )
        col.add(src.issue(("tenants_file",), message))
        return failed
    except OSError as exc:
        col.add(src.issue(("tenants_file",), f'cannot read tenants_file "{rel}": {exc.strerror or exc}'))
        return failed
    tsrc = read_yaml(ttext, name, env, col)
    if tsrc is None:
        return failed
    if not isinstance(tsrc.data, dict) or "tenants" not in tsrc.data:
        col.add(tsrc.issue((), "expected a mapping with a tenants: list"))
        return failed
    # The file's own keys here; its tenants one by one (_tenant_shapes), like inline ones.
    _validate(TenantsFileModel, {**tsrc.data, "tenants": []}, tsrc, (), col)
    return tsrc, tsrc.data["tenants"], False


def _read(path: str, display: str) -> str:
    """Read a config file as UTF-8 text, turning every way that fails into a ConfigIssue."""
    if not os.path.exists(path):
        message = "no such file; expected a windows.yaml (give --config PATH or set MAINTD_CONFIG)"
        raise ConfigError(ConfigIssue(display, 1, 1, message))
    if os.path.isdir(path):
        raise ConfigError(ConfigIssue(display, 1, 1, "is a directory; expected a YAML file"))
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            message = f"file is {size / 1048576:.1f} MiB; expected at most {MAX_BYTES // 1048576} MiB of YAML"
            raise ConfigError(ConfigIssue(display, 1, 1, message))
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
        message = f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; expected a UTF-8 text file"
        raise ConfigError(ConfigIssue(display, line, col, message)) from None


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
