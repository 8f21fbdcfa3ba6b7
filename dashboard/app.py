"""``minibroker dashboard``: the live Dash dashboard.

Three tabs: *Live* (lag per group coloured by the lag exporter's status, visit processing
time against the visit interval, a filters-by-visits heatmap of alerts delivered and cap
hits, end-to-end latency, producer rate, firing alerts), *Capacity* (the SimPy model's
what-if over the live values) and *Filters* (the catalogue with pass rates and cap hits).
Data come from the Prometheus HTTP API; nothing is stored here. Each tab refreshes in
place on a timer, and only while it is the visible one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from broker.options import option, positive_float, positive_int
from dashboard import figures
from dashboard.capacity import CapacityInputs, predict
from dashboard.layout import CAPACITY_FIELDS, build_layout
from dashboard.live import DEFAULT_GROUPS, FilterStats, LiveSnapshot, LiveSource
from dashboard.prom import (
    AlertmanagerClient,
    FiringAlert,
    PrometheusClient,
    PrometheusError,
)

__all__ = ["DashboardSettings", "add_parser_args", "create_app", "main"]

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("assets")


class DashboardSettings:
    """Settings of one dashboard (the parsed command line, or a test's choice)."""

    def __init__(self, prometheus_url: str = "http://127.0.0.1:9090",
                 alertmanager_url: str | None = "http://127.0.0.1:9093",
                 refresh_interval: float = 5.0, visit_interval: float = 39.0,
                 groups: str = DEFAULT_GROUPS, query_timeout: float = 5.0,
                 calibration: str | None = None, heatmap_visits: int = 20) -> None:
        self.prometheus_url = prometheus_url
        self.alertmanager_url = alertmanager_url or None
        self.refresh_interval = refresh_interval
        self.visit_interval = visit_interval
        self.groups = groups
        self.query_timeout = query_timeout
        self.calibration = calibration or None
        self.heatmap_visits = heatmap_visits


def _banner(state: str, message: str) -> tuple[Any, str]:
    if state == "unreachable":
        return ([html.B("Prometheus unreachable. "), message], "banner banner-unreachable")
    if state == "no-data":
        return ([html.B("No data yet. "), message], "banner banner-nodata")
    return ([html.B("Live. "), message], "banner banner-ok")


def _alerts_table(alerts: list[FiringAlert], source: str) -> Any:
    if not alerts:
        return html.Div(className="no-alerts", children=[
            html.Span("No alerts firing."), html.Div(f"source: {source}", className="note")])
    rows = [html.Tr([html.Th("Alert"), html.Th("Severity"), html.Th("Group / filter"),
                     html.Th("Summary"), html.Th("Since")])]
    for a in alerts:
        where = a.labels.get("filter") or a.labels.get("group") or a.labels.get("instance", "")
        rows.append(html.Tr(className=f"sev-{a.severity or 'none'}", children=[
            html.Td(a.name), html.Td(a.severity), html.Td(where), html.Td(a.summary),
            html.Td(a.starts_at[:19].replace("T", " ")),
        ]))
    return html.Div([html.Table(rows, className="alerts-table"),
                     html.Div(f"source: {source}", className="note")])


def _live_outputs(snap: LiveSnapshot) -> tuple[Any, ...]:
    """The Live tab's figures, alerts and note from one snapshot."""
    if snap.state != "ok":
        reason = ("Prometheus unreachable" if snap.state == "unreachable" else
                  "No data yet: no mini-broker series in Prometheus")
        titles = ("Lag per group (messages)", "Lag per group (seconds)",
                  "Visit processing time per group", "Alerts delivered per filter and visit",
                  "End-to-end latency", "Producer rate")
        empties = [figures.empty_figure(t, reason) for t in titles]
        return (*empties, html.Div(reason, className="no-alerts"), snap.message)

    def or_empty(title: str, key: str, has: bool, fig: Any, hint: str) -> Any:
        if key in snap.errors:
            return figures.empty_figure(title, f"query failed: {snap.errors[key][:160]}")
        return fig if has else figures.empty_figure(title, f"No data yet: {hint}")

    lag_hint = "the lag exporter (minibroker lag) has not reported these groups"
    hm = snap.heatmap
    note = (f"window {snap.window.seconds / 60:g} min, one point per {snap.window.step:g} s; "
            f"visit interval {snap.interval:g} s "
            f"({'alert rules' if snap.interval_from_rule else '--visit-interval'})")
    interval_note = "" if snap.interval_from_rule else " (--visit-interval)"
    return (
        or_empty("Lag per group (messages)", "lag_messages", bool(snap.lag_messages),
                 figures.lag_figure("Lag per group (messages)", snap.lag_messages,
                                    snap.lag_status, "messages"), lag_hint),
        or_empty("Lag per group (seconds)", "lag_seconds", bool(snap.lag_seconds),
                 figures.lag_figure("Lag per group (seconds)", snap.lag_seconds,
                                    snap.lag_status, "s"), lag_hint),
        or_empty("Visit processing time per group", "visit_seconds",
                 any(snap.visit_seconds.values()),
                 figures.visit_time_figure(snap.visit_seconds, snap.interval, interval_note),
                 "no filter group has completed a visit in this window"),
        or_empty("Alerts delivered per filter and visit", "hm_delivered",
                 hm is not None and not hm.empty,
                 figures.heatmap_figure(hm) if hm is not None and not hm.empty else None,
                 "no filter group has completed a visit recently"),
        or_empty("End-to-end latency", "p50", any(snap.latency.values()),
                 figures.latency_figure(snap.latency),
                 "no end consumer (minibroker monitor) has received alerts in this window"),
        or_empty("Producer rate", "producer_rate", bool(snap.producer_rate),
                 figures.producer_figure(snap.producer_rate),
                 "the producer (minibroker produce) is not scraped"),
        _alerts_table(snap.alerts, snap.alerts_source) if snap.alerts_source else
        html.Div(f"alerts unavailable: {snap.errors.get('alerts', '')}"),
        note,
    )


def _catalogue() -> list[Any]:
    try:
        from broker.catalogue import default_filters

        return list(default_filters())
    except Exception as exc:  # the catalogue is another part: degrade to Prometheus only
        log.warning("filter catalogue unavailable: %s", exc)
        return []


def filter_rows(catalogue: list[Any], stats: dict[str, FilterStats]) -> list[dict[str, Any]]:
    """Rows of the Filters table: every catalogue filter, plus any only Prometheus knows."""
    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    rows = []
    names = [f.name for f in catalogue]
    extra = sorted(set(stats) - set(names))
    described = {f.name: f for f in catalogue}
    for name in names + extra:
        f = described.get(name)
        s = stats.get(name, FilterStats())
        rows.append({
            "filter": name, "group": figures.short_group(s.group),
            "description": getattr(f, "description", "") if f else "(not in the catalogue)",
            "fields": ", ".join(sorted(getattr(f, "fields", ()) or ())) if f else "",
            "delivered": num(s.delivered), "over_cap": num(s.over_cap),
            "pass_rate": num(s.pass_rate), "last_delivered": num(s.last_delivered),
            "last_over_cap": num(s.last_over_cap), "errors": num(s.errors),
        })
    return rows


def create_app(settings: DashboardSettings | None = None) -> dash.Dash:
    """Build the Dash app (not started)."""
    settings = settings or DashboardSettings()
    prometheus = PrometheusClient(settings.prometheus_url, settings.query_timeout)
    alertmanager = (AlertmanagerClient(settings.alertmanager_url, settings.query_timeout)
                    if settings.alertmanager_url else None)
    source = LiveSource(prometheus, alertmanager, settings.groups, settings.visit_interval,
                        settings.heatmap_visits)
    catalogue = _catalogue()
    defaults = CapacityInputs(calibration=settings.calibration)

    app = dash.Dash(__name__, title="mini-broker dashboard", assets_folder=str(ASSETS),
                    update_title="")
    app.layout = build_layout(settings.prometheus_url, settings.refresh_interval, defaults)

    @app.callback(Output("status-banner", "children"), Output("status-banner", "className"),
                  Input("tick", "n_intervals"))
    def _status(_n: int) -> tuple[Any, str]:
        return _banner(*source.health())

    @app.callback(
        Output("lag-messages", "figure"), Output("lag-seconds", "figure"),
        Output("visit-seconds", "figure"), Output("heatmap", "figure"),
        Output("latency", "figure"), Output("producer-rate", "figure"),
        Output("alerts", "children"), Output("live-note", "children"),
        Input("tick", "n_intervals"), Input("window", "value"), Input("tabs", "value"),
    )
    def _live(_n: int, window: int, tab: str) -> tuple[Any, ...]:
        if tab != "live":
            raise PreventUpdate  # hidden tabs cost no queries
        return _live_outputs(source.live(float(window or 900)))

    cap_ids = [f"cap-{s}" for s in CAPACITY_FIELDS]

    # Two steps, after plotly/dash#1613: the renderer drops a callback's pending result
    # when the same callback fires again, so a model run slower than the refresh tick
    # (40,000 alerts on a loaded machine) would never be drawn if the tick re-ran it.
    # The model runs on input changes only; a tick of its own (see CAPACITY_REFRESH_MIN)
    # redraws from its cached result.
    @app.callback(
        Output("cap-inputs", "data"),
        *[Input(i, "value") for i in cap_ids],
        Input("cap-profile", "value"), Input("cap-reads", "value"),
    )
    def _capacity_run(*values: Any) -> dict[str, Any]:
        numbers = values[:len(cap_ids)]
        profile, reads = values[len(cap_ids):]
        kwargs: dict[str, Any] = {}
        for (label, attr, _lo, _hi, _step), value in zip(CAPACITY_FIELDS.values(), numbers,
                                                         strict=True):
            if value is None:
                return {"error": f"{label}: enter a number within the allowed range"}
            kwargs[attr] = float(value) if attr in ("interval", "cores") else int(value)
        inputs = CapacityInputs(profile=profile or "realistic", reads=reads or "diaSource",
                                calibration=settings.calibration, **kwargs)
        predict(inputs)  # cached: the drawing callback below finds it done
        return {"inputs": dataclasses.asdict(inputs)}

    @app.callback(
        Output("cap-verdict", "children"), Output("cap-verdict", "className"),
        Output("cap-visit-seconds", "figure"), Output("cap-lag", "figure"),
        Input("cap-inputs", "data"), Input("cap-tick", "n_intervals"), Input("tabs", "value"),
    )
    def _capacity(run: dict[str, Any] | None, _n: int, tab: str) -> tuple[Any, ...]:
        if tab != "capacity" and dash.ctx.triggered_id in ("cap-tick", "tabs"):
            raise PreventUpdate
        if not run:
            raise PreventUpdate  # the first model run has not finished yet
        if "error" in run:
            empty = figures.empty_figure("Capacity model", run["error"])
            return run["error"], "verdict verdict-error", empty, empty
        inputs = CapacityInputs(**run["inputs"])
        pred = predict(inputs)
        if pred.error:
            empty = figures.empty_figure("Capacity model", pred.error)
            return pred.error, "verdict verdict-error", empty, empty
        measured = source.measured(inputs.visits, inputs.interval)
        live_note = {"ok": "measured: the live pipeline's last visits",
                     "no-data": "no live pipeline data to compare",
                     "unreachable": "Prometheus unreachable: model only"}[measured.state]
        overlay = measured if measured.state == "ok" else None
        e2e = (f"end-to-end p50 {pred.e2e_p50:.2f} s, p99 {pred.e2e_p99:.2f} s"
               if not math.isnan(pred.e2e_p50) else "no end-to-end deliveries")
        if pred.keeps_up:
            text = [html.B("Keeps up. "),
                    f"Every visit is processed within the {inputs.interval:g} s interval; "
                    f"{e2e}. ({live_note}; model run {pred.wall_seconds:.1f} s)"]
            css = "verdict verdict-ok"
        else:
            text = [html.B("Falls behind. "), "; ".join(pred.reasons[:3]),
                    f". {e2e}. ({live_note})"]
            css = "verdict verdict-bad"
        return (text, css, figures.prediction_visit_figure(pred, overlay),
                figures.prediction_lag_figure(pred, overlay))

    live_fields = {"alerts": "alerts_per_visit", "interval": "interval", "groups": "groups",
                   "filters": "filters_per_group", "users": "users"}

    @app.callback(
        *[Output(f"cap-{k}", "value") for k in live_fields],
        *[Output(f"cap-{k}", p) for k in live_fields for p in ("n_submit", "n_blur")],
        Output("cap-live-note", "children"),
        Input("cap-from-live", "n_clicks"),
        *[State(f"cap-{k}", p) for k in live_fields for p in ("n_submit", "n_blur")],
        prevent_initial_call=True,
    )
    def _from_live(_clicks: int, *counters: int | None) -> tuple[Any, ...]:
        # Dash 4's Input keeps the value of its last Enter/blur in a callback that is
        # only renewed when n_submit/n_blur change: without bumping them, typing that
        # same value again after this server-side update would be ignored.
        bumped = [(n or 0) + 1 for n in counters]
        unchanged = [dash.no_update] * (len(live_fields) + len(counters))
        try:
            shape = source.shape()
        except PrometheusError as exc:
            return (*unchanged, f"Live values unavailable: {exc}")
        if not shape:
            return (*unchanged, "No live pipeline in Prometheus yet: inputs left as they were.")
        values = [shape.get(attr) for attr in live_fields.values()]
        out = [dash.no_update if v is None else (round(v, 1) if attr == "interval"
                                                  else round(v))
               for v, attr in zip(values, live_fields.values(), strict=True)]
        got = ", ".join(f"{CAPACITY_FIELDS[k][0].lower()} {o}"
                        for k, o in zip(live_fields, out, strict=True)
                        if o is not dash.no_update)
        return (*out, *bumped, f"From the live pipeline: {got}.")

    @app.callback(
        Output("filters-table", "data"), Output("filters-note", "children"),
        Input("tick", "n_intervals"), Input("window", "value"), Input("tabs", "value"),
    )
    def _filters(_n: int, window: int, tab: str) -> tuple[Any, ...]:
        if tab != "filters":
            raise PreventUpdate
        seconds = float(window or 900)
        state, message, stats = source.filter_stats(seconds)
        note = (f"{len(catalogue)} filters in the catalogue; counts over the last "
                f"{seconds / 60:g} min. Pass rate = (delivered + over cap) / alerts the "
                "group consumed.")
        if state != "ok":
            note = f"{note} Live numbers unavailable: {message}"
        elif message:
            note = f"{note} Some queries failed: {message}"
        return filter_rows(catalogue, stats), note

    return app


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker dashboard``."""
    option(parser, "--port", default=8050, type=positive_int, help="port to serve the page on")
    option(parser, "--host", default="127.0.0.1",
           help="address to listen on (0.0.0.0 in a container)")
    option(parser, "--prometheus-url", default="http://127.0.0.1:9090",
           help="base URL of the Prometheus HTTP API")
    option(parser, "--alertmanager-url", default="http://127.0.0.1:9093",
           help="base URL of Alertmanager (API v2) for firing alerts; empty = "
                "Prometheus's own alerts")
    option(parser, "--refresh-interval", default=5.0, type=positive_float, metavar="SECONDS",
           help="seconds between refreshes of the visible tab")
    option(parser, "--visit-interval", default=39.0, type=positive_float, metavar="SECONDS",
           help="visit interval to draw when Prometheus has no "
                "minibroker:visit_interval_seconds rule")
    option(parser, "--groups", dest="dashboard_groups", default=DEFAULT_GROUPS,
           metavar="REGEX", help="consumer groups to draw on the lag charts")
    option(parser, "--query-timeout", default=5.0, type=positive_float, metavar="SECONDS",
           help="seconds to wait for each Prometheus/Alertmanager request")
    option(parser, "--calibration",
           help="capacity model calibration file (default: the one shipped with sim/)")


def main(args: argparse.Namespace) -> int:
    """Serve the live Dash dashboard."""
    from broker.options import UsageError

    try:
        settings = DashboardSettings(
            prometheus_url=args.prometheus_url, alertmanager_url=args.alertmanager_url,
            refresh_interval=args.refresh_interval, visit_interval=args.visit_interval,
            groups=args.dashboard_groups, query_timeout=args.query_timeout,
            calibration=args.calibration,
        )
        app = create_app(settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # The command, not the library, decides this: Flask's access log would add a line
        # per panel per refresh to the service's log. --log-level DEBUG keeps it.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log.info("dashboard on http://%s:%d/ reading %s", args.host, args.port,
             settings.prometheus_url)
    print(f"dashboard: http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:"
          f"{args.port}/", flush=True)
    app.run(host=args.host, port=args.port, debug=False)
    return 0
