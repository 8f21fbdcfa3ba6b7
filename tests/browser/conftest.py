"""Browser-test fixtures: headless Chromium options and a live Prometheus with data.

``live_stack`` (session) starts, without Kafka:

* a *fake pipeline*: the real metric classes of :mod:`monitoring.metrics` (one producer,
  5 filter groups x 20 filters, one end consumer, the lag exporter), each served on its
  own ``/metrics`` port like the real services, and changed every ``VISIT`` seconds as if
  a visit had been produced, filtered and delivered. Group 5 is slow and falls behind,
  so lag statuses, cap hits and alerts all have something to show;
* a real Prometheus (Debian's ``prometheus``) scraping those endpoints every second with
  the project's alert rules, rendered for the fake visit interval;
* a real Alertmanager (``prometheus-alertmanager``) that Prometheus sends alerts to.

Set ``MINIBROKER_TEST_PROMETHEUS`` to the binary to use another Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server

from monitoring.metrics import (
    ConsumerMetrics,
    FilterGroupMetrics,
    LagMetrics,
    ProducerMetrics,
    make_registry,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "rules" / "minibroker.yml"
CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--window-size=1400,1000")

VISIT = 2.0  # seconds between fake visits (the rules are rendered for this interval)
GROUPS = [(1 + 20 * k, 20 + 20 * k) for k in range(5)]
GROUP_IDS = [f"minibroker-filters-{a:03d}-{b:03d}" for a, b in GROUPS]
ALERTS_PER_VISIT = 1000
CAP = 20


def pytest_setup_options() -> Any:
    """dash[testing] hook: the Chromium binary and flags for this network-less machine."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    return options


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakePipeline:
    """The real metric classes, served like the real services, driven by a clock."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.registries: dict[str, CollectorRegistry] = {}
        self.targets: list[dict[str, Any]] = []
        self._servers: list[Any] = []
        self.visit = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-pipeline", daemon=True)

        self.producer = ProducerMetrics(self._registry("producer", "producer"), "full-stream")
        self.groups = []
        for (first, last), gid in zip(GROUPS, GROUP_IDS, strict=True):
            names = [f"Filter{i:03d}" for i in range(first, last + 1)]
            self.groups.append(FilterGroupMetrics(self._registry(gid, "filter", gid), gid,
                                                  names))
        self.consumer = ConsumerMetrics(self._registry("consumer", "consumer"))
        self.lag = LagMetrics(self._registry("lag", "lag", process=False))
        self.backlog = dict.fromkeys(GROUP_IDS, 0.0)

    def _registry(self, name: str, service: str, group: str | None = None,
                  process: bool = True) -> CollectorRegistry:
        registry = make_registry(process=process)
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self._servers.append(server)
        labels = {"service": service}
        if group:
            labels["group"] = group
        self.targets.append({"targets": [f"127.0.0.1:{server.server_port}"],
                             "labels": labels})
        self.registries[name] = registry
        return registry

    def start(self) -> None:
        """Publish the first visit now and one every ``VISIT`` seconds."""
        self.step()
        self._thread.start()

    def close(self) -> None:
        """Stop the clock and the HTTP servers."""
        self.stop.set()
        self._thread.join(5)
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def _loop(self) -> None:
        while not self.stop.wait(VISIT):
            self.step()

    def step(self) -> None:
        """One visit: produced, filtered by every group, delivered, lag measured."""
        self.visit += 1
        v, now, rng = self.visit, time.time(), self.rng
        p = self.producer
        p.alerts_produced.inc(ALERTS_PER_VISIT)
        p.visits_produced.inc()
        p.visit_produce_seconds.observe(0.2 + 0.1 * rng.random())
        p.last_visit.set(v)
        p.last_visit_time.set(now)
        for g, metrics in enumerate(self.groups):
            slow = g == len(self.groups) - 1
            metrics.alerts_consumed.inc(ALERTS_PER_VISIT)
            for i, name in enumerate(metrics.passed):
                # Pass counts from "rare" to "most of the visit", so the cap binds for some.
                scale = (0.5, 3, 12, 40)[(i + g) % 4]
                passed = max(0, int(rng.gauss(scale, scale / 3)))
                delivered = min(passed, CAP)
                metrics.passed[name].inc(delivered)
                metrics.capped[name].inc(passed - delivered)
                metrics.visit_passed[name].set(passed)
                metrics.visit_delivered[name].set(delivered)
                if slow and i == 3:
                    metrics.errors[name].inc()
                if delivered:
                    hist = self.consumer.end_to_end(name)
                    for _ in range(min(delivered, 5)):
                        hist.observe((2.5 if slow else 0.4) * (0.5 + rng.random()))
                    self.consumer.received(name).inc(delivered)
            seconds = (1.2 if slow else 0.4) * VISIT * (0.8 + 0.4 * rng.random())
            metrics.visit_seconds.observe(seconds)
            metrics.last_visit.set(v)
            metrics.last_visit_seconds.set(seconds)
            metrics.last_visit_time.set(now)
            metrics.visits_completed.inc()
            gid = metrics.group
            # The slow group falls further behind every visit; the others catch up.
            self.backlog[gid] = self.backlog[gid] + 0.2 * ALERTS_PER_VISIT if slow else 0.0
            self.lag.lag_messages.labels(group=gid, topic="full-stream",
                                         partition="0").set(self.backlog[gid])
            lag_seconds = self.backlog[gid] / ALERTS_PER_VISIT * VISIT
            self.lag.lag_seconds.labels(group=gid).set(lag_seconds)
            self.lag.set_status(gid, 0 if not slow else (1 if lag_seconds < 2 * VISIT else 2))
            self.lag.members.labels(group=gid).set(1)
        self.lag.polls.inc()
        self.lag.last_poll_time.set(now)


def _render_rules(dest: Path) -> Path:
    """The project's alert rules with the visit interval set to the fake ``VISIT``."""
    text = RULES.read_text()
    text, n = re.subn(r"vector\(39\)", f"vector({VISIT:g})", text)
    if not n:
        raise RuntimeError(f"{RULES} no longer sets the interval with vector(39); "
                           "update tests/browser/conftest.py")
    # `for:` durations are written for 39-s visits; scale them like the interval.
    text = re.sub(r"for: (\d+)s", lambda m: f"for: {int(m.group(1)) * VISIT / 39:g}s", text)
    out = dest / "minibroker.yml"
    out.write_text(text)
    return out


