"""Every Grafana panel's PromQL, and every query of the Dash dashboard, parses and returns
data from the live Prometheus scraping the real pipeline (``live_stack``).

No browser is needed, so this is also the quickest check of the dashboard JSON against
real series. A panel whose series only exist in an incident (firing alerts, cap hits) has
data because the fixture's pipeline has one: a frozen group, and filters over the cap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dashboard import live

from .conftest import GROUP_REGEX, LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "grafana" / "dashboards")
                    .glob("*.json"))
# What Grafana would put in for its variables on this stack (1-s scrapes); the group
# variable selects this run's groups, so another run's series cannot make a panel pass.
VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s",
             "$group": GROUP_REGEX}
# The Dash dashboard's template parameters, as it fills them for a short window.
PARAMS = {"groups": GROUP_REGEX, "rate": "30s", "window": "5m", "q": "0.99"}


def _targets() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        data = json.loads(path.read_text())
        for p in data["panels"]:
            for inner in p.get("panels", []) if p["type"] == "row" else [p]:
                out.extend((f"{path.stem}: {inner['title']}", t["expr"])
                           for t in inner.get("targets", []))
    return out


def test_every_grafana_dashboard_has_panel_queries() -> None:
    assert DASHBOARDS, "no dashboard JSON under grafana/dashboards"
    assert len(_targets()) >= 10


@pytest.mark.parametrize(("title", "expr"), _targets(), ids=[t for t, _ in _targets()])
def test_panel_query_returns_data(live_stack: LiveStack, title: str, expr: str) -> None:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    result = live_stack.query(expr)  # raises on a parse or evaluation error
    assert result, f"{title}: {expr} returned no series"


def _dash_queries() -> dict[str, str]:
    out = {}
    for name, template in live.queries().items():
        # Only templates are str.format'ed: ANY_DATA's braces are PromQL's own.
        is_template = "{{" in template or re.search(r"\{(groups|rate|window|q)\}", template)
        out[name] = template.format(**PARAMS) if is_template else template
    return out


@pytest.mark.parametrize("name", sorted(_dash_queries()))
def test_dash_dashboard_query_returns_data(live_stack: LiveStack, name: str) -> None:
    expr = _dash_queries()[name]
    result = live_stack.query(expr)
    assert result, f"{name}: {expr} returned no series"
