"""grafana/: provisioning loads, the dashboard uses the provisioned datasource and only
metric names the services export (monitoring/metrics.py) or the alert rules record."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from test_dashboard_live import exported_names

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "minibroker.json"


def panels() -> list[dict[str, Any]]:
    """Every non-row panel of the dashboard."""
    data = json.loads(DASHBOARD.read_text())
    out = []
    for p in data["panels"]:
        out.extend(p.get("panels", []) if p["type"] == "row" else [p])
    return out


def exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_provisioning_files_load_and_agree() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/minibroker.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    for p in panels():
        assert p["datasource"]["uid"] == source["uid"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == source["uid"], p["title"]
    variable = dashboard["templating"]["list"][0]
    assert variable["datasource"]["uid"] == source["uid"]


def test_panel_ids_and_positions_are_unique() -> None:
    data = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]


def test_every_query_uses_exported_metrics_or_recorded_rules() -> None:
    names = exported_names()
    rules = (REPO / "monitoring" / "rules" / "minibroker.yml").read_text()
    seen: set[str] = set()
    for title, expr in exprs():
        used = set(re.findall(r"\bminibroker_[a-z_]+", expr))
        assert used <= names, f"{title}: unknown metrics {used - names}"
        seen |= used
        for recorded in re.findall(r"\bminibroker:[a-z_]+", expr):
            assert f"record: {recorded}" in rules, f"{title}: no recording rule {recorded}"
    # The operator's panels cover lag, status, per-visit delivery, caps, latency, producer.
    for needed in ("minibroker_consumer_group_lag_messages",
                   "minibroker_consumer_group_lag_seconds", "minibroker_consumer_group_status",
                   "minibroker_filter_visit_delivered", "minibroker_filter_alerts_capped_total",
                   "minibroker_end_to_end_seconds_bucket", "minibroker_alerts_produced_total",
                   "minibroker_filter_last_visit_seconds"):
        assert needed in seen, needed


def test_group_variable_is_used_and_defined() -> None:
    data = json.loads(DASHBOARD.read_text())
    defined = {v["name"] for v in data["templating"]["list"]}
    used = {m for _, e in exprs() for m in re.findall(r"\$([a-z_]+)", e)
            if not m.startswith("__")}
    assert used <= defined and "group" in used
