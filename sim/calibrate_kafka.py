"""Measure the Kafka-dependent per-alert costs on this machine, on a real Kafka broker.

``minibroker sim calibrate --kafka BOOTSTRAP`` (or ``--kafka local``: a throw-away
:class:`broker.local_kafka.LocalKafka` on free ports in a temporary directory) calls
:func:`measure_kafka_costs`, which drives the project's own Kafka clients
(:func:`broker.kafka_io.producer` and :func:`broker.kafka_io.consumer`, with the settings
every service uses) on generated alerts of each profile and times:

- ``producer_kafka`` (becomes ``producer_send``; the serialisation is
  ``producer_prepare``, measured by :mod:`sim.calibrate`): CPU of this process per alert
  sent the way ``broker.producer`` sends (visit header, delivery callback, ``poll(0)``,
  ``flush``), librdkafka's threads and the kernel's share of the socket writes included,
  while two reader processes read the alerts as they arrive, as a pipeline's groups do
  (the cost with no readers is kept as the diagnostic ``producer_alone``);
- ``consume_tail``: those readers' own CPU per alert;
- ``broker_out_tail``: the broker's CPU per alert served to each of those readers (its
  CPU over that send, less ``broker_in``, halved): many small fetches per alert, against
  ``broker_out``'s large fetches of a backlog;
- ``consume``: CPU of this process per alert read the way ``broker.filter_group`` reads
  (``consume(1000, 0.1)`` with ``read_committed``, then the message accessors it calls);
- ``produce``: CPU per output alert written by a transactional producer the way a filter
  group writes its outputs (headers, ``poll(0)``; commits counted separately);
- ``commit`` and ``commit_wait``: per transaction commit as a group commits (state record,
  ``send_offsets_to_transaction``, ``commit_transaction``, ``begin_transaction``): its
  CPU, and the rest of its wall time (waiting for the broker). Commits are spaced 0.3 s
  apart with outputs in each, as in a busy group: back to back, each would also wait
  ~100 ms (librdkafka's retry backoff) for the broker to finish the previous one;
- ``broker_in`` / ``broker_out`` / ``broker_commit`` / ``broker_marker``: the Kafka
  broker's own CPU (the ``java`` process's CPU time, summed over its threads' schedstat
  to the nanosecond, or psutil's clock ticks where the kernel keeps no schedstat, before and
  after, minus its idle rate measured just before) per alert appended by the producer,
  per alert served to one consumer, per transaction commit, and per output partition of
  a transaction (its commit marker: transactions writing to one topic against ten);
- ``group_loop`` (a diagnostic the calibration turns into ``group_overhead``): CPU of
  this process per alert while ``broker.filter_group.run`` itself, with
  :data:`LOOP_FILTERS` catalogue filters that read only ``diaSource``, reads the timed
  alerts from the topic, filters them and commits its transactions: everything the
  group's loop does per alert beyond consuming, decoding and filtering.

The broker is warmed up first (:func:`warm_broker`, 15,000 alerts, then a discarded
pass): a fresh broker spends 2-3 times more CPU per alert, and so does a producer
sending to it, until it has handled ~10,000 large alerts.

CPU times are process totals, so the work of librdkafka's background threads and of the
kernel (loopback TCP) lands on the process that causes it. Each measurement is repeated
and the median kept; on a shared machine other load changes the medians little because
CPU time, not wall time, is measured (``commit_wait`` is the exception: a wall time).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "KAFKA_COSTS",
    "KafkaMeasurement",
    "find_broker_pid",
    "kafka_for_calibration",
    "machine_summary",
    "measure_kafka_costs",
    "measure_stream_costs",
    "warm_broker",
]

log = logging.getLogger(__name__)

# The costs this module measures (``producer_kafka`` is handed to sim.calibrate, which
# adds the serialisation cost to give ``producer_send``).
KAFKA_COSTS = ("producer_kafka", "consume", "consume_tail", "produce", "commit",
               "commit_wait",
               "broker_in", "broker_out", "broker_out_tail", "broker_commit",
               "broker_marker")
# ``group_loop``: CPU per alert of the whole filter-group process on a backlog (see
# :func:`measure_group_loop`); the calibration turns it into ``group_overhead``.
_DIAGNOSTICS: tuple[str, ...] = ("group_loop", "producer_alone")
LOOP_FILTERS = 20

# Alerts timed per repeat: ~380 MB of realistic alerts, ~20 MB of small ones.
DEFAULT_ALERTS = {"realistic": 3000, "dmtn081": 10000}
_WARMUP = 100
_COMMITS = 40  # per spread: 20 left the broker CPU per commit +-60% between repeats
_COMMIT_GAP = 0.3
_OUTPUTS_PER_TXN = 10
_READS = 4
# What :func:`measure_stream_costs` re-measures: the costs that follow the alerts' bytes
# through the producer, the broker and a reader, the ones that drift most on a VM.
STREAM_COSTS = ("producer_kafka", "broker_in", "consume", "consume_tail", "broker_out",
                "broker_out_tail")
_TAILS = 2  # consumers reading as the alerts arrive, for broker_out_tail


@dataclass
class KafkaMeasurement:
    """Kafka-measured costs of one profile, with a note per cost."""

    profile: str
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    """Every repeat's value per cost (the median is kept in ``values``)."""


