"""``minibroker lag BROKER``: consumer-group lag and Burrow-style status for Prometheus.

Like Burrow or kafka-lag-exporter, a separate service that watches every consumer group
from the outside, so a frozen or dead filter group is still seen. Every
``--poll-interval`` seconds it reads, with the admin API, the groups
(``list_consumer_groups``), their members (``describe_consumer_groups``), their committed
offsets (``list_consumer_group_offsets``) and the end offsets of their partitions
(``list_offsets``, read_committed: the last stable offset), hands them to
:class:`monitoring.lag.LagModel` (the rules, documented there) and sets the gauges of
:class:`monitoring.metrics.LagMetrics`, served on ``--metrics-port``.

A lag of a few messages is checked with a read_committed consumer (assign, never commit,
never joins a group): if nothing readable lies between the committed offset and the end,
the lag is only transaction markers and counts as caught up (rule 4 of monitoring.lag).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from broker.options import (
    UsageError,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from monitoring.lag import (
    GroupObservation,
    GroupReport,
    LagModel,
    LagRules,
    Snapshot,
    TopicPartition,
)
from monitoring.metrics import LagMetrics, make_registry, serve

__all__ = [
    "DEFAULT_PORT",
    "KafkaOffsetReader",
    "LagExporter",
    "LagExporterConfig",
    "OffsetReader",
    "add_parser_args",
    "config_from_args",
    "main",
    "run",
]

log = logging.getLogger(__name__)

# kafka_exporter's port: this exporter takes its place next to a mini-broker.
DEFAULT_PORT = 9308
# The probe consumer's group id: it only assigns and never commits, so it is never listed,
# but it is excluded anyway.
PROBE_GROUP = "minibroker-lag-exporter-probe"


@dataclass(frozen=True)
class LagExporterConfig:
    """Settings of ``minibroker lag``."""

    bootstrap: str
    port: int = DEFAULT_PORT
    bind: str = "0.0.0.0"
    interval: float = 5.0
    groups: str = ".*"
    # Half a visit and a visit of Rubin's 39-s cadence (as the alert rules).
    warn_seconds: float = 20.0
    err_seconds: float = 39.0
    stall_after: float = 60.0
    history_points: int = 1000
    timeout: float = 10.0
    # Lags of at most this many messages are checked for being only transaction markers;
    # 0 turns the check off. Markers come one per transaction, so a handful is plenty.
    marker_probe_max: int = 10

    def rules(self) -> LagRules:
        """The lag model's thresholds."""
        return LagRules(self.warn_seconds, self.err_seconds, self.stall_after,
                        self.history_points)