@dataclass
class LiveStack:
    """A running fake pipeline + Prometheus + Alertmanager."""

    prometheus_url: str
    alertmanager_url: str
    pipeline: FakePipeline
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises on an error answer."""
        r = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr},
                         timeout=5)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr!r}: {body.get('error')}")
        return list(body["data"]["result"])


def _wait(what: str, check: Any, timeout: float, procs: list[subprocess.Popen[bytes]],
          logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: process exited {proc.returncode}:\n"
                                   + log.read_text()[-2000:])
        with contextlib.suppress(requests.RequestException, KeyError, ValueError):
            if check():
                return
        time.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Fake pipeline metrics in a real Prometheus with a real Alertmanager."""
    prom_bin = os.environ.get("MINIBROKER_TEST_PROMETHEUS") or shutil.which("prometheus")
    am_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not prom_bin or not am_bin:
        pytest.skip("needs Debian's prometheus and prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("live")
    pipeline = FakePipeline()
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def spawn(name: str, argv: list[str]) -> None:
        log = tmp / f"{name}.log"
        logs.append(log)
        procs.append(subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                      cwd=tmp))

    try:
        pipeline.start()
        am_port, prom_port = free_port(), free_port()
        (tmp / "alertmanager.yml").write_text(
            "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\n"
            "receivers:\n  - name: none\n")
        spawn("alertmanager", [am_bin, f"--config.file={tmp / 'alertmanager.yml'}",
                               f"--storage.path={tmp / 'am-data'}",
                               f"--web.listen-address=127.0.0.1:{am_port}",
                               "--cluster.listen-address="])
        (tmp / "targets.json").write_text(json.dumps(pipeline.targets))
        rules = _render_rules(tmp)
        (tmp / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "minibroker", "honor_labels": True,
                                "file_sd_configs": [{"files": [str(tmp / "targets.json")]}]}],
        }))
        spawn("prometheus", [prom_bin, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"])
        stack = LiveStack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}",
                          pipeline, procs)

        def visits_seen() -> bool:
            # Every group has been scraped at three different visits.
            return len(stack.query("changes(minibroker_filter_last_visit[1m]) >= 2")) == 5

        _wait("Prometheus to scrape three visits", visits_seen, 40, procs, logs)
        _wait("Alertmanager to hold a firing alert",
              lambda: bool(requests.get(f"{stack.alertmanager_url}/api/v2/alerts",
                                        timeout=2).json()), 30, procs, logs)
        yield stack
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        pipeline.close()
