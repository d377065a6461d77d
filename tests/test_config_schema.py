"""`maintd schema`: the published JSON Schema describes windows.yaml, defaults included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from scheduler import config

SCHEMA = config.json_schema()


def _properties(node: object, where: str = "#") -> list[tuple[str, dict]]:
    """Every property schema in the document, with where it is."""
    found: list[tuple[str, dict]] = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            found.append((f"{where}/properties/{name}", prop))
        for key, value in node.items():
            if key != "properties" or not isinstance(value, dict):
                found.extend(_properties(value, f"{where}/{key}"))
            else:
                for name, prop in value.items():
                    found.extend(_properties(prop, f"{where}/properties/{name}"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(_properties(item, f"{where}/{i}"))
    return found


def _problem(prop: dict, value: object) -> str | None:
    # The property's schema, with the document's $defs so its $refs resolve.
    validator = jsonschema.Draft202012Validator({**prop, "$defs": SCHEMA.get("$defs", {})})
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    return None if error is None else error.message


DEFAULTS = [(where, prop) for where, prop in _properties(SCHEMA) if "default" in prop]


def test_the_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_there_are_duration_defaults_to_check():
    # a walk that found nothing would make the next test pass for nothing
    durations = {w for w, p in DEFAULTS if p.get("pattern") == r"^(\d+[wdhms])+$"}
    assert "#/$defs/DrainModel/properties/grace" in durations and len(DEFAULTS) > 40


@pytest.mark.parametrize(("where", "prop"), DEFAULTS, ids=[w.removeprefix("#/") for w, _ in DEFAULTS])
def test_every_default_validates_against_its_own_property(where, prop):
    assert _problem(prop, prop["default"]) is None, (where, prop["default"])


@pytest.mark.parametrize(
    ("where", "default", "expected"),
    [
        ("#/$defs/DrainModel/properties/grace", "10m", None),
        ("#/$defs/EndCheckModel/properties/max", "2h", None),
        ("#/$defs/DrainModel/properties/grace", "PT10M", "'PT10M' does not match '^(\\\\d+[wdhms])+$'"),
    ],
    ids=["grace_as_written", "max_as_written", "iso_would_fail"],
)
def test_duration_defaults_are_written_as_in_the_file(where, default, expected):
    prop = dict(_properties(SCHEMA))[where]
    if expected is None:
        assert prop["default"] == default
    assert _problem(prop, default) == expected


def test_the_example_windows_yaml_validates_against_the_schema():
    example = Path(__file__).resolve().parent.parent / "windows.yaml"
    config.load(str(example), env={})  # maintd accepts it
    src = config.read_yaml(example.read_text(), str(example), {}, config.Collector())  # as maintd reads it
    assert src is not None
    assert [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(src.data)] == []


def test_maintd_schema_prints_the_same_document(tmp_path):
    env = {**os.environ, "MAINTD_CONFIG": str(tmp_path / "none.yaml")}
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "schema"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(SCHEMA))
