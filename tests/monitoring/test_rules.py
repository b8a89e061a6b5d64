"""The rules in manifests/monitoring pass promtool: syntax (`check rules`) and the unit tests
in rules_test.yaml (`test rules`), which must cover every alert both firing and quiet; the
PrometheusRule object is the plain file's rendering."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.monitoring_stack import MONITORING
from tests.support.procutil import REPO_ROOT
from tests.support.prometheus_proc import find_prometheus

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
RULES = MONITORING / "rules.yaml"
UNIT_TESTS = HERE / "rules_test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_prometheus("promtool"), *args], capture_output=True, text=True,
                          timeout=60, cwd=HERE)


def alerts(path: Path) -> list[str]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", UNIT_TESTS.name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    cases: list[dict[str, Any]] = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
                                   for case in test["alert_rule_test"]]
    for case in cases:
        (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alerts(RULES))
    assert names - fired == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert (fired | quiet) - names == set(), "unit tests of alerts that do not exist"


def test_prometheusrule_is_the_rendered_rules_file() -> None:
    script = REPO_ROOT / "scripts" / "render-prometheusrule"
    loader = importlib.machinery.SourceFileLoader("render_prometheusrule", str(script))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    committed = (MONITORING / "prometheusrule.yaml").read_text()
    assert committed == module.render(), "run scripts/render-prometheusrule > " \
        "manifests/monitoring/prometheusrule.yaml"
    assert yaml.safe_load(committed)["spec"]["groups"] == \
        yaml.safe_load(RULES.read_text())["groups"]
