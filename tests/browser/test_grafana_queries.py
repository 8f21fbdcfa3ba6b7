"""Every Grafana panel's PromQL parses and returns data from a live Prometheus.

Uses the browser suite's ``live_stack`` (real Prometheus with the project's rules, fake
pipeline metrics); no browser is needed, so this is also the quickest check of the
dashboard JSON against real series.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import LiveStack

pytestmark = pytest.mark.browser

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "minibroker.json"
# What Grafana would put in for its variables on this stack (1-s scrapes).
VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s",
             "$group": ".*"}


def _targets() -> list[tuple[str, str]]:
    data = json.loads(DASHBOARD.read_text())
    out = []
    for p in data["panels"]:
        for inner in p.get("panels", []) if p["type"] == "row" else [p]:
            out.extend((inner["title"], t["expr"]) for t in inner["targets"])
    return out


@pytest.mark.parametrize(("title", "expr"), _targets(), ids=[t for t, _ in _targets()])
def test_panel_query_returns_data(live_stack: LiveStack, title: str, expr: str) -> None:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    result = live_stack.query(expr)  # raises on a parse or evaluation error
    assert result, f"{title}: {expr} returned no series"
