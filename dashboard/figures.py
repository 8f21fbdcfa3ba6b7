"""Plotly figures of the dashboard: pure functions from data to ``go.Figure``.

Every figure keeps a constant ``uirevision`` so that a refresh keeps the user's zoom,
and says why it is empty (no data yet, Prometheus unreachable, a query error) instead of
drawing empty axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import plotly.graph_objects as go

from dashboard.capacity import Prediction
from dashboard.live import STATUS_NAMES, Heatmap, Measured
from dashboard.prom import Series

__all__ = [
    "GROUP_COLORS",
    "STATUS_COLORS",
    "empty_figure",
    "heatmap_figure",
    "lag_figure",
    "latency_figure",
    "prediction_lag_figure",
    "prediction_visit_figure",
    "producer_figure",
    "short_group",
    "visit_time_figure",
]

# Burrow-style status colours: green, amber, red, purple, black (worse is darker).
STATUS_COLORS = {"OK": "#2ca02c", "WARN": "#ffbf00", "ERR": "#d62728", "STALL": "#9467bd",
                 "STOP": "#111111"}
GROUP_COLORS = ("#1f77b4", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#393b79", "#637939", "#843c39")
_MAX_DRAWN = 1500  # points per trace on the capacity page (the model samples every second)


def _base(title: str, height: int = 320, **layout: object) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 15}}, height=height,
                      margin={"l": 60, "r": 20, "t": 40, "b": 40}, uirevision=title,
                      template="plotly_white", legend={"orientation": "v", "x": 1.02, "y": 1},
                      **layout)
    return fig


def empty_figure(title: str, message: str, height: int = 320) -> go.Figure:
    """A figure with no traces and ``message`` in the middle."""
    fig = _base(title, height)
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5,
                                    "font": {"size": 14, "color": "#666"}}])
    return fig


def short_group(group: str) -> str:
    """``minibroker-filters-001-020`` -> ``filters 001-020`` (legend width matters)."""
    prefix = "minibroker-"
    return group[len(prefix):].replace("-", " ", 1) if group.startswith(prefix) else group


def _dates(times: Sequence[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in times]


def lag_figure(title: str, series: Sequence[Series], status: Sequence[Series],
               unit: str) -> go.Figure:
    """Lag per group over time; each point's marker has the colour of the group's status.

    ``status`` comes from the same range (same step), so points pair up by time.
    """
    fig = _base(title, yaxis_title=unit, xaxis_title="time (UTC)", hovermode="x unified")
    codes = {s.labels.get("group", ""): dict(zip(s.times, s.values, strict=True))
             for s in status}
    for i, s in enumerate(sorted(series, key=lambda s: s.labels.get("group", ""))):
        group = s.labels.get("group", "")
        at = codes.get(group, {})
        names = [_status_name(at.get(t)) for t in s.times]
        fig.add_trace(go.Scatter(
            x=_dates(s.times), y=s.values, name=short_group(group), mode="lines+markers",
            line={"color": GROUP_COLORS[i % len(GROUP_COLORS)], "width": 1.5},
            marker={"color": [STATUS_COLORS.get(n, "#bbbbbb") for n in names], "size": 6},
            customdata=names, meta=group,
            hovertemplate="%{y:.4g} " + unit + " (%{customdata})<extra>%{fullData.name}"
                          "</extra>",
        ))
    # Legend entries for the status colours (the markers carry them).
    for name, color in STATUS_COLORS.items():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker={"color": color, "size": 8}, legendgroup="status",
                                 showlegend=True, hoverinfo="skip"))
    return fig


def _status_name(code: float | None) -> str:
    if code is None or math.isnan(code):
        return "unknown"
    index = int(code)
    return STATUS_NAMES[index] if 0 <= index < len(STATUS_NAMES) else "unknown"


def visit_time_figure(visit_seconds: dict[str, dict[int, float]], interval: float,
                      interval_note: str = "") -> go.Figure:
    """Each group's processing time per visit against the visit interval."""
    fig = _base("Visit processing time per group", yaxis_title="seconds",
                xaxis_title="visit")
    for i, group in enumerate(sorted(visit_seconds)):
        per_visit = visit_seconds[group]
        visits = sorted(per_visit)
        fig.add_trace(go.Scatter(
            x=visits, y=[per_visit[v] for v in visits], name=short_group(group),
            mode="lines+markers", meta=group,
            line={"color": GROUP_COLORS[i % len(GROUP_COLORS)]},
        ))
    fig.add_hline(y=interval, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=f"visit interval {interval:g} s{interval_note}",
                  annotation_position="top left")
    fig.update_yaxes(rangemode="tozero")
    return fig


