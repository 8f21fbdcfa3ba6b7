"""The lag exporter against a real Kafka broker: values read from a fresh registry."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from monitoring.lag_exporter import LagExporter, LagExporterConfig

pytestmark = pytest.mark.kafka


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def produce(bootstrap: str, topic: str, n: int, transactional: bool = False) -> None:
    conf = {"bootstrap.servers": bootstrap}
    if transactional:
        conf["transactional.id"] = f"tx-{topic}"
    producer = Producer(conf)
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    for i in range(n):
        producer.produce(topic, value=b"alert %d" % i)
    if transactional:
        producer.commit_transaction(30)
    assert producer.flush(30) == 0


def consume(consumer: Consumer, n: int, timeout: float = 30.0) -> None:
    """Read ``n`` messages, committing each one's offset + 1 (the strictest client)."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < n:
        assert time.monotonic() < deadline, f"consumed only {got} of {n}"
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        consumer.commit(message=msg, asynchronous=False)
        got += 1


@pytest.fixture
def group(topic_name: str) -> str:
    return f"{topic_name}-group"


@pytest.fixture
def consumer(kafka_bootstrap: str, topic_name: str, group: str) -> Iterator[Consumer]:
    c = Consumer({
        "bootstrap.servers": kafka_bootstrap, "group.id": group,
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([topic_name])
    yield c
    c.close()


def exporter(bootstrap: str, group: str, **rules: float) -> tuple[LagExporter, CollectorRegistry]:
    registry = CollectorRegistry()
    config = LagExporterConfig(bootstrap, port=0, groups=re.escape(group), timeout=10, **rules)
    return LagExporter(config, registry=registry), registry


def test_lag_members_and_status_of_a_group(
    kafka_bootstrap: str, topic_name: str, group: str, consumer: Consumer
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    produce(kafka_bootstrap, topic_name, 100)
    consume(consumer, 40)
    lag, registry = exporter(kafka_bootstrap, group)
    try:
        lag.poll_once()
        labels = {"group": group, "topic": topic_name, "partition": "0"}
        value = registry.get_sample_value
        assert value("minibroker_consumer_group_lag_messages", labels) == 60
        assert value("minibroker_consumer_group_committed_offset", labels) == 40
        assert value("minibroker_partition_end_offset",
                     {"topic": topic_name, "partition": "0"}) == 100
        assert value("minibroker_consumer_group_members", {"group": group}) == 1
        assert value("minibroker_consumer_group_status", {"group": group}) == 0
        assert value("minibroker_consumer_group_status_state",
                     {"group": group, "status": "OK"}) == 1
        assert value("minibroker_consumer_group_status_state",
                     {"group": group, "status": "STOP"}) == 0
        # The history starts with this exporter: lag in seconds is "at least" its age.
        time.sleep(1.5)
        lag.poll_once()
        seconds = value("minibroker_consumer_group_lag_seconds", {"group": group})
        assert seconds is not None and 1.0 <= seconds < 10.0

        consume(consumer, 60)
        lag.poll_once()
        assert value("minibroker_consumer_group_lag_messages", labels) == 0
        assert value("minibroker_consumer_group_lag_seconds", {"group": group}) == 0
        assert value("minibroker_lag_exporter_polls_total") == 3
        assert value("minibroker_lag_exporter_poll_errors_total") == 0
    finally:
        lag.close()


def test_dead_group_keeps_its_series_and_stops(
    kafka_bootstrap: str, topic_name: str, group: str, consumer: Consumer
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    produce(kafka_bootstrap, topic_name, 10)
    consume(consumer, 10)
    lag, registry = exporter(kafka_bootstrap, group, stall_after=1.0)
    try:
        lag.poll_once()
        consumer.close()  # leaves the group: members 0, offsets stay
        produce(kafka_bootstrap, topic_name, 5)
        time.sleep(1.5)
        lag.poll_once()
        time.sleep(1.2)
        lag.poll_once()
        value = registry.get_sample_value
        labels = {"group": group, "topic": topic_name, "partition": "0"}
        assert value("minibroker_consumer_group_members", {"group": group}) == 0
        assert value("minibroker_consumer_group_lag_messages", labels) == 5
        assert value("minibroker_consumer_group_status", {"group": group}) == 4  # STOP
        assert value("minibroker_consumer_group_status_state",
                     {"group": group, "status": "STOP"}) == 1
    finally:
        lag.close()


def test_transaction_marker_is_not_lag(
    kafka_bootstrap: str, topic_name: str, group: str, consumer: Consumer
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    produce(kafka_bootstrap, topic_name, 20, transactional=True)
    consume(consumer, 20)  # commits offset 20; the commit marker sits at offset 20
    lag, registry = exporter(kafka_bootstrap, group, stall_after=1.0)
    try:
        lag.poll_once()
        time.sleep(1.2)
        lag.poll_once()
        value = registry.get_sample_value
        labels = {"group": group, "topic": topic_name, "partition": "0"}
        assert value("minibroker_partition_end_offset",
                     {"topic": topic_name, "partition": "0"}) == 21
        assert value("minibroker_consumer_group_committed_offset", labels) == 20
        assert value("minibroker_consumer_group_lag_messages", labels) == 0
        assert value("minibroker_consumer_group_status", {"group": group}) == 0
    finally:
        lag.close()


def test_only_matching_groups_are_watched(
    kafka_bootstrap: str, topic_name: str, group: str, consumer: Consumer
) -> None:
    create_topic(kafka_bootstrap, topic_name)
    produce(kafka_bootstrap, topic_name, 3)
    consume(consumer, 3)
    lag, registry = exporter(kafka_bootstrap, group + "-other")
    try:
        assert lag.poll_once() == []
        assert registry.get_sample_value("minibroker_consumer_group_members",
                                         {"group": group}) is None
    finally:
        lag.close()
