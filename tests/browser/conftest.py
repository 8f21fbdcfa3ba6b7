"""Browser-test fixtures: headless Chromium options and a real pipeline in a real Prometheus.

``live_stack`` (session) runs the pipeline as an operator would, every service a
``minibroker`` subprocess started through :class:`broker.pipeline.LocalPipeline`:

* the session's real Kafka (``kafka_bootstrap``: started by tests/conftest.py, or
  ``MINIBROKER_TEST_BOOTSTRAP``), with a topic and consumer group ids of this run only,
  so reruns against a running Kafka do not mix;
* 5 filter groups of 20 catalogue filters (``Filter001`` ... ``Filter100``), one monitor
  process reading all 100 filter topics (the end consumer), the lag exporter with
  thresholds for the short visits, and the producer (``dmtn081`` alerts, 1,000 every
  ``VISIT`` seconds: 30-odd filters hit the cap of 20 every visit);
* real Prometheus and Alertmanager from :func:`monitoring.local.start_monitoring`, with the
  project's rules rendered for ``VISIT``-second visits.

Once every group has filtered three visits, the last group is frozen with SIGSTOP: its
lag climbs through WARN and ERR, ``MiniBrokerGroupLagging`` fires for it and reaches
Alertmanager (the fixture waits for that), so the status colours, the alert list and the
``ALERTS`` series all have something real to show.

``MINIBROKER_TEST_PROMETHEUS`` (or ``MINIBROKER_PROMETHEUS``) and
``MINIBROKER_ALERTMANAGER`` name other binaries than Debian's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.pipeline import LocalPipeline, PipelineConfig, Service

CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--window-size=1400,1000")

VISIT = 3.0  # seconds between visits (the rules and the lag exporter are set for this)
ALERTS_PER_VISIT = 1000
GROUPS = [(1 + 20 * k, 20 + 20 * k) for k in range(5)]
RUN = uuid.uuid4().hex[:6]
# The default ids (minibroker-filters-001-020) with this run's suffix: a rerun against a
# running Kafka must not find the last run's committed offsets under the same id.
GROUP_IDS = [f"minibroker-filters-{a:03d}-{b:03d}-{RUN}" for a, b in GROUPS]
GROUP_REGEX = f"minibroker-filters-.*-{RUN}"
FROZEN = GROUP_IDS[-1]


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


@dataclass
class LiveStack:
    """A running pipeline (one group frozen) + Prometheus + Alertmanager."""

    prometheus_url: str
    alertmanager_url: str
    pipeline: LocalPipeline
    monitoring: Any  # monitoring.local.Monitoring

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises on an error answer (a parse error included)."""
        return list(self.monitoring.query(expr))

    def by_group(self, expr: str) -> dict[str, float]:
        """``{group: value}`` of an instant query."""
        return {r["metric"].get("group", ""): float(r["value"][1]) for r in self.query(expr)}


def wait_for(what: str, check: Callable[[], Any], timeout: float,
             pipe: LocalPipeline | None = None) -> Any:
    """Poll ``check`` until it is truthy; fail early if a pipeline service died."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if pipe is not None:
            pipe.raise_if_failed()
        # Prometheus may still be starting or between rule evaluations.
        with contextlib.suppress(OSError, RuntimeError, KeyError, ValueError):
            last = check()
            if last:
                return last
        time.sleep(0.5)
    tails = ""
    if pipe is not None:
        tails = "\n".join(f"--- {s.name}: {pipe.log_tail(s, 5)}" for s in pipe.services)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}\n"
                       + tails)


def _start_groups(pipe: LocalPipeline) -> list[Service]:
    """LocalPipeline.start_groups, with this run's group ids."""
    out = []
    for (first, last), gid in zip(pipe.group_ranges, GROUP_IDS, strict=True):
        port = free_port()
        out.append(pipe.spawn(
            f"group-{first:03d}-{last:03d}",
            ["filter", pipe.bootstrap, pipe.cfg.topic, str(first), str(last),
             "--group-id", gid, "--metrics-port", str(port), "--cap", str(pipe.cfg.cap),
             "--visit-idle", str(pipe.cfg.visit_idle)],
            port, {"group": gid}))
    return out


