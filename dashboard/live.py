"""What the Live and Filters pages show: their PromQL, and the data shaped for drawing.

Every query is a module constant so tests (and Grafana's panels) can be checked against
the metric names of :mod:`monitoring.metrics`. :class:`LiveSource` runs a page's queries
concurrently and returns one snapshot; a panel whose query fails gets an error string
instead of data, so one bad panel never blanks the page. The per-visit reconstruction
(:func:`by_visit`, :func:`build_heatmap`) is pure.

Per-visit values without a visit label
--------------------------------------
``minibroker_filter_visit_delivered{group,filter}`` holds the last *completed* visit's
count and ``minibroker_filter_last_visit{group}`` that visit's number. Both come from the
same scrape of the same target, so at any evaluation time of a range query they describe
the same moment: pairing the two series point by point tells which visit every delivered
sample belongs to. The last sample of each visit is kept (the most settled one).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dashboard.prom import (
    AlertmanagerClient,
    FiringAlert,
    PrometheusClient,
    PrometheusError,
    PrometheusUnreachable,
    Sample,
    Series,
    step_for,
)

__all__ = [
    "DEFAULT_GROUPS",
    "STATUS_NAMES",
    "FilterStats",
    "Heatmap",
    "LiveSnapshot",
    "LiveSource",
    "Measured",
    "Window",
    "build_heatmap",
    "by_visit",
    "queries",
]

log = logging.getLogger(__name__)

# The lag exporter's Burrow-style status codes (monitoring.metrics.LagMetrics.STATUSES).
STATUS_NAMES = ("OK", "WARN", "ERR", "STALL", "STOP")
# Filter groups only: end users' consumer groups would drown the lag charts.
DEFAULT_GROUPS = "minibroker-filters-.*"

# Range queries return at most this many points per series (see prom.step_for).
MAX_POINTS = 240
HEATMAP_POINTS = 80
# The visit-time chart samples every visit (step <= interval / 2), so it covers at most
# this many recent visits whatever the page window.
VISIT_CHART_VISITS = 100

# PromQL. {groups} is a regex of consumer groups, {rate} a range like 2m, {window} the
# page's window like 3600s.
LAG_MESSAGES = 'sum by (group) (minibroker_consumer_group_lag_messages{{group=~"{groups}"}})'
LAG_SECONDS = 'max by (group) (minibroker_consumer_group_lag_seconds{{group=~"{groups}"}})'
LAG_STATUS = 'max by (group) (minibroker_consumer_group_status{{group=~"{groups}"}})'
# A group's gauges read 0 until it completes its first visit: without the guard every chart
# would draw a "visit 0" taking 0 s before any visit was filtered.
LAST_VISIT = ("max by (group) (minibroker_filter_last_visit)"
              " and on (group) (max by (group) (minibroker_filter_visits_completed_total) > 0)")
VISIT_SECONDS = "max by (group) (minibroker_filter_last_visit_seconds)"
VISIT_DELIVERED = "max by (group, filter) (minibroker_filter_visit_delivered)"
# Only the (filter, time) points where the cap bit: passed before the cap > delivered.
VISIT_OVER_CAP = ("max by (group, filter) (minibroker_filter_visit_passed"
                  " - minibroker_filter_visit_delivered) > 0")
E2E_QUANTILE = ("histogram_quantile({q}, sum by (le) "
                "(rate(minibroker_end_to_end_seconds_bucket[{rate}])))")
PRODUCER_RATE = "sum by (topic) (rate(minibroker_alerts_produced_total[{rate}]))"
VISIT_INTERVAL = "minibroker:visit_interval_seconds"
ANY_DATA = 'count({__name__=~"minibroker_.+"})'
F_DELIVERED = "sum by (group, filter) (increase(minibroker_filter_alerts_passed_total[{window}]))"
F_OVER_CAP = "sum by (group, filter) (increase(minibroker_filter_alerts_capped_total[{window}]))"
F_ERRORS = "sum by (group, filter) (increase(minibroker_filter_errors_total[{window}]))"
F_CONSUMED = "sum by (group) (increase(minibroker_filter_alerts_consumed_total[{window}]))"
F_LAST_DELIVERED = "max by (group, filter) (minibroker_filter_visit_delivered)"
F_LAST_PASSED = "max by (group, filter) (minibroker_filter_visit_passed)"
# The running pipeline's shape, for the capacity page's "use live values". Lifetime totals
# of the producer give its alerts per visit (both counters reset together), except while a
# visit is being sent: its acknowledged alerts count before the visit does, so the ratio is
# then too high. The minimum over the last two minutes is taken between visits: exact.
SHAPE_ALERTS_PER_VISIT = ("min_over_time((sum(minibroker_alerts_produced_total)"
                          " / sum(minibroker_visits_produced_total))[2m:])")
# Filter groups are the configured filter scrape targets (each labelled with its group), so
# a frozen or crashed group, whose own series go stale, still counts as one of the pipeline's.
SHAPE_GROUPS = 'count(count by (group) (up{service="filter"}))'
SHAPE_FILTERS = "max(count by (group) (minibroker_filter_visit_delivered))"
SHAPE_USERS = 'count(up{service="consumer"} == 1)'


def queries() -> dict[str, str]:
    """Every query template of the dashboard, by name (for tests and documentation)."""
    return {name: value for name, value in globals().items()
            if name.isupper() and isinstance(value, str)
            and ("minibroker_" in value or "minibroker:" in value or "up{service=" in value)}


def _rate_window(step: float, interval: float) -> str:
    # A rate must span a few scrapes (30 s covers 10-s scrapes), every point between two
    # points (4 steps) and two visits, or bursty visits make it saw-toothed.
    return f"{int(max(30.0, 4 * step, 2 * interval))}s"


@dataclass(frozen=True)
class Window:
    """A time window ending now, with a step bounding its number of points.

    The end is the query time itself, not a step boundary, so the newest point is always
    the latest data (a step-aligned end can be a whole step old).
    """

    seconds: float
    end: float
    step: float

    @classmethod
    def last(cls, seconds: float, now: float | None = None,
             max_points: int = MAX_POINTS, max_step: float | None = None) -> Window:
        """The last ``seconds`` up to ``now`` with at most ``max_points`` points."""
        step = step_for(seconds, max_points)
        if max_step is not None:
            step = max(1.0, min(step, max_step))
        return cls(seconds, time.time() if now is None else now, step)

    @property
    def start(self) -> float:
        """The first evaluation time."""
        return self.end - self.seconds


def by_visit(last_visit: Series, values: Series) -> dict[int, float]:
    """Visit number -> ``values`` at the last time ``last_visit`` showed that visit.

    Both series must come from range queries with the same start and step (they then
    share evaluation times); times present in only one are ignored.
    """
    visit_at = {t: v for t, v in zip(last_visit.times, last_visit.values, strict=True)
                if not math.isnan(v)}
    out: dict[int, float] = {}
    for t, value in zip(values.times, values.values, strict=True):
        visit = visit_at.get(t)
        if visit is not None and not math.isnan(value):
            out[int(visit)] = value  # later times overwrite: the most settled value wins
    return out


@dataclass
class Heatmap:
    """Filters (rows) by visits (columns): alerts delivered, and alerts over the cap."""

    filters: list[str]
    visits: list[int]
    delivered: list[list[float | None]]
    """``delivered[row][col]``; None: that group had not completed that visit (or it was
    not sampled)."""
    over_cap: list[list[float]]
    """Alerts that passed but were over the cap (0 when the cap did not bite)."""
    group_of: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no visit was seen."""
        return not self.visits or not self.filters


