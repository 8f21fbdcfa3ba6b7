"""The model features the validation needs, and the validation's pure helpers.

Model: per-group history fractions, per-filter (and per-visit) pass fractions, the time a
visit is committed, the producer's serialisation before a visit, the broker's CPU per
commit. Validation: the BENCHMARKS.md section writer, the measured verdict, and the
analysis of sampled offsets (no Kafka here; tests/e2e/test_sim_validate.py runs it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sim.costs import Costs
from sim.model import Config, ConfigError, simulate
from sim.validate import (
    CONFIGS,
    END_MARK,
    HEADING,
    MAX_REPEATS,
    QUICK_CONFIGS,
    START_MARK,
    WARM_UP,
    RunResult,
    Spec,
    Workload,
    analyse,
    combine_repeats,
    compare_run,
    measured_verdict,
    model_config,
    repeat_spec,
    report,
    update_section,
)

COSTS = Costs(consume=1e-5, decode_source=2e-5, decode_history=5e-4, decode_full=6e-4,
              per_filter=1e-6, produce=5e-5, commit=2e-4, commit_wait=0.01,
              producer_send=1e-5, broker_in=1e-5, broker_out=1e-6, user_receive=1e-5)
SMALL = Config(alerts_per_visit=2000, interval=10.0, visits=3, groups=2,
               filters_per_group=5, users=0, cores=4.0, send_rate=None)


def test_history_fractions_give_each_group_its_own_decode_cost() -> None:
    cfg = SMALL.with_(reads="history", history_fractions=(0.0, 1.0))
    res = simulate(cfg, COSTS)
    fast, slow = np.nanmean(res.visit_seconds, axis=1)
    assert slow > 5 * fast  # 5.3e-4 vs 3.5e-5 per alert
    cpu = res.cpu_seconds
    assert cpu["group2"] - cpu["group1"] == pytest.approx(
        3 * 2000 * (COSTS.decode_history - COSTS.decode_source), rel=0.01)
    # Uniform fractions are the same as history_fraction.
    same = simulate(SMALL.with_(reads="history", history_fractions=(0.3, 0.3)), COSTS)
    ref = simulate(SMALL.with_(reads="history", history_fraction=0.3), COSTS)
    assert np.allclose(same.visit_seconds, ref.visit_seconds)


def test_pass_fractions_per_filter_and_visit_decide_where_outputs_stop() -> None:
    F = SMALL.groups * SMALL.filters_per_group
    slow = SMALL.with_(reads="history")  # ~1 s per visit: several commits per visit
    # Every filter passes everything: each reaches its cap of 20 in the first job, so the
    # last output of a visit is acknowledged long before the visit is committed.
    eager = simulate(slow.with_(pass_fractions=((1.0,) * F,)), COSTS)
    assert np.all(eager.visit_metric_seconds < 0.7 * eager.visit_commit_seconds)
    # Rare passes (10 per visit per filter, never capped): outputs run to the visit's end.
    rare = simulate(slow.with_(pass_fractions=((0.005,) * F,)), COSTS)
    assert np.allclose(rare.visit_metric_seconds, rare.visit_commit_seconds, rtol=0.2)
    # A filter that passes nothing gives no output; one row per visit is allowed.
    rows = tuple((0.0,) * F if v == 1 else (0.005,) * F for v in range(SMALL.visits))
    per_visit = simulate(SMALL.with_(pass_fractions=rows), COSTS)
    assert np.all(np.isnan(per_visit.visit_acked[:, 1]))
    assert not np.any(np.isnan(per_visit.visit_acked[:, [0, 2]]))


def test_visit_committed_follows_the_last_alert() -> None:
    res = simulate(SMALL, COSTS)
    assert np.all(res.visit_committed >= res.visit_last)
    # Caught up, the group sees the end of the partition after one empty long poll
    # (fetch_wait) and commits: at most that + commit CPU + commit_wait after the end.
    after = res.visit_committed - res.visit_last
    assert np.all(after <= SMALL.fetch_wait + COSTS.commit + COSTS.commit_wait + 1e-6)
    # ... and not before that poll came back empty (visits are short: no
    # commit_interval commit falls between the last alert and the end event).
    assert np.all(after >= SMALL.fetch_wait - 1e-6)
    batch = simulate(SMALL.with_(outputs_visible="batch"), COSTS)
    assert np.allclose(batch.visit_committed, batch.visit_last)


def test_group_keeping_pace_with_a_sending_producer_commits_by_interval() -> None:
    """While the producer sends, new alerts arrive within every long poll, so the group
    never sees the end of the partition: it commits every commit_interval, plus once per
    visit after the visit's end (as the real group did: ~10 commits per group per 4-s
    visit in validation run b, not one per producer chunk)."""
    from sim import model

    paced = SMALL.with_(send_rate=1000.0, groups=1, commit_interval=0.5)  # 2-s sends
    counted: list[float] = []
    real_commit = model._Sim._commit

    def commit(self: model._Sim, grp: model._Group) -> object:
        counted.append(self.env.now)
        return (yield from real_commit(self, grp))

    mp = pytest.MonkeyPatch()
    mp.setattr(model._Sim, "_commit", commit)
    try:
        res = simulate(paced, COSTS)
    finally:
        mp.undo()
    per_visit = [sum(1 for t in counted if v * paced.interval <= t < (v + 1) * paced.interval)
                 for v in range(paced.visits)]
    send = paced.alerts_per_visit / 1000.0
    # 2 s of sending at one commit per 0.5 s, and the one after the end: about 5.
    assert all(send / paced.commit_interval <= n <= send / paced.commit_interval + 2
               for n in per_visit), per_visit
    assert np.all(res.visit_committed >= res.visit_last)


def test_producer_prepares_the_next_visit_after_publishing() -> None:
    costs = Costs(**{**COSTS.to_dict(), "producer_prepare": 2e-4})
    res = simulate(SMALL, costs)
    base = simulate(SMALL, COSTS)
    # Visits 1 and 2 are serialised on the timeline (visit 0 before the run).
    extra = res.cpu_seconds["producer"] - base.cpu_seconds["producer"]
    assert extra == pytest.approx(2 * 2000 * 2e-4, rel=1e-6)
    # Serialising before the visit is due does not delay its start.
    assert np.allclose(res.visit_start, base.visit_start)


def test_broker_cpu_per_commit() -> None:
    costs = Costs(**{**COSTS.to_dict(), "broker_commit": 0.01})
    res = simulate(SMALL, costs)
    base = simulate(SMALL, COSTS)
    extra = res.cpu_seconds["kafka-append"] - base.cpu_seconds["kafka-append"]
    assert extra > 0 and extra / 0.01 == pytest.approx(round(extra / 0.01), abs=1e-6)


@pytest.mark.parametrize("changes, message", [
    ({"history_fractions": (0.5,)}, "one value per group"),
    ({"history_fractions": (0.5, 1.5)}, "between 0 and 1"),
    ({"pass_fractions": ((0.1,) * 10,) * 2}, "one row per visit"),
    ({"pass_fractions": ((0.1,) * 9,)}, "one value per filter"),
    ({"pass_fractions": ((2.0,) * 10,)}, "between 0 and 1"),
])
def test_bad_workload_descriptions_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(SMALL.with_(**changes), COSTS)


def test_model_config_describes_the_pipeline() -> None:
    spec = Spec("x", 2, 3, 1000, 5.0, 2)
    work = Workload(pass_fractions=((0.1,) * 6, (0.2,) * 6), history_fractions=(0.0, 0.1),
                    has_history=True, sampled=1000)
    cfg = model_config(spec, work, cores=2)
    cfg.validate()
    assert (cfg.groups, cfg.filters_per_group, cfg.users, cfg.cores) == (2, 3, 0, 2.0)
    assert cfg.reads == "history" and cfg.history_fractions == (0.0, 0.1)
    assert cfg.send_rate is None and cfg.fetch_max == 1000


def test_update_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    update_section(path, f"{HEADING}\n\nfirst\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks") and START_MARK in text and "first" in text
    # Others add sections before and after; a rewrite keeps them.
    path.write_text("# Benchmarks\n\n## Throughput\n\nmine\n\n" + text.split("\n", 2)[2]
                    + "\n## Latency\n\ntheirs\n")
    update_section(path, f"{HEADING}\n\nsecond\n")
    text = path.read_text()
    assert "first" not in text and "second" in text
    assert "## Throughput\n\nmine" in text and "## Latency\n\ntheirs" in text
    assert text.count(START_MARK) == text.count(END_MARK) == 1
    # A hand-written section without markers is replaced up to the next heading.
    path.write_text(f"# B\n\n{HEADING}\n\nold\n\n## Other\n\nkeep\n")
    update_section(path, f"{HEADING}\n\nnew\n")
    text = path.read_text()
    assert "old" not in text and "new" in text and "## Other\n\nkeep" in text


def _run(spec: Spec, t: list[float], end: list[int], committed: list[list[int]],
         starts: list[float], acked: list[float], first: list[list[float]]) -> RunResult:
    G = len(committed[0])
    run = RunResult(spec=spec, groups=[f"g{i}" for i in range(G)], starts=starts,
                    acked=acked, first=np.array(first, dtype=float),
                    metric=np.zeros((G, spec.visits)), delivered=np.zeros((G, spec.visits)),
                    samples_t=np.array(t, dtype=float), samples_end=np.array(end),
                    samples_committed=np.array(committed))
    analyse(run)
    return run


def test_analyse_a_healthy_run() -> None:
    spec = Spec("h", 1, 1, 100, 10.0, 2)
    # Visit 0 starts 1 s late (serialised after t0 = 0); visit 1 on time at 10.
    t = [0.5, 1.5, 2.5, 3.5, 10.5, 11.5, 12.5, 20.5]
    end = [0, 50, 100, 100, 150, 200, 200, 200]
    com = [[0], [0], [50], [100], [100], [150], [200], [200]]
    run = _run(spec, t, end, com, starts=[1.0, 10.0], acked=[2.4, 11.8],
               first=[[1.2, 10.1]])
    assert run.t0 == pytest.approx(0.0)
    assert run.committed_at[0].tolist() == pytest.approx([3.0, 12.0])  # step midpoints
    assert run.processing[0].tolist() == pytest.approx([1.8, 1.9])
    assert run.boundary_lag.tolist() == [[0, 0]]
    assert run.keeps_up and not run.reasons


def test_analyse_an_overloaded_run() -> None:
    spec = Spec("o", 1, 1, 100, 2.0, 3)
    t = [0.1, 1.9, 3.9, 5.9, 9.0, 12.0]
    end = [10, 100, 200, 300, 300, 300]
    com = [[0], [20], [90], [160], [300], [300]]
    run = _run(spec, t, end, com, starts=[0.1, 2.0, 4.0], acked=[1.0, 3.0, 5.0],
               first=[[0.2, 2.5, 4.6]])
    assert run.boundary_lag.tolist() == [[80, 110, 140]]
    assert not run.keeps_up
    assert any("grows by 30 alerts" in r for r in run.reasons)
    assert any("after the next visit was due" in r for r in run.reasons)


def test_measured_verdict_flags_a_slow_producer_and_missing_visits() -> None:
    nan = math.nan
    ok, reasons = measured_verdict(
        committed_at=np.array([[1.0, nan]]), lag=np.zeros((1, 2), dtype=int),
        starts=np.array([0.0, 9.0]), acked=np.array([6.0, 12.0]), t0=0.0, interval=5.0,
        alerts_per_visit=10, groups=["g"])
    assert not ok
    text = " ".join(reasons)
    assert "never fully committed" in text
    assert "publishing a visit took up to 6.0 s" in text
    assert "visit 1 started 4.0 s late" in text


def test_per_filter_cost_is_measured_the_way_a_group_runs_filters() -> None:
    import time

    from broker.generator import generate_visit
    from sim.calibrate import _group_filter_cost

    found = _group_filter_cost(generate_visit(1, 200, profile="dmtn081"), 2, time.thread_time)
    assert found is not None
    per, one_filter, how = found
    # Vectorised filters cost a fraction of a call per alert (a call is ~0.5 us); a group
    # of one filter pays the decode (~50 us) and a little bookkeeping.
    assert 0 <= per < 2e-6
    assert 1e-6 < one_filter < 1e-3
    assert "GroupCore.evaluate" in how


def _row(predicted: float, measured: float, keeps_up: bool = True,
         measured_keeps_up: bool | None = None, lag: int = 0) -> dict:
    m_ok = keeps_up if measured_keeps_up is None else measured_keeps_up
    return {"configuration": "x", "visit_s_predicted": predicted,
            "visit_s_measured": measured, "visit_error": (predicted - measured) / measured,
            "visit_ok": abs(predicted - measured) <= 0.15 * measured,
            "lag_predicted": lag, "lag_measured": lag,
            "verdict_predicted": "keeps up" if keeps_up else "falls behind",
            "verdict_measured": "keeps up" if m_ok else "falls behind",
            "verdict_ok": keeps_up == m_ok}


def test_repeats_compare_means_and_keep_the_spread() -> None:
    # Two runs 20% either side of the prediction: each alone misses a 15% bar, their
    # mean meets it exactly, and the spread says how much one run swings.
    row = combine_repeats([_row(4.0, 5.0), _row(4.0, 10 / 3)])
    assert row["runs"] == 2
    assert row["visit_s_predicted"] == pytest.approx(4.0)
    assert row["visit_s_measured"] == pytest.approx(25 / 6)
    assert row["visit_error"] == pytest.approx(4.0 / (25 / 6) - 1)
    assert row["visit_ok"]
    assert row["measured_spread"] == pytest.approx((5.0 - 10 / 3) / (25 / 6))
    assert row["run_errors"] == pytest.approx([-0.2, 0.2])
    assert row["verdict_predicted"] == row["verdict_measured"] == "keeps up"
    assert row["verdict_ok"]
    # Means that stay apart miss it, however the single runs fall.
    assert not combine_repeats([_row(4.0, 5.0), _row(4.0, 5.5)])["visit_ok"]


def test_a_verdict_wrong_in_one_run_is_wrong() -> None:
    row = combine_repeats([_row(1.0, 1.0, lag=0),
                           _row(1.0, 1.0, keeps_up=True, measured_keeps_up=False, lag=7)])
    assert not row["verdict_ok"]
    assert row["verdict_measured"] == "keeps up, falls behind"
    assert row["lag_measured"] == [0, 7]
    with pytest.raises(ValueError, match="no runs"):
        combine_repeats([])


def test_repeats_never_share_visit_numbers() -> None:
    """The per-visit cap state a group keeps in Kafka must not carry over to any other
    run: every run of every configuration (and the warm-up) owns its visit numbers."""
    taken: dict[int, str] = {}
    specs = [*CONFIGS.values(), *QUICK_CONFIGS.values()]
    runs = [(s, r) for s in specs for r in range(MAX_REPEATS)] + [(WARM_UP, 0)]
    for spec, r in runs:
        one = repeat_spec(spec, r)
        assert (one.key, one.alerts_per_visit, one.interval) == (
            spec.key, spec.alerts_per_visit, spec.interval)
        for v in range(one.first_visit, one.first_visit + one.visits):
            assert v not in taken, f"{spec.key} run {r} reuses visit {v} of {taken[v]}"
            taken[v] = f"{spec.key} run {r}"


def test_report_of_repeated_runs_shows_every_run() -> None:
    spec = Spec("h", 1, 1, 100, 10.0, 2, note="tiny")
    work = Workload(pass_fractions=((0.1,),), history_fractions=(0.0,),
                    has_history=False, sampled=100)
    outcomes = []
    for r, lateness in enumerate([0.0, 0.6]):
        t = [0.5, 1.5, 2.5, 3.5 + lateness, 10.5, 11.5, 12.5 + lateness, 20.5]
        run = _run(spec, t, [0, 50, 100, 100, 150, 200, 200, 200],
                   [[0], [0], [50], [100], [100], [150], [200], [200]],
                   starts=[1.0, 10.0], acked=[2.4, 11.8], first=[[1.2, 10.1]])
        out = compare_run(repeat_spec(spec, r), work, run, COSTS, cores=2)
        out.repeat = r
        outcomes.append(out)
    text = report(outcomes, command="minibroker sim validate --repeats 2",
                  machine="m", when="now", costs_source="test costs")
    assert "Each configuration was run 2 times" in text
    assert "| runs (measured) | spread | error (runs) |" in text
    singles = [o.row["visit_s_measured"] for o in outcomes]
    assert singles[1] > singles[0]
    row = next(line for line in text.splitlines() if line.startswith("| h |"))
    assert f"{singles[0]:.2f}, {singles[1]:.2f}" in row
    assert f"| {np.mean(singles):.2f} |" in row
    assert "| h run 1 |" in text and "| h run 2 |" in text
    assert text.count("- **h: ") == 1  # the configuration is described once
    assert "(means of 2 runs)" in text
