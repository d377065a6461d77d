"""YAML 1.1 scalars as maintd reads them, and ``${VAR}`` expansion (source.py's helpers)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RESOLVER = yaml.resolver.Resolver()
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"


class _Dummy(yaml.SafeLoader):
    def __init__(self) -> None:  # the constructors below need only the class's tables
        pass


_DUMMY = _Dummy()
_CONSTRUCT = {
    _INT: yaml.SafeLoader.construct_yaml_int,
    _FLOAT: yaml.SafeLoader.construct_yaml_float,
    _BOOL: yaml.SafeLoader.construct_yaml_bool,
}


def resolve(ev: yaml.ScalarEvent) -> str:
    tag = ev.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return tag


def typed(ev: yaml.ScalarEvent) -> Any:
    # Only numbers, booleans and null are typed here; timestamps stay text so every time
    # in the file is read by one rule (with the window's zone), not by YAML 1.1's.
    if ev.style:  # quoted and block scalars are always text
        return ev.value
    return plain(ev.value) if ev.tag is None else _construct(resolve(ev), ev.value)


# first character -> [(tag, regexp)]: what Resolver.resolve looks up (SafeLoader has no wildcard)
_IMPLICIT = dict(_RESOLVER.yaml_implicit_resolvers)


def plain(text: str) -> Any:
    """``typed`` of a plain, untagged scalar."""
    for tag, regexp in _IMPLICIT.get(text[:1], ()):
        if regexp.match(text):
            return _construct(tag, text)
    return text


def _construct(tag: str, text: str) -> Any:
    if tag == _NULL:
        return None
    construct = _CONSTRUCT.get(tag)
    return text if construct is None else construct(_DUMMY, yaml.ScalarNode(tag, text))


def expand(value: str, env: Mapping[str, str], report: Callable[[str], None]) -> str:
    """``${VAR}``, ``${VAR:-default}`` and ``$$`` in one scalar; an unset VAR is reported and read as ""."""

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