class OffsetReader(Protocol):
    """What the exporter polls: Kafka in production, scripted snapshots in tests."""

    def snapshot(self, now: float, known: Iterable[TopicPartition] = ()) -> Snapshot:
        """One poll of the broker."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class KafkaOffsetReader:
    """All the exporter's Kafka I/O: one call of :meth:`snapshot` is one poll."""

    def __init__(self, bootstrap: str, groups: str = ".*", timeout: float = 10.0,
                 marker_probe_max: int = 10) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.include = re.compile(groups)
        self.timeout = timeout
        self.marker_probe_max = marker_probe_max
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self._probe: Any = None
        self._probed: dict[tuple[TopicPartition, int, int], bool] = {}

    def snapshot(self, now: float, known: Iterable[TopicPartition] = ()) -> Snapshot:
        """Read groups, members, committed and end offsets; raise KafkaException if the
        group listing fails (then nothing at all is known about this poll).

        ``known`` adds partitions whose end offsets are wanted even if no listed group
        commits to them now (groups that disappeared keep following their partitions).
        """
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

        listing = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
        if listing.errors and not listing.valid:
            # An unreachable cluster answers with errors, not an exception: nothing is
            # known, so this poll fails as a whole (no group is taken for dead).
            raise KafkaException(listing.errors[0])
        for error in listing.errors:
            log.warning("listing consumer groups partly failed: %s", error)
        ids = sorted(
            g.group_id for g in listing.valid
            if g.group_id != PROBE_GROUP and self.include.fullmatch(g.group_id)
        )
        failed: set[str] = set()
        members: dict[str, int] = {}
        states: dict[str, str] = {}
        committed: dict[str, dict[TopicPartition, int]] = {}
        if ids:
            described = self.admin.describe_consumer_groups(ids, request_timeout=self.timeout)
            # The offsets API takes one group per request: send them all, then wait.
            offset_futures = {
                g: self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(g)], request_timeout=self.timeout
                )[g]
                for g in ids
            }
            for g in ids:
                try:
                    desc = described[g].result()
                    members[g] = len(desc.members)
                    states[g] = getattr(desc.state, "name", str(desc.state))
                    offsets = offset_futures[g].result()
                except KafkaException as exc:
                    log.warning("cannot read consumer group %s: %s", g, exc)
                    failed.add(g)
                    continue
                committed[g] = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in offsets.topic_partitions or []
                    if tp.error is None and tp.offset >= 0  # no commit yet: -1001
                }
        partitions = set(known)
        for offsets_of_group in committed.values():
            partitions.update(offsets_of_group)
        ends = self._end_offsets(partitions)
        empty = self._marker_only_ranges(committed, ends)
        groups = {
            g: GroupObservation(members[g], committed[g], states[g])
            for g in ids if g not in failed
        }
        return Snapshot(now, ends, groups, frozenset(failed), frozenset(empty),
                        listing_complete=not listing.errors)

    def _end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        from confluent_kafka import IsolationLevel, KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition
        from confluent_kafka.admin import OffsetSpec

        request = {KafkaTopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
        if not request:
            return {}
        # read_committed: the last stable offset, so an open transaction is not yet lag.
        futures = self.admin.list_offsets(
            request, isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=self.timeout,
        )
        ends: dict[TopicPartition, int] = {}
        for ktp, future in futures.items():
            try:
                ends[(ktp.topic, ktp.partition)] = future.result().offset
            except KafkaException as exc:  # e.g. topic deleted: keep its last values
                log.debug("no end offset for %s[%d]: %s", ktp.topic, ktp.partition, exc)
        return ends

    def _marker_only_ranges(
        self, committed: dict[str, dict[TopicPartition, int]],
        ends: dict[TopicPartition, int],
    ) -> set[tuple[TopicPartition, int, int]]:
        empty = set()
        for offsets in committed.values():
            for tp, start in offsets.items():
                end = ends.get(tp)
                if end is None or not 0 < end - start <= self.marker_probe_max:
                    continue
                key = (tp, start, end)
                if key not in self._probed:
                    if len(self._probed) > 10_000:
                        self._probed.clear()
                    verdict = self._nothing_readable(tp, start, end)
                    if verdict is None:
                        continue  # unknown: count it as lag, ask again next poll
                    self._probed[key] = verdict
                if self._probed[key]:
                    empty.add(key)
        return empty

    def _nothing_readable(self, tp: TopicPartition, start: int, end: int) -> bool | None:
        """True if a read_committed consumer finds no record in [start, end)."""
        from confluent_kafka import Consumer, KafkaError
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if self._probe is None:
            self._probe = Consumer({
                "bootstrap.servers": self.bootstrap,
                "group.id": PROBE_GROUP,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
                # One message answers the question: keep fetches of 100-KB alerts small.
                "max.partition.fetch.bytes": 1_048_576,
                "fetch.max.bytes": 1_048_576,
                "queued.max.messages.kbytes": 1024,
            })
        self._probe.assign([KafkaTopicPartition(tp[0], tp[1], start)])
        try:
            # Short: an unanswered probe only means "count it as lag this time".
            deadline = time.monotonic() + min(self.timeout, 3.0)
            while time.monotonic() < deadline:
                msg = self._probe.poll(0.2)
                if msg is None:
                    continue
                error = msg.error()
                if error is None:
                    return bool(msg.offset() >= end)
                if error.code() == KafkaError._PARTITION_EOF:
                    return bool(msg.offset() >= end)
                log.debug("marker probe of %s[%d] failed: %s", tp[0], tp[1], error)
                return None
            return None
        finally:
            self._probe.unassign()

    def close(self) -> None:
        """Close the probe consumer."""
        if self._probe is not None:
            self._probe.close()
            self._probe = None


class LagExporter:
    """Polls through a reader, applies the lag rules, and sets the Prometheus gauges."""

    def __init__(
        self,
        config: LagExporterConfig,
        registry: CollectorRegistry | None = None,
        reader: OffsetReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else make_registry()
        self.metrics = LagMetrics(self.registry)
        self.model = LagModel(config.rules())
        self.reader: OffsetReader = reader or KafkaOffsetReader(
            config.bootstrap, config.groups, config.timeout, config.marker_probe_max
        )
        self.clock = clock
        self._failing = False

    def poll_once(self) -> list[GroupReport]:
        """One poll: read the broker, apply the rules, update the metrics; return reports.

        Raises the Kafka error if the broker cannot be read at all; metrics then keep
        their last values (and the error counter counts it).
        """
        started = time.monotonic()
        self.metrics.polls.inc()
        try:
            snapshot = self.reader.snapshot(self.clock(), self.model.histories.keys())
        except Exception:
            self.metrics.poll_errors.inc()
            raise
        if snapshot.failed_groups or not snapshot.listing_complete:
            self.metrics.poll_errors.inc()
        reports = self.model.observe(snapshot)
        self._export(reports)
        self.metrics.poll_seconds.set(time.monotonic() - started)
        self.metrics.last_poll_time.set(time.time())
        return reports

    def _export(self, reports: list[GroupReport]) -> None:
        m = self.metrics
        for r in reports:
            m.members.labels(group=r.group).set(r.members)
            m.lag_seconds.labels(group=r.group).set(r.lag_seconds)
            m.set_status(r.group, int(r.status))
            for (topic, partition), p in r.partitions.items():
                labels = {"group": r.group, "topic": topic, "partition": str(partition)}
                m.lag_messages.labels(**labels).set(p.lag_messages)
                m.committed_offset.labels(**labels).set(p.committed)
                m.end_offset.labels(topic=topic, partition=str(partition)).set(p.end)

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set; never dies of Kafka errors."""
        from confluent_kafka import KafkaException

        while not stop.is_set():
            started = time.monotonic()
            try:
                reports = self.poll_once()
            except KafkaException as exc:
                # Keep going: the broker may come back; the last values stay exported.
                if not self._failing:
                    log.warning("cannot read Kafka at %s: %s; retrying every %.0f s",
                                self.config.bootstrap, exc, self.config.interval)
                self._failing = True
            else:
                if self._failing:
                    log.info("Kafka at %s readable again", self.config.bootstrap)
                self._failing = False
                log.debug("polled %d groups in %.2f s", len(reports),
                          time.monotonic() - started)
            stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))

    def close(self) -> None:
        """Release the Kafka clients."""
        self.reader.close()


def run(config: LagExporterConfig, stop: threading.Event | None = None) -> None:
    """Serve the metrics on ``config.port`` and poll until ``stop`` is set (or forever)."""
    exporter = LagExporter(config)
    try:
        port = serve(exporter.registry, config.port, config.bind)
    except OSError as exc:
        exporter.close()
        raise UsageError(
            f"cannot serve metrics on {config.bind}:{config.port} ({exc.strerror}): "
            "choose another port with --metrics-port"
        ) from None
    log.info("lag exporter watching groups matching %r on %s; metrics on port %d",
             config.groups, config.bootstrap, port)
    try:
        exporter.run(stop or threading.Event())
    finally:
        exporter.close()


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker lag``."""
    parser.add_argument("broker", metavar="BROKER",
                        help="Kafka bootstrap servers, host:port[,host:port...]")
    option(parser, "--metrics-port", default=DEFAULT_PORT, type=non_negative_int,
           metavar="PORT", help="port serving /metrics; 0 = off")
    option(parser, "--metrics-bind", default="0.0.0.0", metavar="ADDRESS",
           help="address serving /metrics")
    # Exporter-only settings read MINIBROKER_LAG_* so they cannot clash with other services'.
    seconds: dict[str, Any] = {"type": positive_float, "metavar": "SECONDS"}
    option(parser, "--poll-interval", default=5.0, dest="lag_interval", **seconds,
           help="seconds between polls of the broker")
    option(parser, "--groups", default=".*", dest="lag_groups", metavar="REGEX",
           help="regular expression a group id must match in full to be watched")
    option(parser, "--warn-seconds", default=20.0, dest="lag_warn_seconds", **seconds,
           help="lag in seconds from which a progressing group is WARN")
    option(parser, "--err-seconds", default=39.0, dest="lag_err_seconds", **seconds,
           help="lag in seconds from which a progressing group is ERR")
    option(parser, "--stall-after", default=60.0, dest="lag_stall_after", **seconds,
           help="seconds behind without progress before a group is STALL (STOP if empty)")
    option(parser, "--history", default=1000, type=positive_int, dest="lag_history",
           metavar="POINTS", help="end-offset points kept per partition (>= 4)")
    option(parser, "--timeout", default=10.0, dest="lag_timeout", **seconds,
           help="seconds to wait for each Kafka admin request")


def config_from_args(args: argparse.Namespace) -> LagExporterConfig:
    """Validate the parsed arguments into a config; bad values raise UsageError."""
    try:
        re.compile(args.lag_groups)
    except re.error as exc:
        raise UsageError(
            f"--groups {args.lag_groups!r} is not a valid regular expression ({exc}); "
            "e.g. --groups 'filter-.*'"
        ) from None
    if args.lag_warn_seconds > args.lag_err_seconds:
        raise UsageError(
            f"--warn-seconds ({args.lag_warn_seconds:g}) must not exceed --err-seconds "
            f"({args.lag_err_seconds:g})"
        )
    if args.lag_history < 4:
        raise UsageError(f"--history must be at least 4, got {args.lag_history}")
    return LagExporterConfig(
        bootstrap=args.broker, port=args.metrics_port, bind=args.metrics_bind,
        interval=args.lag_interval, groups=args.lag_groups,
        warn_seconds=args.lag_warn_seconds, err_seconds=args.lag_err_seconds,
        stall_after=args.lag_stall_after, history_points=args.lag_history,
        timeout=args.lag_timeout,
    )


def main(args: argparse.Namespace) -> int:
    """Export consumer-group lag and status to Prometheus.

    Polls every ``--poll-interval`` seconds until SIGTERM or Ctrl-C; Kafka being away is
    logged once and retried, never fatal.
    """
    config = config_from_args(args)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run(config, stop)
    return 0
