"""dashboard.live: per-visit reconstruction, windows, and page states on a stub Prometheus."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from dashboard import live
from dashboard.live import LiveSource, Window, build_heatmap, by_visit
from dashboard.prom import PrometheusUnreachable, QueryError, Sample, Series
from monitoring.metrics import (
    ConsumerMetrics,
    FilterGroupMetrics,
    LagMetrics,
    ProducerMetrics,
    make_registry,
)


def exported_names() -> set[str]:
    """Every sample name the project's metric classes export (with _total, _bucket...)."""
    registry = make_registry(process=False)
    ProducerMetrics(registry, "full-stream")
    FilterGroupMetrics(registry, "g", ["Filter001"])
    consumer = ConsumerMetrics(registry)
    consumer.end_to_end("Filter001")
    consumer.received("Filter001")
    lag = LagMetrics(registry)
    lag.set_status("g", 0)
    lag.lag_messages.labels(group="g", topic="t", partition="0").set(0)
    lag.lag_seconds.labels(group="g").set(0)
    lag.members.labels(group="g").set(0)
    lag.committed_offset.labels(group="g", topic="t", partition="0").set(0)
    lag.end_offset.labels(topic="t", partition="0").set(0)
    return {s.name for family in registry.collect() for s in family.samples}


def test_every_dashboard_query_uses_exported_metric_names() -> None:
    names = exported_names()
    rules = (Path(__file__).parents[2] / "monitoring" / "rules" / "minibroker.yml").read_text()
    for key, template in live.queries().items():
        used = set(re.findall(r"\bminibroker_[a-z_]+", template))
        assert used <= names, f"{key} uses unknown metrics {used - names}"
        for recorded in re.findall(r"\bminibroker:[a-z_]+", template):
            assert f"record: {recorded}" in rules, f"{key}: no recording rule {recorded}"
    assert "VISIT_DELIVERED" in live.queries() and "DEFAULT_GROUPS" not in live.queries()


def _series(labels: dict[str, str], points: list[tuple[float, float]]) -> Series:
    return Series(labels, [t for t, _ in points], [v for _, v in points])


def test_by_visit_pairs_points_by_time_and_keeps_the_last_sample() -> None:
    last = _series({"group": "g"}, [(0, 1), (5, 1), (10, 2), (15, 3), (20, math.nan)])
    values = _series({"group": "g"}, [(0, 7), (5, 8), (10, 9), (15, math.nan), (20, 4),
                                      (25, 5)])
    # visit 1 -> its latest sample (8); 3 has no value; times only one side has are ignored.
    assert by_visit(last, values) == {1: 8.0, 2: 9.0}


def test_build_heatmap_rows_columns_and_cap_hits() -> None:
    lv = [_series({"group": "A"}, [(0, 1), (1, 2), (2, 3)]),
          _series({"group": "B"}, [(0, 1), (1, 2), (2, 2)])]
    delivered = [
        _series({"group": "B", "filter": "Filter003"}, [(0, 5), (1, 6), (2, 6)]),
        _series({"group": "A", "filter": "Filter001"}, [(0, 20), (1, 3), (2, 4)]),
        _series({"group": "A", "filter": "Filter002"}, [(0, 0), (1, 0), (2, 0)]),
    ]
    over = [_series({"group": "A", "filter": "Filter001"}, [(0, 7)])]
    hm = build_heatmap(lv, delivered, over, visits=2)
    assert hm.filters == ["Filter001", "Filter002", "Filter003"]
    assert hm.visits == [2, 3]  # the two most recent visit numbers
    assert hm.delivered == [[3, 4], [0, 0], [6, None]]  # group B has not finished visit 3
    assert hm.over_cap[0] == [0.0, 0.0]  # the cap hit was in visit 1, not shown
    full = build_heatmap(lv, delivered, over, visits=20)
    assert full.visits == [1, 2, 3] and full.over_cap[0][0] == 7
    assert full.group_of["Filter003"] == "B"


def test_build_heatmap_of_nothing_is_empty() -> None:
    assert build_heatmap([], [], []).empty


def test_window_bounds_points_and_caps_the_step() -> None:
    w = Window.last(6 * 3600, now=100_000.0)
    assert w.seconds / w.step <= live.MAX_POINTS and w.start == 100_000 - 6 * 3600
    hm = Window.last(22 * 39, now=0.0, max_points=live.HEATMAP_POINTS, max_step=19.5)
    assert hm.step <= 19.5


