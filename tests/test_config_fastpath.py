"""The fast paths of config loading (issue 17: ``maintd conflicts`` on 10,000 tenants in < 2 s).

The reader handles plain keys and values inline and caches what a plain scalar means; the
parse runs without cyclic GC; offline commands do not import the daemon's or the
notifiers' stacks. Each must give exactly what the slow path gave.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

from scheduler import config
from scheduler.config.source import Collector, read_yaml
from scheduler.errors import ConfigError

# YAML 1.1 as PyYAML's SafeLoader resolves plain scalars, except timestamps (kept as text:
# maintd reads every time with the window's zone).
SCALARS = [
    ("int", "587", 587),
    ("negative_int", "-1", -1),
    ("hex", "0x1F", 31),
    ("octal", "017", 15),
    ("underscored", "1_000", 1000),
    ("sexagesimal", "1:30", 90),
    ("float", "1.5", 1.5),
    ("exponent", "1.0e+3", 1000.0),
    ("infinity", "-.inf", -math.inf),
    ("yes", "yes", True),
    ("Off", "Off", False),
    ("tilde", "~", None),
    ("null", "null", None),
    ("date_stays_text", "2026-12-05", "2026-12-05"),
    ("time_stays_text", "2026-12-05T22:00", "2026-12-05T22:00"),
    ("id_starting_like_true", "t00001", "t00001"),
    ("word", "tenant", "tenant"),
    ("y_is_text", "y", "y"),
    ("equals", "=", "="),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in SCALARS], ids=[c[0] for c in SCALARS])
def test_plain_scalars_read_as_pyyaml_types_them(text: str, expected: object) -> None:
    # twice, in a mapping and a list: the second read comes from the reader's cache
    src = read_yaml(f"a: {text}\nb: [{text}]\nc: {text}\n", "x.yaml", {}, Collector())
    assert src is not None
    for got in (src.data["a"], src.data["b"][0], src.data["c"]):
        assert type(got) is type(expected) and got == expected


def test_cached_value_never_types_a_key_or_a_quoted_scalar() -> None:
    src = read_yaml('yes: yes\nk: "yes"\nl: [yes, "587", 587]\n', "x.yaml", {}, Collector())
    assert src is not None
    assert src.data == {"yes": True, "k": "yes", "l": [True, "587", 587]}
    assert src.at(("l", 2)) == (3, 17) and src.at(("k",), key=True) == (2, 1)


def test_inline_values_keep_positions_and_duplicate_keys_still_name_the_first() -> None:
    col = Collector()
    src = read_yaml("a:\n  - x: 1\n    y: two\n  - x: 3\n    x: 4\n", "x.yaml", {}, col)
    assert src is not None
    assert src.at(("a", 0, "y")) == (3, 8) and src.at(("a", 1, "x"), key=True) == (4, 5)
    assert [str(i) for i in col.issues] == ['x.yaml:5:5: duplicate key "x" (first at line 4)']


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
@pytest.mark.parametrize("enabled", [True, False], ids=["gc_on", "gc_off"])
def test_parse_leaves_gc_as_it_found_it(valid: bool, enabled: bool) -> None:
    text = "version: 1\nprovider: {name: P}\n" + ("" if valid else "windows: [{id: w}]\n")
    (gc.enable if enabled else gc.disable)()
    try:
        with nullcontext() if valid else pytest.raises(ConfigError):
            config.parse(text, "x.yaml", env={})
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


CONFIG = """\
version: 1
provider: {name: P, timezone: Europe/Berlin, redundant: [[repo-1, repo-2]]}
freezes:
  - {id: year-end, start: 2026-12-20T00:00, end: 2027-01-04T00:00}
tenants:
  - id: acme
    email: [ops@acme.example]
    webhook: {url: "https://hooks.acme.example/x", secret: whsec_MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=}
    blackouts:
      - {cron: "0 0 1 * *", duration: 1d}
windows:
  - {id: nightly, cron: "0 1 * * *", duration: 2h, resources: [repo-1]}
  - {id: fw, start: 2027-01-10T22:00, duration: 2h, resources: [repo-2]}
"""
HEAVY = ("apprise", "babel", "fastapi", "sqlalchemy", "httpx", "icalendar", "jinja2", "uvicorn", "apscheduler")
COMMANDS = [
    ("validate", ["validate"]),
    ("plan_json", ["plan", "--from", "2027-01-01T00:00Z", "--json"]),
    ("conflicts_json", ["conflicts", "--from", "2027-01-01T00:00Z", "--json"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_offline_commands_do_not_import_the_daemon_or_notifier_stacks(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))))\n"  # noqa: E501
        "from scheduler.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--config", str(path), *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode in (0, 1), proc.stderr
    loaded = json.loads(proc.stderr.rsplit("MODULES ", 1)[1])
    assert loaded == []
