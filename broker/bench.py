"""``minibroker bench``: the DMTN-081 configuration at full scale on real Kafka.

Scenarios (each on a fresh local Kafka):

``dmtn081``  10,000 realistic alerts per 39-s visit, 5 filter groups of 20 filters,
             100 monitor consumers (one per filter topic); then, on the same topic, the
             throughput of a bare confluent-kafka consumer next to a 100-filter group
             reading the backlog, and the instrumentation A/B (metrics on and scraped vs
             ``--no-instrumentation``).
``one-group`` the same load through 1 group of 100 filters.
``peak``     40,000 realistic alerts per visit, 5 groups of 20.

Per visit it reports the producer's send time, each group's visit time (first alert
consumed -> last output acknowledged), end-to-end time (the producer's last
acknowledgement -> the last filtered alert received by every consumer), the end-to-end
latency of every delivered alert (p50/p99), the peak lag of every group, and CPU used.
Results go to BENCHMARKS.md between ``<!-- bench:start -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import logging
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from broker import hostmem
from broker.filter_group import default_group_id
from broker.options import UsageError, option, positive_float, positive_int
from broker.pipeline import LocalPipeline, PipelineConfig, parse_fields

__all__ = ["Scenario", "ScenarioResult", "add_parser_args", "main", "run_scenario"]

log = logging.getLogger(__name__)

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class Scenario:
    """One paced benchmark run."""

    name: str
    title: str
    alerts_per_visit: int
    groups: int
    visits: int
    interval: float = 39.0
    filters: int = 100
    throughput: bool = False


@dataclass
class VisitRow:
    visit: int
    start: float
    acked: float
    send_seconds: float
    group_seconds: dict[str, float] = field(default_factory=dict)
    group_done: dict[str, float] = field(default_factory=dict)
    last_received: float = 0.0
    latencies: list[float] = field(default_factory=list)
    peak_lag: dict[str, int] = field(default_factory=dict)
    lag_at_next: dict[str, int] = field(default_factory=dict)
    cpu_cores: float = 0.0
    cpu_by: dict[str, float] = field(default_factory=dict)

    @property
    def end_to_end(self) -> float | None:
        return self.last_received - self.acked if self.last_received else None


@dataclass
class ScenarioResult:
    scenario: Scenario
    rows: list[VisitRow]
    groups: list[str]
    notes: list[str] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


class _Sampler(threading.Thread):
    """Samples input lag of every group (end offset - committed) every ``period`` s."""

    def __init__(self, bootstrap: str, topic: str, groups: list[str], period: float = 0.5):
        super().__init__(daemon=True, name="lag-sampler")
        from confluent_kafka import Consumer

        self.topic, self.period = topic, period
        self.samples: list[tuple[float, str, int]] = []
        self._halt = threading.Event()
        self._consumers = {g: Consumer({"bootstrap.servers": bootstrap, "group.id": g,
                                        "enable.auto.commit": False}) for g in groups}
        self._watch = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watch",
                                "isolation.level": "read_committed"})

    def run(self) -> None:
        from confluent_kafka import TopicPartition

        tp = TopicPartition(self.topic, 0)
        while not self._halt.wait(self.period):
            try:
                end = self._watch.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                now = time.time()
                for g, c in self._consumers.items():
                    off = c.committed([TopicPartition(self.topic, 0)], timeout=5)[0].offset
                    self.samples.append((now, g, end - max(off, 0)))
            except Exception as exc:  # a missed sample is not worth stopping the benchmark
                log.debug("lag sample failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        for c in [*self._consumers.values(), self._watch]:
            c.close()


_LAST_CPU: dict[int, float] = {}


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process (the last reading once it has exited)."""
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            _LAST_CPU[pid] = t.user + t.system
        except psutil.Error:
            pass
        out[name] = _LAST_CPU.get(pid, 0.0)
    return out


def _kind(name: str) -> str:
    for prefix, kind in (("group", "groups"), ("monitors", "monitors"), ("producer", "producer"),
                         ("kafka", "kafka")):
        if name.startswith(prefix):
            return kind
    return "other"