def _start_lag_exporter(pipe: LocalPipeline) -> Service:
    """The lag exporter on this run's groups, its WARN/ERR/STALL set for ``VISIT``."""
    port = free_port()
    return pipe.spawn("lag-exporter", [
        "lag", pipe.bootstrap, "--metrics-port", str(port), "--poll-interval", "1",
        "--groups", GROUP_REGEX, "--warn-seconds", str(VISIT / 2),
        "--err-seconds", str(VISIT), "--stall-after", str(3 * VISIT)], port)


@contextlib.contextmanager
def _binaries_from_test_env() -> Iterator[None]:
    """MINIBROKER_TEST_PROMETHEUS (this suite's older name) as monitoring.local reads it."""
    test_bin = os.environ.get("MINIBROKER_TEST_PROMETHEUS")
    old = os.environ.get("MINIBROKER_PROMETHEUS")
    if test_bin:
        os.environ["MINIBROKER_PROMETHEUS"] = test_bin
    try:
        yield
    finally:
        if test_bin:
            if old is None:
                os.environ.pop("MINIBROKER_PROMETHEUS", None)
            else:
                os.environ["MINIBROKER_PROMETHEUS"] = old


@pytest.fixture(scope="session")
def live_stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[LiveStack]:
    """The real pipeline on real Kafka, scraped by a real Prometheus, one group frozen."""
    from monitoring import local

    with _binaries_from_test_env():
        try:
            local.find_binary("prometheus")
            local.find_binary("alertmanager")
        except local.MonitoringNotAvailable as exc:
            pytest.skip(str(exc))
    workdir = tmp_path_factory.mktemp("live")
    # One monitor process for all 100 topics and a 1-s idle: light enough for 2 cores.
    pipe = LocalPipeline(PipelineConfig(groups=5, filters=100, monitor_processes=1,
                                        topic=f"browser-{RUN}", visit_idle=1.0,
                                        workdir=workdir))
    mon = None
    groups: list[Service] = []
    try:
        pipe.start_kafka(kafka_bootstrap)
        groups = _start_groups(pipe)
        pipe.start_monitors()
        _start_lag_exporter(pipe)
        with _binaries_from_test_env():
            mon = local.start_monitoring(workdir / "monitoring", pipe.targets(), free_port(),
                                         free_port(), visit_interval=VISIT)
        stack = LiveStack(mon.prometheus_url, mon.alertmanager_url, pipe, mon)
        # Every group has joined before the first visit, so nobody starts behind.
        wait_for("every group to have a member", lambda: all(
            stack.by_group("minibroker_consumer_group_members").get(g, 0) >= 1
            for g in GROUP_IDS), 90, pipe)
        pipe.start_producer(["--profile", "dmtn081", "--alerts-per-visit",
                             str(ALERTS_PER_VISIT), "--interval", str(VISIT),
                             "--visits", "100000", "--seed", "5"])
        mon.set_targets(pipe.targets())  # the producer started after Prometheus
        wait_for("three visits filtered by every group (as scraped)", lambda: all(
            stack.by_group("minibroker_filter_visits_completed_total").get(g, 0) >= 3
            for g in GROUP_IDS), 60, pipe)
        groups[-1].proc.send_signal(signal.SIGSTOP)
        wait_for(f"MiniBrokerGroupLagging for the frozen {FROZEN} at Alertmanager",
                 lambda: any(a["labels"].get("group") == FROZEN
                             for a in mon.alerts("MiniBrokerGroupLagging")), 12 * VISIT, pipe)
        yield stack
    finally:
        for svc in groups:
            if svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGCONT)  # a frozen process ignores SIGTERM
        if mon is not None:
            mon.stop()
        pipe.stop(keep_workdir=True)


def visits_after(stack: LiveStack, visit: int, timeout: float) -> None:
    """Wait until the producer has completed ``visit`` (for tests wanting longer history)."""
    wait_for(f"visit {visit} produced", lambda: any(
        float(r["value"][1]) >= visit for r in stack.query("minibroker_producer_last_visit")),
        timeout, stack.pipeline)

