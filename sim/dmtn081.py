"""Replay of the 2018 DMTN-081 observations with hand-entered 2018 costs.

Two layouts of the 2018 prototype, both fed 10,000 small (2016-schema, ~2 KB) alerts
per 39-s visit by a producer on its own node sending 635 alerts/s (10,000 in 15.76 s):

- :func:`group_config`: a filter group of ``filters`` filters as one container: a parent
  that decodes every alert and hands it to a 10-process pool once per filter, on
  ``cores`` CPUs (Kafka and the end consumers on other nodes);
- :func:`swarm_config`: the one-filter-per-container layout, 20 single-filter
  containers per node next to the node's Kafka mirror, on ``cores`` CPUs.

The costs are in ``sim/dmtn081_2018.json``; ``sim/DMTN081.md`` gives their sources and
the numbers :func:`reproduce` prints.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sim.capacity import cores_needed, find_knee
from sim.costs import Calibration, Costs
from sim.model import Config, simulate

__all__ = [
    "COSTS_2018",
    "cores_by_scale",
    "cores_by_worker_cost",
    "costs_2018",
    "filters_by_cores",
    "group_config",
    "layouts",
    "reproduce",
    "swarm_config",
]

COSTS_2018 = Path(__file__).with_name("dmtn081_2018.json")
SEND_RATE_2018 = 10_000 / 15.76  # alerts/s: the swarm README's slowest visit


def costs_2018(scale: float = 1.0) -> Costs:
    """The hand-entered 2018 costs, every one multiplied by ``scale`` (sensitivity)."""
    costs = Calibration.load(COSTS_2018).costs("dmtn081")
    return replace(costs, **{f.name: getattr(costs, f.name) * scale for f in fields(costs)})


def _common(**changes: Any) -> Config:
    base = Config(
        alerts_per_visit=10_000, interval=39.0, visits=6, profile="dmtn081", reads="full",
        send_rate=SEND_RATE_2018, producer_batch=100, fetch_max=200, cap=20,
        pass_fraction=0.01, users=0, outputs_visible="batch",
        dedicated=frozenset({"producer", "users"}),
    )
    return base.with_(**changes)


def group_config(filters: int = 20, cores: float = 8.0, groups: int = 1) -> Config:
    """``groups`` 2018 filter groups of ``filters`` filters sharing ``cores`` CPUs."""
    return _common(design="dmtn081_pool", pool_size=10, groups=groups,
                   filters_per_group=filters, cores=cores,
                   dedicated=frozenset({"producer", "users", "broker"}))


def swarm_config(containers: int = 20, cores: float = 4.0) -> Config:
    """One node of the 2018 swarm: ``containers`` single-filter containers + a Kafka mirror."""
    return _common(design="minibroker", groups=containers, filters_per_group=1, cores=cores)


def layouts(scale: float = 1.0) -> list[dict[str, Any]]:
    """Table 1 of DMTN081.md: each 2018 layout's verdict with the 2018 costs x ``scale``."""
    costs = costs_2018(scale)
    rows = []
    for label, cfg in (
        ("group of 20 filters, 1 core", group_config(cores=1)),
        ("group of 20 filters, 2 cores", group_config(cores=2)),
        ("group of 20 filters, 15 cores", group_config(cores=15)),
        ("5 groups of 20 filters sharing 15 cores", group_config(cores=15, groups=5)),
        ("swarm node: 20 one-filter containers + Kafka mirror, 1 core",
         swarm_config(cores=1)),
        ("swarm node: 20 one-filter containers + Kafka mirror, 4 cores",
         swarm_config(cores=4)),
    ):
        res = simulate(cfg, costs)
        rows.append({
            "layout": label,
            "verdict": "keeps up" if res.keeps_up else "falls behind",
            "visit_mean_s": max(r.visit_mean for r in res.summary()),
            "after_last_sent_s": float((res.visit_last - res.visit_published).mean()),
            "final_lag": max(r.final_lag_messages for r in res.summary()),
        })
    return rows


