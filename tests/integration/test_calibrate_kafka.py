"""The Kafka part of ``minibroker sim calibrate`` on a real broker.

One repeat of 10,000 small alerts (the calibration's default for them), so the numbers
are noisy: the test checks that every cost is measured, through real processes, and is
physically possible, and that the calibration leaves no topic behind; it does not check
speed.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

from sim.calibrate_kafka import KAFKA_COSTS, find_broker_pid, measure_kafka_costs

pytestmark = pytest.mark.kafka


def _calibration_topics(bootstrap: str) -> set[str]:
    names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {t for t in names if t.startswith("sim-calibrate-")}


def test_kafka_costs_are_measured_and_leave_no_topics(kafka_bootstrap: str) -> None:
    before = _calibration_topics(kafka_bootstrap)
    pid = find_broker_pid(kafka_bootstrap)
    got = measure_kafka_costs(kafka_bootstrap, ["dmtn081"], alerts=10000, repeats=1,
                              outputs=40, commits=4, warm_up=500, seed=3,
                              command="pytest")
    m = got["dmtn081"]
    client_costs = [k for k in KAFKA_COSTS if not k.startswith("broker_")]
    # The broker's CPU is only read from a local broker process this user may inspect.
    expected = set(KAFKA_COSTS if pid is not None else client_costs) | {"group_loop"}
    assert set(m.values) == expected
    for k in client_costs:
        # Sending, reading, producing or committing an alert costs the client some CPU,
        # and far less than a second of it.
        assert 0 < m.values[k] < 1.0, (k, m.values[k])
        assert len(m.samples[k]) == 1  # one kept repeat; the warm-up pass is dropped
        assert "`pytest`" in m.notes[k]  # the note says how it was measured
    for k in ("producer_kafka", "consume", "consume_tail", "produce"):
        assert "dmtn081" in m.notes[k]  # per-alert costs name the alerts they moved
    # A commit waits on the broker's round trips: its wall time beyond its CPU.
    assert m.values["commit_wait"] > 0
    # Whole group process per alert, its commits taken out (passes until 4,000 alerts
    # are timed: a window of one batch leaves it within the commits' noise).
    assert m.values["group_loop"] > 0
    if pid is not None:
        assert m.values["broker_in"] > 0 and m.values["broker_out"] >= 0
        assert "Kafka java process CPU" in m.notes["broker_in"]

    deadline = time.monotonic() + 30
    while (_calibration_topics(kafka_bootstrap) - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _calibration_topics(kafka_bootstrap) - before == set()


def test_kafka_calibration_refuses_zero_repeats(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_kafka_costs(kafka_bootstrap, ["dmtn081"], repeats=0)
