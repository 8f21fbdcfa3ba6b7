"""``minibroker filter BROKER TOPIC FIRST LAST``: one filter group on Kafka.

One consumer group per filter group reads the full stream; :class:`broker.core.GroupCore`
decodes each alert once and applies the filters and the per-visit cap; each delivered
alert's original bytes go to the filter's own topic with ``visit``, ``filter``,
``alert_timestamp`` and ``group`` headers.

Delivery guarantee: outputs, dead letters, the cap state and the input offsets are
written in one Kafka transaction (transactional.id = the group id). Input offsets are
therefore committed only together with the outputs they caused: a crash (even kill -9)
loses nothing, and a restarted group, reading the cap state of the last committed
transaction from ``minibroker-state``, neither duplicates an output nor exceeds the cap.
End consumers read with isolation.level=read_committed (librdkafka's default).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.options import (
    UsageError,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from broker.visits import VisitStats, VisitTracker

__all__ = ["FilterGroupConfig", "add_parser_args", "default_group_id", "main", "run"]

log = logging.getLogger(__name__)


def default_group_id(first: int, last: int) -> str:
    """The consumer group (and transactional id) of filters FIRST..LAST."""
    return f"minibroker-filters-{first:03d}-{last:03d}"


@dataclass
class FilterGroupConfig:
    """Settings of one filter group."""

    bootstrap: str
    topic: str = "full-stream"
    first: int = 1
    last: int = 20
    filters: str | None = None
    group_id: str | None = None
    cap: int = 20
    commit_interval: float = 0.5
    commit_every: int = 5000
    batch: int = 1000
    visit_idle: float = 2.0
    bare_schema: str | None = None
    metrics_port: int = 0
    instrument: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.group_id or default_group_id(self.first, self.last)


class _Pending:
    """Counts of the open transaction, applied to metrics only once it commits."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.consumed = 0
        self.dead = 0
        self.delivered = [0] * self.n
        self.capped = [0] * self.n
        self.errors = [0] * self.n


