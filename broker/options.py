"""Command-line options that fall back to ``MINIBROKER_<NAME>`` environment variables.

Every command module adds its options through :func:`option` so that help shows the
variable and compose files can configure a service with the environment alone.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "UsageError",
    "env_name",
    "non_negative_float",
    "non_negative_int",
    "option",
    "positive_float",
    "positive_int",
]

ENV_PREFIX = "MINIBROKER_"


class UsageError(Exception):
    """A user mistake: the CLI prints the message on one line and exits 2."""


def env_name(dest: str) -> str:
    """Return the environment variable that configures the option stored in ``dest``."""
    return ENV_PREFIX + dest.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true/false)")


def option(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
    help: str = "",
    flag: bool = False,
    **kwargs: Any,
) -> None:
    """Add ``--option`` whose default comes from ``MINIBROKER_<DEST>`` when that is set.

    ``flag=True`` makes a boolean switch (``--fast``); its variable takes true/false.
    """
    long_flag = next(f for f in flags if f.startswith("--"))
    dest = kwargs.pop("dest", long_flag[2:].replace("-", "_"))
    var = env_name(dest)
    raw = os.environ.get(var)
    if flag:
        value = default if default is not None else False
        if raw is not None:
            try:
                value = _parse_bool(raw)
            except ValueError as exc:
                raise UsageError(f"{var}: {exc}") from None
        parser.add_argument(
            *flags, dest=dest, action="store_true", default=value,
            help=f"{help} [env: {var}]",
        )
        return
    value = default
    if raw is not None:
        try:
            value = type(raw) if type is not None else raw
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"{var}={raw!r} is not valid: {exc}") from None
    shown = f" (default: {default})" if default not in (None, "") else ""
    if type is not None:
        kwargs["type"] = type
    parser.add_argument(
        *flags, dest=dest, default=value, help=f"{help}{shown} [env: {var}]", **kwargs,
    )


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer zero or greater."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be zero or greater, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or greater, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number zero or greater."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be zero or greater, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or greater, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {text}")
    return value