def run_scenario(sc: Scenario, workdir: Path) -> ScenarioResult:
    """Run one scenario on a fresh Kafka and return its per-visit measurements."""
    # A fresh broker every time: a data directory left by an earlier run would hand its
    # topics, offsets and alerts (hours old) to this one.
    shutil.rmtree(workdir / sc.name, ignore_errors=True)
    cfg = PipelineConfig(groups=sc.groups, filters=sc.filters, monitor_processes=5,
                         log_alerts=True, workdir=workdir / sc.name, kafka_heap="1g")
    pipe = LocalPipeline(cfg)
    result = ScenarioResult(sc, [], [])
    sampler: _Sampler | None = None
    try:
        log.info("[%s] starting Kafka", sc.name)
        bootstrap = pipe.start_kafka()
        groups = pipe.start_groups()
        pipe.start_monitors()
        group_ids = [default_group_id(a, b) for a, b in pipe.group_ranges]
        result.groups = group_ids
        time.sleep(8)  # let every consumer join its group before the first visit
        sampler = _Sampler(bootstrap, cfg.topic, group_ids)
        sampler.start()
        assert pipe.kafka is not None and pipe.kafka.running_pid() is not None
        pids = {"kafka": int(pipe.kafka.running_pid() or 0)}
        pids.update({s.name: s.proc.pid for s in pipe.services})
        producer = pipe.start_producer(["--profile", "realistic", "--alerts-per-visit",
                                        str(sc.alerts_per_visit), "--interval",
                                        str(sc.interval), "--visits", str(sc.visits)])
        pids["producer"] = producer.proc.pid
        rows: dict[int, VisitRow] = {}
        group_names = {s.name: default_group_id(a, b)
                       for s, (a, b) in zip(groups, pipe.group_ranges, strict=True)}
        recv: list[tuple[int, float, float]] = []
        cpu_marks: list[tuple[float, dict[str, float]]] = [(time.time(), _cpu_seconds(pids))]
        deadline: float | None = None
        log.info("[%s] producing %d visits of %d alerts every %g s", sc.name, sc.visits,
                 sc.alerts_per_visit, sc.interval)
        while True:
            ev = pipe.next_event(0.5)
            pipe.raise_if_failed()
            if ev is not None:
                f = parse_fields(ev.line)
                if ev.service == "producer" and "visit" in f:
                    v = int(f["visit"])
                    if f.get("status") == "start":
                        rows[v] = VisitRow(v, float(f["time"]), 0.0, 0.0)
                        cpu_marks.append((float(f["time"]), _cpu_seconds(pids)))
                    elif f.get("status") == "acked":
                        rows[v].acked = float(f["time"])
                        rows[v].send_seconds = float(f["seconds"])
                        log.info("[%s] visit %d sent in %.2f s", sc.name, v,
                                 rows[v].send_seconds)
                elif ev.service in group_names and "visit" in f:
                    v = int(f["visit"])
                    if v in rows:
                        g = group_names[ev.service]
                        rows[v].group_seconds[g] = float(f["seconds"])
                        rows[v].group_done[g] = float(f["last"])
                elif ev.line.startswith("recv ") and "visit" in f:
                    recv.append((int(f["visit"]), float(f["time"]), float(f["latency"])))
            complete = [r for r in rows.values() if len(r.group_done) == len(group_ids)]
            if len(complete) >= sc.visits:
                time.sleep(2)  # the last deliveries' recv lines
                while (ev := pipe.next_event(0.2)) is not None:
                    f = parse_fields(ev.line)
                    if ev.line.startswith("recv ") and "visit" in f:
                        recv.append((int(f["visit"]), float(f["time"]), float(f["latency"])))
                break
            if producer.proc.poll() is not None and deadline is None:
                deadline = time.monotonic() + max(120.0, 2 * sc.interval)
            if deadline is not None and time.monotonic() > deadline:
                result.notes.append(
                    f"{sc.visits - len(complete)} visit(s) were not completed by every group "
                    "within 120 s after the producer finished")
                break
        cpu_marks.append((time.time(), _cpu_seconds(pids)))
        sampler.stop()
        samples = sampler.samples
        sampler = None
        ordered = sorted(rows.values(), key=lambda r: r.visit)
        for i, r in enumerate(ordered):
            t_end = ordered[i + 1].start if i + 1 < len(ordered) else cpu_marks[-1][0]
            for g in group_ids:
                window = [n for t, gg, n in samples if gg == g and r.start <= t < t_end]
                r.peak_lag[g] = max(window, default=0)
                before = [n for t, gg, n in samples if gg == g and t < t_end]
                r.lag_at_next[g] = before[-1] if before else 0
            mine = [(t, lat) for v, t, lat in recv if v == r.visit]
            r.last_received = max((t for t, _ in mine), default=0.0)
            r.latencies = [lat for _, lat in mine]
            t0, c0 = cpu_marks[i + 1]
            t1, c1 = cpu_marks[i + 2] if i + 2 < len(cpu_marks) else cpu_marks[-1]
            span = max(1e-6, t1 - t0)
            by: dict[str, float] = {}
            for name in c1:
                by[_kind(name)] = by.get(_kind(name), 0.0) + (c1[name] - c0.get(name, 0.0))
            r.cpu_by = {k: v / span for k, v in by.items()}
            r.cpu_cores = sum(r.cpu_by.values())
        result.rows = ordered
        if sc.throughput:
            result.throughput = _throughput(pipe, bootstrap, cfg.topic, sc)
    finally:
        if sampler is not None:
            sampler.stop()
        pipe.stop()
        shutil.rmtree(workdir / sc.name, ignore_errors=True)  # ~1.3 GB per visit
    return result


