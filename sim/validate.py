"""``minibroker sim validate``: run real pipelines on Kafka, predict them, compare.

For each configuration (``--configs``; ``--quick`` for small ones) the validation

1. describes the workload from the alerts the producer will send and the filters the
   groups run, through the project's code (:func:`workload`): per filter and visit the
   fraction of alerts that pass, per group the fraction whose history the group's staged
   decoding reads;
2. runs the real pipeline with :class:`broker.pipeline.LocalPipeline` on a real Kafka
   (one broker for the whole validation, a fresh input topic per configuration): the
   filter groups as ``minibroker filter`` subprocesses, then ``minibroker produce``;
   it reads the services' status lines and samples, every 0.2 s, the input topic's end
   offset and each group's committed offset (broker-level, as the lag exporter does),
   and the CPU time of every process with psutil (:func:`run_pipeline`);
3. predicts the same configuration with the model (:func:`sim.predict.predict`) and the
   calibration file, and writes the predicted-against-measured table into BENCHMARKS.md
   between ``<!-- sim-validate:start -->`` and ``<!-- sim-validate:end -->``.

Measured quantities, defined as the model defines them (times from the producer's
schedule: visit ``k`` is due at ``t0 + k * interval``):

- *visit processing time*: per group and visit, first alert consumed (the group's status
  line ``first:``) -> the visit's last alert committed (the first offset sample at which
  the group's committed offset reaches the end of the visit; midpoint of the 0.2-s
  sampling step). The model's :attr:`sim.model.Result.visit_commit_seconds`.
- *visit metric*: the group status line's ``seconds:``, i.e.
  ``minibroker_filter_visit_seconds``: first alert consumed -> the commit that
  acknowledged the visit's last *output* (earlier than the end of the visit when the
  group's filters stop passing early, e.g. at their cap). The model's
  :attr:`~sim.model.Result.visit_metric_seconds`, with the measured pass fractions.
- *lag after N visits*: alerts of visits ``<= j`` not committed by a group at the time
  visit ``j + 1`` is due, whether or not the producer had published them yet (a
  producer that falls behind leaves the system behind the stream, with nothing in
  Kafka's consumer lag); the table shows it after the last visit (largest group).
- *verdict*: keeps up when every visit is committed by every group before the next is
  due, no group's lag grows (slope over the visit boundaries <= 1% of a visit), and the
  producer publishes each visit within the interval and on time.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from broker import hostmem
from sim.costs import Calibration, Costs
from sim.model import Config
from sim.predict import Measured, Prediction, compare, predict

__all__ = [
    "CONFIGS",
    "QUICK_CONFIGS",
    "RunResult",
    "Spec",
    "Workload",
    "add_parser_args",
    "combine_repeats",
    "main",
    "measured_verdict",
    "model_config",
    "remeasure",
    "run_pipeline",
    "update_section",
    "workload",
]

log = logging.getLogger(__name__)

START_MARK = "<!-- sim-validate:start -->"
END_MARK = "<!-- sim-validate:end -->"
HEADING = "## Capacity model validation"
SAMPLE_EVERY = 0.2
GROWTH_LIMIT = 0.01  # lag growth per visit, as a fraction of a visit (the model's rule)
TOLERANCE = 0.15  # the bar on visit time
MAX_REPEATS = 9
REPEAT_STRIDE = 100
"""Visit numbers between a configuration's repeats: repeat ``r`` starts at
``first_visit + r * REPEAT_STRIDE``, so no repeat finds the per-visit cap state an earlier
one left in Kafka (configurations are 1,000 visit numbers apart)."""


@dataclass(frozen=True)
class Spec:
    """One real pipeline configuration to run and predict."""

    key: str
    groups: int
    filters_per_group: int
    alerts_per_visit: int
    interval: float
    visits: int
    profile: str = "realistic"
    cap: int = 20
    first_visit: int = 1
    """Visit number of the first visit (distinct per configuration, so the per-visit cap
    state a group keeps in Kafka never carries over from another configuration)."""
    note: str = ""

    @property
    def filters(self) -> int:
        return self.groups * self.filters_per_group

    @property
    def title(self) -> str:
        return (f"{self.key}: {self.groups} x {self.filters_per_group} filters, "
                f"{self.alerts_per_visit:,} {self.profile} alerts every {self.interval:g} s, "
                f"{self.visits} visits")


CONFIGS: dict[str, Spec] = {
    "a": Spec("a", 2, 20, 5_000, 20.0, 4, first_visit=1001,
              note="small: 2 groups of 20 filters"),
    "b": Spec("b", 5, 20, 10_000, 39.0, 3, first_visit=2001,
              note="the DMTN-081 configuration: 5 groups of 20, 10,000 alerts per 39-s visit"),
    "c": Spec("c", 1, 100, 10_000, 20.0, 4, first_visit=3001,
              note="all 100 filters in one group (one process, history filters included)"),
    # With the memory held still (--steady-memory) this machine sends 10,000 realistic
    # alerts in 2-4 s, so a 5-s interval only made the first visits late; 3 s is over.
    "d": Spec("d", 5, 20, 10_000, 3.0, 5, first_visit=4001,
              note="overloaded: the DMTN-081 groups with a visit every 3 s"),
    # Ten groups of ten read 40,000 small alerts in ~1.2 s on a 2026 AMD EPYC core, inside
    # a 3-s visit; twenty groups of five sharing two cores need ~2 s, past 1.5 s.
    "e": Spec("e", 20, 5, 40_000, 1.5, 4, profile="dmtn081", first_visit=5001,
              note="overloaded by contention: small 2018-style alerts, 40,000 per 1.5-s visit, "
                   "read by twenty groups of 5 filters that share the two cores"),
}

# Run first and thrown away: every broker code path (appends, read_committed fetches,
# transactions with many partitions) compiled and warm before anything is measured.
WARM_UP = Spec("warm-up", 2, 20, 5_000, 5.0, 3, first_visit=9001, note="not measured")

QUICK_CONFIGS: dict[str, Spec] = {
    "qa": Spec("qa", 1, 10, 1_000, 10.0, 3, first_visit=6001, note="healthy: light load"),
    # Ten groups: one 100-filter group (and once five of 20) kept pace with a producer
    # that cannot send 20,000 alerts a second, so the lag at the end stayed 0.
    "qd": Spec("qd", 10, 10, 20_000, 1.0, 3, profile="dmtn081", first_visit=7001,
               note="overloaded: 20,000 small alerts per 1-s visit through 10 groups of 10 "
                    "filters sharing two cores"),
}


# -- the workload ---------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What the filters do with the alerts of a configuration's visits."""

    pass_fractions: tuple[tuple[float, ...], ...]
    """Per visit, per filter (all groups in order): fraction of alerts passing."""
    history_fractions: tuple[float, ...]
    """Per group: fraction of alerts whose history the group decodes (any of its history
    filters' prefilters passes)."""
    has_history: bool
    sampled: int
    """Alerts evaluated per visit."""