def build_heatmap(last_visit: Iterable[Series], delivered: Iterable[Series],
                  over_cap: Iterable[Series], visits: int = 20) -> Heatmap:
    """Assemble the heatmap of the last ``visits`` visit numbers from range query results.

    ``last_visit`` has one series per group, ``delivered`` and ``over_cap`` one per
    (group, filter); all share start and step. Rows are sorted by filter name.
    """
    lv = {s.labels.get("group", ""): s for s in last_visit}
    cells: dict[str, dict[int, float]] = {}
    group_of: dict[str, str] = {}
    for s in delivered:
        name, group = s.labels.get("filter", ""), s.labels.get("group", "")
        group_of[name] = group
        cells[name] = by_visit(lv[group], s) if group in lv else {}
    capped: dict[str, dict[int, float]] = {}
    for s in over_cap:
        group = s.labels.get("group", "")
        if group in lv:
            capped[s.labels.get("filter", "")] = by_visit(lv[group], s)
    seen = {v for row in cells.values() for v in row}
    recent = sorted(seen)[-visits:] if visits > 0 else []
    names = sorted(cells)
    return Heatmap(
        filters=names,
        visits=recent,
        delivered=[[cells[n].get(v) for v in recent] for n in names],
        over_cap=[[capped.get(n, {}).get(v, 0.0) for v in recent] for n in names],
        group_of=group_of,
    )


