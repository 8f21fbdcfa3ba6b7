"""The capacity model (sim.model) against closed forms, properties and its contracts.

Tolerances: deterministic cases (D/D/1, bursts, processor sharing) must match to 1e-6
relative (float rounding only, since costs are linear and PS is exact); the M/D/1 mean
sojourn time, a sample mean over 20,000 Poisson arrivals, within 6% of
Pollaczek-Khinchine.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest

from sim.costs import Costs
from sim.model import Config, ConfigError, simulate

ZERO = Costs(**{name: 0.0 for name in Costs.names()})


def costs(**values: float) -> Costs:
    """Every cost zero except ``values``: isolates the mechanism under test."""
    return Costs(**{**ZERO.to_dict(), **values})


def bare(**changes: object) -> Config:
    """One group, no filters, no users, an unpaced producer: a single queue."""
    base = Config(alerts_per_visit=1000, interval=10.0, visits=3, groups=1,
                  filters_per_group=0, users=0, cores=1.0, send_rate=None,
                  outputs_visible="batch")
    return base.with_(**changes)


# -- closed forms ----------------------------------------------------------------------

def test_burst_of_n_is_processed_in_n_times_s() -> None:
    s = 0.004
    res = simulate(bare(), costs(decode_source=s))
    assert res.visit_seconds == pytest.approx(np.full((1, 3), 1000 * s), rel=1e-6)
    assert res.keeps_up


def test_batch_size_does_not_change_a_burst_time() -> None:
    s = 0.004
    for fetch_max in (1, 7, 250, 1000):
        res = simulate(bare(fetch_max=fetch_max, visits=1), costs(decode_source=s))
        assert res.visit_seconds[0, 0] == pytest.approx(1000 * s, rel=1e-6)


def test_dd1_paced_arrivals_below_capacity_never_wait() -> None:
    # D/D/1: arrivals every 1/rate, service s < 1/rate: every alert's sojourn is s.
    s, rate = 0.001, 500.0
    res = simulate(bare(send_rate=rate, producer_batch=1, fetch_max=1, visits=1),
                   costs(decode_source=s))
    lat = res.group_latency[0]
    assert lat.size == 1000
    assert lat == pytest.approx(np.full(1000, s), rel=1e-6)


def test_dd1_paced_arrivals_above_capacity_queue_linearly() -> None:
    # Service 2/rate: the visit takes n*s; the last alert waits n*s - n/rate.
    s, rate, n = 0.002, 1000.0, 1000
    res = simulate(bare(send_rate=rate, producer_batch=1, fetch_max=1, visits=1),
                   costs(decode_source=s))
    assert res.visit_last[0, 0] == pytest.approx(1 / rate + n * s, rel=1e-6)
    assert res.group_latency[0][-1] == pytest.approx(n * s - (n - 1) / rate, rel=1e-6)


def test_md1_mean_sojourn_matches_pollaczek_khinchine() -> None:
    s, lam, n = 0.001, 500.0, 20_000  # rho = 0.5
    rho = lam * s
    expected = s + rho * s / (2 * (1 - rho))  # W = s + Wq, Wq = rho s / (2 (1 - rho))
    res = simulate(bare(alerts_per_visit=n, visits=1, interval=1000.0, send_rate=lam,
                        arrivals="poisson", producer_batch=1, fetch_max=1, drain=True),
                   costs(decode_source=s))
    mean = float(res.group_latency[0].mean())
    assert mean == pytest.approx(expected, rel=0.06)


def test_processor_sharing_between_groups() -> None:
    s = 0.002
    one = simulate(bare(groups=1, cores=1.0), costs(decode_source=s)).visit_seconds
    two_on_one = simulate(bare(groups=2, cores=1.0), costs(decode_source=s)).visit_seconds
    two_on_two = simulate(bare(groups=2, cores=2.0), costs(decode_source=s)).visit_seconds
    assert two_on_one == pytest.approx(np.full((2, 3), 2 * one[0, 0]), rel=1e-6)
    assert two_on_two == pytest.approx(np.full((2, 3), one[0, 0]), rel=1e-6)


def test_a_group_never_uses_more_than_one_core() -> None:
    s = 0.002
    res = simulate(bare(cores=8.0), costs(decode_source=s))
    assert res.visit_seconds[0, 0] == pytest.approx(1000 * s, rel=1e-6)


def test_2018_pool_spreads_worker_work_over_cores() -> None:
    # Parent: decode 1 ms/alert; pool: 4 ms/alert (one filter's dispatch), 10 workers.
    cfg = bare(design="dmtn081_pool", pool_size=10, filters_per_group=1, reads="full",
               visits=1, pass_fraction=0.0, producer_batch=1000)
    c = costs(decode_full=0.001, dispatch_worker=0.004)
    # 11 cores for 11 processes. One batch of 1000: parent 1 s, then 4 s of pool work
    # at 10 cores: 0.4 s.
    res = simulate(cfg.with_(cores=11.0), c)
    assert res.visit_seconds[0, 0] == pytest.approx(1.4, rel=1e-6)
    # Batches of 10 pipeline the pool behind the parent: only the last batch's pool work
    # (40 ms at 10 cores = 4 ms) is left after the parent's 1 s.
    res = simulate(cfg.with_(cores=11.0, fetch_max=10), c)
    assert res.visit_seconds[0, 0] == pytest.approx(1.004, rel=1e-6)
    # On 1 core all 5 s of work are serial.
    res = simulate(cfg.with_(cores=1.0), c)
    assert res.visit_seconds[0, 0] == pytest.approx(5.0, rel=1e-6)


# -- properties ------------------------------------------------------------------------

REALISH = Config(alerts_per_visit=4000, interval=10.0, visits=4, groups=3,
                 filters_per_group=10, users=10, cores=1.0, reads="history")
REALISH_COSTS = Costs(decode_history=8e-4)


def slowest(config: Config) -> tuple[float, int]:
    res = simulate(config, REALISH_COSTS)
    done = np.where(np.isnan(res.visit_last), np.inf, res.visit_last)
    return float(done.max()), int(res.boundary_lag[:, -1].max())


def test_more_cores_are_never_slower() -> None:
    results = [slowest(REALISH.with_(cores=c)) for c in (1.0, 1.5, 2.0, 3.0, 4.0, 8.0)]
    for (t0, lag0), (t1, lag1) in itertools.pairwise(results):
        assert t1 <= t0 + 1e-9 and lag1 <= lag0


def test_fewer_filters_are_never_slower() -> None:
    results = [slowest(REALISH.with_(filters_per_group=f, cores=2.0))
               for f in (200, 100, 40, 10, 1)]
    for (t0, lag0), (t1, lag1) in itertools.pairwise(results):
        assert t1 <= t0 + 1e-9 and lag1 <= lag0


def test_overloaded_lag_grows_linearly() -> None:
    # One group needs n*s = 15 s per 10-s visit: it falls behind by a third of a visit
    # per visit. Fit a line to the backlog at visit boundaries (jobs of 20 alerts, so the
    # backlog is known to 20 alerts: small against the 333 alerts per visit of growth).
    n, s, interval = 1000, 0.015, 10.0
    res = simulate(bare(alerts_per_visit=n, interval=interval, visits=12, fetch_max=20),
                   costs(decode_source=s))
    assert not res.keeps_up
    lag = res.boundary_lag[0].astype(float)
    x = np.arange(lag.size)
    slope, intercept = np.polyfit(x, lag, 1)
    residuals = lag - (slope * x + intercept)
    r2 = 1 - (residuals ** 2).sum() / ((lag - lag.mean()) ** 2).sum()
    assert r2 > 0.999
    assert slope == pytest.approx(n - interval / s, rel=0.02)  # 1000 - 666.7 per visit
    assert any("lag grows" in r for r in res.reasons)


def test_verdict_flags_a_visit_that_overruns_the_interval() -> None:
    res = simulate(bare(interval=3.0), costs(decode_source=0.004))  # 4 s per 3-s visit
    assert not res.keeps_up
    assert not res.group_keeps_up[0]
    assert "past the 3 s interval" in res.reasons[0]


# -- determinism and contracts ---------------------------------------------------------

def test_fixed_seed_is_deterministic_and_seed_matters() -> None:
    cfg = REALISH.with_(arrivals="poisson", send_rate=2000.0, jitter=0.3, visits=2)
    a, b = simulate(cfg, REALISH_COSTS), simulate(cfg, REALISH_COSTS)
    assert np.array_equal(a.visit_last, b.visit_last)
    assert np.array_equal(a.lag_messages, b.lag_messages)
    assert np.array_equal(a.end_to_end, b.end_to_end)
    c = simulate(cfg.with_(seed=1), REALISH_COSTS)
    assert not np.array_equal(a.visit_last, c.visit_last)


def test_default_configuration_is_fast_enough_for_the_dashboard() -> None:
    # 10 visits of 10,000 alerts, 5 groups of 20 filters, 100 users.
    started = time.perf_counter()
    res = simulate(Config(), Costs())
    assert time.perf_counter() - started < 5.0
    assert res.end_to_end.size == 100 * 20 * 10  # every user gets the cap every visit


def test_result_helpers() -> None:
    res = simulate(REALISH.with_(cores=4.0), REALISH_COSTS)
    rows = res.lag_records()
    assert len(rows) == res.lag_t.size * 3
    _t, group, messages, seconds = rows[0]
    assert group == "group1" and isinstance(messages, int) and isinstance(seconds, float)
    summary = res.summary()
    assert [r.name for r in summary] == ["group1", "group2", "group3"]
    assert all(r.keeps_up and r.visits_done == 4 for r in summary)
    json.dumps(res.to_dict())  # JSON-able
    p = res.end_to_end_percentiles((50, 99))
    assert 0 < p[50] <= p[99]
    # The metric-like visit time ends at the last output: never after the last alert
    # plus one commit interval and wait.
    assert np.all(res.visit_metric_seconds <= res.visit_seconds + 0.5 + 0.05)


def test_commits_delay_outputs_but_not_processing() -> None:
    base = REALISH.with_(cores=4.0)
    free = replace(REALISH_COSTS, commit=0.0, commit_wait=0.0)
    batch = simulate(base.with_(outputs_visible="batch"), free)
    commit = simulate(base.with_(outputs_visible="commit"), free)
    assert np.allclose(commit.visit_last, batch.visit_last)
    assert np.median(commit.end_to_end) > np.median(batch.end_to_end)
    visit = simulate(base.with_(outputs_visible="visit"), free)
    assert np.median(visit.end_to_end) > np.median(commit.end_to_end)


@pytest.mark.parametrize("change, message", [
    ({"cores": 0}, "cores"),
    ({"cores": -2.0}, "cores"),
    ({"send_rate": -5.0}, "send_rate"),
    ({"send_rate": 0.0}, "send_rate"),
    ({"interval": 0.0}, "interval"),
    ({"alerts_per_visit": 0}, "alerts_per_visit"),
    ({"pass_fraction": 1.5}, "pass_fraction"),
    ({"design": "magic"}, "design"),
    ({"dedicated": frozenset({"kafka"})}, "dedicated"),
])
def test_impossible_configurations_are_refused_clearly(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(Config().with_(**change), Costs())


def test_negative_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="decode_full"):
        Costs(decode_full=-1e-3)
    with pytest.raises(ValueError, match="consume"):
        Costs(consume=math.inf)


def test_partitions_are_logs_read_round_robin() -> None:
    one = simulate(REALISH.with_(cores=2.0), REALISH_COSTS)
    three = simulate(REALISH.with_(cores=2.0, partitions=3), REALISH_COSTS)
    assert three.keeps_up
    assert all(lat.size == 4 * 4000 for lat in three.group_latency)  # every alert, once
    # Same work in a different order: visit times agree to within a few jobs.
    assert np.allclose(three.visit_seconds, one.visit_seconds, rtol=0.1)


def test_group_latencies_are_subsampled_for_huge_runs() -> None:
    res = simulate(bare(alerts_per_visit=60_000, visits=2, interval=100.0, fetch_max=5000,
                        producer_batch=5000), costs(decode_source=1e-5))
    lat = res.group_latency[0]
    assert 50_000 <= lat.size <= 100_000
    assert res.keeps_up


def test_groups_caught_up_with_a_sending_producer_pay_the_tail_serving_cost() -> None:
    """Alerts a group reads as they arrive cost the broker broker_out_tail each; a backlog
    read after the producer has finished costs broker_out."""
    price = costs(broker_out=1e-5, broker_out_tail=1e-4, decode_source=1e-5)
    # Paced sends the group keeps up with: every alert read at the end of the log.
    pace = bare(send_rate=2000.0, visits=2, groups=2, outputs_visible="commit")
    tailing = simulate(pace, price).cpu_seconds["kafka-fetch"]
    assert tailing == pytest.approx(2 * 2 * 1000 * 1e-4, rel=1e-6)
    # A group that starts after the visit was published reads a backlog.
    slow = bare(visits=1, groups=1, send_rate=None, outputs_visible="commit",
                fetch_max=100)
    backlog = simulate(slow, costs(broker_out=1e-5, broker_out_tail=1e-4,
                                   decode_source=1e-3)).cpu_seconds["kafka-fetch"]
    assert backlog < 1000 * 1e-4 / 2
    # Without a tail cost, serving is broker_out throughout.
    plain = simulate(pace, costs(broker_out=1e-5, decode_source=1e-5))
    assert plain.cpu_seconds["kafka-fetch"] == pytest.approx(2 * 2 * 1000 * 1e-5, rel=1e-6)


def test_groups_caught_up_with_a_sending_producer_pay_consume_tail() -> None:
    """A group reading as the alerts arrive pays consume_tail per alert instead of
    consume; with consume_tail 0 it pays consume."""
    pace = bare(send_rate=2000.0, visits=2, groups=1, outputs_visible="commit")
    base = simulate(pace, costs(consume=1e-5)).cpu_seconds["group1"]
    tail = simulate(pace, costs(consume=1e-5, consume_tail=5e-5)).cpu_seconds["group1"]
    assert base == pytest.approx(2 * 1000 * 1e-5, rel=1e-6)
    assert tail == pytest.approx(2 * 1000 * 5e-5, rel=1e-6)