def workload(spec: Spec, sample: int = 2000, seed: int = 0) -> Workload:
    """Evaluate the configuration's filters on (a sample of) its visits' alerts.

    The visits are generated exactly as ``minibroker produce`` generates them (same
    profile, seed and visit numbers); every ``k``-th alert is decoded with the groups'
    staged decoder (:class:`broker.core.GroupCore`'s) and every filter is called on it.
    """
    from broker.alerts import Decoder
    from broker.core import GroupCore
    from broker.filters import load_filters
    from broker.generator import AlertGenerator

    filters = load_filters(None).select(1, spec.filters)
    core = GroupCore(filters, cap=1 << 30)
    decoder: Decoder = core.decoder
    gen = AlertGenerator(spec.profile, seed)
    F = spec.filters_per_group
    expensive = [i for i, f in enumerate(filters) if f.expensive_fields]
    groups_of = [i // F for i in range(len(filters))]
    passes_all: list[tuple[float, ...]] = []
    hist = np.zeros(spec.groups)
    total = 0
    for k in range(spec.visits):
        alerts = gen.visit(spec.first_visit + k, spec.alerts_per_visit)
        stride = max(1, len(alerts) // sample)
        chosen = alerts[::stride]
        passes = np.zeros(len(filters))
        for data in chosen:
            alert, resume = decoder.decode_staged(data)
            need_group = np.zeros(spec.groups, dtype=bool)
            pre_ok = []
            for i in expensive:
                if filters[i].prefilter(alert):
                    need_group[groups_of[i]] = True
                    pre_ok.append(i)
            if pre_ok:
                decoder.decode_more(data, alert, resume)
            hist += need_group
            for i, f in enumerate(filters):
                if i in expensive and i not in pre_ok:
                    continue
                try:
                    if f(alert):
                        passes[i] += 1
                except Exception:  # a failing filter passes nothing, as in a group
                    pass
        total += len(chosen)
        passes_all.append(tuple(float(f"{p / len(chosen):.4g}") for p in passes))
    return Workload(
        pass_fractions=tuple(passes_all),
        history_fractions=tuple(float(f"{h / total:.4g}") for h in hist),
        has_history=bool(expensive),
        sampled=total // max(spec.visits, 1),
    )


def model_config(spec: Spec, work: Workload, cores: float | None = None) -> Config:
    """The model's description of ``spec`` (the pipeline's settings and the workload)."""
    return Config(
        alerts_per_visit=spec.alerts_per_visit,
        interval=spec.interval,
        visits=spec.visits,
        groups=spec.groups,
        filters_per_group=spec.filters_per_group,
        users=0,
        cores=float(cores or os.cpu_count() or 1),
        profile=spec.profile,
        reads="history" if work.has_history else "diaSource",
        history_fractions=work.history_fractions if work.has_history else (),
        pass_fractions=work.pass_fractions,
        partitions=1,
        cap=spec.cap,
        send_rate=None,  # broker.producer sends a visit as fast as it can
        fetch_max=1000,  # broker.filter_group consumes batches of 1000
        commit_interval=0.5,
        commit_every=5000,
        commit_idle=0.05,
    )


# -- the real run ---------------------------------------------------------------------
@dataclass
class RunResult:
    """What one real pipeline run measured. Times are epoch seconds."""

    spec: Spec
    groups: list[str]
    starts: list[float]
    acked: list[float]
    first: np.ndarray
    """(groups, visits) first alert consumed (status lines); NaN if never reported."""
    metric: np.ndarray
    """(groups, visits) status-line ``seconds`` (minibroker_filter_visit_seconds)."""
    delivered: np.ndarray
    samples_t: np.ndarray
    samples_end: np.ndarray
    samples_committed: np.ndarray
    """(samples, groups) committed offsets (0 when none yet)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per process from the producer's start to the end of the run."""
    cpu_series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    """(time, cumulative CPU seconds per process) every sample."""
    other_cpu: float = math.nan
    """CPU seconds used on the machine during the run by anything but the pipeline's
    processes (this validation's own sampling, other users' work)."""
    wall: float = 0.0
    t0: float = 0.0
    committed_at: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boundary_lag: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    keeps_up: bool = False
    reasons: list[str] = field(default_factory=list)
    reported_kib: int | None = None
    """KiB of freed memory this machine handed back to its host during the run (free
    page reporting, :mod:`broker.hostmem`); None where the kernel does not report."""

    @property
    def processing(self) -> np.ndarray:
        """(groups, visits) first alert consumed -> the visit's last alert committed."""
        return self.committed_at - self.first


def _wait_groups_ready(bootstrap: str, groups: list[str], timeout: float = 60.0) -> None:
    """Wait until every consumer group is stable with its partition assigned."""
    from confluent_kafka import ConsumerGroupState

    from broker import kafka_io

    client = kafka_io.admin(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        try:
            futures = client.describe_consumer_groups(groups, request_timeout=5)
            for fut in futures.values():
                desc = fut.result()
                if desc.state == ConsumerGroupState.STABLE and any(
                        m.assignment and m.assignment.topic_partitions for m in desc.members):
                    ready += 1
        except Exception as exc:  # not known yet: keep waiting
            log.debug("describe_consumer_groups: %s", exc)
        if ready == len(groups):
            return
        time.sleep(0.5)
    raise RuntimeError(f"filter groups did not join within {timeout:.0f} s")


class _Sampler:
    """Samples the input topic's end offset, each group's committed offset and the CPU
    time of the watched processes (the last value seen is kept after a process ends)."""

    def __init__(self, bootstrap: str, topic: str, groups: list[str],
                 every: float = SAMPLE_EVERY) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.procs: dict[str, Any] = {}
        self.cpu: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.tp = TopicPartition(topic, 0)
        self.every = every
        self.watermarks = Consumer({"bootstrap.servers": bootstrap,
                                    "group.id": f"sim-validate-watermarks-{os.getpid()}"})
        self.readers = [Consumer({"bootstrap.servers": bootstrap, "group.id": g,
                                  "enable.auto.commit": False}) for g in groups]
        self.rows: list[tuple[float, int, list[int]]] = []
        self.cpu_rows: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lag-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, name: str, pid: int | None) -> None:
        """Sample the CPU time of process ``pid`` as ``name`` from now on."""
        import psutil

        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            self.cpu[name] = self.first[name] = _cpu_of(proc)
            self.procs[name] = proc

    def cpu_used(self) -> dict[str, float]:
        """CPU seconds per watched process so far (since it was first watched)."""
        return {name: self.cpu.get(name, 0.0) - start for name, start in self.first.items()}

    def _sample_cpu(self) -> None:
        import psutil

        for name, proc in list(self.procs.items()):
            with contextlib.suppress(psutil.Error):
                self.cpu[name] = _cpu_of(proc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample_cpu()
            t = time.time()
            self.cpu_rows.append((t, dict(self.cpu)))
            try:
                end = int(self.watermarks.get_watermark_offsets(self.tp, timeout=5,
                                                                cached=False)[1])
                committed = []
                for r in self.readers:
                    off = r.committed([self.tp], timeout=5)[0].offset
                    committed.append(max(int(off), 0))
                self.rows.append((t, end, committed))
            except Exception as exc:  # one failed sample is not fatal
                log.debug("offset sample failed: %s", exc)
            self._stop.wait(max(0.0, self.every - (time.time() - t)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sample_cpu()
        for c in [self.watermarks, *self.readers]:
            with contextlib.suppress(Exception):
                c.close()


def _cpu_of(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def machine_busy() -> float:
    """CPU seconds all processes of this machine have used since boot (/proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return math.nan
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    return (sum(ticks[:8]) - idle - steal) / os.sysconf("SC_CLK_TCK")


def run_pipeline(spec: Spec, bootstrap: str, kafka_pid: int | None = None,
                 workdir: Path | None = None) -> RunResult:
    """Run ``spec`` on the Kafka at ``bootstrap`` and return what was measured."""
    from broker import kafka_io
    from broker.filter_group import default_group_id
    from broker.pipeline import LocalPipeline, PipelineConfig, parse_fields

    topic = f"sim-validate-{spec.key}-{os.getpid()}-{int(time.time())}"
    cfg = PipelineConfig(groups=spec.groups, filters=spec.filters, monitor_processes=1,
                         topic=topic, cap=spec.cap, metrics=False, workdir=workdir)
    pipe = LocalPipeline(cfg)
    V, N, interval = spec.visits, spec.alerts_per_visit, spec.interval
    group_ids = [default_group_id(a, b) for a, b in pipe.group_ranges]
    service_of = {f"group-{a:03d}-{b:03d}": g for g, (a, b) in enumerate(pipe.group_ranges)}
    G = len(group_ids)
    first = np.full((G, V), np.nan)
    metric = np.full((G, V), np.nan)
    delivered = np.zeros((G, V))
    starts = [math.nan] * V
    acked = [math.nan] * V
    sampler: _Sampler | None = None
    cpu: dict[str, float] = {}
    wall0 = time.time()
    busy0 = busy1 = math.nan
    reported0 = reported1 = None
    try:
        pipe.start_kafka(bootstrap=bootstrap)
        services = pipe.start_groups()
        _wait_groups_ready(bootstrap, group_ids)
        time.sleep(1.0)  # let the groups' start-up work settle
        sampler = _Sampler(bootstrap, topic, group_ids)
        sampler.start()
        for svc in services:
            sampler.watch(svc.name, svc.proc.pid)
        sampler.watch("kafka", kafka_pid)
        wall0, busy0 = time.time(), machine_busy()
        reported0 = hostmem.reported_kib()
        producer = pipe.start_producer([
            "--profile", spec.profile, "--alerts-per-visit", str(N),
            "--interval", f"{interval:g}", "--visits", str(V),
            "--first-visit", str(spec.first_visit)])
        reported = 0
        deadline: float | None = None
        while True:
            ev = pipe.next_event(0.5)
            bad = pipe.failed()
            if bad:
                svc = bad[0]
                raise RuntimeError(f"{svc.name} exited with code {svc.proc.returncode}: "
                                   f"{pipe.log_tail(svc, 5)}")
            if ev is not None:
                f = parse_fields(ev.line)
                k = int(f["visit"]) - spec.first_visit if "visit" in f else -1
                if ev.service == "producer" and 0 <= k < V:
                    if f.get("status") == "start":
                        if k == 0:  # from here on, as in the model (visit 0 is ready)
                            sampler.watch("producer", producer.proc.pid)
                        starts[k] = float(f["time"])
                        log.info("%s: visit %d/%d started", spec.key, k + 1, V)
                    elif f.get("status") == "acked":
                        acked[k] = float(f["time"])
                elif ev.service in service_of and 0 <= k < V and "seconds" in f:
                    g = service_of[ev.service]
                    if math.isnan(first[g, k]):
                        reported += 1
                    first[g, k] = float(f["first"])
                    metric[g, k] = float(f["seconds"])
                    delivered[g, k] = float(f.get("delivered", "0"))
            if producer.proc.poll() is not None and deadline is None:
                deadline = time.time() + max(90.0, 2.0 * V * interval)
            done_at = (starts[-1] if not math.isnan(starts[-1]) else math.inf) + interval
            rows = sampler.rows
            all_committed = bool(rows) and min(rows[-1][2]) >= V * N
            if reported >= G * V and time.time() > done_at + 0.5 and all_committed:
                break
            if deadline is not None and time.time() > deadline:
                log.warning("%s: not every visit was reported by every group in time", spec.key)
                break
        wall = time.time() - wall0
    finally:
        if sampler is not None:
            sampler.stop()
            cpu = sampler.cpu_used()
        busy1 = machine_busy()
        reported1 = hostmem.reported_kib()
        pipe.stop()
        kafka_io.discard_topics(bootstrap, [topic, kafka_io.deadletter_topic(topic)])
    other = busy1 - busy0 - sum(cpu.values()) if cpu else math.nan
    rows = sampler.rows if sampler is not None else []
    run = RunResult(
        spec=spec, groups=group_ids, starts=starts, acked=acked, first=first,
        metric=metric, delivered=delivered,
        samples_t=np.array([r[0] for r in rows]),
        samples_end=np.array([r[1] for r in rows]),
        samples_committed=np.array([r[2] for r in rows]).reshape(len(rows), G),
        cpu=cpu, wall=wall,
        cpu_series=sampler.cpu_rows if sampler is not None else [],
        other_cpu=other,
        reported_kib=hostmem.reported_between(reported0, reported1),
    )
    analyse(run)
    return run


def analyse(run: RunResult) -> None:
    """Derive commit times, boundary lags and the verdict from the raw measurements."""
    spec = run.spec
    V, N, interval = spec.visits, spec.alerts_per_visit, spec.interval
    G = len(run.groups)
    starts = np.array(run.starts, dtype=float)
    # The producer's schedule: visit k is due at t0 + k * interval. Visit 0 starts once
    # its alerts are serialised, a little after t0, so on-time later visits fix t0; when
    # every later visit is late (an overloaded producer), visit 0's start stands in.
    due = [starts[k] - k * interval for k in range(V) if not math.isnan(starts[k])]
    run.t0 = float(min(due)) if due else math.nan
    t, com = run.samples_t, run.samples_committed
    committed_at = np.full((G, V), np.nan)
    for g in range(G):
        for v in range(V):
            target = (v + 1) * N
            hit = np.nonzero(com[:, g] >= target)[0] if len(t) else np.array([], dtype=int)
            if hit.size:
                i = int(hit[0])
                committed_at[g, v] = t[i] if i == 0 else 0.5 * (t[i - 1] + t[i])
    run.committed_at = committed_at
    lag = np.zeros((G, V), dtype=np.int64)
    for j in range(V):
        boundary = run.t0 + (j + 1) * interval
        before = np.nonzero(t < boundary)[0] if len(t) else np.array([], dtype=int)
        if before.size == 0:
            continue
        i = int(before[-1])
        for g in range(G):
            # Against the schedule, not the log end: a producer that cannot publish on
            # time leaves the groups nothing to lag behind in Kafka, yet the system is
            # behind the stream by every alert it has not published.
            lag[g, j] = max(0, (j + 1) * N - int(com[i, g]))
    run.boundary_lag = lag
    run.keeps_up, run.reasons = measured_verdict(
        committed_at, lag, starts, np.array(run.acked, dtype=float), run.t0, interval, N,
        run.groups)


def measured_verdict(committed_at: np.ndarray, lag: np.ndarray, starts: np.ndarray,
                     acked: np.ndarray, t0: float, interval: float, alerts_per_visit: int,
                     groups: Sequence[str]) -> tuple[bool, list[str]]:
    """The model's keeps-up rule applied to measured times (epoch seconds) and lags."""
    reasons: list[str] = []
    G, V = committed_at.shape
    deadlines = t0 + (np.arange(V) + 1) * interval
    for g in range(G):
        late = np.nonzero(~(committed_at[g] <= deadlines))[0]
        if late.size:
            v = int(late[0])
            if math.isnan(committed_at[g, v]):
                reasons.append(f"{groups[g]}: visit {v} was never fully committed")
            else:
                reasons.append(f"{groups[g]}: visit {v} committed "
                               f"{committed_at[g, v] - deadlines[v]:.1f} s after the next "
                               f"visit was due ({late.size} of {V} visits late)")
        if V >= 2:
            growth = float(np.polyfit(np.arange(V, dtype=float), lag[g].astype(float), 1)[0])
            if growth > GROWTH_LIMIT * alerts_per_visit:
                reasons.append(f"{groups[g]}: lag grows by {growth:.0f} alerts per visit")
    publish = acked - starts
    if np.any(~(publish <= interval)):
        reasons.append(f"producer: publishing a visit took up to {np.nanmax(publish):.1f} s, "
                       f"more than the {interval:g} s interval")
    for k in range(1, V):
        if starts[k] > t0 + k * interval + 1.0:
            reasons.append(f"producer: visit {k} started {starts[k] - t0 - k * interval:.1f} s "
                           "late")
            break
    return not reasons, reasons


# -- comparison and report ------------------------------------------------------------
@dataclass
class Outcome:
    """One configuration: measured, predicted, compared."""

    spec: Spec
    work: Workload
    run: RunResult
    prediction: Prediction
    row: dict[str, Any]
    metric_predicted: float
    metric_measured: float
    repeat: int = 0
    """Which run of the configuration this is (``--repeats``), from 0."""
    remeasured: dict[str, list[float]] | None = None
    """With ``--recalibrate``: every repeat of the costs re-measured just before the run
    (:data:`sim.calibrate_kafka.STREAM_COSTS`, the producer's as ``producer_send``)."""
    file_costs: Costs | None = None
    file_visit_predicted: float = math.nan
    """With ``--recalibrate``: the visit time the calibration file's costs predict."""


def _listify(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return [_listify(x) for x in a.tolist()] if a.ndim else _listify(a.item())
    if isinstance(a, list | tuple):
        return [_listify(x) for x in a]
    if isinstance(a, float) and not math.isfinite(a):
        return None
    return a


def outcome_dict(o: Outcome) -> dict[str, Any]:
    """Everything measured and predicted for one configuration, JSON-able."""
    run, res = o.run, o.prediction.result
    t0 = run.t0
    return {
        "spec": {k: getattr(o.spec, k) for k in ("key", "groups", "filters_per_group",
                                                 "alerts_per_visit", "interval", "visits",
                                                 "profile", "first_visit")},
        "repeat": o.repeat,
        "row": {k: _listify(v) for k, v in o.row.items()},
        "workload": {"history_fractions": list(o.work.history_fractions),
                     "pass_fractions": [list(r) for r in o.work.pass_fractions]},
        "measured": {
            "visit_starts": _listify(np.array(run.starts) - t0),
            "visit_acked": _listify(np.array(run.acked) - t0),
            "first": _listify(run.first - t0),
            "committed": _listify(run.committed_at - t0),
            "processing": _listify(run.processing),
            "metric": _listify(run.metric),
            "delivered": _listify(run.delivered),
            "boundary_lag": _listify(run.boundary_lag),
            "cpu": run.cpu, "wall": run.wall, "reasons": run.reasons,
            "other_cpu": _listify(run.other_cpu),
            "reported_kib": run.reported_kib,
            "cpu_series": [[t - t0, c] for t, c in run.cpu_series],
            "offsets": [[float(t - t0), int(e), [int(x) for x in c]] for t, e, c in
                        zip(run.samples_t, run.samples_end, run.samples_committed,
                            strict=True)],
        },
        "predicted": {
            "visit_starts": _listify(res.visit_start),
            "visit_published": _listify(res.visit_published),
            "first": _listify(res.visit_first),
            "committed": _listify(res.visit_committed),
            "processing": _listify(res.visit_commit_seconds),
            "metric": _listify(res.visit_metric_seconds),
            "boundary_lag": _listify(res.boundary_lag),
            "cpu": res.cpu_seconds, "reasons": res.reasons,
        },
        "remeasured": o.remeasured,
        "file_visit_predicted": _listify(o.file_visit_predicted),
    }


def _nanmean(values: np.ndarray) -> float:
    done = values[~np.isnan(values)]
    return float(done.mean()) if done.size else math.nan


def compare_run(spec: Spec, work: Workload, run: RunResult, costs: Costs,
                cores: float | None = None) -> Outcome:
    """Predict ``spec`` and compare it with ``run``."""
    config = model_config(spec, work, cores)
    skip = warmup_visits(spec)
    pred = predict(config, costs, skip_visits=skip)
    res = pred.result
    processing_pred = _nanmean(res.visit_commit_seconds[:, skip:])
    measured = Measured(visit_seconds=_nanmean(run.processing[:, skip:]),
                        lag_after=int(run.boundary_lag[:, -1].max()) if run.boundary_lag.size
                        else 0,
                        keeps_up=run.keeps_up)
    # Compare like with like: the model's first-consumed -> visit committed time.
    as_pred = Prediction(visit_seconds=processing_pred,
                         visit_processing_seconds=pred.visit_processing_seconds,
                         lag_after=pred.lag_after, lag_seconds_after=pred.lag_seconds_after,
                         keeps_up=pred.keeps_up, result=res)
    row = compare(spec.key, as_pred, measured)
    return Outcome(spec, work, run, pred, row, metric_predicted=pred.visit_seconds,
                   metric_measured=_nanmean(run.metric[:, skip:]))


def combine_repeats(rows: Sequence[dict[str, Any]],
                    tolerance: float = TOLERANCE) -> dict[str, Any]:
    """One row for the repeated runs of a configuration (rows of :func:`compare`).

    The visit times compared are the means over the runs, each side's: a run's measured
    time on a shared VM swings by more than the bar between runs minutes apart, so one
    run cannot tell a model error from the machine's mood; the runs' spread is kept beside
    the error to show how far a single run could have been from the mean. A verdict is
    right only when it is right in every run.
    """
    if not rows:
        raise ValueError("no runs to combine")
    pred = np.array([r["visit_s_predicted"] for r in rows], dtype=float)
    meas = np.array([r["visit_s_measured"] for r in rows], dtype=float)
    p, m = _nanmean(pred), _nanmean(meas)
    error = (p - m) / m if m > 0 and not math.isnan(p) else math.nan
    done = meas[~np.isnan(meas)]

    def verdicts(side: str) -> str:
        seen = list(dict.fromkeys(r[f"verdict_{side}"] for r in rows))
        if len(seen) == 1:
            return str(seen[0])
        return ", ".join(str(r[f"verdict_{side}"]) for r in rows)

    return {
        "configuration": rows[0]["configuration"],
        "runs": len(rows),
        "visit_s_predicted": p,
        "visit_s_measured": m,
        "visit_s_measured_runs": [float(x) for x in meas],
        "visit_s_predicted_runs": [float(x) for x in pred],
        "measured_spread": float((done.max() - done.min()) / m) if done.size and m > 0
        else math.nan,
        "visit_error": error,
        "visit_ok": bool(abs(error) <= tolerance) if not math.isnan(error) else False,
        "run_errors": [float(r["visit_error"]) for r in rows],
        "lag_predicted": [int(r["lag_predicted"]) for r in rows],
        "lag_measured": [int(r["lag_measured"]) for r in rows],
        "verdict_predicted": verdicts("predicted"),
        "verdict_measured": verdicts("measured"),
        "verdict_ok": all(bool(r["verdict_ok"]) for r in rows),
    }


def repeat_spec(spec: Spec, repeat: int) -> Spec:
    """``spec`` for its ``repeat``-th run: the same load on visit numbers of its own."""
    return replace(spec, first_visit=spec.first_visit + repeat * REPEAT_STRIDE)


SPOT_REPEATS = 3


# ``--quick`` re-measures on a third of the calibration's alerts: its runs are short
# checks of the machinery, and the realistic passes would otherwise take most of them.
QUICK_SPOT_ALERTS = {"realistic": 1000, "dmtn081": 4000}


def remeasure(costs: Costs, bootstrap: str, pid: int | None, profile: str,
              repeats: int = SPOT_REPEATS,
              alerts: int | None = None) -> tuple[Costs, dict[str, list[float]]]:
    """``costs`` with the stream costs re-measured now on the broker at ``bootstrap``
    (median of ``repeats`` passes of ``alerts``; default the calibration's count), and
    every repeat's value by cost name."""
    from sim.calibrate_kafka import measure_stream_costs

    samples = measure_stream_costs(bootstrap, profile, broker_pid=pid, repeats=repeats,
                                   seed=7, alerts=alerts)
    named = {("producer_send" if k == "producer_kafka" else k): v for k, v in samples.items()}
    medians = {k: float(np.median(v)) for k, v in named.items() if v}
    return replace(costs, **medians), named


def warmup_visits(spec: Spec) -> int:
    """Visits left out of the visit-time means: the first, when there are three or more
    (a fresh producer process grows its heap and a fresh topic its log while sending it;
    both sides leave it out alike). Lags and verdicts count every visit."""
    return 1 if spec.visits >= 3 else 0


def _counts(values: Sequence[int]) -> str:
    return " / ".join(f"{x:,}" for x in values)


def _pct(p: float, m: float) -> str:
    if not (m > 0) or math.isnan(p):
        return "-"
    return f"{(p - m) / m:+.0%}"


def report(outcomes: Sequence[Outcome], *, command: str, machine: str, when: str,
           costs_source: str, memory: str | None = None) -> str:
    """The Markdown section (without the markers). ``memory`` says in which state the
    machine's memory was (:class:`broker.hostmem.SteadyMemory.describe`). Repeated runs
    of a configuration (``Outcome.repeat``) are combined by :func:`combine_repeats`."""
    combined = combined_rows(outcomes)
    runs = max((o.repeat + 1 for o in outcomes), default=1)
    specs = list({o.spec.key: o.spec for o in outcomes if o.repeat == 0}.values())

    def label(o: Outcome) -> str:
        return o.spec.key if runs == 1 else f"{o.spec.key} run {o.repeat + 1}"

    keys = list(combined)
    outcomes = sorted(outcomes, key=lambda o: (keys.index(o.spec.key), o.repeat))

    lines = [
        HEADING,
        "",
        f"Measured {when} on {machine} with `{command}`: a real Apache Kafka 4.1 (KRaft) "
        f"broker, `minibroker filter` groups and `minibroker produce` as subprocesses "
        f"(no end consumers), the broker warmed up first. Predicted by `sim.model` with "
        f"{costs_source} and the workload of the same generated alerts (pass fraction per "
        f"filter and visit, history-decode fraction per group).",
        "",
        *([f"Memory: {memory}.", ""] if memory else []),
        "- *visit s*: first alert consumed -> the visit's last alert committed (the "
        "group's committed offset, sampled every 0.2 s), mean over groups and visits "
        "2..N (visit 1 warms a fresh producer process up).",
        "- *lag*: alerts of the run's visits not yet committed by the most-behind group "
        "when the visit after the last one is due, published or not: a producer that "
        "falls behind leaves the system behind the stream, with nothing in Kafka's "
        "consumer lag.",
        "- *verdict*: keeps up when every visit is committed by every group before the "
        "next one is due, lag does not grow, and the producer publishes each visit on time "
        "within the interval.",
        "",
        *([f"Each configuration was run {runs} times, round robin (on visit numbers of "
             "its own each time), and each side's visit times are averaged over the "
             "runs: *runs* lists the measured means of the single runs, *spread* their "
             "range as a fraction of the mean, *error (runs)* the single runs' errors. "
             "A verdict counts as right only when it is right in every run.", ""]
          if runs > 1 else []),
        "| config | visit s predicted | visit s measured | error | "
        + ("runs (measured) | spread | error (runs) | " if runs > 1 else "")
        + "lag predicted | lag measured | verdict predicted | verdict measured |",
        "|" + " --- |" * (11 if runs > 1 else 8),
    ]
    for key, row in combined.items():
        err = row["visit_error"]
        err_text = "-" if math.isnan(err) else f"{err:+.1%}" + ("" if row["visit_ok"] else " (!)")
        extra = ""
        if runs > 1:
            spread = row["measured_spread"]
            extra = (", ".join(f"{x:.2f}" for x in row["visit_s_measured_runs"]) + " | "
                     + ("-" if math.isnan(spread) else f"{spread:.0%}") + " | "
                     + ", ".join("-" if math.isnan(e) else f"{e:+.0%}"
                                 for e in row["run_errors"]) + " | ")
        lines.append(
            f"| {key} | {row['visit_s_predicted']:.2f} | {row['visit_s_measured']:.2f} | "
            f"{err_text} | {extra}{_counts(row['lag_predicted'])} | "
            f"{_counts(row['lag_measured'])} | {row['verdict_predicted']} | "
            f"{row['verdict_measured']}" + ("" if row["verdict_ok"] else " (!)") + " |")
    lines += ["", "Configurations:", ""]
    for spec in specs:
        lines.append(f"- **{spec.title}** ({spec.note})")
    lines += ["", "Details, predicted / measured. *status line s*: "
              "`minibroker_filter_visit_seconds` as the groups report it (to the commit of "
              "the visit's last *output*, earlier than the visit's end when filters stop "
              "passing early). CPU seconds from the first visit to the end of the run; "
              "*other*: cores used meanwhile by anything else on the machine (this "
              "validation's sampling, other users); *host took*: freed memory the machine handed "
              "back to its VM host meanwhile (free page reporting; its next first touch "
              "costs a host page fault, see broker/hostmem.py).", "",
              "| config | status line s | lag at each boundary (measured) | producer CPU s | "
              "Kafka CPU s | groups CPU s | other cores | host took GiB | run s |",
              "|" + " --- |" * 9]
    for o in outcomes:
        res = o.prediction.result
        cpu_pred = res.cpu_seconds
        groups_pred = sum(v for k, v in cpu_pred.items() if k.startswith("group"))
        kafka_pred = cpu_pred.get("kafka-append", 0.0) + cpu_pred.get("kafka-fetch", 0.0)
        run = o.run
        groups_meas = sum(v for k, v in run.cpu.items() if k.startswith("group"))
        lags = " / ".join(f"{int(x):,}" for x in run.boundary_lag.max(axis=0)) \
            if run.boundary_lag.size else "-"
        other = run.other_cpu / run.wall if run.wall > 0 else math.nan
        took = "-" if run.reported_kib is None else f"{run.reported_kib / 2**20:.1f}"
        lines.append(
            f"| {label(o)} | {o.metric_predicted:.2f} / {o.metric_measured:.2f} | {lags} | "
            f"{cpu_pred.get('producer', 0.0):.1f} / {run.cpu.get('producer', math.nan):.1f} | "
            f"{kafka_pred:.1f} / {run.cpu.get('kafka', math.nan):.1f} | "
            f"{groups_pred:.1f} / {groups_meas:.1f} | {other:.2f} | {took} | {run.wall:.0f} |")
    spot = [o for o in outcomes if o.remeasured is not None and o.file_costs is not None]
    if spot:
        names = list(dict.fromkeys(k for o in spot for k in o.remeasured or {}))
        lines += ["", "Costs re-measured on the same broker just before each configuration "
                  "(`--recalibrate`: the calibration's own producer, broker and reader code, "
                  f"median of {SPOT_REPEATS} passes, us per alert: calibration file -> now, "
                  "the passes' range in brackets), and the visit time the file's costs "
                  "alone predict:", "",
                  "| config | " + " | ".join(f"{n} us" for n in names)
                  + " | visit s predicted, file costs | error, file costs |",
                  "|" + " --- |" * (len(names) + 3)]
        for o in spot:
            cells = []
            for n in names:
                vals = (o.remeasured or {}).get(n) or []
                now = float(np.median(vals)) if vals else math.nan
                was = getattr(o.file_costs, n)
                rng = f" [{1e6 * min(vals):.0f}-{1e6 * max(vals):.0f}]" if vals else ""
                cells.append(f"{1e6 * was:.0f} -> {1e6 * now:.0f}{rng}")
            m = o.row["visit_s_measured"]
            lines.append(f"| {label(o)} | " + " | ".join(cells)
                         + f" | {o.file_visit_predicted:.2f} | "
                         f"{_pct(o.file_visit_predicted, m)} |")
    reasons = [(label(o), "measured", r) for o in outcomes for r in o.run.reasons[:2]]
    reasons += [(label(o), "predicted", r) for o in outcomes
                for r in o.prediction.result.reasons[:2]]
    if reasons:
        lines += ["", "Why a configuration falls behind (first reasons):", ""]
        lines += [f"- {k}, {side}: {r}" for k, side, r in sorted(reasons)]
    ok_visit = all(r["visit_ok"] for r in combined.values())
    ok_verdict = all(r["verdict_ok"] for r in combined.values())
    lines += ["", f"Bars (issue 4): visit time within {TOLERANCE:.0%} in every configuration"
              + (f" (means of {runs} runs)" if runs > 1 else "") + ": "
              f"**{'met' if ok_visit else 'missed'}**; verdict right in every configuration"
              + (" and run" if runs > 1 else "") + ": "
              f"**{'met' if ok_verdict else 'missed'}**."]
    return "\n".join(lines) + "\n"


def combined_rows(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """Per configuration, in order, :func:`combine_repeats` of its runs' rows."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for o in sorted(outcomes, key=lambda o: o.repeat):
        by_key.setdefault(o.spec.key, []).append(o.row)
    return {k: combine_repeats(rows) for k, rows in by_key.items()}


def update_section(path: Path, section: str) -> None:
    """Put ``section`` between the markers in ``path``, keeping everything else.

    Without markers, an existing ``## Capacity model validation`` section (up to the next
    ``## `` heading) is replaced; otherwise the section is appended.
    """
    block = f"{START_MARK}\n{section.rstrip()}\n{END_MARK}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START_MARK in text and END_MARK in text:
        head, _, rest = text.partition(START_MARK)
        _, _, tail = rest.partition(END_MARK)
        new = head + block.rstrip("\n") + tail
    elif HEADING in text:
        head, _, rest = text.partition(HEADING)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)


# -- command line ---------------------------------------------------------------------
def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``minibroker sim validate``."""
    from broker.options import option

    option(parser, "--quick", flag=True, dest="validate_quick",
           help=f"small configurations ({', '.join(QUICK_CONFIGS)}) for tests")
    option(parser, "--configs", default=None, dest="validate_configs",
           help=f"comma-separated configurations to run (full: {', '.join(CONFIGS)}; "
                f"quick: {', '.join(QUICK_CONFIGS)})")
    option(parser, "--output", default=Path("BENCHMARKS.md"), type=Path,
           dest="validate_output",
           help="Markdown file whose 'Capacity model validation' section is (re)written")
    option(parser, "--bootstrap", default=None, dest="validate_bootstrap",
           help="use the Kafka at this address (default: start a local one for the run)")
    option(parser, "--calibration", default=None, type=Path,
           help="calibration file for the predictions (default: sim/calibration.json)")
    option(parser, "--no-write", flag=True, dest="validate_no_write",
           help="print the table, write nothing")
    option(parser, "--json", default=None, type=Path, dest="validate_json",
           help="also write every measured and predicted series to this JSON file")
    option(parser, "--recalibrate", flag=True, dest="validate_recalibrate",
           help="before each configuration, re-measure the costs that drift most on a VM "
                "(producer send, broker append, consume, broker serve) on the same broker "
                "and predict with them; the report shows both predictions")
    option(parser, "--repeats", default=1, type=int, dest="validate_repeats",
           help=f"run every configuration this many times (1-{MAX_REPEATS}), round robin, "
                "and compare the means; the report shows the runs' spread")
    hostmem.add_option(parser)


@contextlib.contextmanager
def _kafka(bootstrap: str | None) -> Iterator[tuple[str, int | None]]:
    from sim.calibrate_kafka import find_broker_pid, kafka_for_calibration

    if bootstrap:
        yield bootstrap, find_broker_pid(bootstrap)
        return
    with kafka_for_calibration("local") as found:
        yield found


def _warm_up(bootstrap: str, alerts: int) -> None:
    """Warm the broker up as the calibration does before it measures (its first ~10,000
    large alerts cost it, and the producer, 2-3 times the steady state)."""
    from broker.generator import generate_visit
    from sim.calibrate_kafka import warm_broker

    warm_broker(bootstrap, generate_visit(1, min(alerts, 3000), profile="realistic"), alerts)


def _command(args: argparse.Namespace) -> str:
    parts = ["minibroker sim validate"]
    if args.validate_quick:
        parts.append("--quick")
    if args.validate_configs:
        parts.append(f"--configs {args.validate_configs}")
    if args.validate_bootstrap:
        parts.append("--bootstrap HOST:PORT")
    if args.calibration:
        parts.append(f"--calibration {args.calibration}")
    if str(args.validate_output) != "BENCHMARKS.md":
        parts.append(f"--output {args.validate_output}")
    if getattr(args, "validate_recalibrate", False):
        parts.append("--recalibrate")
    if getattr(args, "validate_repeats", 1) != 1:
        parts.append(f"--repeats {args.validate_repeats}")
    if getattr(args, "steady_memory", False):
        parts.append("--steady-memory")
    return " ".join(parts)


def _validate_one(spec: Spec, repeat: int, repeats: int, file_costs: Costs, bootstrap: str,
                  pid: int | None, workdir: Path, recalibrate: bool,
                  spot_alerts: int | None = None) -> Outcome:
    """Run, predict and compare one configuration once."""
    name = spec.key if repeats == 1 else f"{spec.key} (run {repeat + 1}/{repeats})"
    # Per run: each run sends the alerts of its own visit numbers.
    log.info("%s: evaluating the filters on the visits' alerts", spec.title)
    work = workload(spec)
    costs, remeasured = file_costs, None
    if recalibrate:
        log.info("%s: re-measuring the stream costs on this broker", name)
        costs, remeasured = remeasure(file_costs, bootstrap, pid, spec.profile,
                                      alerts=spot_alerts)
        log.info("%s: %s", name, ", ".join(
            f"{k} {1e6 * getattr(file_costs, k):.0f} -> {1e6 * getattr(costs, k):.0f} us"
            for k in remeasured))
    log.info("%s: running the pipeline", name)
    run = run_pipeline(spec, bootstrap, pid, workdir / f"{spec.key}-{repeat}")
    out = compare_run(spec, work, run, costs)
    out.repeat = repeat
    if remeasured is not None:
        out.remeasured, out.file_costs = remeasured, file_costs
        out.file_visit_predicted = compare_run(spec, work, run,
                                               file_costs).row["visit_s_predicted"]
    r = out.row
    log.info("%s: visit %.2f s predicted, %.2f s measured (%+.1f%%); lag %d / %d; %s / %s",
             name, r["visit_s_predicted"], r["visit_s_measured"], 100 * r["visit_error"],
             r["lag_predicted"], r["lag_measured"], r["verdict_predicted"],
             r["verdict_measured"])
    return out


def main(args: argparse.Namespace) -> int:
    """Run the configurations, predict them and write the table. 0 when both bars are
    met, 1 otherwise (the table is written either way)."""
    from broker.options import UsageError

    table = QUICK_CONFIGS if args.validate_quick else CONFIGS
    keys = [k.strip() for k in (args.validate_configs or ",".join(table)).split(",")
            if k.strip()]
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise UsageError(f"unknown configuration(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(table)}"
                         + ("" if args.validate_quick else " (or use --quick)"))
    try:
        calibration = Calibration.load(getattr(args, "calibration", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    repeats = getattr(args, "validate_repeats", 1)
    if not 1 <= repeats <= MAX_REPEATS:
        raise UsageError(f"--repeats must be between 1 and {MAX_REPEATS}, not {repeats}")
    specs = [table[k] for k in keys]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    from sim.calibrate_kafka import machine_summary

    machine = f"{platform.node() or 'this machine'} ({machine_summary()})"
    outcomes: list[Outcome] = []
    workdir = Path(tempfile.mkdtemp(prefix="minibroker-validate-"))
    memory: str | None = None
    try:
        with hostmem.memory_state(getattr(args, "steady_memory", False)) as state, \
                _kafka(args.validate_bootstrap) as (bootstrap, pid):
            memory = state.describe()
            log.info("validating on Kafka %s (pid %s): %s", bootstrap, pid,
                     ", ".join(s.key for s in specs))
            log.info("warming the broker up")
            _warm_up(bootstrap, 2000 if args.validate_quick else 20_000)
            if not args.validate_quick:
                run_pipeline(WARM_UP, bootstrap, pid, workdir / "warm-up")
            # Round robin, so that every configuration's runs sample the machine's drift
            # over the whole validation rather than one stretch of it.
            for r in range(repeats):
                for base in specs:
                    outcomes.append(_validate_one(
                        repeat_spec(base, r), r, repeats, calibration.costs(base.profile),
                        bootstrap, pid, workdir, getattr(args, "validate_recalibrate", False),
                        QUICK_SPOT_ALERTS.get(base.profile) if args.validate_quick else None))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cal_path = getattr(args, "calibration", None) or "sim/calibration.json"
    section = report(outcomes, command=_command(args), machine=machine, when=when,
                     costs_source=f"the costs in `{cal_path}` (`minibroker sim calibrate "
                     f"--kafka local`; each cost's note says how it was measured)"
                     + (", the stream costs re-measured before each configuration (below)"
                        if getattr(args, "validate_recalibrate", False) else ""),
                     memory=memory)
    print(section)
    if getattr(args, "validate_json", None):
        import json

        Path(args.validate_json).write_text(json.dumps(
            {"command": _command(args), "machine": machine, "date": when,
             "configs": [outcome_dict(o) for o in outcomes],
             "combined": {k: {f: _listify(v) for f, v in row.items()}
                          for k, row in combined_rows(outcomes).items()}},
            indent=1) + "\n")
        print(f"wrote {args.validate_json}")
    if not args.validate_no_write:
        update_section(args.validate_output, section)
        print(f"wrote the '{HEADING[3:]}' section of {args.validate_output}")
    ok = all(r["visit_ok"] and r["verdict_ok"] for r in combined_rows(outcomes).values())
    return 0 if ok else 1
