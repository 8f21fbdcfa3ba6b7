"""``minibroker produce``: publish alerts to Kafka one visit at a time.

Alerts come from a directory of Avro files (wire format or object containers; grouped
into visits by ``diaSource.visit``) or from the seeded generator. A visit's alerts are
serialised before the visit starts, never in the send loop. Sends are idempotent with
acks=all; a delivery callback counts every acknowledgement and failure, and a visit is
reported done only when all its alerts are acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from broker.options import (
    UsageError,
    non_negative_float,
    non_negative_int,
    option,
    positive_int,
)

__all__ = ["ProducerConfig", "VisitResult", "add_parser_args", "load_file_visits", "main", "run"]

log = logging.getLogger(__name__)


@dataclass
class ProducerConfig:
    """Settings of one producer run."""

    bootstrap: str
    topic: str = "full-stream"
    source: Path | None = None
    profile: str = "realistic"
    alerts_per_visit: int = 10_000
    interval: float = 39.0
    visits: int = 1
    first_visit: int = 1
    seed: int = 0
    schema_version: str | None = None
    partitions: int = 1
    bare: bool = False
    metrics_port: int = 0


@dataclass
class VisitResult:
    """What happened to one visit."""

    visit: int
    alerts: int
    acked: int
    failed: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """First send to last acknowledgement."""
        return self.end - self.start


def load_file_visits(source: Path) -> list[tuple[int, list[bytes]]]:
    """Read every ``*.avro`` under ``source`` (a file or directory) into visits, in order."""
    from broker.alerts import Decoder, MalformedAlert, iter_alert_file, visit_of

    files = [source] if source.is_file() else sorted(source.rglob("*.avro"))
    if not files:
        raise UsageError(f"no .avro files in {source}: give a directory of alert files")
    decoder = Decoder({"diaSource"})
    visits: dict[int, list[bytes]] = {}
    for path in files:
        try:
            for data in iter_alert_file(path):
                visits.setdefault(visit_of(decoder.decode(data)), []).append(data)
        except (MalformedAlert, ValueError, OSError) as exc:
            raise UsageError(f"{path}: {exc}") from None
    return sorted(visits.items())


class _Acks:
    """Delivery-callback bookkeeping, shared with librdkafka's callback thread."""

    def __init__(self, on_ack: Callable[[], None], on_fail: Callable[[], None]) -> None:
        self.acked = 0
        self.failed = 0
        self.last_error: str | None = None
        self._on_ack, self._on_fail = on_ack, on_fail

    def __call__(self, err: object, msg: object) -> None:
        if err is not None:
            self.failed += 1
            self.last_error = str(err)
            self._on_fail()
        else:
            self.acked += 1
            self._on_ack()


def _visits(cfg: ProducerConfig) -> Iterator[tuple[int, Callable[[], list[bytes]]]]:
    if cfg.source is not None:
        loaded = load_file_visits(cfg.source)
        for visit, alerts in loaded[: cfg.visits] if cfg.visits else loaded:
            yield visit, (lambda a=alerts: a)  # type: ignore[misc]
        return
    from broker.alerts import load_schema
    from broker.generator import AlertGenerator

    gen = AlertGenerator(cfg.profile, cfg.seed, load_schema(cfg.schema_version))
    for k in range(cfg.visits):
        visit = cfg.first_visit + k
        yield visit, (lambda v=visit: gen.visit(v, cfg.alerts_per_visit))  # type: ignore[misc]


def _strip_header(data: bytes) -> bytes:
    return data[5:]


