"""compose/: validated statically, since Docker does not run on the test machines.

Every mini-broker service's command is parsed by the real CLI parser with the service's
environment; ports, topics, consumer groups and URLs are checked against the code and
against the other services' configs. ``docker compose config`` runs too when the plugin
is installed.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from argparse import Namespace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from broker.catalogue import default_filters
from broker.cli import build_parser
from broker.filter_group import default_group_id

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
FILE = COMPOSE / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def minibroker_services() -> dict[str, dict[str, Any]]:
    """Services that run ``minibroker <command>``."""
    return {name: svc for name, svc in services().items()
            if isinstance(svc.get("command"), list) and svc["command"][0] == "minibroker"}


def parse(svc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Namespace:
    """The service's command as the CLI parses it inside its container."""
    for var in list(os.environ):
        if var.startswith("MINIBROKER_"):
            monkeypatch.delenv(var)
    for var, value in (svc.get("environment") or {}).items():
        monkeypatch.setenv(var, str(value))
    argv = [str(a) for a in svc["command"][1:]]
    try:
        return build_parser(argv[0]).parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        raise AssertionError(f"minibroker {' '.join(argv)} does not parse") from exc


def by_command(command: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Namespace]:
    return {name: parse(svc, monkeypatch) for name, svc in minibroker_services().items()
            if svc["command"][1] == command}


def prometheus_targets() -> dict[str, dict[str, str]]:
    """host:port -> labels of every scrape target of compose/prometheus.yml."""
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    out = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                out[target] = dict(static.get("labels") or {})
    return out


def container_port(svc: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in svc.get("ports", [])}


def test_the_whole_system_is_there() -> None:
    names = set(services())
    assert {"kafka", "producer", "lag", "dashboard", "prometheus", "alertmanager",
            "grafana"} <= names
    assert sum(n.startswith("filters-") for n in names) == 5
    assert sum(n.startswith("monitors-") for n in names) == 5
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert "KRaft" in FILE.read_text()


def test_every_minibroker_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    commands = set()
    for name, svc in minibroker_services().items():
        args = parse(svc, monkeypatch)
        assert args.command == svc["command"][1], name
        commands.add(args.command)
    assert commands == {"produce", "filter", "monitor", "lag", "dashboard"}


