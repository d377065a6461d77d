"""The shipped Prometheus alerts, unit-tested by Prometheus' own `promtool test rules`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.debian import ensure_program

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus-alerts.yml"
TESTS = Path(__file__).resolve().parent / "promtool" / "alerts_test.yml"


def _promtool() -> str:
    return ensure_program("promtool", "prometheus")


def test_rules_pass_promtool_check():
    res = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_shipped_alert_has_a_promtool_unit_test(tmp_path):
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    spec = yaml.safe_load(TESTS.read_text())
    tested = {t["alertname"] for case in spec["tests"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert shipped == tested, f"alerts without a firing test: {sorted(shipped - tested)}"
    spec["rule_files"] = [str(RULES)]
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(yaml.safe_dump(spec, sort_keys=False))
    res = subprocess.run([_promtool(), "test", "rules", str(unit)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