ROUNDS = 3  # turns of bare / instrumented / uninstrumented runs in the throughput test


class _Untimed(RuntimeError):
    """A throughput run whose commits were not seen often enough to time it."""


def _bare_consume(bootstrap: str, topic: str, total: int) -> float:
    from confluent_kafka import Consumer

    from broker.kafka_io import _FETCH

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-bare-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed", **_FETCH})
    c.subscribe([topic])
    n, t0 = 0, 0.0
    try:
        while n < total:
            for m in c.consume(1000, 1.0):
                if m.error() is None:
                    if not n:
                        t0 = time.perf_counter()
                    _ = m.value()
                    n += 1
        return (n - 1) / (time.perf_counter() - t0)
    finally:
        c.close()


def _throughput(pipe: LocalPipeline, bootstrap: str, topic: str,
                sc: Scenario) -> dict[str, float]:
    from confluent_kafka import Consumer, TopicPartition

    from broker.local_kafka import free_port

    total = sc.alerts_per_visit * sc.visits
    out: dict[str, float] = {}
    for svc in list(pipe.services):  # the paced run is over: free the CPU
        pipe.stop_service(svc)

    def group_run(tag: str, instrumented: bool) -> float:
        gid = f"bench-{tag}-{time.time_ns()}"
        port = free_port()
        args = ["filter", bootstrap, topic, "1", str(sc.filters), "--group-id", gid,
                "--visit-idle", "60"]
        args += ["--metrics-port", str(port)] if instrumented else ["--no-instrumentation"]
        svc = pipe.spawn(f"throughput-{tag}", args)
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": gid,
                          "enable.auto.commit": False})
        stop = threading.Event()

        def scrape() -> None:  # what Prometheus does, every second
            while not stop.wait(1.0):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()

        if instrumented:
            threading.Thread(target=scrape, daemon=True).start()
        samples: list[tuple[float, int]] = []
        try:
            while True:
                off = probe.committed([TopicPartition(topic, 0)], timeout=5)[0].offset
                samples.append((time.perf_counter(), off))
                if off >= total:
                    break
                if svc.proc.poll() is not None:
                    raise RuntimeError(f"throughput group died: {pipe.log_tail(svc)}")
                time.sleep(0.05)
            # From the first commit seen to the last: start-up and group join are left
            # out. A fast group can finish while a committed() call waits on the
            # coordinator: then too few commits were seen to time it.
            seen = [(t, o) for t, o in samples if o > 0]
            if len(seen) < 4 or seen[0][1] > total // 2:
                first = seen[0][1] if seen else None
                raise _Untimed(f"{len(seen)} commits seen, the first at offset {first}")
            (t0, o0), (t1, o1) = seen[0], seen[-1]
            return (o1 - o0) / max(1e-6, t1 - t0)
        finally:
            stop.set()
            probe.close()
            pipe.stop_service(svc)

    # Bare and group runs take turns, each twice, so drift on the machine (page cache,
    # the broker's JIT and GC) reaches both alike; single runs vary by +-20% here.
    runs: dict[str, list[float]] = {"instrumented": [], "uninstrumented": [], "bare": []}
    # The first group to read the backlog ran ~25% slower than later ones (round 1:
    # 10,572 and 12,806/s, round 2: 16,094 and 16,827/s), which made whichever variant
    # went first look slower: one untimed group run warms the broker up first.
    log.info("[%s] warm-up group run (not timed)", sc.name)
    with contextlib.suppress(_Untimed):
        group_run("warm-up", False)
    for k in range(ROUNDS):
        log.info("[%s] bare consumer reading %d alerts (run %d)", sc.name, total, k + 1)
        runs["bare"].append(_bare_consume(bootstrap, topic, total))
        for tag, instr in (("instrumented", True), ("uninstrumented", False))[:: 1 - 2 * (k % 2)]:
            log.info("[%s] 100-filter group on the backlog (%s, run %d)", sc.name, tag, k + 1)
            for attempt in range(3):
                try:
                    runs[tag].append(group_run(f"{tag}-{k}-{attempt}", instr))
                    break
                except _Untimed as exc:
                    log.warning("[%s] throughput run not timed (%s); again", sc.name, exc)
            else:
                raise RuntimeError("the group's throughput could not be timed in 3 tries")
    out["bare"] = statistics.mean(runs["bare"])
    out["runs_bare"] = runs["bare"]  # type: ignore[assignment]
    out["group_instrumented"] = statistics.mean(runs["instrumented"])
    out["group_uninstrumented"] = statistics.mean(runs["uninstrumented"])
    out["runs_instrumented"] = runs["instrumented"]  # type: ignore[assignment]
    out["runs_uninstrumented"] = runs["uninstrumented"]  # type: ignore[assignment]
    return out


