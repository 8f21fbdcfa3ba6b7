"""Real Prometheus and Alertmanager as subprocesses, for the demo and the tests.

::

    from monitoring.local import start_monitoring

    targets = {
        "producer": [("127.0.0.1", 9101, {})],
        "filter": [("127.0.0.1", 9111, {"group": "minibroker-filters-001-020"})],
        "consumer": [("127.0.0.1", 9121, {})],
        "lag": [("127.0.0.1", 9308, {})],
    }
    with start_monitoring(workdir, targets, visit_interval=5) as mon:
        print(mon.prometheus_url, mon.alertmanager_url)
        mon.wait_for_alert("MiniBrokerGroupLagging", {"group": "minibroker-filters-001-020"})

Everything lives under ``workdir``: the rendered configs, file_sd target files, both
servers' data and logs (``prometheus.log``, ``alertmanager.log``) and the webhook log
``alerts.jsonl`` (:mod:`monitoring.alert_log`, served from a thread of this process).

The checked-in configs (``prometheus.yml``, ``rules/minibroker.yml``, ``alertmanager.yml``)
are written for Rubin's 39-s visits. :func:`render_rules` and friends scale them for
another visit interval: the ``minibroker:visit_interval_seconds`` recording rule is set, and
every ``for:``, scrape, evaluation and Alertmanager grouping interval is multiplied by
``visit_interval / 39`` (scrapes and evaluations kept between 1 and 5 s).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.options import UsageError
from monitoring.alert_log import AlertLog, alert_events

__all__ = [
    "REFERENCE_VISIT_INTERVAL",
    "Monitoring",
    "MonitoringNotAvailable",
    "Target",
    "Targets",
    "find_binary",
    "render_alertmanager_config",
    "render_prometheus_config",
    "render_rules",
    "start_monitoring",
    "write_targets",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REFERENCE_VISIT_INTERVAL = 39.0
"""The visit interval the checked-in configs are written for."""

Target = tuple[str, int, Mapping[str, str]]
"""(host, port, extra labels) of one /metrics endpoint."""
Targets = Mapping[str, Sequence[Target]]
"""Targets by service: ``producer``, ``filter`` (label ``group`` required), ``consumer``,
``lag``."""

INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"


class MonitoringNotAvailable(RuntimeError):
    """Prometheus, Alertmanager or promtool is not installed; the message says what to do."""


def find_binary(name: str) -> str:
    """Path of ``prometheus``, ``alertmanager`` or ``promtool``.

    ``MINIBROKER_PROMETHEUS`` / ``MINIBROKER_ALERTMANAGER`` / ``MINIBROKER_PROMTOOL`` name
    another binary; Debian calls Alertmanager ``prometheus-alertmanager``.
    """
    override = os.environ.get(f"MINIBROKER_{name.upper()}")
    if override:
        if shutil.which(override) is None:
            raise MonitoringNotAvailable(
                f"MINIBROKER_{name.upper()}={override} is not an executable"
            )
        return override
    candidates = {"alertmanager": ["prometheus-alertmanager", "alertmanager"]}.get(name, [name])
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise MonitoringNotAvailable(
        f"{candidates[0]} not found on PATH: {INSTALL_HINT} "
        f"(or set MINIBROKER_{name.upper()} to the binary)"
    )


# --- rendering ---------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``1m30s`` or ``500ms``."""
    text = str(text).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds`` (milliseconds resolution)."""
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def _factor(visit_interval: float) -> float:
    if not visit_interval > 0:
        raise ValueError(f"visit_interval must be > 0, got {visit_interval}")
    return visit_interval / REFERENCE_VISIT_INTERVAL


def _scaled(duration: str, factor: float, low: float = 1.0, high: float | None = None) -> str:
    seconds = parse_duration(duration)
    if seconds == 0:
        return "0s"
    scaled = max(low, seconds * factor)
    if high is not None:
        scaled = min(high, scaled)
    return format_duration(scaled)


def render_rules(visit_interval: float = REFERENCE_VISIT_INTERVAL,
                 lag_threshold: float | None = None) -> str:
    """``rules/minibroker.yml`` for ``visit_interval``-second visits.

    ``lag_threshold`` (seconds) overrides the lag alert's threshold (default: half a visit).
    """
    factor = _factor(visit_interval)
    doc = yaml.safe_load((HERE / "rules" / "minibroker.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == "minibroker:visit_interval_seconds":
                rule["expr"] = f"vector({visit_interval:g})"
            elif rule.get("record") == "minibroker:lag_threshold_seconds" and lag_threshold:
                rule["expr"] = f"vector({lag_threshold:g})"
            if "for" in rule:
                rule["for"] = _scaled(rule["for"], factor)
    header = (f"# Rendered by monitoring/local.py from monitoring/rules/minibroker.yml for "
              f"{visit_interval:g}-s visits.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=1000)


def scrape_interval_for(visit_interval: float) -> float:
    """Scrape and evaluation interval: the checked-in 5 s scaled, kept within 1..5 s."""
    return min(5.0, max(1.0, 5.0 * _factor(visit_interval)))


def render_prometheus_config(
    rules_file: Path, targets_dir: Path, alertmanager: str,
    visit_interval: float = REFERENCE_VISIT_INTERVAL, scrape_interval: float | None = None,
) -> str:
    """``prometheus.yml`` with absolute paths, the given Alertmanager and intervals."""
    interval = scrape_interval or scrape_interval_for(visit_interval)
    doc = yaml.safe_load((HERE / "prometheus.yml").read_text())
    doc["global"]["scrape_interval"] = format_duration(interval)
    doc["global"]["evaluation_interval"] = format_duration(interval)
    doc["global"]["scrape_timeout"] = format_duration(min(4.0, 0.8 * interval))
    doc["rule_files"] = [str(rules_file)]
    doc["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    for job in doc["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(targets_dir / "*.json")]
    return yaml.safe_dump(doc, sort_keys=False)


def render_alertmanager_config(
    webhook_url: str, visit_interval: float = REFERENCE_VISIT_INTERVAL,
) -> str:
    """``alertmanager.yml`` posting to ``webhook_url``, grouping intervals scaled."""
    factor = _factor(visit_interval)
    doc = yaml.safe_load((HERE / "alertmanager.yml").read_text())
    route = doc["route"]
    route["group_wait"] = _scaled(route["group_wait"], factor)
    route["group_interval"] = _scaled(route["group_interval"], factor)
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    return yaml.safe_dump(doc, sort_keys=False)


def write_targets(targets_dir: Path, targets: Targets) -> None:
    """Write one file_sd JSON per service; remove files of services no longer listed.

    Files are replaced atomically, so Prometheus never reads half a file.
    """
    targets_dir.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for service, entries in targets.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", service):
            raise ValueError(f"service name {service!r}: use lower-case letters, e.g. 'filter'")
        groups = []
        for host, port, labels in entries:
            if service == "filter" and not labels.get("group"):
                raise ValueError(
                    f"filter target {host}:{port} needs a 'group' label: its Kafka "
                    "consumer group id, e.g. minibroker-filters-001-020"
                )
            groups.append({
                "targets": [f"{host}:{int(port)}"],
                "labels": {"service": service, **{k: str(v) for k, v in labels.items()}},
            })
        path = targets_dir / f"{service}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(groups, indent=1))
        tmp.replace(path)
        wanted.add(path.name)
    for old in targets_dir.glob("*.json"):
        if old.name not in wanted:
            old.unlink()


# --- processes ---------------------------------------------------------------------------

def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


@dataclass
class _Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} during start-up: "
                    f"{self.log_tail()} (see {self.log_path})"
                )
            try:
                _get(self.url + "/-/ready", timeout=1.0)
                return
            except (OSError, ValueError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()


def _launch(name: str, cmd: list[str], url: str, log_path: Path) -> _Server:
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
    return _Server(name, url, proc, log_path)


@dataclass
class Monitoring:
    """A running Prometheus + Alertmanager + webhook log; :meth:`stop` ends all three."""

    workdir: Path
    prometheus_url: str
    alertmanager_url: str
    alert_log: AlertLog
    visit_interval: float
    targets_dir: Path
    _servers: list[_Server] = field(default_factory=list, repr=False)

    @property
    def alert_log_path(self) -> Path:
        """The JSON-lines file of webhook notifications."""
        return self.alert_log.path

    def set_targets(self, targets: Targets) -> None:
        """Replace the scrape targets; Prometheus notices the files within seconds."""
        write_targets(self.targets_dir, targets)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant PromQL query: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        url = self.prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        reply = _get(url)
        if reply.get("status") != "success":
            raise RuntimeError(f"Prometheus query {expr!r} failed: {reply}")
        return list(reply["data"]["result"])

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Alerts Prometheus holds (``state`` pending or firing), from /api/v1/alerts."""
        return list(_get(self.prometheus_url + "/api/v1/alerts")["data"]["alerts"])

    def alerts(self, alertname: str | None = None) -> list[dict[str, Any]]:
        """Active alerts Alertmanager holds (API v2), optionally of one ``alertname``."""
        found = _get(self.alertmanager_url + "/api/v2/alerts?active=true")
        return [a for a in found
                if alertname is None or a["labels"].get("alertname") == alertname]

    def notifications(self) -> list[dict[str, Any]]:
        """Webhook notifications received, one record per alert (see alert_log.alert_events)."""
        return alert_events(self.alert_log.path)

    def wait_for_alert(self, alertname: str, labels: Mapping[str, str] | None = None,
                       timeout: float = 120.0, status: str = "firing") -> dict[str, Any]:
        """Wait until the webhook log holds ``alertname`` with ``labels`` in ``status``.

        Returns that notification record; raises TimeoutError naming what was seen.
        """
        want = dict(labels or {})
        deadline = time.monotonic() + timeout
        while True:
            for event in self.notifications():
                if (event["alertname"] == alertname and event["status"] == status
                        and all(event["labels"].get(k) == v for k, v in want.items())):
                    return event
            if time.monotonic() > deadline:
                seen = sorted({(e["alertname"], e["status"], e["labels"].get("group", ""))
                               for e in self.notifications()})
                raise TimeoutError(
                    f"no {status} {alertname} {want} within {timeout:.0f} s; seen: {seen}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop Alertmanager, Prometheus and the webhook log (idempotent)."""
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        self.alert_log.stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> Monitoring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_monitoring(
    workdir: str | Path,
    targets: Targets,
    prometheus_port: int = 9090,
    alertmanager_port: int = 9093,
    visit_interval: float = REFERENCE_VISIT_INTERVAL,
    *,
    scrape_interval: float | None = None,
    lag_threshold: float | None = None,
    alert_log_port: int = 0,
    timeout: float = 30.0,
) -> Monitoring:
    """Start Alertmanager, then Prometheus scraping ``targets``; return once both are ready.

    ``visit_interval`` scales the alert thresholds and intervals (see the module doc);
    ``scrape_interval`` overrides the derived scrape/evaluation interval; ``lag_threshold``
    the lag alert's threshold in seconds. Raises MonitoringNotAvailable if a binary is
    missing and UsageError if a port is taken.
    """
    prometheus_bin = find_binary("prometheus")
    alertmanager_bin = find_binary("alertmanager")
    for port, what in ((prometheus_port, "Prometheus"), (alertmanager_port, "Alertmanager")):
        if _port_in_use(port):
            raise UsageError(
                f"port {port} for {what} is already in use (a system {what} service?): "
                "choose another port"
            )
    workdir = Path(workdir).absolute()
    prom_dir, am_dir = workdir / "prometheus", workdir / "alertmanager"
    targets_dir = prom_dir / "targets"
    for d in (prom_dir / "data", am_dir / "data", targets_dir):
        d.mkdir(parents=True, exist_ok=True)

    alert_log = AlertLog(workdir / "alerts.jsonl", port=alert_log_port).start()
    servers: list[_Server] = []
    try:
        am_config = am_dir / "alertmanager.yml"
        am_config.write_text(render_alertmanager_config(alert_log.url, visit_interval))
        am_url = f"http://127.0.0.1:{alertmanager_port}"
        servers.append(_launch("Alertmanager", [
            alertmanager_bin,
            f"--config.file={am_config}",
            f"--storage.path={am_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            "--cluster.listen-address=",  # no gossip: one local instance
        ], am_url, workdir / "alertmanager.log"))

        rules_file = prom_dir / "minibroker.rules.yml"
        rules_file.write_text(render_rules(visit_interval, lag_threshold))
        write_targets(targets_dir, targets)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(render_prometheus_config(
            rules_file, targets_dir, f"127.0.0.1:{alertmanager_port}", visit_interval,
            scrape_interval,
        ))
        prom_url = f"http://127.0.0.1:{prometheus_port}"
        servers.append(_launch("Prometheus", [
            prometheus_bin,
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--web.enable-lifecycle",
        ], prom_url, workdir / "prometheus.log"))
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in reversed(servers):
            server.stop()
        alert_log.stop()
        raise
    mon = Monitoring(workdir, prom_url, am_url, alert_log, visit_interval, targets_dir,
                     servers)
    atexit.register(mon.stop)  # never leave servers behind when the caller forgets
    log.info("Prometheus at %s, Alertmanager at %s, alert log %s", prom_url, am_url,
             alert_log.path)
    return mon
