"""Prometheus/Alertmanager configs and alert rules: promtool and amtool checks, rule unit
tests, the configs monitoring/local.py renders for other visit intervals, the webhook log."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from monitoring import local
from monitoring.alert_log import AlertLog, alert_events, read_alert_log

MONITORING = Path(local.__file__).resolve().parent
RULES = MONITORING / "rules" / "minibroker.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: apt-get install prometheus prometheus-alertmanager")
    return path


def run(*cmd: str | Path) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_promtool_checks_the_prometheus_config() -> None:
    out = run(tool("promtool"), "check", "config", MONITORING / "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out


def test_promtool_checks_the_rules() -> None:
    run(tool("promtool"), "check", "rules", RULES)


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted((MONITORING / "rules" / "tests").glob("*.yml"))
    assert tests
    out = run(tool("promtool"), "test", "rules", *tests)
    assert "FAILED" not in out


def test_every_alert_has_a_firing_case() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired = set()
    for path in (MONITORING / "rules" / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert alerts <= fired, f"no firing test for {sorted(alerts - fired)}"


def test_amtool_checks_the_alertmanager_config() -> None:
    run(tool("amtool"), "check-config", MONITORING / "alertmanager.yml")


def test_rendered_rules_scale_with_the_visit_interval(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(local.render_rules(visit_interval=5))
    run(tool("promtool"), "check", "rules", rules)
    doc = yaml.safe_load(rules.read_text())
    by_name = {r.get("alert") or r.get("record"): r for g in doc["groups"] for r in g["rules"]}
    assert by_name["minibroker:visit_interval_seconds"]["expr"] == "vector(5)"
    assert by_name["MiniBrokerFilterGroupDown"]["for"] == "5s"  # 39 s at 39-s visits
    # The rendered file keeps its meaning: lag above half a 5-s visit pages, below does not.
    test = tmp_path / "test.yml"
    series = 'minibroker_consumer_group_lag_seconds{group="g",service="lag"}'
    test.write_text(yaml.safe_dump({
        "rule_files": [str(rules)],
        "evaluation_interval": "1s",
        "tests": [{
            "interval": "1s",
            "input_series": [{"series": series, "values": "0 1 2 3 4 5"}],
            "alert_rule_test": [
                {"eval_time": "2s", "alertname": "MiniBrokerGroupLagging", "exp_alerts": []},
                {"eval_time": "3s", "alertname": "MiniBrokerGroupLagging", "exp_alerts": [{
                    "exp_labels": {"group": "g", "severity": "critical"},
                    "exp_annotations": {
                        "summary": "Consumer group g is 3 s behind",
                        "description": "The oldest alert g has not yet read has waited 3 s, "
                                       "more than half a visit interval.",
                    },
                }]},
            ],
        }],
    }))
    run(tool("promtool"), "test", "rules", test)


def test_rendered_rules_at_the_reference_interval_match_the_checked_in_file() -> None:
    rendered = yaml.safe_load(local.render_rules())
    assert rendered == yaml.safe_load(RULES.read_text())


def test_lag_threshold_can_be_set() -> None:
    doc = yaml.safe_load(local.render_rules(visit_interval=5, lag_threshold=7))
    exprs = {r.get("record"): r["expr"] for g in doc["groups"] for r in g["rules"]}
    assert exprs["minibroker:lag_threshold_seconds"] == "vector(7)"


def test_rendered_prometheus_and_alertmanager_configs_are_valid(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(local.render_rules(visit_interval=5))
    targets = tmp_path / "targets"
    local.write_targets(targets, {"lag": [("127.0.0.1", 9308, {})]})
    config = tmp_path / "prometheus.yml"
    config.write_text(local.render_prometheus_config(rules, targets, "127.0.0.1:9093", 5))
    run(tool("promtool"), "check", "config", config)
    doc = yaml.safe_load(config.read_text())
    assert doc["global"]["scrape_interval"] == "1s"
    am = tmp_path / "alertmanager.yml"
    am.write_text(local.render_alertmanager_config("http://127.0.0.1:1234/alerts", 5))
    run(tool("amtool"), "check-config", am)
    route = yaml.safe_load(am.read_text())["route"]
    assert (route["group_wait"], route["group_interval"]) == ("1282ms", "7692ms")


def test_write_targets_labels_services_and_removes_old_ones(tmp_path: Path) -> None:
    local.write_targets(tmp_path, {
        "filter": [("127.0.0.1", 9111, {"group": "minibroker-filters-001-020"})],
        "producer": [("127.0.0.1", 9101, {})],
    })
    assert json.loads((tmp_path / "filter.json").read_text()) == [{
        "targets": ["127.0.0.1:9111"],
        "labels": {"service": "filter", "group": "minibroker-filters-001-020"},
    }]
    local.write_targets(tmp_path, {"lag": [("127.0.0.1", 9308, {})]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lag.json"]


def test_filter_targets_need_their_group(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a 'group' label"):
        local.write_targets(tmp_path, {"filter": [("127.0.0.1", 9111, {})]})


def test_durations() -> None:
    assert local.parse_duration("1m30s") == 90
    assert local.parse_duration("500ms") == 0.5
    assert local.format_duration(5.0) == "5s"
    assert local.format_duration(1.2824) == "1282ms"
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        local.parse_duration("5 minutes")


def test_missing_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("MINIBROKER_PROMETHEUS", raising=False)
    with pytest.raises(local.MonitoringNotAvailable, match="apt-get install prometheus"):
        local.find_binary("prometheus")
    with pytest.raises(local.MonitoringNotAvailable, match="prometheus-alertmanager not found"):
        local.find_binary("alertmanager")


def test_alert_log_appends_each_webhook_payload(tmp_path: Path) -> None:
    payload = {
        "version": "4", "status": "firing", "receiver": "alert-log",
        "groupLabels": {"alertname": "MiniBrokerGroupLagging"},
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "MiniBrokerGroupLagging", "group": "g1"},
            "annotations": {"summary": "g1 is 30 s behind"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        }],
    }
    with AlertLog(tmp_path / "alerts.jsonl") as receiver:
        for status in ("firing", "resolved"):
            payload["alerts"][0]["status"] = status  # type: ignore[index]
            request = urllib.request.Request(
                receiver.url, data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 200
        assert len(receiver.read()) == 2
    assert read_alert_log(tmp_path / "missing.jsonl") == []
    events = alert_events(tmp_path / "alerts.jsonl")
    assert [(e["alertname"], e["status"], e["labels"]["group"]) for e in events] == [
        ("MiniBrokerGroupLagging", "firing", "g1"),
        ("MiniBrokerGroupLagging", "resolved", "g1"),
    ]
    assert all(isinstance(e["receivedAt"], float) for e in events)