@dataclass
class FilterStats:
    """One filter's numbers over the page window."""

    group: str = ""
    delivered: float = 0.0
    over_cap: float = 0.0
    errors: float = 0.0
    pass_rate: float = math.nan
    """(delivered + over cap) / alerts the group consumed; NaN when it consumed nothing."""
    last_delivered: float = math.nan
    last_over_cap: float = math.nan


@dataclass
class LiveSnapshot:
    """Everything the Live page draws, from one round of queries."""

    window: Window
    state: str = "ok"
    """``ok``, ``no-data`` (Prometheus answers, no mini-broker series) or ``unreachable``."""
    message: str = ""
    interval: float = 39.0
    interval_from_rule: bool = False
    lag_messages: list[Series] = field(default_factory=list)
    lag_seconds: list[Series] = field(default_factory=list)
    lag_status: list[Series] = field(default_factory=list)
    visit_seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    heatmap: Heatmap | None = None
    latency: dict[str, Series | None] = field(default_factory=dict)
    producer_rate: list[Series] = field(default_factory=list)
    alerts: list[FiringAlert] = field(default_factory=list)
    alerts_source: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    """Panel -> error message for panels whose query failed."""


@dataclass
class Measured:
    """Live values laid over the capacity model's prediction."""

    state: str = "ok"
    message: str = ""
    visit_seconds: dict[str, list[float]] = field(default_factory=dict)
    """Group -> processing times of its last visits, oldest first."""
    lag_t: list[float] = field(default_factory=list)
    lag_messages: dict[str, list[float]] = field(default_factory=dict)
    """Group -> lag in messages at ``lag_t`` (seconds from the window's start)."""


