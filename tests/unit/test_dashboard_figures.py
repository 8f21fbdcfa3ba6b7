"""dashboard.figures and dashboard.capacity: what is drawn from given data."""

from __future__ import annotations

from dashboard import figures
from dashboard.capacity import CapacityInputs, Prediction, predict
from dashboard.live import Heatmap, Measured
from dashboard.prom import Series


def test_heatmap_has_a_row_per_filter_and_marks_cap_hits() -> None:
    names = [f"Filter{i:03d}" for i in range(1, 101)]
    hm = Heatmap(filters=names, visits=[7, 8],
                 delivered=[[20, None]] + [[1, 2]] * 99,
                 over_cap=[[5, 0]] + [[0, 0]] * 99)
    fig = figures.heatmap_figure(hm)
    heat, hits = fig.data
    assert len(heat.y) == 100 and list(heat.x) == ["7", "8"]
    assert heat.z[0][1] != heat.z[0][1]  # None becomes NaN: a gap, not a zero
    assert list(hits.x) == ["7"] and list(hits.y) == ["Filter001"]
    assert fig.layout.height >= 9 * 100


def test_lag_markers_take_the_colour_of_the_status() -> None:
    lag = [Series({"group": "minibroker-filters-001-020"}, [1, 2, 3], [0, 10, 20])]
    status = [Series({"group": "minibroker-filters-001-020"}, [1, 2, 3], [0, 1, 2])]
    fig = figures.lag_figure("Lag", lag, status, "messages")
    trace = fig.data[0]
    assert trace.name == "filters 001-020" and trace.meta == "minibroker-filters-001-020"
    assert list(trace.customdata) == ["OK", "WARN", "ERR"]
    assert list(trace.marker.color) == [figures.STATUS_COLORS[s] for s in ("OK", "WARN",
                                                                           "ERR")]
    # A legend entry per status, even with none in the data.
    assert {t.name for t in fig.data[1:]} == set(figures.STATUS_COLORS)


def test_empty_figure_says_why() -> None:
    fig = figures.empty_figure("Lag", "Prometheus unreachable")
    assert not fig.data and fig.layout.annotations[0].text == "Prometheus unreachable"


def test_short_group_shortens_only_our_groups() -> None:
    assert figures.short_group("minibroker-filters-001-020") == "filters 001-020"
    assert figures.short_group("someone-else") == "someone-else"


def test_prediction_figures_draw_model_and_measured() -> None:
    pred = Prediction(CapacityInputs(), groups=["group1"], visit_seconds=[[1.0, 1.1]],
                      lag_t=list(range(5000)), lag_messages=[[0.0] * 5000])
    measured = Measured(visit_seconds={"minibroker-filters-001-020": [0.9, 1.2]},
                        lag_t=[0, 5], lag_messages={"minibroker-filters-001-020": [0, 3]})
    visit = figures.prediction_visit_figure(pred, measured)
    assert [t.meta for t in visit.data] == ["model", "measured"]
    lag = figures.prediction_lag_figure(pred, None)
    assert len(lag.data) == 1 and len(lag.data[0].x) <= 1500  # thinned for the browser


def test_predict_runs_the_model_and_caches() -> None:
    inputs = CapacityInputs(alerts_per_visit=2000, visits=3, users=10)
    pred = predict(inputs)
    assert pred.error == "" and pred.keeps_up
    assert len(pred.groups) == 5 and len(pred.visit_seconds[0]) == 3
    assert predict(inputs) is pred


def test_predict_returns_model_errors_as_text() -> None:
    pred = predict(CapacityInputs(cores=0))
    assert "cores" in pred.error
    assert "no profile" in predict(CapacityInputs(profile="nope")).error
