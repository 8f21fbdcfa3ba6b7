"""Capacity knees and curves: bisection over runs of the model.

Each search assumes the verdict is monotone in the parameter (more alerts or filters
never help, more cores never hurt), which the property tests check. Progress goes to
the ``sim.capacity`` logger, one line per run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sim.costs import Costs
from sim.model import Config, Result, simulate

__all__ = [
    "KNEE_PARAMS",
    "Knee",
    "cores_needed",
    "find_knee",
    "sweep_alerts",
    "sweep_cores",
    "sweep_filters",
]

log = logging.getLogger(__name__)

# Integer parameters whose growth makes a configuration harder.
KNEE_PARAMS = ("alerts_per_visit", "filters_per_group", "groups", "users")


@dataclass(frozen=True)
class Knee:
    """Result of :func:`find_knee`: the largest ``value`` that keeps up.

    ``value`` is None when even ``lo`` falls behind; ``bounded`` is False when ``hi``
    still keeps up (the knee lies beyond the search range). ``runs`` counts simulations.
    """

    param: str
    value: int | None
    bounded: bool
    runs: int


def _run(config: Config, costs: Costs, what: str) -> Result:
    started = time.perf_counter()
    result = simulate(config, costs)
    log.info("%s -> %s (%.1f s)", what, "keeps up" if result.keeps_up else "falls behind",
             time.perf_counter() - started)
    return result


def find_knee(config: Config, costs: Costs, param: str = "alerts_per_visit", *,
              lo: int = 1, hi: int = 1_000_000, tolerance: float = 0.01) -> Knee:
    """Largest integer ``param`` in [lo, hi] for which ``config`` keeps up.

    Doubles from ``lo`` to bracket the knee, then bisects until the bracket is within
    ``tolerance`` (relative; at least 1), so the answer is at most that far below the
    exact knee.
    """
    if param not in KNEE_PARAMS:
        raise ValueError(f"param must be one of {', '.join(KNEE_PARAMS)}, got {param!r}")
    if not 0 <= lo <= hi:
        raise ValueError(f"need 0 <= lo <= hi, got lo={lo}, hi={hi}")
    runs = 0

    def ok(value: int) -> bool:
        nonlocal runs
        runs += 1
        return _run(config.with_(**{param: value}), costs, f"{param}={value}").keeps_up

    if not ok(lo):
        return Knee(param, None, True, runs)
    good, bad = lo, None
    probe = max(lo * 2, lo + 1)
    while bad is None:  # bracket
        probe = min(probe, hi)
        if ok(probe):
            good = probe
            if probe == hi:
                return Knee(param, hi, False, runs)
            probe *= 2
        else:
            bad = probe
    while bad - good > max(1, math.floor(tolerance * good)):
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return Knee(param, good, True, runs)


def cores_needed(config: Config, costs: Costs, *, max_cores: int = 256) -> int | None:
    """Smallest whole number of cores for which ``config`` keeps up (None: > max_cores)."""
    def ok(cores: int) -> bool:
        return _run(config.with_(cores=float(cores)), costs, f"cores={cores}").keeps_up

    if not ok(max_cores):
        return None
    lo, hi = 0, max_cores  # lo falls behind (0 cores trivially), hi keeps up
    probe = 1
    while probe < hi:  # double up from one core: small answers need few runs
        if ok(probe):
            hi = probe
            break
        lo = probe
        probe *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def sweep_cores(config: Config, costs: Costs, alerts: Sequence[int], *,
                max_cores: int = 256) -> list[dict[str, Any]]:
    """Cores needed against alerts per visit: one row per value of ``alerts``."""
    rows = []
    for n in alerts:
        log.info("sweep: cores needed for %d alerts per visit", n)
        cfg = config.with_(alerts_per_visit=int(n))
        cores = cores_needed(cfg, costs, max_cores=max_cores)
        row: dict[str, Any] = {"alerts_per_visit": int(n), "cores_needed": cores,
                               "visit_mean_s": math.nan, "note": ""}
        if cores is not None:
            res = simulate(cfg.with_(cores=float(cores)), costs)
            row["visit_mean_s"] = _mean_visit(res)
        else:
            row["note"] = _why_never(cfg, costs)
        rows.append(row)
    return rows


def sweep_filters(config: Config, costs: Costs, cores: Sequence[float], *,
                  max_filters: int = 1000) -> list[dict[str, Any]]:
    """Most filters per group that keep up, against cores: one row per core count."""
    rows = []
    for c in cores:
        log.info("sweep: most filters per group on %g cores", c)
        knee = find_knee(config.with_(cores=float(c)), costs, "filters_per_group",
                         lo=1, hi=max_filters, tolerance=0.0)
        rows.append({"cores": float(c), "max_filters_per_group": knee.value,
                     "beyond_range": not knee.bounded})
    return rows


def sweep_alerts(config: Config, costs: Costs, cores: Sequence[float], *,
                 max_alerts: int = 1_000_000, tolerance: float = 0.01) -> list[dict[str, Any]]:
    """Most alerts per visit that keep up, against cores: one row per core count."""
    rows = []
    for c in cores:
        log.info("sweep: most alerts per visit on %g cores", c)
        knee = find_knee(config.with_(cores=float(c)), costs, "alerts_per_visit",
                         lo=100, hi=max_alerts, tolerance=tolerance)
        rows.append({"cores": float(c), "max_alerts_per_visit": knee.value,
                     "beyond_range": not knee.bounded})
    return rows


def _why_never(config: Config, costs: Costs) -> str:
    """Explain a configuration no core count rescues: usually one process is the limit."""
    res = simulate(config.with_(cores=float(config.groups * (config.pool_size + 1) + 8),
                                visits=1, users=0), costs)
    busiest = max(res.cpu_seconds.get(g, 0.0) for g in res.groups)
    if busiest > config.interval:
        return (f"one filter group (one process) needs {busiest:.0f} s of CPU per "
                f"{config.interval:g}-s visit, so no core count helps: make its filters "
                "read less (diaSource only, or history for fewer alerts) or decode faster")
    return "falls behind at every core count tried"


def _mean_visit(result: Result) -> float:
    """Mean visit processing time of the slowest group."""
    rows = [r.visit_mean for r in result.summary() if not math.isnan(r.visit_mean)]
    return max(rows) if rows else math.nan