def cores_by_scale(scales: tuple[float, ...] = (1.0, 1.25, 1.5, 1.55, 1.58, 1.6, 1.62,
                                                1.64, 1.65, 2.0)) -> list[dict[str, Any]]:
    """Table 2: cores a group of 20 filters needs when every 2018 cost is scaled."""
    return [{"scale": s, "cores_needed": cores_needed(group_config(), costs_2018(s),
                                                      max_cores=64)} for s in scales]


def cores_by_worker_cost(costs_ms: tuple[float, ...] = (0.1, 0.5, 1.0, 1.5, 1.9, 2.0)
                         ) -> list[dict[str, Any]]:
    """Table 3: cores a group of 20 filters needs against the workers' per-task cost."""
    base = costs_2018()
    return [{"dispatch_worker_ms": ms,
             "cores_needed": cores_needed(group_config(),
                                          replace(base, dispatch_worker=ms / 1000),
                                          max_cores=64)} for ms in costs_ms]


def filters_by_cores(cores: tuple[float, ...] = (1, 2, 4, 8, 16, 32)) -> list[dict[str, Any]]:
    """Table 4: most filters a 2018 group keeps up with, against cores."""
    costs = costs_2018()
    return [{"cores": c, "max_filters": find_knee(group_config(cores=c), costs,
                                                  "filters_per_group", lo=1, hi=200,
                                                  tolerance=0.0).value} for c in cores]


def reproduce() -> dict[str, list[dict[str, Any]]]:
    """Every table of DMTN081.md (about 10 s)."""
    return {"layouts": layouts(), "cores_by_scale": cores_by_scale(),
            "cores_by_worker_cost": cores_by_worker_cost(),
            "filters_by_cores": filters_by_cores()}


def _passes(alert: dict[str, Any]) -> bool:
    """A 2018-style filter for the pool measurement: one cut on diaSource."""
    return float((alert.get("diaSource") or {}).get("snr") or 0.0) > 5.0


def measure_pool_dispatch(tasks: int = 20_000, pool_size: int = 10) -> dict[str, float]:
    """CPU seconds per task of the 2018 dispatch, measured on this machine.

    A ``multiprocessing`` pool of ``pool_size`` receives ``apply_async(filter, (alert,))``
    for decoded ``dmtn081`` alerts, as the 2018 parent did once per filter. Returns the
    parent's CPU per task (its handler threads included) and the workers' CPU per task
    (children CPU from ``getrusage``, pool start/stop included, so slightly high), plus
    ``pickle.dumps``/``loads`` of one alert for reference. Takes a few seconds.
    """
    import multiprocessing
    import pickle
    import resource
    import time

    from broker.alerts import Decoder
    from broker.generator import generate_visit

    decoder = Decoder(None)
    alerts = [decoder.decode(d) for d in generate_visit(1, 100, profile="dmtn081", seed=0)]
    blobs = [pickle.dumps(a) for a in alerts]
    start = time.thread_time()
    for _ in range(20):
        for a in alerts:
            pickle.dumps(a)
    dumps = (time.thread_time() - start) / (20 * len(alerts))
    start = time.thread_time()
    for _ in range(20):
        for b in blobs:
            pickle.loads(b)
    loads = (time.thread_time() - start) / (20 * len(blobs))
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with multiprocessing.get_context("fork").Pool(pool_size) as pool:
        pool.map(_passes, alerts)  # start the workers before timing
        cpu0 = time.process_time()
        pending = []
        for i in range(tasks):
            pending.append(pool.apply_async(_passes, (alerts[i % len(alerts)],)))
            if len(pending) >= 2000:  # bound memory like a steady stream would
                for r in pending:
                    r.get()
                pending.clear()
        for r in pending:
            r.get()
        parent = (time.process_time() - cpu0) / tasks
        pool.close()
        pool.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = (children.ru_utime + children.ru_stime - children_before.ru_utime
              - children_before.ru_stime) / tasks
    return {"parent_per_task": parent, "worker_per_task": worker,
            "pickle_dumps": dumps, "pickle_loads": loads,
            "pickled_bytes": sum(map(len, blobs)) / len(blobs)}


if __name__ == "__main__":  # python -m sim.dmtn081 prints the tables of DMTN081.md
    from sim.report import format_rows

    for name, table in reproduce().items():
        print(f"{name}:\n{format_rows(table)}\n")