def run(cfg: FilterGroupConfig, stop: threading.Event | None = None,
        out: Callable[[str], None] = print) -> None:
    """Run the group until ``stop`` is set (or SIGTERM/Ctrl-C in the CLI)."""
    import numpy as np
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from broker import kafka_io
    from broker.alerts import resolve_schema
    from broker.core import GroupCore
    from broker.filters import load_filters
    from monitoring.metrics import FilterGroupMetrics, make_registry, serve

    stop = stop or threading.Event()
    filters = load_filters(cfg.filters).select(cfg.first, cfg.last)
    bare = resolve_schema(cfg.bare_schema) if cfg.bare_schema else None
    core = GroupCore(filters, cfg.cap, bare_schema=bare)
    names = core.names
    group = cfg.group
    dead_topic = kafka_io.deadletter_topic(cfg.topic)

    kafka_io.wait_for_broker(cfg.bootstrap)
    kafka_io.ensure_topics(cfg.bootstrap, [*names, dead_topic])
    kafka_io.ensure_topics(cfg.bootstrap, [kafka_io.STATE_TOPIC],
                           config={"cleanup.policy": "compact"})
    if not kafka_io.topic_exists(cfg.bootstrap, cfg.topic):
        raise UsageError(f"input topic {cfg.topic} does not exist: start the producer "
                         "(minibroker produce) or create the topic first")

    registry = make_registry()
    metrics = FilterGroupMetrics(registry, group, names)
    serve(registry, cfg.metrics_port)

    prod = kafka_io.producer(cfg.bootstrap, transactional_id=group, **cfg.extra)
    prod.init_transactions(60)
    state = kafka_io.read_state(cfg.bootstrap, group)
    if state and "caps" in state:
        core.caps.restore(state["caps"])
        log.info("group %s resumed cap counts of %d visits", group, len(state["caps"]["counts"]))
    committed_caps = core.caps.snapshot()

    tracker = VisitTracker(names, idle=cfg.visit_idle)
    pending = _Pending(len(names))
    offsets: dict[tuple[str, int], int] = {}
    eof: dict[tuple[str, int], bool] = {}
    txn = {"start": time.monotonic(), "n": 0}
    cons = kafka_io.consumer(cfg.bootstrap, group)

    def commit() -> None:
        key, value = kafka_io.state_record(group, {"caps": core.caps.snapshot()})
        prod.produce(kafka_io.STATE_TOPIC, value, key)
        if offsets:
            prod.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                cons.consumer_group_metadata(), 60,
            )
        prod.commit_transaction(120)
        now = time.time()
        tracker.committed(now)
        nonlocal committed_caps
        committed_caps = core.caps.snapshot()
        if cfg.instrument:
            metrics.alerts_consumed.inc(pending.consumed)
            metrics.dead_letters.inc(pending.dead)
            for i, name in enumerate(names):
                if pending.delivered[i]:
                    metrics.passed[name].inc(pending.delivered[i])
                if pending.capped[i]:
                    metrics.capped[name].inc(pending.capped[i])
                if pending.errors[i]:
                    metrics.errors[name].inc(pending.errors[i])
        pending.reset()
        offsets.clear()
        prod.begin_transaction()
        txn["start"], txn["n"] = time.monotonic(), 0

    def abort() -> None:
        """Roll back to the last commit: caps, counts, and the consumer's position."""
        prod.abort_transaction(60)
        core.caps.restore(committed_caps)
        tracker.rolled_back()
        pending.reset()
        offsets.clear()
        assigned = cons.assignment()
        if assigned:
            for tp in cons.committed(assigned, timeout=30):
                # No committed offset yet means "from the beginning" for this group.
                tp.offset = tp.offset if tp.offset >= 0 else -2
                cons.seek(tp)
        prod.begin_transaction()
        txn["start"], txn["n"] = time.monotonic(), 0

    def on_revoke(_c: object, _parts: list) -> None:
        # Commit what was processed while the partitions were still ours.
        if txn["n"]:
            commit()
        eof.clear()

    def report(st: VisitStats) -> None:
        if cfg.instrument:
            # Per-filter counts first, so a scrape never pairs a new visit number with
            # the previous visit's counts.
            for i, name in enumerate(names):
                metrics.visit_delivered[name].set(st.delivered[i])
                metrics.visit_passed[name].set(st.passed[i])
            metrics.visit_seconds.observe(st.seconds)
            metrics.last_visit_seconds.set(st.seconds)
            metrics.last_visit_time.set(time.time())
            metrics.visits_completed.inc()
            metrics.last_visit.set(st.visit)
        out(f"visit:{st.visit} group:{group} alerts:{st.alerts} passed:{sum(st.passed)} "
            f"delivered:{sum(st.delivered)} capped:{sum(st.capped)} seconds:{st.seconds:.3f} "
            f"first:{st.first_consumed:.3f} last:{st.first_consumed + st.seconds:.3f} "
            f"per_filter:{','.join(map(str, st.delivered))}")

    cons.subscribe([cfg.topic], on_revoke=on_revoke)
    prod.begin_transaction()
    log.info("group %s: %d filters (%s..%s) on %s, cap %d", group, len(names), names[0],
             names[-1], cfg.topic, cfg.cap)
    try:
        while not stop.is_set():
            msgs = cons.consume(cfg.batch, 0.1)
            now = time.time()
            batch = []
            last: dict[tuple[Any, Any], int | None] = {}  # last offset per partition read
            for m in msgs:  # in order: an end-of-partition only counts after the messages
                err = m.error()
                if err is None:
                    batch.append(m)
                    tp = (m.topic(), m.partition())
                    last[tp] = m.offset()
                    eof[(str(tp[0]), int(tp[1] or 0))] = False
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof[(str(m.topic()), int(m.partition() or 0))] = True
                elif err.fatal():
                    raise KafkaException(err)
                else:
                    log.warning("consumer error (retrying): %s", err)
            values = [m.value() or b"" for m in batch]
            if batch:
                res = core.evaluate(values)
                # Per visit, not per alert: a busy group has ~10 passes per alert, nearly
                # all over the cap; only delivering and malformed messages are visited.
                stats = {v: tracker.consumed(v, now, n) for v, n in res.consumed.items()}
                for k, exc in res.malformed.items():
                    m = batch[k]
                    pending.dead += 1
                    prod.produce(dead_topic, values[k], m.key(), headers=[
                        ("reason", exc.reason.encode()),
                        ("error", str(exc)[:500].encode()),
                        ("source", f"{m.topic()}/{m.partition()}/{m.offset()}".encode()),
                        ("group", group.encode()),
                    ])
                for fs in res.errors.values():
                    for i in fs:
                        pending.errors[i] += 1
                for k in sorted(res.deliver):
                    m, visit, deliver = batch[k], res.visits[k], res.deliver[k]
                    assert visit is not None
                    st = stats[visit]
                    headers: list[tuple[str, str | bytes | None]] = [
                        ("visit", str(visit).encode()),
                        ("alert_timestamp", str(m.timestamp()[1]).encode()),
                        ("group", group.encode()),
                    ]
                    for i in deliver:
                        prod.produce(names[i], values[k], m.key(),
                                     headers=[*headers, ("filter", names[i].encode())])
                        pending.delivered[i] += 1
                        st.delivered[i] += 1
                        st.passed[i] += 1
                    st.pending_outputs += len(deliver)
                for visit, over in res.capped.items():
                    st = stats[visit]
                    for i in np.flatnonzero(over).tolist():
                        n = int(over[i])
                        pending.capped[i] += n
                        st.capped[i] += n
                        st.passed[i] += n
            # Only now that the batch is processed: the final commit may send these.
            for (t, p), o in last.items():
                offsets[(str(t), int(p or 0))] = int(o or 0) + 1
            pending.consumed += len(batch)
            txn["n"] += len(batch)
            if batch:
                prod.poll(0)
            caught_up = bool(eof) and all(eof.values())
            elapsed = time.monotonic() - txn["start"]
            if txn["n"] and (elapsed >= cfg.commit_interval or txn["n"] >= cfg.commit_every
                             or (caught_up and elapsed >= 0.05)):
                try:
                    commit()
                except KafkaException as exc:
                    kerr = exc.args[0]
                    if kerr.txn_requires_abort():
                        log.warning("transaction aborted, replaying from the last commit: %s",
                                    kerr)
                        abort()
                    else:
                        raise
            for st in tracker.complete(time.time(), caught_up):
                report(st)
    finally:
        try:
            if txn["n"]:
                commit()
            else:
                prod.abort_transaction(30)
        except Exception as exc:  # shutting down: the next start replays from the last commit
            log.warning("final commit failed (%s); uncommitted input will be replayed", exc)
        cons.close()
        prod.flush(30)


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker filter``."""
    parser.add_argument("broker", metavar="BROKER", help="Kafka bootstrap servers, host:port")
    parser.add_argument("topic", metavar="TOPIC", help="input topic (e.g. full-stream)")
    parser.add_argument("first", metavar="FIRST", type=positive_int,
                        help="first filter (1-based position in the catalogue)")
    parser.add_argument("last", metavar="LAST", type=positive_int, help="last filter")
    option(parser, "--filters", help="user filters as module:attribute (default: catalogue)")
    option(parser, "--group-id", help="consumer group id (default: minibroker-filters-FFF-LLL)")
    option(parser, "--cap", default=20, type=non_negative_int,
           help="most alerts per filter per visit")
    option(parser, "--commit-interval", default=0.5, type=positive_float,
           help="seconds between transaction commits")
    option(parser, "--visit-idle", default=2.0, type=positive_float,
           help="seconds without alerts after which a visit counts as complete")
    option(parser, "--bare-schema",
           help="read bare schemaless Avro (2018 format) of this schema: a version, or "
                ".avsc files comma-separated, the alert schema last")
    option(parser, "--metrics-port", default=0, type=non_negative_int,
           help="serve Prometheus metrics on this port (0 = off)")
    option(parser, "--no-instrumentation", flag=True,
           help="do not update metrics at all (for measuring their cost)")


def main(args: argparse.Namespace) -> int:
    """Run filters FIRST..LAST as one filter group."""
    from broker.filters import load_filters

    try:
        registry = load_filters(args.filters)
        registry.select(args.first, args.last)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.bare_schema:
        from broker.alerts import resolve_schema

        try:
            resolve_schema(args.bare_schema)
        except ValueError as exc:
            raise UsageError(f"--bare-schema: {exc}") from None
    cfg = FilterGroupConfig(
        bootstrap=args.broker, topic=args.topic, first=args.first, last=args.last,
        filters=args.filters, group_id=args.group_id, cap=args.cap,
        commit_interval=args.commit_interval, visit_idle=args.visit_idle,
        bare_schema=args.bare_schema, metrics_port=args.metrics_port,
        instrument=not args.no_instrumentation,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        run(cfg, stop, out=lambda line: print(line, flush=True))
    return 0