def test_kafka_address_is_the_advertised_internal_listener(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    env = services()["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    internal = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    for name, svc in minibroker_services().items():
        if svc["command"][1] == "dashboard":
            continue
        assert parse(svc, monkeypatch).broker == internal, name
    # A KRaft cluster id is a 16-byte UUID in base64url without padding.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16


def test_filter_groups_cover_the_catalogue_once_on_the_produced_topic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    producer = parse(services()["producer"], monkeypatch)
    groups = by_command("filter", monkeypatch)
    covered: list[int] = []
    for name, args in groups.items():
        assert args.topic == producer.topic, name
        assert name == f"filters-{args.first:03d}-{args.last:03d}"
        covered.extend(range(args.first, args.last + 1))
        assert args.cap == 20
    assert sorted(covered) == list(range(1, len(default_filters()) + 1))


def test_monitors_read_every_filter_topic_once(monkeypatch: pytest.MonkeyPatch) -> None:
    topics: list[str] = []
    for args in by_command("monitor", monkeypatch).values():
        topics.extend(args.topics)
    assert sorted(topics) == sorted(f.name for f in default_filters())


def test_lag_exporter_watches_exactly_the_filter_groups(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    (lag,) = by_command("lag", monkeypatch).values()
    pattern = re.compile(lag.lag_groups)
    for args in by_command("filter", monkeypatch).values():
        assert pattern.fullmatch(args.group_id or default_group_id(args.first, args.last))
    assert not pattern.fullmatch("minibroker-monitor-Filter001")


def test_prometheus_scrapes_every_service_on_its_metrics_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    targets = prometheus_targets()
    kinds = {"produce": "producer", "filter": "filter", "monitor": "consumer", "lag": "lag"}
    scraped = set()
    for name, svc in minibroker_services().items():
        command = svc["command"][1]
        if command not in kinds:
            continue
        args = parse(svc, monkeypatch)
        target = f"{name}:{args.metrics_port}"
        assert target in targets, f"{name} serves metrics on {args.metrics_port}"
        labels = targets[target]
        assert labels["service"] == kinds[command], name
        if command == "filter":
            assert labels["group"] == (args.group_id
                                       or default_group_id(args.first, args.last))
        scraped.add(target)
    assert scraped == set(targets), f"targets without a service: {set(targets) - scraped}"


def test_prometheus_rules_and_alertmanager_are_wired() -> None:
    prom = services()["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"] if v.startswith("."))
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (rules_glob,) = config["rule_files"]
    rules_dir = next(host for host, inside in mounts.items()
                     if rules_glob.startswith(inside + "/"))
    assert (COMPOSE / rules_dir).resolve() == REPO / "monitoring" / "rules"
    assert list((COMPOSE / rules_dir).glob(Path(rules_glob).name))
    (am_target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = am_target.split(":")
    assert host in services() and int(port) in container_port(services()[host])
    assert (COMPOSE / "prometheus.yml").name in str(prom["volumes"])


def test_alertmanager_webhook_reaches_the_alert_log() -> None:
    config = yaml.safe_load((COMPOSE / "alertmanager.yml").read_text())
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    url = urlparse(receiver["webhook_configs"][0]["url"])
    command = services()[url.hostname or ""]["command"]
    assert command[:3] == ["python", "-m", "monitoring.alert_log"]
    assert command[command.index("--port") + 1] == str(url.port)
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_dashboard_points_at_prometheus_and_alertmanager(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    (args,) = by_command("dashboard", monkeypatch).values()
    svc = services()["dashboard"]
    assert args.host == "0.0.0.0" and args.port in container_port(svc)
    for url, service, port in ((args.prometheus_url, "prometheus", 9090),
                               (args.alertmanager_url, "alertmanager", 9093)):
        parsed = urlparse(url)
        assert parsed.hostname == service and parsed.port == port
        assert port in container_port(services()[service])


def test_grafana_mounts_the_provisioning_and_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    for host in mounts:
        assert (COMPOSE / host).is_dir(), host
    provider = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/minibroker.yml").read_text())
    inside = {inside: host for host, inside in mounts.items()}
    path = provider["providers"][0]["options"]["path"]
    assert (COMPOSE / inside[path]).resolve() == REPO / "grafana" / "dashboards"
    assert list((REPO / "grafana" / "dashboards").glob("*.json"))
    assert inside["/etc/grafana/provisioning"] == "../grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "grafana" / "dashboards" / Path(home).name).exists()
    # The datasource URL comes from the environment (grafana/provisioning/datasources).
    url = urlparse(grafana["environment"]["MINIBROKER_PROMETHEUS_URL"])
    assert url.hostname == "prometheus" and url.port in container_port(services()["prometheus"])


def test_every_mounted_host_path_exists() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (COMPOSE / host).exists(), f"{name}: {host}"


def test_dockerfile_copies_what_exists_and_installs_the_cli() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    sources = [part for line in text.splitlines() if line.startswith("COPY ")
               for part in line.split()[1:-1]]
    for source in sources:
        if source != "README.md":  # the README is the lead's; see compose/README.md
            assert (REPO / source).exists(), source
    assert "pip install ." in text and "USER " in text
    build = services()["producer"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == COMPOSE / "Dockerfile"
    # The image installs these packages: the services' modules must be among them.
    for package in ("broker", "monitoring", "sim", "dashboard"):
        assert f"COPY {package} " in text


def test_metric_names_mentioned_in_compose_exist() -> None:
    from test_dashboard_live import exported_names

    names = exported_names()
    for path in COMPOSE.iterdir():
        if path.is_file():
            used = set(re.findall(r"\bminibroker_[a-z_]+", path.read_text()))
            assert used <= names, f"{path.name}: {used - names}"


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    text = (COMPOSE / "prometheus.yml").read_text().replace(
        "/etc/prometheus/rules/", f"{REPO / 'monitoring' / 'rules'}/")
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run([promtool, "check", "config", str(config)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule" in result.stdout


def test_docker_compose_config_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run([docker, "compose", "-f", str(FILE), "config", "--quiet"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
