"""Run a whole local pipeline as processes: Kafka, filter groups, monitors, exporter, ...

Used by ``minibroker demo`` and ``minibroker bench``. Every service runs as its own
``minibroker`` subprocess, exactly as an operator would start it; their stdout lines are
collected with arrival times into one queue, their stderr goes to log files in the work
directory. :meth:`LocalPipeline.stop` (also on Ctrl-C) ends everything it started, in
reverse order.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from broker.filter_group import default_group_id
from broker.local_kafka import LocalKafka, free_port

__all__ = ["Event", "LocalPipeline", "PipelineConfig", "Service", "parse_fields"]

log = logging.getLogger(__name__)

# A value runs to the next space or ", " (so "per_filter:20,3,0" keeps its commas).
_FIELD = re.compile(r"(\w+):([^\s,]+(?:,[^\s,]+)*)")


def parse_fields(line: str) -> dict[str, str]:
    """``key:value`` pairs of a service's status line."""
    return dict(_FIELD.findall(line))


@dataclass(frozen=True)
class Event:
    """One stdout line of a service, with the time it arrived."""

    time: float
    service: str
    line: str


@dataclass
class Service:
    """A started ``minibroker`` subprocess."""

    name: str
    proc: subprocess.Popen[str]
    metrics_port: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """What to start."""

    groups: int = 5
    filters: int = 100
    monitor_processes: int = 5
    topic: str = "full-stream"
    cap: int = 20
    kafka_port: int = 0
    workdir: Path | None = None
    metrics: bool = True
    log_alerts: bool = False
    visit_idle: float = 2.0
    kafka_heap: str = "1g"


def _group_ranges(filters: int, groups: int) -> list[tuple[int, int]]:
    if groups <= 0 or filters <= 0 or groups > filters:
        raise ValueError(f"cannot split {filters} filters into {groups} groups")
    size, extra = divmod(filters, groups)
    out, first = [], 1
    for g in range(groups):
        last = first + size - 1 + (1 if g < extra else 0)
        out.append((first, last))
        first = last + 1
    return out