def run(cfg: ProducerConfig, stop: threading.Event | None = None,
        out: Callable[[str], None] = print) -> list[VisitResult]:
    """Produce ``cfg.visits`` visits paced ``cfg.interval`` apart; return per-visit results."""
    from broker import kafka_io
    from monitoring.metrics import ProducerMetrics, make_registry, serve

    stop = stop or threading.Event()
    kafka_io.wait_for_broker(cfg.bootstrap)
    kafka_io.ensure_topics(cfg.bootstrap, [cfg.topic], partitions=cfg.partitions)
    registry = make_registry()
    metrics = ProducerMetrics(registry, cfg.topic)
    serve(registry, cfg.metrics_port)
    acks = _Acks(metrics.alerts_produced.inc, metrics.produce_errors.inc)
    prod = kafka_io.producer(cfg.bootstrap)
    results: list[VisitResult] = []
    t0 = time.time()
    try:
        for k, (visit, make) in enumerate(_visits(cfg)):
            if stop.is_set():
                break
            alerts = make()  # serialised now, before the visit's start time
            if cfg.bare:
                alerts = [_strip_header(a) for a in alerts]
            start_at = t0 + k * cfg.interval
            if stop.wait(max(0.0, start_at - time.time())):
                break
            if time.time() - start_at > 1.0 and k:
                log.warning("visit %d starts %.1f s late", visit, time.time() - start_at)
            headers: list[tuple[str, str | bytes | None]] = [("visit", str(visit).encode())]
            acked0, failed0 = acks.acked, acks.failed
            start = time.time()
            out(f"visit:{visit} status:start alerts:{len(alerts)} time:{start:.3f}")
            for data in alerts:
                while True:
                    try:
                        prod.produce(cfg.topic, data, headers=headers, on_delivery=acks)
                        break
                    except BufferError:
                        prod.poll(0.05)  # queue full: let librdkafka drain, then retry
                prod.poll(0)
            remaining = prod.flush(max(60.0, cfg.interval * 2))
            end = time.time()
            res = VisitResult(visit, len(alerts), acks.acked - acked0,
                              acks.failed - failed0, start, end)
            results.append(res)
            if remaining or res.failed:
                log.error("visit %d: %d alerts unsent, %d failed (%s)", visit, remaining,
                          res.failed, acks.last_error)
            else:
                metrics.visits_produced.inc()
                metrics.visit_produce_seconds.observe(res.seconds)
                metrics.last_visit.set(visit)
                metrics.last_visit_time.set(end)
            out(f"visit:{visit} status:acked alerts:{res.acked} failed:{res.failed} "
                f"unsent:{remaining} seconds:{res.seconds:.3f} time:{end:.3f}")
    finally:
        unsent = prod.flush(30)
        if unsent:
            log.error("%d alerts were never acknowledged by Kafka", unsent)
    return results


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker produce``."""
    parser.add_argument("broker", metavar="BROKER", help="Kafka bootstrap servers, host:port")
    parser.add_argument("topic", metavar="TOPIC", nargs="?", default="full-stream",
                        help="topic to publish to (default: full-stream)")
    option(parser, "--source", type=Path,
           help="file or directory of .avro alerts (wire format or containers); "
                "default: generate alerts")
    option(parser, "--profile", default="realistic", choices=["realistic", "dmtn081"],
           help="generated alert profile")
    option(parser, "--alerts-per-visit", default=10_000, type=positive_int,
           help="generated alerts per visit")
    option(parser, "--interval", default=39.0, type=non_negative_float,
           help="seconds between visit starts")
    option(parser, "--visits", default=1, type=non_negative_int,
           help="number of visits (0 with --source: every visit in the files)")
    option(parser, "--first-visit", default=1, type=non_negative_int,
           help="visit number of the first generated visit")
    option(parser, "--seed", default=0, type=int, help="generator seed")
    option(parser, "--schema-version", help="alert schema version, e.g. 11.1 (default: latest)")
    option(parser, "--partitions", default=1, type=positive_int,
           help="partitions if the topic must be created")
    option(parser, "--bare", flag=True,
           help="write bare schemaless Avro without the 5-byte header (2018 format)")
    option(parser, "--metrics-port", default=0, type=non_negative_int,
           help="serve Prometheus metrics on this port (0 = off)")


def main(args: argparse.Namespace) -> int:
    """Publish visits of alerts to a topic."""
    if args.source is not None and not args.source.exists():
        raise UsageError(f"--source {args.source} does not exist")
    if args.schema_version:
        from broker.alerts import available_versions

        if args.schema_version not in available_versions():
            raise UsageError(f"unknown --schema-version {args.schema_version}; choose one of "
                             + ", ".join(available_versions()))
    cfg = ProducerConfig(
        bootstrap=args.broker, topic=args.topic, source=args.source, profile=args.profile,
        alerts_per_visit=args.alerts_per_visit, interval=args.interval, visits=args.visits,
        first_visit=args.first_visit, seed=args.seed, schema_version=args.schema_version,
        partitions=args.partitions, bare=args.bare, metrics_port=args.metrics_port,
    )
    if cfg.source is None and cfg.visits == 0:
        raise UsageError("--visits 0 means 'all visits in the files' and needs --source")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        results = run(cfg, stop, out=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 130
    failed = sum(r.failed + (r.alerts - r.acked - r.failed) for r in results)
    if failed:
        print(f"minibroker: error: {failed} alerts were not acknowledged", file=sys.stderr)
        return 1
    return 0