def machine_summary() -> str:
    """``N cores, CPU model, RAM`` of this machine (from /proc where available)."""
    import os

    cores = os.cpu_count() or 0
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = ""
    with contextlib.suppress(Exception):
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    return f"{cores} cores, {model}{ram}"


def find_broker_pid(bootstrap: str) -> int | None:
    """PID of the local ``java`` Kafka process listening on ``bootstrap``'s port, if any.

    Only processes of this machine that psutil may inspect are considered; a remote broker
    (or one run by another user) gives None and the broker costs are not measured.
    """
    import psutil

    _host, _, port_text = bootstrap.split(",")[0].rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        return None
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = proc.info.get("cmdline") or []
            if "kafka.Kafka" not in cmd:
                continue
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return int(proc.pid)
        except (psutil.Error, OSError):
            continue
    return None


@contextlib.contextmanager
def kafka_for_calibration(bootstrap: str) -> Iterator[tuple[str, int | None]]:
    """Yield ``(bootstrap, broker pid)``; ``"local"`` starts (and then stops) a LocalKafka."""
    if bootstrap != "local":
        yield bootstrap, find_broker_pid(bootstrap)
        return
    from broker.local_kafka import LocalKafka, free_port

    workdir = Path(tempfile.mkdtemp(prefix="minibroker-calibrate-"))
    kafka = LocalKafka(workdir / "kafka", port=free_port(), controller_port=free_port(),
                       log_level="warn")
    log.info("starting a local Kafka in %s", workdir)
    try:
        kafka.start()
        yield kafka.bootstrap, kafka.running_pid()
    finally:
        kafka.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _threads_cpu(pid: int) -> float | None:
    """CPU seconds of a process's live threads to the nanosecond, from Linux schedstat.

    psutil's process times count 10-ms clock ticks: the broker's CPU for a few thousand
    small alerts is a tick or two, and read 0 after its idle rate was taken off. A thread
    that ends between two readings takes its time with it; the broker's threads live
    as long as it does. None where the kernel does not keep schedstat.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9 if total else None


class _BrokerClock:
    """The broker's CPU seconds (user + system; schedstat or psutil); 0 when unknown."""

    def __init__(self, pid: int | None) -> None:
        self.proc: Any = None
        if pid is not None:
            import psutil

            with contextlib.suppress(psutil.Error):
                self.proc = psutil.Process(pid)

    @property
    def known(self) -> bool:
        return self.proc is not None

    def __call__(self) -> float:
        if self.proc is None:
            return 0.0
        exact = _threads_cpu(self.proc.pid)
        if exact is not None:
            return exact
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def idle_rate(self, seconds: float = 1.0) -> float:
        """Broker CPU seconds per second while nobody talks to it (background threads)."""
        if self.proc is None:
            return 0.0
        c0, w0 = self(), time.monotonic()
        time.sleep(seconds)
        return max(0.0, (self() - c0) / (time.monotonic() - w0))


