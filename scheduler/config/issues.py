"""Pydantic's validation errors -> ``FILE:LINE:COL`` issues in the words of windows.yaml."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .schema import ID_RE, SECRET_FIELDS, WINDOW_ID_RE, ConfigModel, MatchModel, PolicyModel
from .source import Collector, Path, Source

# pydantic error types whose message gets the field name in front and the value behind
_TYPED = frozenset(
    {
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
    }
)
_ITEM_NAMES = {"windows": "window", "tenants": "tenant"}


def shape_issues(exc: ValidationError, src: Source, prefix: Path, model_cls: type[BaseModel], col: Collector) -> None:
    """Report every error of ``exc`` (raised validating the node at ``prefix`` as ``model_cls``)."""
    for err in exc.errors(include_url=False):
        rel = tuple(err["loc"])
        loc = prefix + rel
        kind = err["type"]
        if kind == "missing":
            name = rel[-1] if rel else "?"
            col.add(src.issue(loc[:-1], f'missing required key "{name}"{describe(loc[:-1], src.data)}'))
        elif kind == "extra_forbidden":
            owner = _owner_model(model_cls, rel[:-1])
            expected = f" (expected one of: {', '.join(owner.model_fields)})" if owner else ""
            col.add(src.issue(loc, f'unknown key "{rel[-1]}"{describe(loc[:-1], src.data)}{expected}', key=True))
        else:
            reason = secret_reason(src, loc)
            col.add(src.issue(loc, _message(err, rel) if reason is None else _hidden(err, rel, reason)))


def is_secret_key(name: object) -> bool:
    """Keys whose values are never shown: SMTP passwords, webhook secrets, tokens, API keys."""
    return isinstance(name, str) and (name in SECRET_FIELDS or name.endswith(("_token", "_secret", "_password")))


def secret_reason(src: Source, path: Path) -> str | None:
    """Why the value at ``path`` must not be shown, or None when it may be."""
    if any(is_secret_key(part) for part in path):
        return "a secret"
    if any(path[:k] in src.expanded for k in range(len(path), 0, -1)):
        return "it comes from the environment"
    return None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"


def _hidden(err: Any, rel: tuple, reason: str) -> str:
    """The message for a value that must not be shown: what was expected, never what was given."""
    field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
    shown = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in _TYPED:
        return f"{field_name}: {msg[0].lower() + msg[1:]}, got {_kind_of(shown)} (not shown: {reason})"
    note = f" (not shown: {reason})"
    got = f", got {shown!r}"
    if msg.endswith(got):  # the rules of schema.py end so: say what kind of value it was instead
        msg = msg[: -len(got)] + f", got {_kind_of(shown)}{note}"
    quoted = [f'"{shown}"', f"'{shown}'", *([repr(shown)] if isinstance(shown, str) and shown else [])]
    if shown is None or not any(q in msg for q in quoted):
        return msg
    rule = msg.rsplit("; ", 1)[1] if "; " in msg else ""
    if any(q in rule for q in quoted):
        rule = ""
    return f"{field_name}: invalid value{note}" + (f"; {rule}" if rule else "")


def _message(err: Any, rel: tuple) -> str:
    msg = err["msg"]
    kind = err["type"]
    for p in ("Value error, ", "Assertion failed, "):
        if msg.startswith(p):
            msg = msg[len(p) :]
    field_name = next((str(x) for x in reversed(rel) if isinstance(x, str)), "value")
    shown = err.get("input")
    if kind == "literal_error" and field_name == "version" and rel and rel[-1] == "version":
        return f"unsupported version {f'{shown!r}' if isinstance(shown, str) else shown}; expected version: 1"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if field_name == "id" and pattern == ID_RE.pattern:
            return (
                f'invalid tenant id "{shown}"; expected lowercase letters, digits, "-" and "_", '
                "starting with a letter or digit (e.g. acme-eu)"
            )
        if field_name == "id" and pattern == WINDOW_ID_RE.pattern:
            return (
                f'invalid window id "{shown}"; expected letters, digits, ".", "-" and "_", '
                "starting with a letter or digit (e.g. storage-firmware)"
            )
        return f'invalid {field_name} "{shown}"; expected to match {pattern}'
    if kind in _TYPED:
        what = "a mapping" if isinstance(shown, dict) else "a list" if isinstance(shown, list) else repr(shown)
        return f"{field_name}: {msg[0].lower() + msg[1:]}, got {what}"
    return msg


def _unwrap_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


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


def describe(path: Path, data: Any = None) -> str:
    """Where a problem is, in words: ' in window "patch"', ' in tenant "acme".webhook'."""
    node, where = data, list[str]()
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
