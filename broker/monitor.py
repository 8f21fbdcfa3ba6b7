"""``minibroker monitor BROKER TOPIC [TOPIC ...]``: count alerts without decoding them.

Each topic gets its own consumer (its own consumer group, ``minibroker-monitor-TOPIC``),
so one process can stand for many end users; the 2018 single-topic form is unchanged.

At each end of partition reached after new alerts it prints, exactly as the 2018
prototype did::

    topic:full-stream, partition:0, status:end, offset:1000, key:None, time:1528496269.734

``offset`` is the partition's end offset and ``time`` the Unix time the end was reached.
Kafka errors print ``status:error`` lines on stderr and are never reported as an end.
End-to-end latency (alert produced -> received here) is measured from the
``alert_timestamp`` header the filter groups set, or the message timestamp otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Message

from broker.options import UsageError, non_negative_int, option
from monitoring.metrics import ConsumerMetrics

__all__ = ["add_parser_args", "end_line", "main", "run"]


def end_line(topic: str, partition: int, offset: int, key: bytes | None, when: float) -> str:
    """The end-of-stream line of the 2018 monitor."""
    shown = None if key is None else key.decode(errors="replace")
    return (f"topic:{topic}, partition:{partition}, status:end, offset:{offset}, "
            f"key:{shown}, time:{when:.3f}")


def run(bootstrap: str, topics: list[str], group_id: str | None = None,
        metrics_port: int = 0, stop: threading.Event | None = None,
        out: Callable[[str], None] = print,
        err_out: Callable[[str], None] | None = None, log_alerts: bool = False) -> int:
    """Monitor ``topics`` (one consumer thread each) until ``stop``; return alerts received.

    If one topic's consumer fails, all stop and the error is raised.
    """
    from monitoring.metrics import ConsumerMetrics, make_registry, serve

    stop = stop or threading.Event()
    registry = make_registry()
    metrics = ConsumerMetrics(registry)
    serve(registry, metrics_port)
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:  # whole lines, never interleaved
            out(line)

    if len(topics) == 1:
        return _monitor_one(bootstrap, topics[0], group_id, metrics, stop, say, err_out,
                            log_alerts)
    counts: dict[str, int] = {}
    failures: list[BaseException] = []

    def worker(topic: str) -> None:
        try:
            counts[topic] = _monitor_one(bootstrap, topic, None, metrics, stop, say, err_out,
                                         log_alerts)
        except BaseException as exc:  # surfaced to the caller below
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(t,), name=f"monitor-{t}", daemon=True)
               for t in topics]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return sum(counts.values())


def _monitor_one(bootstrap: str, topic: str, group_id: str | None, metrics: ConsumerMetrics,
                 stop: threading.Event, out: Callable[[str], None],
                 err_out: Callable[[str], None] | None, log_alerts: bool = False) -> int:
    from broker.endconsumer import consume_topic, header

    received = metrics.received(topic)
    latency_by_filter: dict[str, object] = {}
    state: dict[str, object] = {"count": 0, "since_end": 0, "key": None}

    def on_message(msg: Message) -> None:
        now = time.time()
        state["count"] = int(state["count"]) + 1  # type: ignore[call-overload]
        state["since_end"] = 1
        state["key"] = msg.key()
        received.inc()
        raw = header(msg, "alert_timestamp")
        ts_ms = int(raw) if raw else msg.timestamp()[1]
        name = (header(msg, "filter") or topic.encode()).decode(errors="replace")
        hist = latency_by_filter.get(name)
        if hist is None:
            hist = latency_by_filter[name] = metrics.end_to_end(name)
        latency = max(0.0, now - ts_ms / 1000.0) if ts_ms > 0 else float("nan")
        if ts_ms > 0:
            hist.observe(latency)  # type: ignore[attr-defined]
        if log_alerts:
            visit = (header(msg, "visit") or b"?").decode(errors="replace")
            out(f"recv topic:{topic} visit:{visit} offset:{msg.offset()} "
                f"latency:{latency:.4f} time:{now:.4f}")

    def on_end(msg: Message) -> None:
        if state["since_end"]:
            state["since_end"] = 0
            key = state["key"]
            out(end_line(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0),
                         key if isinstance(key, bytes) else None, time.time()))

    def on_error(err: KafkaError) -> None:
        line = f"topic:{topic}, status:error, error:{err.str()}, time:{time.time():.3f}"
        (err_out or (lambda s: print(s, file=sys.stderr, flush=True)))(line)

    consume_topic(bootstrap, topic, group_id or f"minibroker-monitor-{topic}", on_message,
                  on_end, stop, on_error=on_error)
    return int(state["count"])  # type: ignore[call-overload]


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker monitor``."""
    parser.add_argument("broker", metavar="BROKER", help="Kafka bootstrap servers, host:port")
    parser.add_argument("topics", metavar="TOPIC", nargs="+",
                        help="topic(s) to monitor, e.g. Filter001 (one consumer each)")
    option(parser, "--group-id",
           help="consumer group, single topic only (default: minibroker-monitor-TOPIC)")
    option(parser, "--metrics-port", default=0, type=non_negative_int,
           help="serve Prometheus metrics on this port (0 = off)")
    option(parser, "--log-alerts", flag=True,
           help="also print a 'recv' line per alert with its visit and end-to-end latency")


def main(args: argparse.Namespace) -> int:
    """Count alerts on a topic without decoding; report ends."""
    from broker.endconsumer import EndConsumerError

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if args.group_id and len(args.topics) > 1:
            raise UsageError("--group-id needs exactly one TOPIC (each topic has its own group)")
        run(args.broker, args.topics, args.group_id, args.metrics_port, stop,
            out=lambda line: print(line, flush=True), log_alerts=args.log_alerts)
    except EndConsumerError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0
