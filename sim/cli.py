"""``minibroker sim``: calibrate, run and sweep the capacity model; validate it.

- ``minibroker sim calibrate`` measures per-alert costs through the project's code and
  writes them to the calibration file (default ``sim/calibration.json``).
- ``minibroker sim run`` simulates one configuration and prints a table; ``--figure``
  writes lag over time (``.html``, or ``.png`` with kaleido).
- ``minibroker sim sweep cores|filters|alerts`` computes capacity curves.
- ``minibroker sim validate`` runs real pipeline configurations and compares them with
  the model's predictions (``sim.validate``).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from broker import hostmem
from broker.options import (
    UsageError,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from sim import validate
from sim.costs import (
    DEFAULT_CALIBRATION,
    READS,
    Calibration,
    Costs,
    apply_overrides,
    parse_overrides,
)
from sim.model import ARRIVALS, DEDICATED, DESIGNS, VISIBILITY, Config, ConfigError

__all__ = ["add_parser_args", "build_config", "load_costs", "main"]

log = logging.getLogger(__name__)

PROFILES = ("realistic", "dmtn081")


def _rate(text: str) -> float | None:
    """argparse type: alerts/s > 0, or ``unlimited``."""
    if text.strip().lower() in ("unlimited", "none", "inf"):
        return None
    return positive_float(text)


def _costs_arg(text: str) -> list[tuple[str, float]]:
    try:
        return parse_overrides(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dedicated(text: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(DEDICATED))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown)} unknown; name any of {', '.join(DEDICATED)}")
    return names


def _number_list(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                             f"numbers") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: give numbers greater than zero")
        return values
    return parse


def _summary(fn: Any) -> str:
    """First line of a handler's docstring: its help."""
    return str(fn.__doc__).strip().splitlines()[0]


def _add_costs_options(p: argparse.ArgumentParser) -> None:
    option(p, "--calibration", default=None, type=Path,
           help=f"calibration file to read costs from (default: {DEFAULT_CALIBRATION})")
    option(p, "--cost", default=None, type=_costs_arg, action="extend",
           help="hand-entered costs overriding the file, NAME=SECONDS[,NAME=SECONDS]; "
                f"names: {', '.join(Costs.names())}; repeatable")