class LocalPipeline:
    """A local Kafka plus the services of the pipeline, as subprocesses."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self._own_workdir = cfg.workdir is None
        self.workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="minibroker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka: LocalKafka | None = None
        self.bootstrap = ""
        self.services: list[Service] = []
        self.events: queue.Queue[Event] = queue.Queue()
        self._logs: list[IO[str]] = []
        self.group_ranges = _group_ranges(cfg.filters, cfg.groups)

    # -- start ---------------------------------------------------------------------------
    def start_kafka(self, bootstrap: str | None = None) -> str:
        """Start a local Kafka (or use ``bootstrap``); create every topic the run needs."""
        from broker import kafka_io

        if bootstrap:
            self.bootstrap = bootstrap
        else:
            port = self.cfg.kafka_port or free_port()
            self.kafka = LocalKafka(self.workdir / "kafka", port=port,
                                    controller_port=free_port(), heap=self.cfg.kafka_heap,
                                    log_level="warn")
            self.kafka.start()
            self.bootstrap = self.kafka.bootstrap
        names = [f"Filter{i:03d}" for i in range(1, self.cfg.filters + 1)]
        kafka_io.ensure_topics(self.bootstrap, [self.cfg.topic, *names,
                                                kafka_io.deadletter_topic(self.cfg.topic)])
        kafka_io.ensure_topics(self.bootstrap, [kafka_io.STATE_TOPIC],
                               config={"cleanup.policy": "compact"})
        return self.bootstrap

    def spawn(self, name: str, args: Sequence[str], metrics_port: int = 0,
              labels: dict[str, str] | None = None) -> Service:
        """Start ``minibroker ARGS`` named ``name``; its stdout lines become events."""
        err = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 - closed in stop()
        self._logs.append(err)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker", *args], stdout=subprocess.PIPE, stderr=err,
            stdin=subprocess.DEVNULL, text=True, env=env, start_new_session=True,
        )
        svc = Service(name, proc, metrics_port, labels or {})
        self.services.append(svc)
        threading.Thread(target=self._pump, args=(svc,), daemon=True,
                         name=f"pump-{name}").start()
        return svc

    def _pump(self, svc: Service) -> None:
        assert svc.proc.stdout is not None
        for line in svc.proc.stdout:
            self.events.put(Event(time.time(), svc.name, line.rstrip("\n")))

    def _port(self) -> int:
        return free_port() if self.cfg.metrics else 0

    def start_groups(self, extra: Sequence[str] = ()) -> list[Service]:
        """One filter group per range of filters."""
        out = []
        for first, last in self.group_ranges:
            port = self._port()
            group = default_group_id(first, last)
            out.append(self.spawn(
                f"group-{first:03d}-{last:03d}",
                ["filter", self.bootstrap, self.cfg.topic, str(first), str(last),
                 "--metrics-port", str(port), "--cap", str(self.cfg.cap),
                 "--visit-idle", str(self.cfg.visit_idle), *extra],
                port, {"group": group},
            ))
        return out

    def start_monitors(self) -> list[Service]:
        """One consumer per filter topic, spread over a few processes."""
        names = [f"Filter{i:03d}" for i in range(1, self.cfg.filters + 1)]
        procs = max(1, min(self.cfg.monitor_processes, len(names)))
        chunks = [names[i::procs] for i in range(procs)]
        out = []
        for k, chunk in enumerate(chunks):
            port = self._port()
            args = ["monitor", self.bootstrap, *chunk, "--metrics-port", str(port)]
            if self.cfg.log_alerts:
                args.append("--log-alerts")
            out.append(self.spawn(f"monitors-{k + 1}", args, port))
        return out

    def start_lag_exporter(self, poll_interval: float = 2.0) -> Service:
        """The lag exporter watching every consumer group."""
        port = self._port() or free_port()
        # Filter groups only: end consumers auto-commit every 5 s, which at short demo
        # intervals would read as lag.
        return self.spawn("lag-exporter", ["lag", self.bootstrap, "--metrics-port", str(port),
                                           "--poll-interval", str(poll_interval),
                                           "--groups", "minibroker-filters-.*"], port)

    def start_producer(self, args: Sequence[str]) -> Service:
        """The producer, with ``args`` after ``produce BROKER TOPIC``."""
        port = self._port()
        return self.spawn("producer", ["produce", self.bootstrap, self.cfg.topic, *args,
                                       "--metrics-port", str(port)], port)

    def targets(self) -> dict[str, list[tuple[str, int, dict[str, str]]]]:
        """Prometheus targets by service kind, for monitoring.local."""
        kinds = {"producer": "producer", "group": "filter", "monitors": "consumer",
                 "lag": "lag"}
        out: dict[str, list[tuple[str, int, dict[str, str]]]] = {}
        for svc in self.services:
            if not svc.metrics_port:
                continue
            kind = next((v for k, v in kinds.items() if svc.name.startswith(k)), None)
            if kind:
                out.setdefault(kind, []).append(("127.0.0.1", svc.metrics_port, svc.labels))
        return out

    # -- watch ---------------------------------------------------------------------------
    def failed(self) -> list[Service]:
        """Services that exited with an error."""
        return [s for s in self.services if s.proc.poll() not in (None, 0)]

    def raise_if_failed(self) -> None:
        """Raise RuntimeError naming the first service that exited with an error."""
        bad = self.failed()
        if bad:
            svc = bad[0]
            raise RuntimeError(f"{svc.name} exited with code {svc.proc.returncode}: "
                               f"{self.log_tail(svc, 5)}")

    def next_event(self, timeout: float) -> Event | None:
        """The next stdout line of any service, or None after ``timeout``."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def log_tail(self, svc: Service, lines: int = 5) -> str:
        """The last lines of a service's stderr log."""
        path = self.workdir / f"{svc.name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- stop ----------------------------------------------------------------------------
    def stop_service(self, svc: Service, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if svc.proc.poll() is None:
            try:
                svc.proc.send_signal(signal.SIGTERM)
                svc.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop every service (newest first), then Kafka; remove a temporary workdir."""
        for svc in reversed(self.services):
            if svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for svc in reversed(self.services):
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()
        if self.kafka is not None:
            self.kafka.stop()
        for fh in self._logs:
            fh.close()
        if self._own_workdir and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
