"""deploy/prometheus/alerts.yml under Debian's real `promtool`, and the Grafana dashboard.

promtool is installed from Debian's `prometheus` package when missing; a failed install
fails these tests (it never skips them).
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from typing import Any, Iterable

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "ywm.json"
OPERATIONS = REPO / "docs" / "operations.md"
APP_PACKAGES = ("server", "handlers", "workers", "db")

# PromQL words that look like metric names but are not.
PROMQL_WORDS = frozenset((
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan"))


@pytest.fixture(scope="module")
def promtool() -> str:
    result = subprocess.run([str(PROMETHEUS / "ensure-promtool.sh")], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"promtool could not be installed:\n{result.stderr}"
    found = shutil.which("promtool")
    assert found, "ensure-promtool.sh succeeded but promtool is not on PATH"
    return found


def _promtool(promtool: str, *args: str, cwd: pathlib.Path = PROMETHEUS
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric (and recording rule) names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, format strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                  text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    names = set()
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue  # a function
        if match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def _alert_metrics() -> set[str]:
    names: set[str] = set()
    for rule in _rules():
        names |= metric_names(rule["expr"])
    return names


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _app_literals() -> str:
    return "\n".join(path.read_text() for package in APP_PACKAGES
                     for path in (REPO / package).rglob("*.py"))


def _exported_by_app(name: str, source: str) -> bool:
    """The app's code names this series (prometheus_client may drop a `_total` suffix)."""
    candidates = {name, re.sub(r"_(total|bucket|count|sum)$", "", name)}
    return any(f'"{candidate}"' in source for candidate in candidates)


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_prometheus_config_is_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    fires, silent = set(), set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert alerts - fires == set()
    assert alerts - silent == set()
    assert {"YwmHigh5xxRatio", "YwmHighLatencyP99", "YwmQueueBacklog",
            "YwmDeadLettersGrowing", "YwmReplicaLagHigh", "YwmCarrierWebhookFailures",
            "YwmDefaultPartitionNotEmpty", "YwmPostgresDown", "YwmRedisDown",
            "YwmPgBouncerDown"} <= alerts  # every signal issue 14 asks for


def test_the_unit_tests_catch_an_alert_that_never_fires(promtool: str,
                                                        tmp_path: pathlib.Path) -> None:
    # One copy where no alert can ever fire: promtool must report every alert's case.
    broken = yaml.safe_load(ALERTS.read_text())
    for group in broken["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = "vector(1) > 2"  # never true
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(broken))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = _promtool(promtool, "test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    reported = set(re.findall(r"alertname: (\w+),", result.stdout + result.stderr))
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts - reported == set(), "no unit test notices these alerts never firing"


def test_alert_series_are_exported_or_documented_as_coming() -> None:
    source = _app_literals()
    docs = OPERATIONS.read_text()
    alerts_section = docs.split("## Alerts", 1)[1] if "## Alerts" in docs else ""
    recorded = _recorded()
    for name in sorted(_alert_metrics() - recorded):
        if not name.startswith("ywm_"):
            continue  # `up` and the exporters' series: listed in the docs' scrape jobs
        if _exported_by_app(name, source):
            continue
        assert re.search(rf"`{re.escape(name)}(\{{[^`]*\}})?`", alerts_section), (
            f"{name} is neither exported by the app nor listed as coming in "
            "docs/operations.md, Alerts")


def test_the_app_exports_the_http_series_the_alerts_read() -> None:
    source = _app_literals()
    for name in ("ywm_http_requests_total", "ywm_http_request_duration_seconds_bucket",
                 "ywm_carrier_webhooks_total"):
        assert name in _alert_metrics()
        assert _exported_by_app(name, source), f"the app no longer exports {name}"


def _panel_exprs(dashboard: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for panel in dashboard["panels"]:
        assert panel.get("targets"), f"panel {panel['title']!r} shows nothing"
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def test_dashboard_panels_read_only_known_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    known = _alert_metrics() | _recorded()
    source = _app_literals()
    shown: set[str] = set()
    for title, expr in _panel_exprs(dashboard):
        names = metric_names(expr)
        assert names, f"{title!r}: {expr!r} names no metric"
        for name in names:
            assert name in known or _exported_by_app(name, source), (
                f"panel {title!r} reads {name}, which neither the alerts nor the app define")
        shown |= names
    # Every signal an alert watches has a panel.
    assert (_alert_metrics() - shown) <= {"up"}, _alert_metrics() - shown


def test_metric_names_reads_promql_like_prometheus() -> None:
    expr = ('sum by (provider) (rate(ywm_carrier_webhooks_total{outcome=~"a|b"}[10m])) '
            '/ on (provider) ywm:ratio > 0.05 and up{job="x"} == 0 or pg_up offset 5m')
    assert metric_names(expr) == {"ywm_carrier_webhooks_total", "ywm:ratio", "up", "pg_up"}