def heatmap_figure(hm: Heatmap, cap: int = 20) -> go.Figure:
    """Filters by visits: colour = alerts delivered (0..cap); x marks a cap hit."""
    height = max(420, 9 * len(hm.filters) + 120)
    fig = _base("Alerts delivered per filter and visit (x: cap hit)", height=height,
                xaxis_title="visit")
    columns = [str(v) for v in hm.visits]  # categorical: visits are not a time axis
    text = [
        [f"{hm.group_of.get(name, '')}<br>delivered {_fmt(d)}"
         + (f", {o:.0f} over the cap" if o > 0 else "")
         for d, o in zip(row, over, strict=True)]
        for name, row, over in zip(hm.filters, hm.delivered, hm.over_cap, strict=True)
    ]
    fig.add_trace(go.Heatmap(
        z=[[math.nan if d is None else d for d in row] for row in hm.delivered],
        x=columns, y=hm.filters, zmin=0, zmax=cap, colorscale="Viridis",
        text=text, hovertemplate="%{y} visit %{x}<br>%{text}<extra></extra>",
        colorbar={"title": {"text": "delivered"}, "thickness": 12}, xgap=1, ygap=1,
        name="delivered",
    ))
    xs, ys = [], []
    for name, over in zip(hm.filters, hm.over_cap, strict=True):
        for col, o in zip(columns, over, strict=True):
            if o > 0:
                xs.append(col)
                ys.append(name)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="cap hit",
                             marker={"symbol": "x-thin", "size": 6,
                                     "line": {"width": 1.5, "color": "white"}},
                             hoverinfo="skip"))
    # The title explains the x; a legend would sit on the colour bar.
    fig.update_layout(showlegend=False)
    fig.update_yaxes(autorange="reversed", type="category", tickfont={"size": 8},
                     dtick=1 if len(hm.filters) <= 40 else 5)
    fig.update_xaxes(type="category")
    return fig


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def latency_figure(latency: dict[str, Series | None]) -> go.Figure:
    """End-to-end latency percentiles over time (alert produced -> end consumer)."""
    fig = _base("End-to-end latency (produced -> end consumer)", yaxis_title="seconds",
                xaxis_title="time (UTC)")
    for q, color in (("p50", "#1f77b4"), ("p99", "#d62728")):
        s = latency.get(q)
        if s is not None:
            fig.add_trace(go.Scatter(x=_dates(s.times), y=s.values, name=q, mode="lines",
                                     line={"color": color}))
    fig.update_yaxes(rangemode="tozero")
    return fig


def producer_figure(series: Sequence[Series]) -> go.Figure:
    """Alerts acknowledged per second, per input topic."""
    fig = _base("Producer rate", yaxis_title="alerts/s", xaxis_title="time (UTC)")
    for s in series:
        fig.add_trace(go.Scatter(x=_dates(s.times), y=s.values, mode="lines",
                                 name=s.labels.get("topic", "all"), fill="tozeroy"))
    fig.update_yaxes(rangemode="tozero")
    return fig


def _thin(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    stride = max(1, math.ceil(len(xs) / _MAX_DRAWN))
    return list(xs[::stride]), list(ys[::stride])


def prediction_visit_figure(pred: Prediction, measured: Measured | None) -> go.Figure:
    """Predicted processing time of each visit per group, over the measured ones."""
    fig = _base("Visit processing time: model vs measured", yaxis_title="seconds",
                xaxis_title="visit (0 = first of the run / window)")
    for i, (group, row) in enumerate(zip(pred.groups, pred.visit_seconds, strict=True)):
        fig.add_trace(go.Scatter(
            x=list(range(len(row))), y=row, name=f"model {group}", mode="lines",
            line={"color": GROUP_COLORS[i % len(GROUP_COLORS)], "width": 2},
            legendgroup="model", meta="model",
        ))
    if measured is not None:
        for i, group in enumerate(sorted(measured.visit_seconds)):
            values = measured.visit_seconds[group]
            fig.add_trace(go.Scatter(
                x=list(range(len(values))), y=values, name=f"measured {short_group(group)}",
                mode="markers", legendgroup="measured", meta="measured",
                marker={"color": GROUP_COLORS[i % len(GROUP_COLORS)], "symbol": "circle-open",
                        "size": 9},
            ))
    fig.add_hline(y=pred.inputs.interval, line={"color": "#d62728", "dash": "dash"},
                  annotation_text=f"interval {pred.inputs.interval:g} s",
                  annotation_position="top left")
    fig.update_yaxes(rangemode="tozero")
    return fig


def prediction_lag_figure(pred: Prediction, measured: Measured | None) -> go.Figure:
    """Predicted lag (messages) over time per group, over the measured lag."""
    fig = _base("Lag over time: model vs measured", yaxis_title="messages",
                xaxis_title="seconds from the start of the run / window")
    for i, (group, row) in enumerate(zip(pred.groups, pred.lag_messages, strict=True)):
        xs, ys = _thin(pred.lag_t, row)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, name=f"model {group}", mode="lines", legendgroup="model",
            line={"color": GROUP_COLORS[i % len(GROUP_COLORS)], "width": 2}, meta="model",
        ))
    if measured is not None:
        for i, group in enumerate(sorted(measured.lag_messages)):
            fig.add_trace(go.Scatter(
                x=measured.lag_t, y=measured.lag_messages[group],
                name=f"measured {short_group(group)}", mode="lines", meta="measured",
                legendgroup="measured",
                line={"color": GROUP_COLORS[i % len(GROUP_COLORS)], "dash": "dot"},
            ))
    fig.update_yaxes(rangemode="tozero")
    return fig