class StubPrometheus:
    """Answers queries from a table of expression -> result (or an exception)."""

    url = "http://stub:9090"

    def __init__(self, answers: dict[str, Any] | None = None,
                 fail: Exception | None = None) -> None:
        self.answers = answers or {}
        self.fail = fail
        self.asked: list[str] = []

    def _answer(self, expr: str) -> Any:
        self.asked.append(expr)
        if self.fail is not None:
            raise self.fail
        value = self.answers.get(expr, [])
        if isinstance(value, Exception):
            raise value
        return value

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        return list(self._answer(expr))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        return list(self._answer(expr))

    def firing_alerts(self) -> list[Any]:
        return []


def _source(stub: StubPrometheus) -> LiveSource:
    return LiveSource(stub, None)  # type: ignore[arg-type]


def test_unreachable_prometheus_gives_the_unreachable_state() -> None:
    stub = StubPrometheus(fail=PrometheusUnreachable("http://stub:9090", "refused"))
    snap = _source(stub).live(900)
    assert snap.state == "unreachable" and "http://stub:9090" in snap.message
    assert stub.asked == [live.ANY_DATA]  # no point asking the rest
    assert _source(stub).filter_stats(900)[0] == "unreachable"
    assert _source(stub).measured(10, 39).state == "unreachable"


def test_prometheus_without_minibroker_series_is_no_data() -> None:
    snap = _source(StubPrometheus()).live(900)
    assert snap.state == "no-data" and "first scrape" in snap.message


def test_one_failing_panel_does_not_blank_the_page() -> None:
    stub = StubPrometheus({
        live.ANY_DATA: [Sample({}, 0, 42)],
        live.VISIT_INTERVAL: [Sample({}, 0, 5)],
        live.LAG_MESSAGES.format(groups=live.DEFAULT_GROUPS): QueryError("x", "boom"),
        live.LAST_VISIT: [_series({"group": "g"}, [(1, 1), (2, 2)])],
        live.VISIT_SECONDS: [_series({"group": "g"}, [(1, 0.5), (2, 0.7)])],
    })
    snap = _source(stub).live(900)
    assert snap.state == "ok"
    assert snap.interval == 5 and snap.interval_from_rule
    assert "lag_messages" in snap.errors and "boom" in snap.errors["lag_messages"]
    assert snap.visit_seconds == {"g": {1: 0.5, 2: 0.7}}


def test_interval_falls_back_to_the_option_without_the_rule() -> None:
    source = LiveSource(StubPrometheus(), None, visit_interval=12.5)  # type: ignore[arg-type]
    assert source.interval() == (12.5, False)


def test_filter_stats_pass_rate_counts_capped_alerts_as_passed() -> None:
    w = "900s"
    g = {"group": "G"}
    stub = StubPrometheus({
        live.ANY_DATA: [Sample({}, 0, 1)],
        live.F_DELIVERED.format(window=w): [Sample({**g, "filter": "F1"}, 0, 40)],
        live.F_OVER_CAP.format(window=w): [Sample({**g, "filter": "F1"}, 0, 10)],
        live.F_CONSUMED.format(window=w): [Sample(g, 0, 1000)],
        live.F_LAST_DELIVERED: [Sample({**g, "filter": "F1"}, 0, 20)],
        live.F_LAST_PASSED: [Sample({**g, "filter": "F1"}, 0, 26)],
    })
    state, message, stats = _source(stub).filter_stats(900)
    assert state == "ok" and message == ""
    f1 = stats["F1"]
    assert f1.group == "G" and f1.pass_rate == pytest.approx(0.05)
    assert f1.last_over_cap == 6


def test_bad_group_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        LiveSource(StubPrometheus(), None, groups="(")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quotes"):
        LiveSource(StubPrometheus(), None, groups='a"b')  # type: ignore[arg-type]


def test_shape_reads_the_pipeline_and_skips_unknowns() -> None:
    stub = StubPrometheus({
        live.SHAPE_ALERTS_PER_VISIT: [Sample({}, 0, 10000)],
        live.SHAPE_GROUPS: [Sample({}, 0, 5)],
        live.SHAPE_FILTERS: [Sample({}, 0, 20)],
        live.VISIT_INTERVAL: [Sample({}, 0, 39)],
    })
    assert _source(stub).shape() == {"alerts_per_visit": 10000, "groups": 5,
                                     "filters_per_group": 20, "interval": 39}
