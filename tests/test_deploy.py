"""What ships for operators: Prometheus alert rules (checked and unit-tested by promtool) and a
Grafana dashboard, each naming only metrics that a real daemon run exports.

promtool comes from Debian's `prometheus` package; `.ci/run` installs it when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_service_harness import HEALTHY, OFFENDER, fleet, http_get, service

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tapis-watchdog.json"
# Metric names the daemon exports (ours and prometheus_client's); `up` is Prometheus's own.
METRIC = re.compile(r"\b((?:tapis_watchdog|process|python)_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run(
        [promtool, *args],
        capture_output=True,
        text=True,
        cwd=ALERTS.parent,
        timeout=60,
        check=False,
    )


def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_operators_expect_are_there() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {
        "TapisWatchdogDown",
        "TapisWatchdogPollsFailing",
        "TapisWatchdogCancelsUnconfirmed",
        "TapisWatchdogCancelsFailing",
        "TapisWatchdogBreakerOpen",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
    # Every alert is unit-tested.
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == set(rules)


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panel_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    dash = _dashboard()
    assert dash["uid"] == "tapis-watchdog"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert {"job", "instance"} <= set(variables)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'job="$job"' in target["expr"], target["expr"]
            assert METRIC.search(target["expr"]) or "up{" in target["expr"], target["expr"]


def _named_metrics() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for expr in _panel_exprs():
        for name in METRIC.findall(expr):
            names.setdefault(name, set()).add(f"dashboard: {expr}")
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                names.setdefault(name, set()).add(f"alert {rule['alert']}")
    return names


def _exported(text: str) -> set[str]:
    """Every name a PromQL query could use against this exposition."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_in_the_alerts_and_the_dashboard_exists_in_a_real_run(
    tmp_path: Path,
) -> None:
    with service(tmp_path, fleet(OFFENDER, HEALTHY)) as svc:
        svc.write_config(metrics={"listen": "127.0.0.1:0"})
        daemon = svc.start()
        _, started = daemon.wait_event("watchdog_started")
        daemon.wait_event("job_cancelled")
        status, text = http_get(f"{started['metrics_url']}/metrics")
        assert daemon.stop(signal.SIGTERM) == 0
    assert status == 200
    # The alerts' series exist before the first unconfirmed or failed cancel (at 0), or
    # increase() would miss it.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    for outcome in ("unconfirmed", "failed"):
        key = ("tapis_watchdog_cancels_total", (("outcome", outcome), ("rule", "frontera-12h")))
        assert samples[key] == 0
    exported = _exported(text)
    named = _named_metrics()
    assert len(named) >= 12
    missing = {name: sorted(where) for name, where in named.items() if name not in exported}
    assert missing == {}
    # The exposition itself passes Prometheus's own lint.
    lint = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("name", ["tapis_watchdog_no_such_metric", "process_imaginary_bytes"])
def test_a_misnamed_metric_would_be_caught(name: str) -> None:
    sample = "# TYPE tapis_watchdog_jobs_watched gauge\ntapis_watchdog_jobs_watched 3\n"
    assert name not in _exported(sample)
    assert "tapis_watchdog_jobs_watched" in _exported(sample)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: each query becomes a recording rule, with Grafana's
    # variables replaced by what they hold.
    exprs = [e.replace("$job", "tapis-watchdog").replace("$instance", ".*") for e in _panel_exprs()]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
