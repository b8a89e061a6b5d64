"""End to end with a real Prometheus: it scrapes a running skyserve and kube2etcd on loopback,
loads our rules, and every expression in the rules and the dashboard evaluates against what
it scraped; and CoreDNS's alerts and dashboards find every metric and label they read in
skyserve's /metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.monitoring import coredns_compat
from tests.support.etcd_server import EtcdServer
from tests.support.monitoring_stack import MONITORING, Stack, Traffic, running_stack
from tests.support.netutil import metric_families

pytestmark = pytest.mark.e2e

PREFIX = "/skydns-monitoring"
# Grafana's variables, as the dashboard is shown with every instance selected.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".+", "$bridge": ".+"}
# What is not a series name in an expression: label matchers, ranges, strings, grouping
# clauses; then function names (followed by "(") and keywords.
NOT_NAMES = re.compile(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"|'
                       r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)')
NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
# What the data must hold before the checks start: what the failures and the first pass have
# to produce (the other series exist from the start, watch restarts and lease results at 0).
PRODUCED = ("coredns_proxy_healthcheck_failures_total", "skyserve_forward_upstream_failures_total",
            "kube2etcd_dns_programming_duration_seconds_bucket", "skyserve_invalid_records > 0",
            "kube2etcd_synced == 1", "skyserve_ready == 1")
SCRAPES = 5


@pytest.fixture(scope="module")
def stack(etcd: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("monitoring")
    try:
        with running_stack(etcd, PREFIX, work) as running:
            drive(running)
            yield running
    finally:
        etcd.delete_prefix(PREFIX + "/")


def drive(stack: Stack, timeout: float = 40.0) -> None:
    """Traffic until Prometheus holds a few scrapes of everything, failures included."""
    traffic = Traffic(stack)
    traffic.invalid_record()
    deadline = time.monotonic() + timeout
    while True:
        traffic.step()
        missing = [m for m in PRODUCED if not stack.prometheus.query(m)]
        # rate() and increase() need at least two scrapes of a counter since it appeared.
        if not missing and stack.prometheus.query(f"min(count_over_time(up[5m])) >= {SCRAPES}"):
            return
        assert time.monotonic() < deadline, f"never scraped {missing}"
        time.sleep(0.3)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression with Grafana's variables filled in) for every target."""
    dash = json.loads((MONITORING / "dashboard.json").read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (not functions or keywords)."""
    return {m.group(1) for m in NAME.finditer(NOT_NAMES.sub(" ", expr))} - KEYWORDS


def test_prometheus_scrapes_both_programs(stack: Stack) -> None:
    up = stack.prometheus.targets_up()
    assert len(up) == 2 and all(up.values()), up


def test_our_rules_load_and_evaluate_without_error(stack: Stack) -> None:
    groups = stack.prometheus.api("rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(rules())
    broken = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
    assert broken == {}


@pytest.mark.parametrize("rule", [r for r in rules() if "record" in r], ids=lambda r: r["record"])
def test_recording_rule_returns_series(stack: Stack, rule: dict[str, Any]) -> None:
    assert stack.prometheus.query(rule["expr"]), rule["expr"]
    assert stack.prometheus.query(rule["record"]), "not recorded by Prometheus yet"


@pytest.mark.parametrize("rule", [r for r in rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alert_expression_evaluates_on_metrics_that_exist(stack: Stack, rule: dict[str, Any]
                                                         ) -> None:
    stack.prometheus.query(rule["expr"])  # raises on an error
    names = metric_names(rule["expr"])
    assert names
    absent = sorted(n for n in names if not stack.prometheus.query(f"count({n})"))
    assert absent == []


@pytest.mark.parametrize(("title", "expr"), dashboard_exprs(), ids=lambda v: v[:60])
def test_dashboard_expression_returns_series(stack: Stack, title: str, expr: str) -> None:
    assert metric_names(expr)
    assert stack.prometheus.query(expr), f"{title}: {expr}"


def test_dashboard_variables_find_the_instances(stack: Stack) -> None:
    dash = json.loads((MONITORING / "dashboard.json").read_text())
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        selector = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert selector, var["query"]
        assert [s["metric"][selector.group(2)] for s in stack.prometheus.query(selector.group(1))]


def _labels_seen(stack: Stack) -> dict[str, dict[str, set[str]]]:
    """{sample name: {label: values}} from skyserve's own /metrics."""
    seen: dict[str, dict[str, set[str]]] = {}
    for family in metric_families(stack.sky.metrics_port):
        for sample in family.samples:
            labels = seen.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return seen


@pytest.mark.parametrize("source", sorted(coredns_compat.SOURCES))
def test_coredns_alerts_and_dashboards_find_their_metrics(stack: Stack, source: str) -> None:
    seen = _labels_seen(stack)
    wanted = coredns_compat.SOURCES[source]
    missing = {name: sorted(labels - seen.get(name, {}).keys())
               for name, labels in wanted.items()
               if name not in seen or labels - seen[name].keys()}
    assert missing == {}, f"{source}: metrics absent, or (present) without these labels"


def test_coredns_expressions_find_the_label_values_they_match(stack: Stack) -> None:
    seen = _labels_seen(stack)
    missing = {f"{name}{{{label}}}": sorted(values - seen.get(name, {}).get(label, set()))
               for (name, label), values in coredns_compat.VALUES.items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_the_coredns_mixin_alert_expressions_evaluate(stack: Stack) -> None:
    """The mixin's own selector is job="kube-dns"; ours is job="skyserve"."""
    for name in coredns_compat.MIXIN_ALERTS:
        assert stack.prometheus.query(f'count({name}{{job="skyserve"}})'), name
