"""``minibroker filters``: list the filter catalogue (or a user's filters)."""

from __future__ import annotations

import argparse

from broker.options import UsageError, option

__all__ = ["add_parser_args", "main"]


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker filters``."""
    option(parser, "--filters", help="user filters as module:attribute (default: catalogue)")


def main(args: argparse.Namespace) -> int:
    """List the filter catalogue."""
    from broker.filters import load_filters

    try:
        registry = load_filters(args.filters)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for i, flt in enumerate(registry, start=1):
        reads = ",".join(sorted(flt.fields))
        print(f"{i:3d} {flt.name:<12} [{reads}] {flt.description}")
    return 0
