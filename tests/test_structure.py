"""The house keeps small rooms (DESIGN.md budgets) and every room is under a layer rule.

A module over 450 lines, a class over 300 or a function over 80 fails here, as does a
module of ours that no import-linter contract in pyproject.toml names (itself or a parent
package): a new module must be placed in a layer on purpose.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scheduler", "notifiers", "integrations")
MODULE_MAX, CLASS_MAX, FUNC_MAX = 450, 300, 80
FILES = sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _covered() -> set[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {m for c in cfg["contracts"] for key in ("source_modules", "forbidden_modules") for m in c.get(key, [])}


@pytest.mark.parametrize("path", FILES, ids=lambda f: str(f.relative_to(ROOT)))
def test_module_class_and_function_budgets(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MODULE_MAX, f"{path.name}: {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        size = (node.end_lineno or node.lineno) - node.lineno + 1
        if isinstance(node, ast.ClassDef):
            assert size <= CLASS_MAX, f"class {node.name}: {size} lines"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert size <= FUNC_MAX, f"function {node.name}: {size} lines"


def test_every_module_is_under_a_layer_contract() -> None:
    covered = _covered()
    outside = [
        m
        for m in map(_module, FILES)
        if m not in PACKAGES and not any(m == c or m.startswith(c + ".") for c in covered)
    ]
    assert outside == [], f"modules under no import-linter contract: {outside}"
