"""DESIGN.md's layer rules, enforced in the test run: import-linter's contracts from pyproject.toml.

The contracts are read from pyproject.toml unchanged, with two adjustments made here in
a temporary copy, never in the rules themselves:

- modules a contract names that do not exist yet (the code grows module by module;
  e.g. ``scheduler.leader``) are left out of that contract: import-linter refuses to
  run at all when a named module is missing, which would switch off every rule. A
  module that exists is checked exactly as pyproject.toml says, and each missing one
  is listed in the test output;
- ``include_external_packages = true`` is set, which import-linter requires as soon as a
  contract forbids a third-party package (``sqlalchemy``, ``requests``, ...) as these
  do; without it no contract runs.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports")
COMMAND = [LINT] if LINT else [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]


def _contracts() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]


def _exists(module: str, roots: list[str]) -> bool:
    if module.split(".")[0] not in roots:
        return True  # third-party: import-linter checks it against the installed packages
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def runnable_config(tmp_path: Path) -> tuple[Path, list[str], int]:
    """pyproject's contracts minus modules that do not exist yet: (config, missing, contracts)."""
    cfg = _contracts()
    roots = cfg["root_packages"]
    missing: set[str] = set()
    written = 0
    lines = ["[tool.importlinter]", f"root_packages = {_toml(roots)}", "include_external_packages = true", ""]
    for contract in cfg["contracts"]:
        kept = dict(contract)
        for key in ("source_modules", "forbidden_modules"):
            names = contract.get(key, [])
            missing |= {m for m in names if not _exists(m, roots)}
            kept[key] = [m for m in names if _exists(m, roots)]
        if not kept["source_modules"] or not kept["forbidden_modules"]:
            continue  # nothing left to check in it yet
        written += 1
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {_toml(v)}" for k, v in kept.items()]
        lines.append("")
    path = tmp_path / "importlinter.toml"
    path.write_text("\n".join(lines))
    return path, sorted(missing), written


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, "--no-cache", "--no-logo", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_layer_contracts_are_kept(tmp_path):
    config, missing, written = runnable_config(tmp_path)
    proc = lint(config)
    if missing:
        print("not yet written, left out of the contracts:", ", ".join(missing))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout
    assert proc.stdout.count(" KEPT") == written >= 1, proc.stdout  # every contract ran
    if not missing:
        assert written == len(_contracts()["contracts"])


def test_the_pure_core_and_the_records_exist():
    # The contracts above would pass vacuously for modules that are not there.
    for module in (
        "scheduler.model",
        "scheduler.errors",
        "scheduler.duration",
        "scheduler.config",
        "scheduler.recurrence",
        "scheduler.plan",
        "scheduler.policy",
        "scheduler.cli",
        "notifiers",
    ):
        assert importlib.util.find_spec(module) is not None, module


def test_a_broken_rule_is_reported(tmp_path):
    # The check can fail: cli imports config, so forbidding that must break.
    path = tmp_path / "broken.toml"
    path.write_text(
        "\n".join(
            [
                "[tool.importlinter]",
                'root_packages = ["scheduler", "notifiers"]',
                "",
                "[[tool.importlinter.contracts]]",
                'name = "cli may not import config (deliberately false)"',
                'type = "forbidden"',
                'source_modules = ["scheduler.cli"]',
                'forbidden_modules = ["scheduler.config"]',
            ]
        )
    )
    proc = lint(path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and re.search(r"scheduler\.cli(\.\w+)? -> scheduler\.config", proc.stdout)


PURE = (
    "scheduler.config",
    "scheduler.recurrence",
    "scheduler.plan",
    "scheduler.policy",
    "scheduler.notices",
    "scheduler.retry",
    "scheduler.guardrails",
    "scheduler.waves",
)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_are_named_in_the_no_io_contract(module):
    names = [c for c in _contracts()["contracts"] if c["name"].startswith("the pure core does no I/O")]
    assert names and module in names[0]["source_modules"]


def test_a_module_not_written_yet_does_not_switch_the_rules_off(tmp_path, monkeypatch):
    real = _contracts()
    grown = dict(
        real,
        contracts=[
            dict(c, forbidden_modules=[*c["forbidden_modules"], "scheduler.not_yet"]) for c in real["contracts"]
        ],
    )
    monkeypatch.setattr(sys.modules[__name__], "_contracts", lambda: grown)
    config, missing, written = runnable_config(tmp_path)
    assert missing == ["scheduler.not_yet"] and written == len(real["contracts"])
    proc = lint(config)
    assert proc.returncode == 0 and proc.stdout.count(" KEPT") == written, proc.stdout + proc.stderr