@dataclass
class AlertingResult:
    """The alerting check at full scale: quiet while healthy, pages a frozen group."""

    interval: float = 39.0
    alerts_per_visit: int = 10_000
    healthy_visits: int = 0
    healthy_alerts: list[str] = field(default_factory=list)
    frozen_group: str = ""
    freeze_at: float = 0.0
    alert_after: float | None = None
    other_groups_alerted: list[str] = field(default_factory=list)
    resolved_after: float | None = None
    lag_series_gaps: int = 0
    notes: list[str] = field(default_factory=list)


def run_alerting(workdir: Path, healthy_visits: int = 10, interval: float = 39.0,
                 alerts_per_visit: int = 10_000) -> AlertingResult:
    """Full-scale pipeline with real Prometheus + Alertmanager: a healthy run of
    ``healthy_visits`` visits must page nothing; then one group is frozen (SIGSTOP) and
    the time until its lag alert reaches Alertmanager is measured; SIGCONT resolves it."""
    import signal as sig

    from broker.local_kafka import free_port
    from monitoring.local import start_monitoring

    res = AlertingResult(interval=interval, alerts_per_visit=alerts_per_visit)
    shutil.rmtree(workdir / "alerting", ignore_errors=True)
    cfg = PipelineConfig(groups=5, filters=100, monitor_processes=5,
                         workdir=workdir / "alerting")
    pipe = LocalPipeline(cfg)
    mon = None
    try:
        log.info("[alerting] starting Kafka, services, Prometheus and Alertmanager")
        pipe.start_kafka()
        groups = pipe.start_groups()
        pipe.start_monitors()
        pipe.start_lag_exporter()
        mon = start_monitoring(pipe.workdir / "monitoring", pipe.targets(),
                               prometheus_port=free_port(), alertmanager_port=free_port(),
                               visit_interval=interval)
        time.sleep(8)
        total = healthy_visits + 3
        pipe.start_producer(["--profile", "realistic", "--alerts-per-visit",
                             str(alerts_per_visit), "--interval", str(interval), "--visits",
                             str(total)])
        victim = groups[2]
        res.frozen_group = victim.labels["group"]
        done: dict[int, set[str]] = {}
        starts: dict[int, float] = {}
        while res.freeze_at == 0.0:
            ev = pipe.next_event(0.5)
            pipe.raise_if_failed()
            if ev is None:
                continue
            f = parse_fields(ev.line)
            if ev.service == "producer" and f.get("status") == "start":
                v = int(f["visit"])
                starts[v] = float(f["time"])
                log.info("[alerting] visit %d started", v)
                if v == healthy_visits + 1:
                    res.healthy_visits = sum(1 for g in done.values() if len(g) == 5)
                    res.healthy_alerts = sorted({
                        f"{e['alertname']}{{group={e['labels'].get('group', '')}}}"
                        for e in mon.notifications() if e["status"] == "firing"})
                    time.sleep(2.0)  # freeze mid-visit, while alerts are arriving
                    victim.proc.send_signal(sig.SIGSTOP)
                    res.freeze_at = time.time()
                    log.info("[alerting] froze %s", res.frozen_group)
            elif ev.service.startswith("group") and "visit" in f:
                done.setdefault(int(f["visit"]), set()).add(ev.service)
        try:
            mon.wait_for_alert("MiniBrokerGroupLagging", {"group": res.frozen_group},
                               timeout=4 * interval)
            res.alert_after = time.time() - res.freeze_at
            log.info("[alerting] lag alert after %.1f s", res.alert_after)
        except TimeoutError as exc:
            res.notes.append(str(exc))
        res.other_groups_alerted = sorted({
            f"{e['alertname']}{{group={e['labels'].get('group', '')}}}"
            for e in mon.notifications() if e["status"] == "firing"
            and e["labels"].get("group", res.frozen_group) != res.frozen_group})
        # The frozen group's lag series must never vanish while it is frozen.
        rng = mon.query(
            f'count_over_time(minibroker_consumer_group_lag_messages'
            f'{{group="{res.frozen_group}"}}[{int(time.time() - res.freeze_at) + 1}s])')
        if not rng:
            res.lag_series_gaps = 1
        victim.proc.send_signal(sig.SIGCONT)
        thawed = time.time()
        try:
            mon.wait_for_alert("MiniBrokerGroupLagging", {"group": res.frozen_group},
                               timeout=6 * interval, status="resolved")
            res.resolved_after = time.time() - thawed
        except TimeoutError as exc:
            res.notes.append(str(exc))
    finally:
        for svc in pipe.services:
            if svc.proc.poll() is None:
                svc.proc.send_signal(sig.SIGCONT)
        if mon is not None:
            mon.stop()
        pipe.stop()
        shutil.rmtree(workdir / "alerting", ignore_errors=True)
    return res