@dataclass
class _Window:
    """CPU of this process, the broker's CPU and wall time over a ``with`` block."""

    broker: _BrokerClock
    idle: float = 0.0
    cpu: float = 0.0
    broker_cpu: float = 0.0
    wall: float = 0.0

    def __enter__(self) -> _Window:
        self._c, self._b, self._w = time.process_time(), self.broker(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._w
        self.cpu = time.process_time() - self._c
        self.broker_cpu = max(0.0, self.broker() - self._b - self.idle * self.wall)


def _produce_all(prod: Any, topic: str, alerts: Sequence[bytes], visit: int,
                 on_delivery: Callable[[Any, Any], None]) -> None:
    """Send like broker.producer.run: header, callback, poll(0), BufferError retry."""
    headers = [("visit", str(visit).encode())]
    for data in alerts:
        while True:
            try:
                prod.produce(topic, data, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                prod.poll(0.05)
        prod.poll(0)
    remaining = prod.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} calibration alerts were not acknowledged by Kafka")


def _consume_all(cons: Any, topic: str, start: int, count: int, timeout: float) -> int:
    """Read ``count`` messages from ``start`` like broker.filter_group's loop."""
    from confluent_kafka import KafkaError, TopicPartition

    cons.assign([TopicPartition(topic, 0, start)])
    seen, size = 0, 0
    deadline = time.monotonic() + timeout
    while seen < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"read {seen} of {count} calibration alerts in {timeout:.0f} s")
        for m in cons.consume(1000, 0.1):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consumer error during calibration: {err}")
            # The accessors a filter group calls on every message.
            m.topic(), m.partition(), m.offset(), m.key(), m.timestamp()
            size += len(m.value() or b"")
            seen += 1
    cons.unassign()
    return size


def loop_filters() -> list[Any]:
    """The filters ``group_loop`` runs: the first catalogue filters reading only diaSource."""
    from broker.catalogue import default_filters

    return [f for f in default_filters() if not f.expensive_fields][:LOOP_FILTERS]


# The group loop commits after every full batch it reads from a backlog (its production
# batch size), so the commits in a timed window are known without watching each one.
LOOP_BATCH = 1000
# Alerts a group_loop measurement must time in all: a small backlog read by a fast group
# is over within a few batches, and its first commit seen by the probe can be its last,
# leaving a window of one partial batch whose single commit outweighs the loop.
LOOP_MIN_WINDOW = 4 * LOOP_BATCH
LOOP_MAX_PASSES = 6


