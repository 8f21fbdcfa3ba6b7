"""The capacity page's what-if: run the SimPy model (:mod:`sim.model`) for the inputs.

The model is imported lazily and any failure to load it or its calibration becomes a
message on the page, not a crash of the dashboard. Runs are cached by their inputs, so a
refresh that only updates the live overlay does not re-simulate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["PROFILES", "READS", "CapacityInputs", "Prediction", "predict"]

log = logging.getLogger(__name__)

PROFILES = ("realistic", "dmtn081")
READS = ("diaSource", "history", "full")


@dataclass(frozen=True)
class CapacityInputs:
    """The what-if inputs of the capacity page (hashable: the cache key)."""

    alerts_per_visit: int = 10_000
    interval: float = 39.0
    groups: int = 5
    filters_per_group: int = 20
    users: int = 100
    cores: float = 2.0
    profile: str = "realistic"
    reads: str = "diaSource"
    visits: int = 10
    calibration: str | None = None
    """Calibration file; None: the one shipped with :mod:`sim`."""


@dataclass
class Prediction:
    """What the model predicts (arrays as lists), or why it could not."""

    inputs: CapacityInputs
    error: str = ""
    keeps_up: bool = False
    reasons: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    visit_seconds: list[list[float]] = field(default_factory=list)
    """Per group, per visit: first alert consumed -> last processed (NaN: not finished)."""
    lag_t: list[float] = field(default_factory=list)
    lag_messages: list[list[float]] = field(default_factory=list)
    lag_seconds: list[list[float]] = field(default_factory=list)
    e2e_p50: float = math.nan
    e2e_p99: float = math.nan
    wall_seconds: float = 0.0


def _tolist(array: Any) -> list[Any]:
    return [float(x) for x in array]


@lru_cache(maxsize=64)
def predict(inputs: CapacityInputs) -> Prediction:
    """Simulate ``inputs`` (deterministic, cached); errors are returned, not raised."""
    try:
        from sim.costs import Calibration
        from sim.model import Config, ConfigError, simulate
    except ImportError as exc:  # the model is another part of the project: degrade
        return Prediction(inputs, error=f"capacity model unavailable: {exc}")
    try:
        costs = Calibration.load(inputs.calibration).costs(inputs.profile)
        config = Config(
            alerts_per_visit=inputs.alerts_per_visit, interval=inputs.interval,
            visits=inputs.visits, groups=inputs.groups,
            filters_per_group=inputs.filters_per_group, users=inputs.users,
            cores=inputs.cores, profile=inputs.profile, reads=inputs.reads,
        )
        result = simulate(config, costs)
    except (ConfigError, ValueError, TypeError) as exc:
        return Prediction(inputs, error=str(exc))
    except Exception as exc:  # a model bug must not take the dashboard down
        log.exception("capacity model failed for %s", inputs)
        return Prediction(inputs, error=f"capacity model failed: {exc}")
    e2e = result.end_to_end_percentiles((50, 99))
    return Prediction(
        inputs=inputs,
        keeps_up=bool(result.keeps_up),
        reasons=list(result.reasons),
        groups=list(result.groups),
        visit_seconds=[_tolist(row) for row in result.visit_seconds],
        lag_t=_tolist(result.lag_t),
        lag_messages=[_tolist(row) for row in result.lag_messages],
        lag_seconds=[_tolist(row) for row in result.lag_seconds],
        e2e_p50=e2e.get(50, math.nan),
        e2e_p99=e2e.get(99, math.nan),
        wall_seconds=float(result.wall_seconds),
    )