def render_alerting(res: AlertingResult) -> list[str]:
    """Markdown lines for the alerting check."""
    interval = res.interval
    bar = 2 * interval
    alert = f"{res.alert_after:.1f} s" if res.alert_after is not None else "never"
    resolved = f"{res.resolved_after:.1f} s" if res.resolved_after is not None else "never"
    ok = res.alert_after is not None and res.alert_after <= bar and not res.healthy_alerts
    return [
        "### Alerting at full scale (real Prometheus and Alertmanager)", "",
        f"{res.alerts_per_visit:,} realistic alerts per {interval:g}-s visit, 5 groups of 20 "
        "filters, 100 consumers, the lag exporter, Prometheus and Alertmanager with the rules of "
        "`monitoring/rules/`.", "",
        f"- Healthy run: {res.healthy_visits} visits completed by every group; alerts that "
        f"fired: {', '.join(res.healthy_alerts) or 'none'}.",
        f"- Froze `{res.frozen_group}` (SIGSTOP) 2 s into the next visit: "
        f"`MiniBrokerGroupLagging` for it reached Alertmanager after **{alert}** "
        f"(bar: within 2 visit intervals = {bar:g} s).",
        f"- Alerts for any other group meanwhile: {', '.join(res.other_groups_alerted) or 'none'}.",
        f"- Its lag series stayed present while frozen: "
        f"{'yes' if not res.lag_series_gaps else 'NO'}.",
        f"- After SIGCONT the alert resolved after {resolved}.",
        f"- Verdict: {'bar met' if ok else 'bar NOT met'}.",
        *[f"- Note: {n}" for n in res.notes], "",
    ]