def _add_config_options(p: argparse.ArgumentParser, visits: int) -> None:
    d = Config()
    option(p, "--alerts-per-visit", default=d.alerts_per_visit, type=positive_int,
           help="alerts published per visit")
    option(p, "--interval", default=d.interval, type=positive_float,
           help="seconds between visit starts")
    option(p, "--visits", default=visits, type=positive_int, help="visits to simulate")
    option(p, "--groups", default=d.groups, type=positive_int, help="filter groups")
    option(p, "--filters-per-group", default=d.filters_per_group, type=non_negative_int,
           help="filters in each group")
    option(p, "--users", default=d.users, type=non_negative_int,
           help="end consumers (user u reads filter u mod total filters)")
    option(p, "--cores", default=d.cores, type=positive_float,
           help="cores shared by all processes")
    option(p, "--profile", default=d.profile, choices=PROFILES, help="alert profile")
    option(p, "--reads", default=d.reads, choices=READS,
           help="what the filters read (decides the decode cost)")
    option(p, "--history-fraction", default=d.history_fraction, type=non_negative_float,
           help="with --reads history: fraction of alerts whose history is decoded")
    option(p, "--partitions", default=d.partitions, type=positive_int,
           help="partitions of the input topic")
    option(p, "--cap", default=d.cap, type=non_negative_int,
           help="most outputs per filter per visit")
    option(p, "--pass-fraction", default=d.pass_fraction, type=non_negative_float,
           help="fraction of alerts each filter passes before the cap")
    option(p, "--design", default=d.design, choices=DESIGNS,
           help="minibroker (one process per group) or dmtn081_pool (2018: parent + pool)")
    option(p, "--pool-size", default=d.pool_size, type=positive_int,
           help="worker processes per group in the dmtn081_pool design")
    option(p, "--send-rate", default=d.send_rate, type=_rate,
           help="producer pacing, alerts/s, or 'unlimited'")
    option(p, "--arrivals", default=d.arrivals, choices=ARRIVALS,
           help="evenly paced sends or a Poisson process")
    option(p, "--producer-batch", default=d.producer_batch, type=positive_int,
           help="alerts per simulated producer chunk (model granularity)")
    option(p, "--fetch-max", default=d.fetch_max, type=positive_int,
           help="most alerts a consumer processes as one job (model granularity)")
    option(p, "--fetch-wait", default=d.fetch_wait, type=positive_float,
           help="long-poll timeout of an idle consumer, s")
    option(p, "--outputs-visible", default=d.outputs_visible, choices=VISIBILITY,
           help="outputs visible per batch, or at the visit's transaction commit")
    option(p, "--dedicated", default=None, type=_dedicated,
           help=f"processes on machines of their own, comma-separated: {', '.join(DEDICATED)}")
    option(p, "--jitter", default=d.jitter, type=non_negative_float,
           help="relative standard deviation of per-alert costs")
    option(p, "--seed", default=d.seed, type=int, help="random seed")
    _add_costs_options(p)


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``calibrate``, ``run``, ``sweep`` and ``validate`` actions."""
    sub = parser.add_subparsers(dest="sim_action", metavar="ACTION", required=True)

    cal = sub.add_parser("calibrate", help=_summary(_calibrate),
                         description=_calibrate.__doc__)
    option(cal, "--profile", default="all", choices=(*PROFILES, "all"),
           help="alert profile(s) to measure")
    option(cal, "--alerts", default=300, type=positive_int, help="alerts timed per profile")
    option(cal, "--repeats", default=5, type=positive_int,
           help="timed passes (the best is kept)")
    option(cal, "--output", default=None, type=Path,
           help="file to write (default: the --calibration file)")
    option(cal, "--dry-run", flag=True, help="measure and print, write nothing")
    option(cal, "--kafka", default=None, metavar="BOOTSTRAP",
           help="also measure the Kafka costs (consume, produce, commit, producer send, "
                "broker CPU) on the Kafka at BOOTSTRAP, or 'local' to start a throw-away "
                "local Kafka for it")
    option(cal, "--kafka-alerts", default=None, type=positive_int,
           help="alerts timed per Kafka pass (default: 3000 realistic, 10000 dmtn081)")
    option(cal, "--kafka-repeats", default=5, type=positive_int,
           help="Kafka passes per profile (the median is kept)")
    hostmem.add_option(cal)
    _add_costs_options(cal)
    cal.set_defaults(sim_handler=_calibrate)

    run = sub.add_parser("run", help=_summary(_run),
                         description=_run.__doc__)
    _add_config_options(run, visits=10)
    option(run, "--figure", default=None, type=Path,
           help="write lag over time to this .html (or .png, needs kaleido) file")
    option(run, "--json", default=None, type=Path, help="write the result summary as JSON")
    run.set_defaults(sim_handler=_run)

    sweep = sub.add_parser("sweep", help=_summary(_sweep),
                           description=_sweep.__doc__)
    sweep.add_argument("kind", choices=("cores", "filters", "alerts"),
                       help="cores: cores needed vs alerts per visit; filters: most filters "
                            "per group vs cores; alerts: most alerts per visit vs cores")
    _add_config_options(sweep, visits=5)
    option(sweep, "--alerts-list", default=[10_000, 20_000, 40_000],
           type=_number_list(int), help="alerts per visit to sweep (kind cores)")
    option(sweep, "--cores-list", default=[1.0, 2.0, 4.0, 8.0, 16.0],
           type=_number_list(float), help="core counts to sweep (kinds filters, alerts)")
    option(sweep, "--max-cores", default=256, type=positive_int,
           help="search limit for kind cores")
    option(sweep, "--max-filters", default=1000, type=positive_int,
           help="search limit for kind filters")
    option(sweep, "--max-alerts", default=1_000_000, type=positive_int,
           help="search limit for kind alerts")
    option(sweep, "--csv", default=None, type=Path, help="also write the table as CSV")
    sweep.set_defaults(sim_handler=_sweep)

    val = sub.add_parser("validate", help="Run real pipeline configurations and "
                         "compare them with the model's predictions.",
                         description="Run real pipeline configurations on Kafka, predict "
                         "them with the model and write predicted-against-measured.")
    validate.add_parser_args(val)
    val.set_defaults(sim_handler=_validate)


def load_costs(args: argparse.Namespace, profile: str) -> Costs:
    """Costs for ``profile`` from ``--calibration`` then ``--cost`` overrides."""
    try:
        calibration = Calibration.load(getattr(args, "calibration", None))
        costs = calibration.costs(profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return apply_overrides(costs, getattr(args, "cost", None) or [])


def build_config(args: argparse.Namespace) -> Config:
    """The :class:`Config` described by the command-line options (UsageError if impossible)."""
    defaults = Config()
    values = {name: getattr(args, name) for name in defaults.to_dict() if hasattr(args, name)}
    if values.get("dedicated") is None:
        values["dedicated"] = frozenset()
    try:
        config = defaults.with_(**values)
        config.validate()
    except ConfigError as exc:
        raise UsageError(f"{exc}; fix the option or its MINIBROKER_ variable") from None
    return config


def _calibrate(args: argparse.Namespace) -> int:
    """Measure per-alert costs on this machine and write the calibration file.

    Decode (diaSource only, with history, full), filter and serialisation costs are timed
    through broker.alerts, broker.catalogue and broker.generator. With --kafka, the Kafka
    costs (consume, produce, commit, the producer's send, the broker's CPU per alert in
    and out) are measured through broker.kafka_io on a real Kafka (sim.calibrate_kafka);
    without it they keep their values from the file unless given with --cost.
    """
    from sim.calibrate import measure_costs

    source = args.calibration or DEFAULT_CALIBRATION
    try:
        calibration = Calibration.load(source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    overrides = dict(args.cost or [])
    profiles = PROFILES if args.profile == "all" else (args.profile,)
    # Every measurement inside the memory state: decoding allocates too.
    with hostmem.memory_state(bool(getattr(args, "steady_memory", False))):
        # Decode, filter and serialisation first, in a fresh process: after the Kafka part
        # has pushed gigabytes of alerts through this process, its heap makes them slower.
        measured = {}
        for profile in profiles:
            log.info("measuring %s costs on %d alerts", profile, args.alerts)
            measured[profile] = measure_costs(
                profile, base=calibration.profiles.get(profile, Costs()), alerts=args.alerts,
                repeats=args.repeats, kafka=overrides)
        kafka_measured = _measure_kafka(args, profiles) if getattr(args, "kafka", None) else {}
    rows = []
    for profile in profiles:
        base = calibration.profiles.get(profile, Costs())
        m = measured[profile]
        km = kafka_measured.get(profile)
        costs = m.costs
        for name, note in m.notes.items():
            calibration.notes[f"{profile}.{name}"] = note
        if km is not None:
            values = {k: v for k, v in km.values.items() if k not in overrides}
            if "producer_kafka" in values:
                values["producer_send"] = values.pop("producer_kafka")
            loop = values.pop("group_loop", None)
            costs = replace(costs, **values)
            if loop is not None and "group_overhead" not in overrides:
                costs, note = _loop_overhead(costs, loop)
                calibration.notes[f"{profile}.group_overhead"] = note
            for name, note in km.notes.items():
                if name in overrides:
                    continue
                key = "producer_send" if name == "producer_kafka" else name
                calibration.notes[f"{profile}.{key}"] = note
        calibration.profiles[profile] = costs
        for name in overrides:
            calibration.notes[f"{profile}.{name}"] = "hand-entered with --cost"
        for name in Costs.names():
            rows.append({"profile": profile, "cost": name,
                         "seconds": f"{getattr(costs, name):.3g}",
                         "was": f"{getattr(base, name):.3g}",
                         "how": _how(calibration.notes.get(f"{profile}.{name}", ""))})
    from sim.report import format_rows

    print(format_rows(rows))
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    output = args.output or source
    calibration.source = ("`minibroker sim calibrate` measured the costs whose note says "
                          "'measured'; the others are hand-entered, as their notes say")
    calibration.save(output)
    print(f"wrote {output}")
    return 0


def _loop_overhead(costs: Costs, loop: float) -> tuple[Costs, str]:
    """``group_overhead`` from the measured CPU per alert of a real filter group's loop.

    What the loop costs beyond consuming, decoding diaSource and running its filters (the
    offsets, visit tracking and outcome handling of ``broker.filter_group.run``) is
    charged per alert; it is never less than the core's own bookkeeping measured alone.
    """
    from sim.calibrate_kafka import LOOP_FILTERS

    rest = loop - costs.consume - costs.decode_source - LOOP_FILTERS * costs.per_filter
    value = float(f"{max(costs.group_overhead, rest, 0.0):.3g}")
    note = (f"CPU per alert of broker.filter_group.run with {LOOP_FILTERS} diaSource-only "
            f"catalogue filters on a backlog ({loop:.3g} s, commits taken out; see "
            f"'group_loop' in sim/calibrate_kafka.py), less consume, decode_source and "
            f"{LOOP_FILTERS} x per_filter; at least the core's bookkeeping "
            f"({costs.group_overhead:.3g} s)")
    return replace(costs, group_overhead=value), note


def _measure_kafka(args: argparse.Namespace, profiles: tuple[str, ...]) -> dict[str, Any]:
    """Kafka-measured costs per profile (sim.calibrate_kafka), on --kafka's broker."""
    from sim.calibrate_kafka import kafka_for_calibration, measure_kafka_costs

    command = f"minibroker sim calibrate --profile {args.profile} --kafka {args.kafka}"
    if args.kafka_alerts:
        command += f" --kafka-alerts {args.kafka_alerts}"
    if args.kafka_repeats != 5:
        command += f" --kafka-repeats {args.kafka_repeats}"
    if getattr(args, "steady_memory", False):
        command += " --steady-memory"
    try:
        with kafka_for_calibration(args.kafka) as (bootstrap, pid):
            log.info("measuring Kafka costs on %s (broker pid %s)", bootstrap, pid)
            return measure_kafka_costs(bootstrap, profiles, broker_pid=pid,
                                       alerts=args.kafka_alerts, repeats=args.kafka_repeats,
                                       command=command)
    except (ConnectionError, RuntimeError) as exc:
        raise UsageError(f"Kafka calibration failed: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    """Simulate one configuration and print per-group visit times, lag and the verdict."""
    from sim.model import simulate
    from sim.report import check_figure_path, format_table, write_figure

    config = build_config(args)
    costs = load_costs(args, config.profile)
    if args.figure is not None:
        try:
            check_figure_path(args.figure)  # fail before a long run, not after
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    result = simulate(config, costs)
    print(format_table(result))
    if args.figure is not None:
        write_figure(result, args.figure)
        print(f"wrote {args.figure}")
    if args.json is not None:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, default=float) + "\n")
        print(f"wrote {args.json}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Capacity curves: cores needed, most filters or most alerts per visit.

    Each point is found by bisection over model runs; progress is logged to stderr.
    """
    from sim import capacity
    from sim.report import format_rows, write_csv

    config = build_config(args)
    costs = load_costs(args, config.profile)
    if args.kind == "cores":
        rows = capacity.sweep_cores(config, costs, args.alerts_list, max_cores=args.max_cores)
    elif args.kind == "filters":
        rows = capacity.sweep_filters(config, costs, args.cores_list,
                                      max_filters=args.max_filters)
    else:
        rows = capacity.sweep_alerts(config, costs, args.cores_list,
                                     max_alerts=args.max_alerts)
    print(format_rows(rows))
    if args.csv is not None:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


def _how(note: str) -> str:
    """A one-word summary of how a cost was obtained, for the calibrate table."""
    if note.startswith(("measured on Kafka", "hand-entered with --cost")):
        return "given"
    if note.startswith("measured"):
        return "measured"
    return "kept"


def _validate(args: argparse.Namespace) -> int:
    return int(validate.main(args) or 0)


def main(args: argparse.Namespace) -> int:
    """Capacity model: calibrate, run, sweep, validate."""
    handler = getattr(args, "sim_handler", None)
    if handler is None:
        raise UsageError("choose an action: minibroker sim calibrate|run|sweep|validate")
    return int(handler(args))


