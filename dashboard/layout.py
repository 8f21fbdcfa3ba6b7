"""The page structure: a header with the data source and window, a status banner, and
three tabs (Live, Capacity, Filters). Component ids are the contract with the callbacks
in :mod:`dashboard.app` and with the browser tests."""

from __future__ import annotations

from typing import Any

from dash import dcc, html
from dash.dash_table.DataTable import DataTable

from dashboard.capacity import PROFILES, READS, CapacityInputs

__all__ = ["CAPACITY_FIELDS", "CAPACITY_REFRESH_MIN", "WINDOWS", "build_layout", "filters_columns"]

# Window choices of the Live and Filters pages: label -> seconds.
WINDOWS = {"5 min": 300, "15 min": 900, "1 h": 3600, "6 h": 21600, "24 h": 86400}

# Seconds between redraws of the capacity page's live overlay, at the least.
CAPACITY_REFRESH_MIN = 5.0

# Capacity inputs: id suffix -> (label, CapacityInputs field, min, max, step). The bounds
# keep one what-if run within a couple of seconds on a small machine.
CAPACITY_FIELDS: dict[str, tuple[str, str, float, float, float]] = {
    "alerts": ("Alerts per visit", "alerts_per_visit", 1, 200_000, 1),
    "interval": ("Visit interval (s)", "interval", 1, 600, 0.1),
    "groups": ("Filter groups", "groups", 1, 50, 1),
    "filters": ("Filters per group", "filters_per_group", 0, 200, 1),
    "users": ("End users", "users", 0, 2000, 1),
    "cores": ("Cores", "cores", 0.25, 256, 0.25),
    "visits": ("Visits to simulate", "visits", 1, 50, 1),
}


def _graph(graph_id: str, height: int = 320) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config={"displaylogo": False, "responsive": True},
                     style={"height": f"{height}px"}, className="panel")


def _live_tab() -> html.Div:
    return html.Div(className="tab-body", children=[
        html.Div(id="live-note", className="note"),
        html.Div(className="grid2", children=[
            _graph("lag-messages"), _graph("lag-seconds"),
            _graph("visit-seconds"), _graph("latency"),
            _graph("producer-rate"),
            html.Div(className="panel alerts-panel", children=[
                html.H3("Firing alerts"),
                html.Div(id="alerts", children="loading..."),
            ]),
        ]),
        dcc.Graph(id="heatmap", config={"displaylogo": False}, className="panel"),
    ])


def _number(suffix: str, defaults: CapacityInputs) -> html.Label:
    label, attr, lo, hi, step = CAPACITY_FIELDS[suffix]
    return html.Label(className="field", children=[
        html.Span(label),
        dcc.Input(id=f"cap-{suffix}", type="number", value=getattr(defaults, attr), min=lo,
                  max=hi, step=step, debounce=True, required=True),
    ])


def _capacity_tab(defaults: CapacityInputs) -> html.Div:
    return html.Div(className="tab-body", children=[
        html.P(className="note", children=(
            "What if: the SimPy capacity model (minibroker sim) predicts each group's visit "
            "processing time and lag for these inputs, drawn over the live measurements "
            "when a pipeline is running. Change a value and press Enter or leave the field.")),
        html.Div(className="inputs", children=[
            *[_number(s, defaults) for s in ("alerts", "interval", "groups", "filters",
                                             "users", "cores", "visits")],
            html.Label(className="field", children=[
                html.Span("Alert profile"),
                dcc.Dropdown(id="cap-profile", options=list(PROFILES),
                             value=defaults.profile, clearable=False),
            ]),
            html.Label(className="field", children=[
                html.Span("Filters read"),
                dcc.Dropdown(id="cap-reads", options=list(READS), value=defaults.reads,
                             clearable=False),
            ]),
            html.Button("Use live values", id="cap-from-live", n_clicks=0,
                        className="button",
                        title="Fill alerts per visit, interval, groups, filters and users "
                              "from the running pipeline"),
        ]),
        html.Div(id="cap-live-note", className="note"),
        # The inputs of the last finished prediction: the page redraws from it on every
        # refresh, so a refresh never restarts (and never discards) a slow model run.
        dcc.Store(id="cap-inputs"),
        html.Div(id="cap-verdict", className="verdict"),
        html.Div(className="grid2", children=[
            _graph("cap-visit-seconds", 380), _graph("cap-lag", 380),
        ]),
    ])


