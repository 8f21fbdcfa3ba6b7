"""``minibroker demo``: the whole pipeline on this machine, with a per-visit summary.

Starts a local Apache Kafka (KRaft), creates the topics, starts 5 filter groups of 20
filters, one monitor consumer per filter topic, the lag exporter, Prometheus and
Alertmanager (when installed), the dashboard, and finally the producer (realistic
alerts, 10,000 per 39-s visit by default). Prints one summary per visit, then stops
everything it started; Ctrl-C stops cleanly at any time.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.local_kafka import free_port, port_open
from broker.options import (
    UsageError,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from broker.pipeline import LocalPipeline, PipelineConfig, parse_fields

__all__ = ["VisitSummary", "add_parser_args", "main"]

log = logging.getLogger(__name__)


@dataclass
class VisitSummary:
    """What the demo learnt about one visit from the services' status lines."""

    visit: int
    start: float = 0.0
    acked_at: float = 0.0
    sent: int = 0
    send_seconds: float = 0.0
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    printed: bool = False

    def done(self, groups: int) -> bool:
        return self.acked_at > 0 and len(self.groups) >= groups

    def render(self, filters_per_group: list[tuple[int, int]]) -> str:
        delivered: dict[int, int] = {}
        for fields in self.groups.values():
            first = int(fields.get("first_filter", "1"))
            for k, n in enumerate(fields.get("per_filter", "").split(",")):
                if n:
                    delivered[first + k] = int(n)
        last_done = max(float(g["last"]) for g in self.groups.values())
        times = " ".join(f"{float(g['seconds']):.2f}" for _, g in sorted(self.groups.items()))
        total = sum(delivered.values())
        full = sum(1 for n in delivered.values() if n >= 20)
        lines = [
            f"visit {self.visit}: {self.sent} alerts sent in {self.send_seconds:.2f} s; "
            f"groups filtered it in {times} s; {total} alerts delivered "
            f"({full} filters at the cap); last delivery {last_done - self.acked_at:+.2f} s "
            f"after the last alert was acknowledged, {last_done - self.start:.2f} s after "
            "the visit started",
        ]
        row = []
        for i in sorted(delivered):
            row.append(f"{delivered[i]:2d}")
            if len(row) == 20:
                lines.append(f"  Filter{i - 19:03d}-{i:03d}: " + " ".join(row))
                row = []
        if row:
            lines.append("  " + " ".join(row))
        return "\n".join(lines)


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker demo``."""
    option(parser, "--visits", default=5, type=positive_int, help="visits to produce")
    option(parser, "--alerts-per-visit", default=10_000, type=positive_int,
           help="alerts per visit")
    option(parser, "--interval", default=39.0, type=positive_float,
           help="seconds between visits")
    option(parser, "--fast", flag=True, help="15-s visit interval instead of --interval")
    option(parser, "--profile", default="realistic", choices=["realistic", "dmtn081"],
           help="alert profile")
    option(parser, "--groups", default=5, type=positive_int, help="filter groups")
    option(parser, "--filters", default=100, type=positive_int, dest="filter_count",
           help="filters in all (Filter001..)")
    option(parser, "--kafka-port", default=0, type=non_negative_int,
           help="port of the local Kafka (0 = a free port)")
    option(parser, "--prometheus-port", default=9090, type=positive_int,
           help="Prometheus port")
    option(parser, "--alertmanager-port", default=9093, type=positive_int,
           help="Alertmanager port")
    option(parser, "--dashboard-port", default=8050, type=positive_int, help="dashboard port")
    option(parser, "--no-monitoring", flag=True, help="skip Prometheus and Alertmanager")
    option(parser, "--no-dashboard", flag=True, help="skip the dashboard")
    option(parser, "--keep-running", flag=True,
           help="after the last visit, keep everything running until Ctrl-C")
    option(parser, "--workdir", type=Path,
           help="keep Kafka data and service logs here (default: a temporary directory)")


def _start_monitoring(pipe: LocalPipeline, args: argparse.Namespace,
                      interval: float) -> Any:
    try:
        from monitoring.local import MonitoringNotAvailable, start_monitoring
    except ImportError as exc:  # pragma: no cover - monitoring is part of the package
        log.warning("monitoring unavailable: %s", exc)
        return None
    ports = []
    for port, what in ((args.prometheus_port, "Prometheus"),
                       (args.alertmanager_port, "Alertmanager")):
        if port_open("127.0.0.1", port):
            chosen = free_port()
            print(f"demo: port {port} is taken, {what} uses {chosen}", flush=True)
            port = chosen
        ports.append(port)
    try:
        return start_monitoring(pipe.workdir / "monitoring", pipe.targets(),
                                prometheus_port=ports[0], alertmanager_port=ports[1],
                                visit_interval=interval)
    except MonitoringNotAvailable as exc:
        print(f"demo: running without Prometheus/Alertmanager: {exc}", flush=True)
        return None


def main(args: argparse.Namespace) -> int:
    """Run the whole pipeline locally on a Kafka it starts itself."""
    interval = 15.0 if args.fast else args.interval
    if args.groups > args.filter_count:
        raise UsageError(f"--groups {args.groups} is more than --filters {args.filter_count}")
    cfg = PipelineConfig(groups=args.groups, filters=args.filter_count,
                         kafka_port=args.kafka_port, workdir=args.workdir)
    pipe = LocalPipeline(cfg)
    monitoring = None

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    summaries: dict[int, VisitSummary] = {}
    try:
        print(f"demo: starting Apache Kafka (KRaft) in {pipe.workdir} ...", flush=True)
        bootstrap = pipe.start_kafka()
        print(f"demo: Kafka at {bootstrap}", flush=True)
        groups = pipe.start_groups()
        pipe.start_monitors()
        pipe.start_lag_exporter()
        if not args.no_monitoring:
            monitoring = _start_monitoring(pipe, args, interval)
        if monitoring is not None:
            print(f"demo: Prometheus   {monitoring.prometheus_url}", flush=True)
            print(f"demo: Alertmanager {monitoring.alertmanager_url}", flush=True)
        if not args.no_dashboard:
            if port_open("127.0.0.1", args.dashboard_port):
                args.dashboard_port = free_port()
            dash_args = ["dashboard", "--port", str(args.dashboard_port),
                         "--visit-interval", str(interval)]
            if monitoring is not None:
                dash_args += ["--prometheus-url", monitoring.prometheus_url,
                              "--alertmanager-url", monitoring.alertmanager_url]
            pipe.spawn("dashboard", dash_args)
            print(f"demo: dashboard    http://127.0.0.1:{args.dashboard_port}/", flush=True)
        pipe.start_producer(["--profile", args.profile, "--alerts-per-visit",
                             str(args.alerts_per_visit), "--interval", str(interval),
                             "--visits", str(args.visits)])
        if monitoring is not None:
            monitoring.set_targets(pipe.targets())  # the producer started after Prometheus
        print(f"demo: producing {args.visits} visits of {args.alerts_per_visit} "
              f"{args.profile} alerts every {interval:g} s through {args.filter_count} "
              f"filters in {args.groups} groups (Ctrl-C stops)", flush=True)
        first_of = {f"group-{a:03d}-{b:03d}": a for a, b in pipe.group_ranges}
        deadline = None
        while True:
            ev = pipe.next_event(1.0)
            pipe.raise_if_failed()
            if ev is not None:
                f = parse_fields(ev.line)
                if ev.service == "producer" and "visit" in f:
                    s = summaries.setdefault(int(f["visit"]), VisitSummary(int(f["visit"])))
                    if f.get("status") == "start":
                        s.start = float(f["time"])
                        print(f"visit {s.visit}: started, {f['alerts']} alerts", flush=True)
                    elif f.get("status") == "acked":
                        s.acked_at, s.sent = float(f["time"]), int(f["alerts"])
                        s.send_seconds = float(f["seconds"])
                elif ev.service in first_of and "visit" in f:
                    f["first_filter"] = str(first_of[ev.service])
                    s = summaries.setdefault(int(f["visit"]), VisitSummary(int(f["visit"])))
                    s.groups[ev.service] = f
            for s in sorted(summaries.values(), key=lambda x: x.visit):
                if not s.printed and s.done(len(groups)):
                    s.printed = True
                    print(s.render(pipe.group_ranges), flush=True)
            finished = sum(1 for s in summaries.values() if s.printed)
            if finished >= args.visits:
                break
            producer_done = any(sv.name == "producer" and sv.proc.poll() == 0
                                for sv in pipe.services)
            if producer_done and deadline is None:
                deadline = time.monotonic() + max(60.0, 2 * interval)
            if deadline is not None and time.monotonic() > deadline:
                print("demo: some visits were not completed by every group in time",
                      flush=True)
                break
        if args.keep_running:
            print("demo: all visits done; services keep running, Ctrl-C stops", flush=True)
            while not pipe.failed():
                time.sleep(1)
    except KeyboardInterrupt:
        print("demo: stopping", file=sys.stderr, flush=True)
    finally:
        if monitoring is not None:
            monitoring.stop()
        pipe.stop(keep_workdir=args.workdir is not None)
    done = sum(1 for s in summaries.values() if s.printed)
    print(f"demo: {done} of {args.visits} visits filtered and delivered; stopped", flush=True)
    return 0 if done >= args.visits else 1