class LiveSource:
    """Runs the dashboard's queries against one Prometheus (and maybe one Alertmanager)."""

    def __init__(self, prometheus: PrometheusClient, alertmanager: AlertmanagerClient | None,
                 groups: str = DEFAULT_GROUPS, visit_interval: float = 39.0,
                 heatmap_visits: int = 20) -> None:
        try:
            re.compile(groups)
        except re.error as exc:
            raise ValueError(f"groups {groups!r} is not a regular expression: {exc}") from None
        if '"' in groups or "\\" in groups:
            raise ValueError(f"groups {groups!r} may not contain quotes or backslashes")
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.groups = groups
        self.visit_interval = visit_interval
        self.heatmap_visits = heatmap_visits

    # -- helpers ---------------------------------------------------------------------
    def _run(self, jobs: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], dict[str, str]]:
        """Run ``jobs`` concurrently; PrometheusUnreachable propagates, others are
        returned as per-job error messages."""
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        unreachable: PrometheusUnreachable | None = None
        # Queries are I/O-bound: side by side, a refresh costs the slowest query, not
        # their sum. The pool lives for one refresh so no idle threads linger.
        with ThreadPoolExecutor(max_workers=min(8, len(jobs)),
                                thread_name_prefix="dashboard-query") as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            for name, future in futures.items():
                try:
                    results[name] = future.result()
                except PrometheusUnreachable as exc:
                    unreachable = unreachable or exc
                except PrometheusError as exc:
                    log.warning("panel %s: %s", name, exc)
                    errors[name] = str(exc)
        if unreachable is not None:
            raise unreachable
        return results, errors

    def health(self) -> tuple[str, str]:
        """(state, message): ``ok``, ``no-data`` or ``unreachable``."""
        try:
            samples = self.prometheus.query(ANY_DATA)
        except PrometheusUnreachable as exc:
            return "unreachable", str(exc)
        except PrometheusError as exc:
            return "unreachable", str(exc)
        if not samples or not samples[0].value:
            return "no-data", (
                f"Prometheus at {self.prometheus.url} answers but has no minibroker_* "
                "series yet: start the pipeline (minibroker demo) and allow ~10 s for "
                "the first scrape.")
        return "ok", f"Prometheus at {self.prometheus.url}"

    def interval(self) -> tuple[float, bool]:
        """The visit interval: the alert rules' recording rule if loaded, else the option."""
        try:
            samples = self.prometheus.query(VISIT_INTERVAL)
        except PrometheusError:
            return self.visit_interval, False
        if samples and samples[0].value > 0:
            return samples[0].value, True
        return self.visit_interval, False

    def _alerts(self) -> tuple[list[FiringAlert], str]:
        if self.alertmanager is not None:
            try:
                return self.alertmanager.alerts(), f"Alertmanager at {self.alertmanager.url}"
            except PrometheusError as exc:
                log.info("alertmanager: %s; falling back to Prometheus's alerts", exc)
                return (self.prometheus.firing_alerts(),
                        f"Prometheus (Alertmanager unreachable: {exc})")
        return self.prometheus.firing_alerts(), f"Prometheus at {self.prometheus.url}"

    # -- pages -----------------------------------------------------------------------
    def live(self, window_seconds: float, now: float | None = None) -> LiveSnapshot:
        """One snapshot of the Live page over the last ``window_seconds``."""
        window = Window.last(window_seconds, now)
        snap = LiveSnapshot(window=window, interval=self.visit_interval)
        state, message = self.health()
        snap.state, snap.message = state, message
        if state == "unreachable":
            return snap
        snap.interval, snap.interval_from_rule = self.interval()
        # The heatmap needs every visit sampled: its window covers the recent visits only
        # and its step stays under half a visit interval.
        hm = Window.last(self.heatmap_visits * snap.interval + 2 * snap.interval, window.end,
                         HEATMAP_POINTS, max_step=snap.interval / 2)
        visits = Window.last(min(window.seconds, VISIT_CHART_VISITS * snap.interval),
                             window.end, 2 * VISIT_CHART_VISITS, max_step=snap.interval / 2)
        rate = _rate_window(window.step, snap.interval)
        pq = self.prometheus

        def rng(expr: str, w: Window = window) -> Callable[[], list[Series]]:
            return lambda: pq.query_range(expr, w.start, w.end, w.step)

        jobs: dict[str, Callable[[], Any]] = {
            "lag_messages": rng(LAG_MESSAGES.format(groups=self.groups)),
            "lag_seconds": rng(LAG_SECONDS.format(groups=self.groups)),
            "lag_status": rng(LAG_STATUS.format(groups=self.groups)),
            "last_visit": rng(LAST_VISIT, visits),
            "visit_seconds": rng(VISIT_SECONDS, visits),
            "hm_last_visit": rng(LAST_VISIT, hm),
            "hm_delivered": rng(VISIT_DELIVERED, hm),
            "hm_over_cap": rng(VISIT_OVER_CAP, hm),
            "p50": rng(E2E_QUANTILE.format(q=0.5, rate=rate)),
            "p99": rng(E2E_QUANTILE.format(q=0.99, rate=rate)),
            "producer_rate": rng(PRODUCER_RATE.format(rate=rate)),
            "alerts": self._alerts,
        }
        try:
            results, errors = self._run(jobs)
        except PrometheusUnreachable as exc:
            snap.state, snap.message = "unreachable", str(exc)
            return snap
        snap.errors = errors
        snap.lag_messages = results.get("lag_messages", [])
        snap.lag_seconds = results.get("lag_seconds", [])
        snap.lag_status = results.get("lag_status", [])
        last = {s.labels.get("group", ""): s for s in results.get("last_visit", [])}
        snap.visit_seconds = {
            s.labels.get("group", ""): by_visit(last[s.labels.get("group", "")], s)
            for s in results.get("visit_seconds", []) if s.labels.get("group", "") in last
        }
        if "hm_delivered" in results and "hm_last_visit" in results:
            snap.heatmap = build_heatmap(results["hm_last_visit"], results["hm_delivered"],
                                         results.get("hm_over_cap", []), self.heatmap_visits)
        snap.latency = {
            q: (results[q][0] if results.get(q) else None) for q in ("p50", "p99")
        }
        snap.producer_rate = results.get("producer_rate", [])
        if "alerts" in results:
            snap.alerts, snap.alerts_source = results["alerts"]
        return snap

    def filter_stats(self, window_seconds: float) -> tuple[str, str, dict[str, FilterStats]]:
        """(state, message, filter name -> stats) over the last ``window_seconds``."""
        state, message = self.health()
        if state != "ok":
            return state, message, {}
        w = f"{int(window_seconds)}s"
        pq = self.prometheus

        def inst(expr: str) -> Callable[[], list[Sample]]:
            return lambda: pq.query(expr)

        try:
            results, errors = self._run({
                "delivered": inst(F_DELIVERED.format(window=w)),
                "over_cap": inst(F_OVER_CAP.format(window=w)),
                "errors": inst(F_ERRORS.format(window=w)),
                "consumed": inst(F_CONSUMED.format(window=w)),
                "last_delivered": inst(F_LAST_DELIVERED),
                "last_passed": inst(F_LAST_PASSED),
            })
        except PrometheusUnreachable as exc:
            return "unreachable", str(exc), {}
        stats: dict[str, FilterStats] = {}

        def each(name: str) -> Iterable[tuple[FilterStats, Sample]]:
            for sample in results.get(name, []):
                f = sample.labels.get("filter", "")
                row = stats.setdefault(f, FilterStats())
                row.group = sample.labels.get("group", row.group)
                yield row, sample

        for row, s in each("delivered"):
            row.delivered = s.value
        for row, s in each("over_cap"):
            row.over_cap = s.value
        for row, s in each("errors"):
            row.errors = s.value
        for row, s in each("last_delivered"):
            row.last_delivered = s.value
        for row, s in each("last_passed"):
            if not math.isnan(row.last_delivered):
                row.last_over_cap = max(0.0, s.value - row.last_delivered)
        consumed = {s.labels.get("group", ""): s.value for s in results.get("consumed", [])}
        for row in stats.values():
            total = consumed.get(row.group, 0.0)
            if total > 0:
                row.pass_rate = (row.delivered + row.over_cap) / total
        return state, "; ".join(errors.values()), stats

    def shape(self) -> dict[str, float]:
        """The live pipeline's alerts per visit, interval, groups, filters per group and
        end users, as far as Prometheus knows them (missing keys: unknown)."""
        pq = self.prometheus

        def one(expr: str) -> Callable[[], float | None]:
            def run() -> float | None:
                samples = pq.query(expr)
                value = samples[0].value if samples else math.nan
                return None if math.isnan(value) or math.isinf(value) else value
            return run

        results, _errors = self._run({
            "alerts_per_visit": one(SHAPE_ALERTS_PER_VISIT), "groups": one(SHAPE_GROUPS),
            "filters_per_group": one(SHAPE_FILTERS), "users": one(SHAPE_USERS),
        })
        shape = {k: v for k, v in results.items() if v is not None}
        interval, from_rule = self.interval()
        if from_rule:
            shape["interval"] = interval
        return shape

    def measured(self, visits: int, interval: float) -> Measured:
        """Live visit times and lag of the last ``visits`` visits, for the capacity page."""
        out = Measured()
        state, message = self.health()
        if state != "ok":
            out.state, out.message = state, message
            return out
        window = Window.last(max(visits * interval, 10.0), max_points=MAX_POINTS,
                             max_step=interval / 2)
        pq = self.prometheus

        def rng(expr: str) -> Callable[[], list[Series]]:
            return lambda: pq.query_range(expr, window.start, window.end, window.step)

        try:
            results, errors = self._run({
                "last_visit": rng(LAST_VISIT), "visit_seconds": rng(VISIT_SECONDS),
                "lag": rng(LAG_MESSAGES.format(groups=self.groups)),
            })
        except PrometheusUnreachable as exc:
            out.state, out.message = "unreachable", str(exc)
            return out
        last = {s.labels.get("group", ""): s for s in results.get("last_visit", [])}
        for s in results.get("visit_seconds", []):
            group = s.labels.get("group", "")
            if group in last:
                per_visit = by_visit(last[group], s)
                out.visit_seconds[group] = [per_visit[v] for v in sorted(per_visit)][-visits:]
        lag = results.get("lag", [])
        if lag:
            t0 = min(s.times[0] for s in lag if s.times) if any(s.times for s in lag) else 0.0
            grid = sorted({t for s in lag for t in s.times})
            out.lag_t = [t - t0 for t in grid]
            for s in lag:
                at = dict(zip(s.times, s.values, strict=True))
                out.lag_messages[s.labels.get("group", "")] = [at.get(t, math.nan)
                                                               for t in grid]
        out.message = "; ".join(errors.values())
        return out
