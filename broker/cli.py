"""The ``minibroker`` console script: one entry point, one module per command.

Each command module offers ``add_parser_args(parser)`` and ``main(args) -> int``; the
first line of ``main``'s docstring is the command's help. Only the chosen command's module
is imported, so ``minibroker monitor`` does not pay for importing Dash or SimPy.
Errors are handled here, once: ``minibroker: <message>`` and exit 1 (2 for usage errors),
the traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from broker import __version__
from broker.options import UsageError

__all__ = ["COMMANDS", "main"]

log = logging.getLogger("minibroker")

# name -> (module, one-line help). Explicit so the help lists commands without importing them.
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("broker.local_kafka", "Start, stop or query a local Apache Kafka (KRaft) broker."),
    "produce": ("broker.producer", "Publish visits of alerts to a topic."),
    "filter": ("broker.filter_group", "Run filters FIRST..LAST as one filter group."),
    "print": ("broker.printer", "Print every Nth alert of a topic, decoded, without cutouts."),
    "monitor": ("broker.monitor", "Count alerts on a topic without decoding; report ends."),
    "filters": ("broker.catalogue_cli", "List the filter catalogue."),
    "demo": ("broker.demo", "Run the whole pipeline locally on a Kafka it starts itself."),
    "bench": ("broker.bench", "Run the full-scale benchmark and write BENCHMARKS.md."),
    "lag": ("monitoring.lag_exporter", "Export consumer-group lag and status to Prometheus."),
    "sim": ("sim.cli", "Capacity model: calibrate, run, sweep, validate."),
    "dashboard": ("dashboard.app", "Serve the live Dash dashboard."),
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to look, no usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """Build the parser; only ``command``'s own arguments are added."""
    parser = _Parser(
        prog="minibroker",
        description="Alert stream mini-broker for Rubin/LSST-scale alert filtering.",
    )
    parser.add_argument("--version", action="version", version=f"minibroker {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--log-level", default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, summary) in COMMANDS.items():
        sp = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            _load(name).add_parser_args(sp)
    return parser


def _find_command(argv: Sequence[str]) -> str | None:
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg == "--log-level":
            skip_next = True
            continue
        if arg.startswith("-"):
            continue
        return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``minibroker`` command line and return its exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser = build_parser(_find_command(args_list))
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return 2
        logging.basicConfig(
            level=getattr(logging, args.log_level),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return int(_load(args.command).main(args) or 0)
    except UsageError as exc:
        msg = str(exc)
        prefix = "" if msg.startswith("minibroker") else "minibroker: "
        print(f"{prefix}error: {msg}", file=sys.stderr)
        if debug:
            raise
        return 2
    except KeyboardInterrupt:
        print("minibroker: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one place turns failures into a one-line message
        if debug:
            raise
        print(f"minibroker: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