def filters_columns() -> list[Any]:
    """Columns of the filter catalogue table."""
    num = {"type": "numeric"}
    count = {"type": "numeric", "format": {"specifier": ",.0f"}}
    return [
        {"name": "Filter", "id": "filter"},
        {"name": "Group", "id": "group"},
        {"name": "Description", "id": "description"},
        {"name": "Reads", "id": "fields"},
        {"name": "Delivered (window)", "id": "delivered", **count},
        {"name": "Over cap (window)", "id": "over_cap", **count},
        {"name": "Pass rate", "id": "pass_rate", **num,
         "format": {"specifier": ".3%"}},
        {"name": "Last visit delivered", "id": "last_delivered", **num},
        {"name": "Last visit over cap", "id": "last_over_cap", **num},
        {"name": "Errors (window)", "id": "errors", **count},
    ]


def _filters_tab() -> html.Div:
    return html.Div(className="tab-body", children=[
        html.Div(id="filters-note", className="note"),
        DataTable(
            id="filters-table", columns=filters_columns(), data=[],
            sort_action="native", filter_action="native", page_size=100,
            style_table={"overflowX": "auto"},
            style_cell={"fontFamily": "inherit", "fontSize": "13px", "padding": "3px 6px",
                        "textAlign": "left", "maxWidth": "420px", "whiteSpace": "normal"},
            style_header={"fontWeight": "600", "backgroundColor": "#f3f4f6"},
            style_data_conditional=[
                {"if": {"filter_query": "{last_over_cap} > 0", "column_id": "last_over_cap"},
                 "backgroundColor": "#fde68a"},
                {"if": {"filter_query": "{errors} > 0", "column_id": "errors"},
                 "backgroundColor": "#fecaca"},
            ],
        ),
    ])


def build_layout(prometheus_url: str, refresh_seconds: float,
                 capacity_defaults: CapacityInputs | None = None) -> html.Div:
    """The whole page."""
    defaults = capacity_defaults or CapacityInputs()
    return html.Div(className="page", children=[
        html.Header(className="header", children=[
            html.H1("Alert stream mini-broker"),
            html.Span(f"data: {prometheus_url}", className="source"),
            html.Label(className="window", children=[
                html.Span("Window "),
                dcc.Dropdown(id="window", options=[{"label": k, "value": v}
                                                   for k, v in WINDOWS.items()],
                             value=WINDOWS["15 min"], clearable=False,
                             style={"width": "110px"}),
            ]),
        ]),
        html.Div(id="status-banner", className="banner banner-wait",
                 children="Connecting to Prometheus..."),
        dcc.Tabs(id="tabs", value="live", children=[
            dcc.Tab(label="Live", value="live", children=_live_tab()),
            dcc.Tab(label="Capacity", value="capacity", children=_capacity_tab(defaults)),
            dcc.Tab(label="Filters", value="filters", children=_filters_tab()),
        ]),
        dcc.Interval(id="tick", interval=int(refresh_seconds * 1000), n_intervals=0),
        # The capacity page's overlay of live values changes once a visit: a slower tick
        # leaves its redraw (Prometheus queries, two figures) time to finish on a busy
        # machine before the next one would make the page drop it.
        dcc.Interval(id="cap-tick", n_intervals=0,
                     interval=int(max(refresh_seconds, CAPACITY_REFRESH_MIN) * 1000)),
    ])
