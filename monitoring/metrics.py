"""Every Prometheus metric of the mini-broker, defined once.

Services create their metrics through the classes here, each bound to a registry made by
:func:`make_registry`, and start the HTTP endpoint with :func:`serve` from ``run()``, never
at import. Labels are few and bounded (``service``, ``group``, ``filter``, ``topic``,
``partition``); an alert id or a visit id is never a label.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

__all__ = [
    "END_TO_END_BUCKETS",
    "PREFIX",
    "VISIT_BUCKETS",
    "ConsumerMetrics",
    "FilterGroupMetrics",
    "LagMetrics",
    "ProducerMetrics",
    "make_registry",
    "serve",
]

PREFIX = "minibroker_"

# Visits take seconds; the visit interval (39 s) must fall on a bucket edge so that
# "visit filtered later than the interval" can be read from the histogram.
VISIT_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 39, 60, 90, 120, 300, 600)
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 39, 60, 120, 300)


def make_registry(process: bool = True) -> CollectorRegistry:
    """Return a fresh registry, with process CPU/memory metrics unless ``process`` is False."""
    registry = CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
    return registry


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> int:
    """Serve ``registry`` on ``/metrics`` at ``port``; 0 means off. Returns the port."""
    if port <= 0:
        return 0
    start_http_server(port, addr=addr, registry=registry)
    return port


class ProducerMetrics:
    """Metrics of ``minibroker produce``."""

    def __init__(self, registry: CollectorRegistry, topic: str) -> None:
        self.alerts_produced = Counter(
            PREFIX + "alerts_produced", "Alerts acknowledged by Kafka (acks=all).",
            ["topic"], registry=registry,
        ).labels(topic=topic)
        self.visits_produced = Counter(
            PREFIX + "visits_produced", "Visits whose every alert was acknowledged.",
            ["topic"], registry=registry,
        ).labels(topic=topic)
        self.produce_errors = Counter(
            PREFIX + "produce_errors", "Alerts Kafka failed to deliver.",
            ["topic"], registry=registry,
        ).labels(topic=topic)
        self.visit_produce_seconds = Histogram(
            PREFIX + "visit_produce_seconds",
            "Seconds from a visit's first send to its last acknowledgement.",
            buckets=VISIT_BUCKETS, registry=registry,
        )
        self.last_visit = Gauge(
            PREFIX + "producer_last_visit", "Visit number of the last visit fully produced.",
            ["topic"], registry=registry,
        ).labels(topic=topic)
        self.last_visit_time = Gauge(
            PREFIX + "producer_last_visit_timestamp_seconds",
            "Unix time the last visit was fully acknowledged.",
            ["topic"], registry=registry,
        ).labels(topic=topic)


class FilterGroupMetrics:
    """Metrics of one filter group (``minibroker filter``)."""

    def __init__(self, registry: CollectorRegistry, group: str, filters: list[str]) -> None:
        self.group = group
        self.alerts_consumed = Counter(
            PREFIX + "filter_alerts_consumed", "Input alerts consumed by the group.",
            ["group"], registry=registry,
        ).labels(group=group)
        passed = Counter(
            PREFIX + "filter_alerts_passed",
            "Alerts that passed a filter and were delivered to its topic.",
            ["group", "filter"], registry=registry,
        )
        capped = Counter(
            PREFIX + "filter_alerts_capped",
            "Alerts that passed a filter but were over the per-visit cap.",
            ["group", "filter"], registry=registry,
        )
        errors = Counter(
            PREFIX + "filter_errors", "Exceptions raised by a filter.",
            ["group", "filter"], registry=registry,
        )
        delivered = Gauge(
            PREFIX + "filter_visit_delivered",
            "Alerts delivered by a filter in the group's last completed visit.",
            ["group", "filter"], registry=registry,
        )
        visit_passed = Gauge(
            PREFIX + "filter_visit_passed",
            "Alerts passing a filter in the last completed visit, before the cap.",
            ["group", "filter"], registry=registry,
        )
        # Children are created up front so every filter's series exists from the start.
        self.passed = {f: passed.labels(group=group, filter=f) for f in filters}
        self.capped = {f: capped.labels(group=group, filter=f) for f in filters}
        self.errors = {f: errors.labels(group=group, filter=f) for f in filters}
        self.visit_delivered = {f: delivered.labels(group=group, filter=f) for f in filters}
        self.visit_passed = {f: visit_passed.labels(group=group, filter=f) for f in filters}
        self.dead_letters = Counter(
            PREFIX + "dead_letters", "Malformed input messages set aside to the dead-letter topic.",
            ["group"], registry=registry,
        ).labels(group=group)
        self.visit_seconds = Histogram(
            PREFIX + "filter_visit_seconds",
            "Seconds from a visit's first alert consumed to its last output acknowledged.",
            ["group"], buckets=VISIT_BUCKETS, registry=registry,
        ).labels(group=group)
        self.last_visit = Gauge(
            PREFIX + "filter_last_visit", "Visit number of the group's last completed visit.",
            ["group"], registry=registry,
        ).labels(group=group)
        self.last_visit_seconds = Gauge(
            PREFIX + "filter_last_visit_seconds",
            "Processing time of the group's last completed visit.",
            ["group"], registry=registry,
        ).labels(group=group)
        self.visits_completed = Counter(
            PREFIX + "filter_visits_completed", "Visits the group has completed.",
            ["group"], registry=registry,
        ).labels(group=group)
        self.last_visit_time = Gauge(
            PREFIX + "filter_last_visit_timestamp_seconds",
            "Unix time the group completed its last visit.",
            ["group"], registry=registry,
        ).labels(group=group)


class ConsumerMetrics:
    """Metrics of end consumers (``minibroker monitor`` / ``print``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._received = Counter(
            PREFIX + "consumer_alerts_received", "Alerts received by an end consumer.",
            ["topic"], registry=registry,
        )
        self._end_to_end = Histogram(
            PREFIX + "end_to_end_seconds",
            "Seconds from the alert's produce timestamp to its receipt by an end consumer.",
            ["filter"], buckets=END_TO_END_BUCKETS, registry=registry,
        )

    def received(self, topic: str) -> Counter:
        """The received-alerts counter child for ``topic``."""
        return self._received.labels(topic=topic)

    def end_to_end(self, filter_name: str) -> Histogram:
        """The end-to-end latency histogram child for ``filter_name``."""
        return self._end_to_end.labels(filter=filter_name)


class LagMetrics:
    """Metrics of the lag exporter (``minibroker lag``).

    A group's series never vanish once it has been seen (see :mod:`monitoring.lag`). Its
    Burrow-style status is exported twice: ``consumer_group_status{group}`` is the number
    (0 OK, 1 WARN, 2 ERR, 3 STALL, 4 STOP: worse is higher, so ``max`` and ``>=`` work) and
    ``consumer_group_status_state{group,status}`` is 1 for the current status and 0 for the
    four others, all five always present, so a status change never starts a new series.
    """

    STATUSES = ("OK", "WARN", "ERR", "STALL", "STOP")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag_messages = Gauge(
            PREFIX + "consumer_group_lag_messages",
            "Readable messages between a group's committed offset and the partition's end.",
            ["group", "topic", "partition"], registry=registry,
        )
        self.committed_offset = Gauge(
            PREFIX + "consumer_group_committed_offset",
            "The group's committed offset (next message it will read).",
            ["group", "topic", "partition"], registry=registry,
        )
        self.end_offset = Gauge(
            PREFIX + "partition_end_offset",
            "End offset of a partition read by a watched group (last stable offset).",
            ["topic", "partition"], registry=registry,
        )
        self.lag_seconds = Gauge(
            PREFIX + "consumer_group_lag_seconds",
            "Seconds the group's oldest unread message has waited (max over partitions).",
            ["group"], registry=registry,
        )
        self.status = Gauge(
            PREFIX + "consumer_group_status",
            "Burrow-style status: 0 OK, 1 WARN, 2 ERR, 3 STALL, 4 STOP.",
            ["group"], registry=registry,
        )
        self._status_state = Gauge(
            PREFIX + "consumer_group_status_state",
            "1 for the group's current Burrow-style status, 0 for the other four.",
            ["group", "status"], registry=registry,
        )
        self.members = Gauge(
            PREFIX + "consumer_group_members", "Members of the consumer group.",
            ["group"], registry=registry,
        )
        self.polls = Counter(
            PREFIX + "lag_exporter_polls", "Polls of the broker attempted.", registry=registry,
        )
        self.poll_errors = Counter(
            PREFIX + "lag_exporter_poll_errors",
            "Polls (or parts of a poll) that failed; values then keep their last reading.",
            registry=registry,
        )
        self.poll_seconds = Gauge(
            PREFIX + "lag_exporter_poll_seconds", "Duration of the last poll.",
            registry=registry,
        )
        self.last_poll_time = Gauge(
            PREFIX + "lag_exporter_last_poll_timestamp_seconds",
            "Unix time of the last complete poll.", registry=registry,
        )

    def set_status(self, group: str, code: int) -> None:
        """Set ``group``'s status to ``code`` (0-4) in both representations."""
        if not 0 <= code < len(self.STATUSES):
            raise ValueError(f"status code must be 0..{len(self.STATUSES) - 1}, got {code}")
        self.status.labels(group=group).set(code)
        for i, name in enumerate(self.STATUSES):
            self._status_state.labels(group=group, status=name).set(1 if i == code else 0)
