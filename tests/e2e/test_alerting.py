"""Alerting end to end: real Kafka, the real pipeline as subprocesses, the lag exporter, and
real Prometheus and Alertmanager (monitoring/local.py) with the webhook alert log.

Visits come every 8 s (the rules are rendered for that interval: lag threshold 4 s). A
healthy run pages nothing; a filter group frozen with SIGSTOP pages MiniBrokerGroupLagging
for itself only, within about two visit intervals, and its lag series never vanish;
SIGCONT resolves it; a killed group pages MiniBrokerFilterGroupDown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from broker.local_kafka import free_port
from monitoring import local

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

VISIT = 8.0
ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One ``minibroker`` command run as a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIBROKER_")}
        env["PYTHONPATH"] = str(ROOT)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", *args], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
            )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + "\n".join(text[-lines:])


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[str, Service]]:
    started: dict[str, Service] = {}
    yield started
    for service in started.values():
        service.stop()


def wait_until(what: str, check: Callable[[], Any], timeout: float,
               diagnostics: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                                 + diagnostics())
        time.sleep(0.5)


def values(mon: local.Monitoring, expr: str) -> dict[str, float]:
    """``{group: value}`` of an instant query."""
    return {r["metric"].get("group", ""): float(r["value"][1]) for r in mon.query(expr)}


def test_frozen_group_pages_alone_and_resolves_and_a_dead_group_is_down(
    kafka_bootstrap: str, topic_name: str, tmp_path: Path, services: dict[str, Service],
) -> None:
    try:
        local.find_binary("prometheus")
        local.find_binary("alertmanager")
    except local.MonitoringNotAvailable as exc:
        pytest.skip(str(exc))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=30)

    frozen, other = f"{topic_name}-filters-001-010", f"{topic_name}-filters-011-020"
    ports = {name: free_port() for name in ("lag", "a", "b", "producer")}
    services["lag"] = Service("lag", [
        "lag", kafka_bootstrap, "--metrics-port", str(ports["lag"]), "--poll-interval", "1",
        "--groups", re.escape(topic_name) + "-filters-.*",
        "--warn-seconds", str(VISIT / 2), "--err-seconds", str(VISIT),
        "--stall-after", str(2 * VISIT),
    ], tmp_path)
    for key, group, first, last in (("a", frozen, 1, 10), ("b", other, 11, 20)):
        services[key] = Service(key, [
            "filter", kafka_bootstrap, topic_name, str(first), str(last), "--group-id", group,
            "--metrics-port", str(ports[key]),
        ], tmp_path)

    def diagnostics() -> str:
        return "\n".join(s.tail() for s in services.values())

    targets: local.Targets = {
        "filter": [("127.0.0.1", ports["a"], {"group": frozen}),
                   ("127.0.0.1", ports["b"], {"group": other})],
        "producer": [("127.0.0.1", ports["producer"], {})],
        "lag": [("127.0.0.1", ports["lag"], {})],
    }
    with local.start_monitoring(tmp_path / "monitoring", targets, free_port(), free_port(),
                                visit_interval=VISIT) as mon:
        # Both groups have joined before the first visit, so nothing is behind at start.
        wait_until("both groups to have members", lambda: all(
            values(mon, "minibroker_consumer_group_members").get(g, 0) >= 1
            for g in (frozen, other)), 90, diagnostics)
        services["producer"] = Service("producer", [
            "produce", kafka_bootstrap, topic_name, "--profile", "dmtn081",
            "--alerts-per-visit", "500", "--interval", str(VISIT), "--visits", "100",
            "--metrics-port", str(ports["producer"]),
        ], tmp_path)

        # A healthy run pages nothing.
        wait_until("three visits filtered by both groups", lambda: all(
            values(mon, "minibroker_filter_visits_completed_total").get(g, 0) >= 3
            for g in (frozen, other)), 90, diagnostics)
        assert mon.notifications() == []
        assert [a for a in mon.prometheus_alerts() if a["state"] == "firing"] == []

        # Freeze one group: its lagging alert reaches Alertmanager, its series stay.
        services["a"].signal(signal.SIGSTOP)
        frozen_at = time.monotonic()

        def lagging_at_alertmanager() -> bool:
            series = values(mon, "minibroker_consumer_group_lag_seconds")
            assert frozen in series, "the frozen group's lag series vanished"
            assert values(mon, f'minibroker_consumer_group_lag_messages{{group="{frozen}"}}')
            return any(a["labels"].get("group") == frozen
                       for a in mon.alerts("MiniBrokerGroupLagging"))

        wait_until("the frozen group's lagging alert at Alertmanager",
                   lagging_at_alertmanager, 6 * VISIT, diagnostics)
        delay = time.monotonic() - frozen_at
        print(f"lagging alert reached Alertmanager {delay:.1f} s after the freeze "
              f"({delay / VISIT:.2f} visit intervals)")
        # Next visit up to 1 interval away, then half a visit of lag, then poll, scrape and
        # evaluation (1 s each): about 2 intervals; 1 s of slack for a busy machine.
        assert delay <= 2 * VISIT + 1.0
        mon.wait_for_alert("MiniBrokerGroupLagging", {"group": frozen}, timeout=3 * VISIT)
        # Keep it frozen a little longer: the other group must stay quiet meanwhile.
        time.sleep(VISIT)
        assert values(mon, "minibroker_consumer_group_lag_seconds")[frozen] > VISIT / 2
        pages = {(e["alertname"], e["labels"].get("group")) for e in mon.notifications()}
        assert all(group == frozen for _, group in pages), pages
        assert not [a for a in mon.alerts() if a["labels"].get("group") != frozen]

        # Resume: it catches up and the alert resolves.
        services["a"].signal(signal.SIGCONT)
        mon.wait_for_alert("MiniBrokerGroupLagging", {"group": frozen}, status="resolved",
                           timeout=10 * VISIT)
        assert values(mon, "minibroker_consumer_group_lag_seconds")[frozen] < VISIT / 2

        # Kill the other group: it is down.
        services["b"].signal(signal.SIGKILL)
        mon.wait_for_alert("MiniBrokerFilterGroupDown", {"group": other}, timeout=8 * VISIT)
        assert values(mon, "minibroker_consumer_group_lag_seconds").get(other) is not None