def measure_group_loop(bootstrap: str, topic: str, total: int, group: str,
                       timeout: float = 300.0) -> tuple[float, int, int]:
    """CPU of this process per alert while real filter groups read ``total`` messages.

    ``broker.filter_group.run`` (one group of :func:`loop_filters`, committing after each
    :data:`LOOP_BATCH` alerts) reads the topic from the beginning; each pass's window runs
    from the group's first commit the probe sees to the one at ``total``, so joining the
    group is left out. Passes (each a new group) repeat until the windows hold
    :data:`LOOP_MIN_WINDOW` alerts or :data:`LOOP_MAX_PASSES` have run.
    Returns the CPU per alert, the alerts in the windows and the commits in them.
    """
    cpu, alerts, commits = 0.0, 0, 0
    for n in range(LOOP_MAX_PASSES):
        c, done = _group_loop_pass(bootstrap, topic, total, f"{group}-{n}", timeout)
        cpu, alerts = cpu + c, alerts + done
        commits += -(-done // LOOP_BATCH)
        if alerts >= LOOP_MIN_WINDOW:
            break
    return cpu / max(alerts, 1), alerts, commits


def _group_loop_pass(bootstrap: str, topic: str, total: int, group: str,
                     timeout: float) -> tuple[float, int]:
    """One group reading the topic: CPU seconds and alerts in its window."""
    import threading

    from confluent_kafka import Consumer, TopicPartition

    from broker.filter_group import FilterGroupConfig, run

    stop = threading.Event()
    lines: list[str] = []
    cfg = FilterGroupConfig(bootstrap=bootstrap, topic=topic, first=1, last=LOOP_FILTERS,
                            filters="sim.calibrate_kafka:loop_filters", group_id=group,
                            visit_idle=1.0, instrument=False, batch=LOOP_BATCH,
                            commit_every=LOOP_BATCH)
    failed: list[BaseException] = []

    def target() -> None:
        try:
            run(cfg, stop, out=lines.append)
        except BaseException as exc:  # reported below, in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=target, name="calibration-group", daemon=True)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False})
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        first: tuple[float, int] | None = None
        while True:
            if failed or not worker.is_alive():
                raise RuntimeError(f"calibration filter group stopped: {failed or 'exited'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"calibration filter group did not finish in {timeout:.0f} s")
            off = probe.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
            cpu = time.process_time()
            if first is None and off > 0:
                first = (cpu, off)
            if first is not None and off >= total:
                break
            time.sleep(0.005)
        stop.set()
        worker.join(60)
    finally:
        stop.set()
        probe.close()
    return cpu - first[0], off - first[1]


def warm_broker(bootstrap: str, data: Sequence[bytes], alerts: int = 15_000) -> None:
    """Send ``alerts`` messages (``data`` over and over) through a producer and a consumer.

    A fresh broker spends 2-3 times more CPU per alert on its first ~10,000 large alerts
    (JIT compilation, heap sizing), and so does a producer sending to it; the model wants
    the steady state, so calibration and validation warm the broker up first.
    """
    from broker import kafka_io

    topic = f"sim-warm-up-{uuid.uuid4().hex[:8]}"
    kafka_io.ensure_topics(bootstrap, [topic])
    try:
        prod = kafka_io.producer(bootstrap)
        sent = 0
        while sent < alerts:
            chunk = data[: alerts - sent]
            _produce_all(prod, topic, chunk, 1, lambda _e, _m: None)
            sent += len(chunk)
        del prod
        cons = kafka_io.consumer(bootstrap, f"{topic}-reader")
        _consume_all(cons, topic, 0, alerts, 300)
        cons.close()
    finally:
        kafka_io.discard_topics(bootstrap, [topic])


def _commit(prod: Any, cons: Any, state_topic: str, group: str, offsets: list[Any]) -> None:
    """Commit like broker.filter_group's commit(): state record, offsets, commit, begin."""
    from broker import kafka_io

    key, value = kafka_io.state_record(group, {"caps": {"cap": 20, "filters": [],
                                                        "counts": {}}})
    prod.produce(state_topic, value, key)
    prod.send_offsets_to_transaction(offsets, cons.consumer_group_metadata(), 60)
    prod.commit_transaction(120)
    prod.begin_transaction()


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def measure_kafka_costs(
    bootstrap: str,
    profiles: Sequence[str] = ("realistic", "dmtn081"),
    *,
    broker_pid: int | None = None,
    alerts: dict[str, int] | int | None = None,
    repeats: int = 5,
    outputs: int = 400,
    commits: int = _COMMITS,
    warm_up: int = 15_000,
    seed: int = 0,
    command: str = "minibroker sim calibrate --kafka",
) -> dict[str, KafkaMeasurement]:
    """Measure the Kafka-dependent costs of each profile on the broker at ``bootstrap``.

    ``broker_pid`` is the Kafka ``java`` process (found from the port when None; the
    broker costs are skipped when it cannot be found). ``alerts`` per profile (or one
    count for all) are timed per repeat; ``outputs`` transactional outputs and
    ``commits`` commits per repeat, after ``warm_up`` alerts through the broker
    (:func:`warm_broker`) and a discarded warm-up pass. Topics are created with unique names and
    deleted afterwards.
    """
    from broker import kafka_io
    from broker.generator import generate_visit

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if broker_pid is None:
        broker_pid = find_broker_pid(bootstrap)
    broker = _BrokerClock(broker_pid)
    if not broker.known:
        log.warning("no local Kafka process found for %s: broker_in/broker_out not measured",
                    bootstrap)
    kafka_io.wait_for_broker(bootstrap)
    run_id = uuid.uuid4().hex[:8]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = f"{platform.node() or 'unknown host'} ({machine_summary()}, " \
              f"{platform.python_implementation()} {platform.python_version()})"
    created: list[str] = []
    results: dict[str, KafkaMeasurement] = {}
    try:
        state_topic = f"sim-calibrate-{run_id}-state"
        kafka_io.ensure_topics(bootstrap, [state_topic], config={"cleanup.policy": "compact"})
        created.append(state_topic)
        for profile in profiles:
            if isinstance(alerts, int):
                n = alerts
            else:
                n = (alerts or {}).get(profile, DEFAULT_ALERTS.get(profile, 2000))
            log.info("Kafka calibration, %s: generating %d alerts", profile, n + _WARMUP)
            data = generate_visit(1, n + _WARMUP, profile=profile, seed=seed)
            size = sum(len(d) for d in data) / len(data)
            log.info("Kafka calibration, %s: warming the broker up with %d alerts", profile,
                     warm_up)
            warm_broker(bootstrap, data, warm_up)
            m = KafkaMeasurement(profile)
            samples: dict[str, list[float]] = {k: [] for k in (*KAFKA_COSTS, *_DIAGNOSTICS)}
            # Pass 0 warms up the broker's JIT, the transaction coordinator and the page
            # cache, and is not kept.
            for rep in range(repeats + 1):
                topic = f"sim-calibrate-{run_id}-{profile}-{rep}"
                outs = [f"{topic}-out{k:02d}" for k in range(20)]
                kafka_io.ensure_topics(bootstrap, [topic, *outs])
                # The group loop's filter group sets its dead letters aside next to its input.
                created += [topic, *outs, kafka_io.deadletter_topic(topic)]
                one = _measure_once(bootstrap, broker, topic, outs, state_topic, data, n,
                                    outputs, commits, f"sim-calibrate-{run_id}-{profile}")
                log.info("Kafka calibration, %s, %s: %s", profile,
                         f"pass {rep}/{repeats}" if rep else "warm-up pass",
                         ", ".join(f"{k}={v:.3g}" for k, v in one.items()))
                if rep:
                    for k, v in one.items():
                        samples[k].append(v)
            where = (f"measured {when} on {machine} with `{command}`, Kafka at {bootstrap}, "
                     f"median of {repeats} repeats")
            m.samples = samples
            for k in (*KAFKA_COSTS, "group_loop"):
                if k.startswith("broker_") and not broker.known:
                    continue
                m.values[k] = float(f"{_median(samples[k]):.3g}")
            spread = {k: f"{min(v):.3g}-{max(v):.3g}" for k, v in samples.items() if v}
            m.notes = {
                "producer_kafka": f"{where}: CPU of the sending process per alert, "
                    f"broker.kafka_io.producer() sending {n} {profile} alerts "
                    f"({size / 1000:.1f} kB) like broker.producer while {_TAILS} reader "
                    f"processes read them as they arrived, as a pipeline's groups do "
                    f"(range {spread['producer_kafka']}; with no readers "
                    f"{_median(samples['producer_alone']):.3g}, range "
                    f"{spread['producer_alone']})",
                "consume": f"{where}: CPU of the reading process per alert, "
                    f"broker.kafka_io.consumer() (read_committed, consume(1000)) reading {n} "
                    f"{profile} alerts like broker.filter_group (range {spread['consume']})",
                "consume_tail": f"{where}: CPU per alert of each of {_TAILS} reader "
                    f"processes reading {n} {profile} alerts from the end of the topic as "
                    f"the producer sent them, with a filter group's accessors (range "
                    f"{spread['consume_tail']})",
                "produce": f"{where}: CPU per output of a transactional "
                    f"broker.kafka_io.producer() writing {outputs} {profile} outputs with "
                    f"group headers to 20 topics, commit CPU subtracted (range "
                    f"{spread['produce']})",
                "commit": f"{where}: CPU per transaction commit as broker.filter_group "
                    f"commits (state record, send_offsets_to_transaction, commit, begin), "
                    f"median of {commits} commits {_COMMIT_GAP:g} s apart with "
                    f"{_OUTPUTS_PER_TXN} outputs each (range {spread['commit']})",
                "commit_wait": f"{where}: wall time of a commit minus its CPU, median of "
                    f"{commits} commits {_COMMIT_GAP:g} s apart (range "
                    f"{spread['commit_wait']})",
            }
            if broker.known:
                m.notes["broker_in"] = (
                    f"{where}: Kafka java process CPU (psutil user+system, idle rate "
                    f"subtracted) per {profile} alert appended while the producer sent {n} "
                    f"(range {spread['broker_in']})")
                m.notes["broker_commit"] = (
                    f"{where}: Kafka java process CPU (psutil user+system, idle rate "
                    f"and the outputs' appends subtracted) per transaction commit, beyond "
                    f"its per-partition markers; {commits} commits {_COMMIT_GAP:g} s apart "
                    f"of {_OUTPUTS_PER_TXN} outputs to 1 topic (range "
                    f"{spread['broker_commit']})")
                m.notes["broker_marker"] = (
                    f"{where}: Kafka java process CPU per output partition of a "
                    f"transaction (its commit marker): commits of {_OUTPUTS_PER_TXN} "
                    f"outputs to {_OUTPUTS_PER_TXN} topics against to 1 topic, "
                    f"{commits} each (range {spread['broker_marker']})")
                m.notes["broker_out_tail"] = (
                    f"{where}: Kafka java process CPU per {profile} alert served to each of "
                    f"{_TAILS} reader processes reading the alerts while the producer "
                    f"sent {n}, "
                    f"the append cost (broker_in) subtracted (range "
                    f"{spread['broker_out_tail']})")
                m.notes["broker_out"] = (
                    f"{where}: Kafka java process CPU (psutil user+system, idle rate "
                    f"subtracted) per {profile} alert served to one read_committed consumer, "
                    f"topic read {_READS} times (range {spread['broker_out']})")
            results[profile] = m
    finally:
        kafka_io.discard_topics(bootstrap, created)
    return results


def measure_stream_costs(bootstrap: str, profile: str, *, broker_pid: int | None = None,
                         repeats: int = 3, seed: int = 0,
                         alerts: int | None = None) -> dict[str, list[float]]:
    """Re-measure :data:`STREAM_COSTS` on a broker that is already warm: every repeat's
    value per cost (a discarded pass first), for a validation that wants the costs of the
    minute it runs in rather than those of the calibration file's day.

    ``alerts`` of ``profile`` are generated and timed per repeat (default: the
    calibration's numbers, :data:`DEFAULT_ALERTS`). The topics are created with unique
    names and deleted afterwards. The broker costs are left out when its process cannot be found.
    """
    from broker import kafka_io
    from broker.generator import generate_visit

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    n = alerts if alerts is not None else DEFAULT_ALERTS.get(profile, 2000)
    if n < 1:
        raise ValueError(f"alerts must be >= 1, got {n}")
    data = generate_visit(1, n + _WARMUP, profile=profile, seed=seed)
    broker = _BrokerClock(find_broker_pid(bootstrap) if broker_pid is None else broker_pid)
    run_id = uuid.uuid4().hex[:8]
    created: list[str] = []
    samples: dict[str, list[float]] = {k: [] for k in STREAM_COSTS
                                       if broker.known or not k.startswith("broker_")}
    try:
        for rep in range(repeats + 1):
            topic = f"sim-spot-{run_id}-{rep}"
            kafka_io.ensure_topics(bootstrap, [topic])
            created.append(topic)
            cons = kafka_io.consumer(bootstrap, f"sim-spot-{run_id}-reader")
            try:
                one = _measure_stream(bootstrap, broker, topic, data, n, cons)
            finally:
                cons.close()
            gc.collect()
            if rep:
                for k in samples:
                    samples[k].append(one[k])
    finally:
        kafka_io.discard_topics(bootstrap, created)
    return samples


def _measure_stream(bootstrap: str, broker: _BrokerClock, topic: str, data: Sequence[bytes],
                    n: int, cons: Any, warmup: int = _WARMUP, reads: int = _READS
                    ) -> dict[str, float]:
    """The producer's and one reader's costs per alert, and the broker's under each."""
    from broker import kafka_io

    def on_delivery(err: Any, _msg: Any) -> None:
        pass

    out: dict[str, float] = {}
    # -- the producer: warm up (connection, metadata, idempotence), then time n sends.
    prod = kafka_io.producer(bootstrap)
    _produce_all(prod, topic, data[:warmup], 1, on_delivery)
    idle = broker.idle_rate(2.0)
    with _Window(broker, idle) as w:
        _produce_all(prod, topic, data[warmup:warmup + n], 1, on_delivery)
    del prod
    gc.collect()
    out["producer_kafka"] = w.cpu / n
    out["broker_in"] = w.broker_cpu / n

    # -- a consumer reading like a filter group (assign: no rebalance in the window),
    # the topic read ``reads`` times over so the broker's small serving cost stands out
    # of its idle rate (and of psutil's 10-ms clock ticks, where there is no schedstat).
    cons.list_topics(topic, timeout=10)
    _consume_all(cons, topic, 0, warmup, 60)
    idle = broker.idle_rate(0.5)
    with _Window(broker, idle) as w:
        for _ in range(reads):
            _consume_all(cons, topic, warmup, n, 120)
    out["consume"] = w.cpu / (n * reads)
    out["broker_out"] = w.broker_cpu / (n * reads)
    gc.collect()
    out["producer_alone"] = out["producer_kafka"]
    out["producer_kafka"], out["broker_out_tail"], out["consume_tail"] = _tail_cost(
        bootstrap, broker, topic, data[warmup:warmup + n], out["broker_in"])
    return out


def _tail_cost(bootstrap: str, broker: _BrokerClock, topic: str, data: Sequence[bytes],
               broker_in: float, tails: int = _TAILS) -> tuple[float, float, float]:
    """The costs of a producer with ``tails`` readers behind it, as in a pipeline whose
    groups keep pace: ``(producer CPU per alert, broker CPU per alert served to each
    reader, a reader's CPU per alert)``, the broker's less its append cost
    ``broker_in``.

    The readers are separate processes (:func:`tail_main`), as groups are. Whether they
    raise the producer's own CPU per alert is not settled on a 2-core VM: 1.1-2.3x in
    three ad-hoc repeats, 0.5-1.4x in the five of the 2026-12-02 calibration.
    """
    import subprocess
    import sys

    from broker import kafka_io

    n = len(data)
    target = f"{topic}-tail"
    kafka_io.ensure_topics(bootstrap, [target])
    readers: list[subprocess.Popen[str]] = []
    try:
        for _ in range(tails):
            proc = subprocess.Popen([sys.executable, "-m", "sim.calibrate_kafka", "tail",
                                     bootstrap, target, str(n)],
                                    stdout=subprocess.PIPE, text=True)
            readers.append(proc)
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a tail reader did not start")
        prod = kafka_io.producer(bootstrap)
        idle = broker.idle_rate(1.0)
        with _Window(broker, idle) as w:
            _produce_all(prod, target, data, 1, lambda _e, _m: None)
        del prod
        reader_cpu = 0.0
        for proc in readers:
            out, _ = proc.communicate(timeout=120)
            last = out.split()[-2:]
            if proc.returncode != 0 or len(last) != 2 or int(last[0]) < n:
                raise RuntimeError(f"a tail reader read {out.strip()!r} of {n} alerts")
            reader_cpu += float(last[1])
    finally:
        for proc in readers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kafka_io.discard_topics(bootstrap, [target])
    tail = max(0.0, w.broker_cpu / n - broker_in) / tails if broker.known else 0.0
    return w.cpu / n, tail, reader_cpu / (n * tails)


def tail_main(bootstrap: str, topic: str, count: int, timeout: float = 120.0) -> int:
    """A tail reader for :func:`_tail_cost`: read ``count`` alerts of ``topic`` from its
    end as they arrive, the way a filter group polls; print ``ready`` once fetching and
    the number read at the end."""
    from confluent_kafka import OFFSET_END, TopicPartition

    from broker import kafka_io

    cons = kafka_io.consumer(bootstrap, f"{topic}-{uuid.uuid4().hex[:6]}")
    got = 0
    try:
        cons.assign([TopicPartition(topic, 0, OFFSET_END)])
        cons.consume(1, 0.5)  # connected and long-polling before the producer starts
        print("ready", flush=True)
        deadline = time.monotonic() + timeout
        cpu0 = time.process_time()
        while got < count and time.monotonic() < deadline:
            for msg in cons.consume(1000, 0.1):
                if msg.error() is None:
                    # The accessors a filter group calls on every message.
                    msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.timestamp()
                    msg.value()
                    got += 1
        cpu = time.process_time() - cpu0
    finally:
        cons.close()
    print(f"{got} {cpu:.6f}", flush=True)
    return 0


def _measure_once(bootstrap: str, broker: _BrokerClock, topic: str, outs: list[str],
                  state_topic: str, data: list[bytes], n: int, outputs: int, commits: int,
                  group: str, reads: int = _READS) -> dict[str, float]:
    from confluent_kafka import TopicPartition

    from broker import kafka_io

    cons = kafka_io.consumer(bootstrap, f"{group}-reader")
    out = _measure_stream(bootstrap, broker, topic, data, n, cons, _WARMUP, reads)
    loop_cpu, loop_alerts, loop_commits = measure_group_loop(
        bootstrap, topic, _WARMUP + n, f"{group}-loop-{uuid.uuid4().hex[:6]}")

    # -- a transactional producer writing like a filter group.
    tprod = kafka_io.producer(bootstrap, transactional_id=f"{group}-txn")
    tprod.init_transactions(60)
    tprod.begin_transaction()
    offsets = [TopicPartition(topic, 0, n)]
    _commit(tprod, cons, state_topic, group, offsets)  # warm-up
    # Commits spaced as a busy group spaces them (it commits every commit_interval,
    # 0.5 s), each transaction holding a few outputs. Back-to-back commits would measure
    # something else: the next transaction waiting (retry.backoff.ms) for the broker to
    # finish the previous one's markers.
    # The broker's work per commit grows with the partitions the transaction wrote to
    # (one commit marker each): transactions with the same outputs spread over one topic
    # and over ten separate the two.
    idle = broker.idle_rate(2.0)  # a long idle window: the idle rate is small and uneven
    cpus, walls = [], []
    per_txn: dict[int, float] = {}
    for spread_over in (1, _OUTPUTS_PER_TXN):
        with _Window(broker, idle) as w:
            for _ in range(commits):
                for j in range(_OUTPUTS_PER_TXN):
                    name = outs[j % spread_over]
                    tprod.produce(name, data[j], None, headers=[("filter", name.encode())])
                    tprod.poll(0)
                time.sleep(_COMMIT_GAP)
                c0, w0 = time.process_time(), time.monotonic()
                _commit(tprod, cons, state_topic, group, offsets)
                cpus.append(time.process_time() - c0)
                walls.append(time.monotonic() - w0)
        # The broker's CPU per commit, less its cost of appending the outputs.
        per_txn[spread_over] = w.broker_cpu / commits - _OUTPUTS_PER_TXN * out["broker_in"]
    commit_cpu = _median(cpus)
    out["commit"] = commit_cpu
    # The loop's own cost per alert, its commits taken out (the model charges them apart).
    out["group_loop"] = max(0.0, loop_cpu - loop_commits * commit_cpu / max(loop_alerts, 1))
    out["commit_wait"] = max(0.0, _median([a - b for a, b in zip(walls, cpus, strict=True)]))
    marker = (per_txn[_OUTPUTS_PER_TXN] - per_txn[1]) / (_OUTPUTS_PER_TXN - 1)
    out["broker_marker"] = max(0.0, marker)
    out["broker_commit"] = max(0.0, per_txn[1] - out["broker_marker"])
    per_commit = 100
    done = 0
    with _Window(broker) as w:
        for k in range(outputs):
            name = outs[k % len(outs)]
            value = data[k % len(data)]
            tprod.produce(name, value, None, headers=[
                ("visit", b"1"), ("alert_timestamp", b"1700000000000"),
                ("group", group.encode()), ("filter", name.encode())])
            tprod.poll(0)
            if (k + 1) % per_commit == 0:
                _commit(tprod, cons, state_topic, group, offsets)
                done += 1
        if outputs % per_commit:
            _commit(tprod, cons, state_topic, group, offsets)
            done += 1
    out["produce"] = max(0.0, w.cpu - done * commit_cpu) / max(outputs, 1)
    tprod.abort_transaction(30)
    del tprod
    cons.close()
    del cons
    gc.collect()
    return out


if __name__ == "__main__":  # the tail readers of _tail_cost
    import sys

    if len(sys.argv) != 5 or sys.argv[1] != "tail":
        sys.exit("usage: python -m sim.calibrate_kafka tail BOOTSTRAP TOPIC COUNT")
    sys.exit(tail_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
