"""dashboard.app: the command line, the layout and the offline states."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dash import dcc

from broker.cli import build_parser
from broker.options import UsageError
from dashboard import app as dashboard_app
from dashboard.app import DashboardSettings, create_app, filter_rows
from dashboard.live import FilterStats, LiveSnapshot, Window


def test_defaults() -> None:
    args = build_parser("dashboard").parse_args(["dashboard"])
    assert args.port == 8050 and args.host == "127.0.0.1"
    assert args.prometheus_url == "http://127.0.0.1:9090"
    assert args.alertmanager_url == "http://127.0.0.1:9093"
    assert args.refresh_interval == 5.0 and args.visit_interval == 39.0
    assert args.dashboard_groups == "minibroker-filters-.*"


def test_environment_variables_configure_every_option(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setenv("MINIBROKER_PORT", "8051")
    monkeypatch.setenv("MINIBROKER_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("MINIBROKER_DASHBOARD_GROUPS", "g.*")
    monkeypatch.setenv("MINIBROKER_REFRESH_INTERVAL", "2")
    args = build_parser("dashboard").parse_args(["dashboard"])
    assert (args.port, args.prometheus_url, args.dashboard_groups, args.refresh_interval) \
        == (8051, "http://prometheus:9090", "g.*", 2.0)
    help_text = build_parser("dashboard").format_help()
    assert "dashboard" in help_text


def test_bad_port_from_the_environment_is_a_usage_error(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("MINIBROKER_PORT", "-1")
    with pytest.raises(UsageError, match="MINIBROKER_PORT"):
        build_parser("dashboard")


def test_create_app_has_every_panel() -> None:
    app = create_app(DashboardSettings(prometheus_url="http://127.0.0.1:1"))
    layout = str(app.layout)
    for panel in ("lag-messages", "lag-seconds", "visit-seconds", "heatmap", "latency",
                  "producer-rate", "alerts", "cap-visit-seconds", "cap-lag",
                  "filters-table", "status-banner", "tick"):
        assert f"id='{panel}'" in layout, panel


def test_capacity_model_runs_on_inputs_only_and_redraws_on_a_slow_tick() -> None:
    # The page drops a callback's pending result when it fires again (plotly/dash#1613):
    # a refresh tick must never re-run the model, and the overlay's own tick must leave a
    # redraw seconds to finish even when the live tabs refresh every second.
    app = create_app(DashboardSettings(prometheus_url="http://127.0.0.1:1",
                                       refresh_interval=1.0))
    inputs = {out: {i["id"] for i in cb["inputs"]} for out, cb in app.callback_map.items()}
    model_run = inputs["cap-inputs.data"]
    assert "tick" not in model_run and "cap-tick" not in model_run
    assert {"cap-alerts", "cap-cores", "cap-profile"} <= model_run
    (redraw,) = [ids for out, ids in inputs.items() if "cap-visit-seconds.figure" in out]
    assert redraw == {"cap-inputs", "cap-tick", "tabs"}
    ticks = {c.id: c.interval for c in _walk(app.layout) if isinstance(c, dcc.Interval)}
    assert ticks["tick"] == 1000 and ticks["cap-tick"] >= 5000


def _walk(component: Any) -> Iterator[Any]:
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and hasattr(child, "to_plotly_json"):
            yield from _walk(child)


def test_bad_settings_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser("dashboard").parse_args(
        ["dashboard", "--prometheus-url", "localhost:9090"])
    with pytest.raises(UsageError, match="http://"):
        dashboard_app.main(args)


def test_offline_live_outputs_say_why() -> None:
    snap = LiveSnapshot(window=Window.last(900, now=0), state="unreachable",
                        message="Prometheus at http://x is unreachable")
    outputs = dashboard_app._live_outputs(snap)
    assert outputs[0].layout.annotations[0].text == "Prometheus unreachable"
    assert outputs[-1] == snap.message


def test_filter_rows_cover_the_catalogue_and_unknown_filters() -> None:
    class F:
        def __init__(self, name: str) -> None:
            self.name, self.description, self.fields = name, f"about {name}", {"diaSource"}

    stats = {"Filter001": FilterStats(group="minibroker-filters-001-020", delivered=5,
                                      pass_rate=0.01),
             "Custom": FilterStats(group="g")}
    rows = filter_rows([F("Filter001"), F("Filter002")], stats)
    assert [r["filter"] for r in rows] == ["Filter001", "Filter002", "Custom"]
    assert rows[0]["group"] == "filters 001-020" and rows[0]["pass_rate"] == 0.01
    assert rows[1]["pass_rate"] is None  # unknown is blank, not 0
    assert rows[2]["description"] == "(not in the catalogue)"
