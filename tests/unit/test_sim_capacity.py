"""Capacity knees by bisection (sim.capacity) against hand-computed capacities."""

from __future__ import annotations

import math

import pytest

from sim.capacity import cores_needed, find_knee, sweep_alerts, sweep_cores, sweep_filters
from sim.costs import Costs
from sim.model import Config

ZERO = Costs(**{name: 0.0 for name in Costs.names()})
# 1 ms per alert per group plus 0.1 ms per alert per filter, nothing else.
COSTS = Costs(**{**ZERO.to_dict(), "decode_source": 1e-3, "per_filter": 1e-4})
BASE = Config(alerts_per_visit=2000, interval=10.0, visits=3, groups=1,
              filters_per_group=10, users=0, cores=1.0, send_rate=None,
              outputs_visible="batch", fetch_max=50, producer_batch=2000)


def test_knee_in_alerts_per_visit_matches_the_service_rate() -> None:
    # Each alert costs 1 + 10 * 0.1 = 2 ms: at most 10 s / 2 ms = 5000 alerts per visit.
    knee = find_knee(BASE, COSTS, "alerts_per_visit", lo=100, hi=100_000, tolerance=0.01)
    assert knee.bounded
    assert knee.value is not None and 4950 <= knee.value <= 5000


def test_knee_in_filters_per_group_is_exact() -> None:
    # 2000 alerts * (1 ms + f * 0.1 ms) <= 10 s  <=>  f <= 40.
    knee = find_knee(BASE, COSTS, "filters_per_group", lo=1, hi=1000, tolerance=0.0)
    assert knee.value == 40


def test_knee_reports_when_even_the_smallest_value_falls_behind() -> None:
    knee = find_knee(BASE.with_(interval=0.5), COSTS, "filters_per_group", lo=1, hi=10)
    assert knee.value is None


def test_knee_reports_when_the_search_range_is_too_small() -> None:
    knee = find_knee(BASE, COSTS, "filters_per_group", lo=1, hi=8)
    assert knee.value == 8 and not knee.bounded


def test_cores_needed_for_groups_sharing_cores() -> None:
    # 5 groups of 2000 alerts x 2 ms = 20 s of work per 10-s visit: 2 cores would be
    # exactly full, so 3 are needed (2 is borderline: finishes at the deadline at best).
    cfg = BASE.with_(groups=5)
    assert cores_needed(cfg, COSTS, max_cores=64) in (2, 3)
    assert cores_needed(cfg.with_(alerts_per_visit=1900), COSTS, max_cores=64) == 2
    assert cores_needed(cfg.with_(interval=3.0), COSTS, max_cores=64) is None  # 4 s/group


def test_sweeps_produce_one_row_per_point() -> None:
    rows = sweep_cores(BASE.with_(groups=4), COSTS, [1000, 2000], max_cores=16)
    assert [r["alerts_per_visit"] for r in rows] == [1000, 2000]
    assert rows[0]["cores_needed"] == 1 and rows[1]["cores_needed"] in (1, 2)
    assert all(not math.isnan(r["visit_mean_s"]) for r in rows)
    rows = sweep_filters(BASE.with_(groups=2), COSTS, [1.0, 2.0], max_filters=200)
    assert [r["max_filters_per_group"] for r in rows] == [15, 40]
    rows = sweep_alerts(BASE, COSTS, [1.0], max_alerts=20_000, tolerance=0.05)
    assert 4750 <= rows[0]["max_alerts_per_visit"] <= 5000


def test_bad_knee_parameters() -> None:
    with pytest.raises(ValueError, match="param"):
        find_knee(BASE, COSTS, "cores")
    with pytest.raises(ValueError, match="lo"):
        find_knee(BASE, COSTS, "groups", lo=5, hi=2)


def test_predict_and_compare_for_validation() -> None:
    from sim.predict import Measured, compare, markdown_table, predict

    pred = predict(BASE, COSTS)
    assert pred.keeps_up and pred.lag_after == 0
    assert pred.visit_processing_seconds == pytest.approx(2000 * 2e-3, rel=1e-6)
    row = compare("one group", pred, Measured(visit_seconds=4.4, lag_after=0, keeps_up=True))
    assert row["visit_ok"] and row["verdict_ok"]
    assert row["visit_error"] == pytest.approx(pred.visit_seconds / 4.4 - 1)
    bad = compare("too slow", pred, Measured(visit_seconds=2.0, lag_after=50, keeps_up=False))
    assert not bad["visit_ok"] and not bad["verdict_ok"]
    table = markdown_table([row, bad])
    assert table.count("\n") == 3 and "(!)" in table.splitlines()[-1]


def test_sweep_explains_when_no_core_count_helps() -> None:
    rows = sweep_cores(BASE, COSTS, [10_000], max_cores=8)  # 10,000 x 2 ms = 20 s > 10 s
    assert rows[0]["cores_needed"] is None
    assert "one filter group (one process) needs 20 s" in rows[0]["note"]