SCENARIOS = {
    "dmtn081": Scenario("dmtn081", "DMTN-081 at full scale: 10,000 realistic alerts per 39-s "
                        "visit, 5 groups of 20 filters, 100 consumers", 10_000, 5, 5,
                        throughput=True),
    "one-group": Scenario("one-group", "One group of 100 filters, 10,000 realistic alerts per "
                          "39-s visit, 100 consumers", 10_000, 1, 3),
    "peak": Scenario("peak", "Peak: 40,000 realistic alerts per 39-s visit, 5 groups of 20, "
                     "100 consumers", 40_000, 5, 3),
}


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    java = java.splitlines()[0] if java else "java ?"
    from confluent_kafka import libversion

    from broker.local_kafka import KAFKA_VERSION

    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, {platform.platform()}, "
            f"Python {platform.python_version()}, {java}, Apache Kafka {KAFKA_VERSION} "
            f"(KRaft, one local broker), librdkafka {libversion()[0]}")


def render(results: list[ScenarioResult], command: str,
           alerting: AlertingResult | None = None, memory: str | None = None) -> str:
    """The benchmark section of BENCHMARKS.md (``memory``: the machine's memory state,
    :meth:`broker.hostmem.SteadyMemory.describe`)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [START, "## Full-scale pipeline benchmark (`minibroker bench`)", "",
           f"- Date: {now}", f"- Machine: {_machine()}", f"- Command: `{command}`",
           *([f"- Memory: {memory}"] if memory else []), "",
           "Times are seconds. *group visit* = first alert of the visit consumed -> last "
           "output acknowledged (per group); *end-to-end* = the producer's last "
           "acknowledgement -> the last filtered alert received by every consumer "
           "(negative when that delivery came first: caps reached, or no later alert "
           "passed); *latency p50/p99* = alert produced -> received, over every "
           "delivered alert of the visit; *peak lag* = most input messages any group was "
           "behind during the visit; *lag at next* = messages behind just before the next "
           "visit started; CPU in cores used (2 available).", ""]
    for res in results:
        sc = res.scenario
        out += [f"### {sc.title}", ""]
        out.append("| visit | send | group visit (max / per group) | end-to-end | latency "
                   "p50 / p99 | peak lag | lag at next | CPU cores (kafka/producer/groups/"
                   "monitors) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in res.rows:
            per = " ".join(f"{r.group_seconds.get(g, float('nan')):.2f}" for g in res.groups)
            worst = max(r.group_seconds.values(), default=float("nan"))
            e2e = f"{r.end_to_end:.2f}" if r.end_to_end is not None else "n/a"
            cpu = "/".join(f"{r.cpu_by.get(k, 0.0):.2f}"
                           for k in ("kafka", "producer", "groups", "monitors"))
            out.append(
                f"| {r.visit} | {r.send_seconds:.2f} | {worst:.2f} ({per}) | {e2e} | "
                f"{_percentile(r.latencies, 0.5):.2f} / {_percentile(r.latencies, 0.99):.2f} "
                f"| {max(r.peak_lag.values(), default=0)} | "
                f"{max(r.lag_at_next.values(), default=0)} | {r.cpu_cores:.2f} ({cpu}) |")
        out.append("")
        out += _verdict(res)
        if res.throughput:
            t = res.throughput
            ratio = t["group_instrumented"] / t["bare"]
            overhead = 1 - t["group_instrumented"] / t["group_uninstrumented"]
            out += [
                "",
                "**Throughput on the same topic, same run** (backlog of "
                f"{sc.alerts_per_visit * sc.visits:,} realistic alerts, nothing else running):",
                "",
                "| reader | alerts/s |", "|---|---|",
                f"| bare confluent-kafka consumer (read_committed, value touched) | "
                f"{t['bare']:.0f} (runs: "
                + ", ".join(f"{x:.0f}" for x in t["runs_bare"]) + ") |",  # type: ignore[attr-defined]
                f"| filter group, 100 filters, instrumented, scraped every 1 s | "
                f"{t['group_instrumented']:.0f} (runs: "
                + ", ".join(f"{x:.0f}" for x in t["runs_instrumented"]) + ") |",  # type: ignore[attr-defined]
                f"| filter group, 100 filters, `--no-instrumentation` | "
                f"{t['group_uninstrumented']:.0f} (runs: "
                + ", ".join(f"{x:.0f}" for x in t["runs_uninstrumented"]) + ") |",  # type: ignore[attr-defined]
                "",
                f"Group / bare = {ratio:.2f} (bar: >= 0.5). Instrumentation overhead = "
                f"{overhead * 100:+.1f}% of filter throughput (bar: < 2%). Runs take turns "
                f"(bare, then the group with and without instrumentation, {ROUNDS} times, the "
                "group's order swapped each time) after one untimed group run, to spread "
                "drift over all three; each reads the whole backlog from the start with a "
                "new consumer group.",
            ]
        out += [f"- Note: {n}" for n in res.notes]
        out.append("")
    if alerting is not None:
        out += render_alerting(alerting)
    out.append(END)
    return "\n".join(out)


def _verdict(res: ScenarioResult) -> list[str]:
    rows = res.rows
    if not rows:
        return ["No visit completed."]
    late = []
    for a, b in itertools.pairwise(rows):
        done = max(a.group_done.values(), default=float("inf"))
        if done > b.start or a.last_received > b.start:
            late.append(a.visit)
    lags = [max(r.lag_at_next.values(), default=0) for r in rows]
    growing = len(lags) >= 3 and all(x < y for x, y in itertools.pairwise(lags)) \
        and lags[-1] > 0
    lat = [x for r in rows for x in r.latencies]
    e2e = [r.end_to_end for r in rows if r.end_to_end is not None]
    keeps = not late and not growing and len(rows) == res.scenario.visits
    return [
        f"Verdict: {'keeps up' if keeps else 'does NOT keep up'} - "
        f"{len(rows)} of {res.scenario.visits} visits completed; visits finished after the "
        f"next one started: {late or 'none'}; lag before each next visit: {lags}; "
        f"end-to-end max {max(e2e, default=float('nan')):.2f} s; latency p99 over all "
        f"{len(lat)} delivered alerts {_percentile(lat, 0.99):.2f} s.",
    ]


def write_report(section: str, path: Path) -> None:
    """Replace the bench section of ``path`` (creating the file if needed)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker bench``."""
    option(parser, "--scenarios", default="dmtn081,one-group,peak,alerting",
           help=f"comma-separated, from {', '.join(SCENARIOS)}, alerting")
    option(parser, "--visits", type=positive_int, dest="bench_visits",
           help="override the visits of every scenario")
    option(parser, "--alerts-per-visit", type=positive_int, dest="bench_alerts",
           help="override alerts per visit (for a quick look; not the benchmark)")
    option(parser, "--interval", type=positive_float, dest="bench_interval",
           help="override the visit interval")
    option(parser, "--output", default="BENCHMARKS.md", type=Path, help="report file")
    option(parser, "--workdir", default="/tmp/minibroker-bench", type=Path,
           help="Kafka data and logs (1.3 GB per full-scale visit; removed after each run)")
    hostmem.add_option(parser)


def _command(args: argparse.Namespace) -> str:
    flags = (("--scenarios", args.scenarios), ("--visits", args.bench_visits),
             ("--alerts-per-visit", args.bench_alerts), ("--interval", args.bench_interval))
    steady = " --steady-memory" if getattr(args, "steady_memory", False) else ""
    return "minibroker bench " + " ".join(f"{k} {v}" for k, v in flags if v) + steady


def main(args: argparse.Namespace) -> int:
    """Run the full-scale benchmark and write BENCHMARKS.md."""
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS and n != "alerting"]
    if unknown:
        raise UsageError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    results: list[ScenarioResult] = []
    alerting: AlertingResult | None = None
    with hostmem.memory_state(getattr(args, "steady_memory", False)) as state:
        memory = state.describe()
        for name in names:
            if name == "alerting":
                alerting = run_alerting(args.workdir, healthy_visits=args.bench_visits or 10,
                                        interval=args.bench_interval or 39.0,
                                        alerts_per_visit=args.bench_alerts or 10_000)
                print("\n".join(render_alerting(alerting)), flush=True)
                write_report(render(results, _command(args), alerting, memory), args.output)
                continue
            sc = SCENARIOS[name]
            if args.bench_visits:
                sc.visits = args.bench_visits
            if args.bench_alerts:
                sc.alerts_per_visit = args.bench_alerts
            if args.bench_interval:
                sc.interval = args.bench_interval
            res = run_scenario(sc, args.workdir)
            results.append(res)
            print("\n".join(_verdict(res)), flush=True)
            # Write after every scenario, so a later failure loses nothing measured.
            write_report(render(results, _command(args), alerting, memory), args.output)
    command = _command(args)
    section = render(results, command, alerting, memory)
    write_report(section, args.output)
    print(section)
    return 0
