"""The lag exporter's metrics and options, with scripted snapshots instead of Kafka."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from broker.options import UsageError
from monitoring.lag import GroupObservation, Snapshot, TopicPartition
from monitoring.lag_exporter import (
    LagExporter,
    LagExporterConfig,
    add_parser_args,
    config_from_args,
)
from monitoring.metrics import LagMetrics

TP = ("full-stream", 0)
GROUP = "minibroker-filters-001-020"


class ScriptedReader:
    """Returns the next scripted snapshot (or raises it) at each poll."""

    def __init__(self, snapshots: list[Snapshot | Exception]) -> None:
        self.snapshots = snapshots
        self.closed = False

    def snapshot(self, now: float, known: Iterable[TopicPartition] = ()) -> Snapshot:
        item = self.snapshots.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


def exporter(snapshots: list[Snapshot | Exception]) -> tuple[LagExporter, CollectorRegistry]:
    registry = CollectorRegistry()
    config = LagExporterConfig("unused:9092", port=0, stall_after=10)
    return LagExporter(config, registry, ScriptedReader(snapshots)), registry


def status_state(registry: CollectorRegistry, group: str) -> dict[str, float | None]:
    return {
        s: registry.get_sample_value("minibroker_consumer_group_status_state",
                                     {"group": group, "status": s})
        for s in LagMetrics.STATUSES
    }


def test_exports_every_metric_and_keeps_a_vanished_groups_series() -> None:
    lag, registry = exporter([
        Snapshot(0.0, {TP: 100}, {GROUP: GroupObservation(1, {TP: 100})}),
        Snapshot(5.0, {TP: 300}, {}),  # the group is gone from the broker
        Snapshot(20.0, {TP: 300}, {}),
    ])
    lag.poll_once()
    value = registry.get_sample_value
    labels = {"group": GROUP, "topic": "full-stream", "partition": "0"}
    assert value("minibroker_consumer_group_lag_messages", labels) == 0
    assert value("minibroker_consumer_group_members", {"group": GROUP}) == 1
    assert status_state(registry, GROUP) == {"OK": 1, "WARN": 0, "ERR": 0, "STALL": 0,
                                             "STOP": 0}
    lag.poll_once()
    lag.poll_once()
    assert value("minibroker_consumer_group_members", {"group": GROUP}) == 0
    assert value("minibroker_consumer_group_lag_messages", labels) == 200
    assert value("minibroker_consumer_group_committed_offset", labels) == 100
    assert value("minibroker_partition_end_offset", {"topic": "full-stream",
                                                     "partition": "0"}) == 300
    assert value("minibroker_consumer_group_status", {"group": GROUP}) == 4
    assert status_state(registry, GROUP) == {"OK": 0, "WARN": 0, "ERR": 0, "STALL": 0,
                                             "STOP": 1}
    assert (value("minibroker_consumer_group_lag_seconds", {"group": GROUP}) or 0) > 0
    assert value("minibroker_lag_exporter_polls_total") == 3
    assert (value("minibroker_lag_exporter_last_poll_timestamp_seconds") or 0) > 0


def test_a_failed_poll_counts_and_keeps_the_last_values() -> None:
    lag, registry = exporter([
        Snapshot(0.0, {TP: 10}, {GROUP: GroupObservation(2, {TP: 4})}),
        RuntimeError("broker away"),
        Snapshot(10.0, {TP: 10}, {}, failed_groups=frozenset({GROUP})),
    ])
    lag.poll_once()
    with pytest.raises(RuntimeError):
        lag.poll_once()
    lag.poll_once()
    value = registry.get_sample_value
    assert value("minibroker_lag_exporter_poll_errors_total") == 2
    assert value("minibroker_consumer_group_members", {"group": GROUP}) == 2
    assert value("minibroker_consumer_group_lag_messages",
                 {"group": GROUP, "topic": "full-stream", "partition": "0"}) == 6
    lag.close()
    assert lag.reader.closed  # type: ignore[attr-defined]


def test_set_status_rejects_unknown_codes() -> None:
    metrics = LagMetrics(CollectorRegistry())
    with pytest.raises(ValueError, match=r"0\.\.4"):
        metrics.set_status("g", 5)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser_args(parser)
    return parser.parse_args(list(argv))


def test_options_and_defaults() -> None:
    config = config_from_args(parse("127.0.0.1:9092"))
    assert (config.port, config.interval, config.groups) == (9308, 5.0, ".*")
    assert (config.warn_seconds, config.err_seconds, config.stall_after) == (20, 39, 60)
    config = config_from_args(parse("k:9092", "--metrics-port", "0", "--poll-interval", "1",
                                    "--groups", "minibroker-filters-.*", "--stall-after", "5"))
    assert (config.port, config.interval, config.groups, config.stall_after) == (
        0, 1.0, "minibroker-filters-.*", 5.0)


def test_options_read_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIBROKER_LAG_GROUPS", "minibroker-.*")
    monkeypatch.setenv("MINIBROKER_LAG_INTERVAL", "2")
    config = config_from_args(parse("k:9092"))
    assert (config.groups, config.interval) == ("minibroker-.*", 2.0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--groups", "("], "not a valid regular expression"),
    (["--warn-seconds", "50", "--err-seconds", "40"], "must not exceed --err-seconds"),
    (["--history", "2"], "at least 4"),
])
def test_bad_options_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config_from_args(parse("k:9092", *argv))
