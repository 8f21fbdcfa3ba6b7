"""The SimPy capacity model of the mini-broker: will a configuration keep up?

Public API (stable; the dashboard and ``minibroker sim validate`` use it):

- :class:`Config` one configuration (alerts per visit, interval, groups, filters, users,
  cores, alert profile, design, ...); :meth:`Config.validate` raises :class:`ConfigError`.
- :func:`simulate(config, costs) -> Result <simulate>` runs it (fixed seed, deterministic).
- :class:`Result` per-group per-visit processing times, lag over time, end-to-end latency,
  the keeps-up verdict with reasons, and :meth:`Result.summary` /
  :meth:`Result.lag_records` / :meth:`Result.to_dict` helpers.

What is modelled
----------------
*Producer*: visit ``v`` starts at ``v * interval``; its alerts are sent at ``send_rate``
(evenly, or as a Poisson process with ``arrivals="poisson"``), in chunks of
``producer_batch`` that cost ``producer_send`` CPU each per alert, chunk ``k`` to
partition ``k mod partitions``. As ``broker.producer`` does, the alerts of visit
``v + 1`` are serialised (``producer_prepare`` per alert) as soon as visit ``v`` is
published, before visit ``v + 1`` is due (the first visit's before the run starts).
*Kafka*: each partition is an append-only log of alert timestamps; a chunk becomes
visible after the broker's append thread has spent
``broker_in`` per alert on it; every alert served to a consumer costs the broker's fetch
thread ``broker_out``, or ``broker_out_tail`` when the group takes everything up to the
end of the log while the producer is still sending (it reads each batch as it lands,
in many small fetches; the group then pays ``consume_tail`` per alert instead of
``consume``). Each group keeps its own offsets (each group reads the full
stream). *Fetch*: a consumer takes up to ``fetch_max`` available alerts of one partition
(never across a visit boundary) as one job; when nothing is available it long-polls:
it wakes when data arrives or after ``fetch_wait``.

*Filter group* (``design="minibroker"``): one Python process (at most one core, the GIL)
paying per alert ``consume + decode(reads) + group_overhead + filters * per_filter``,
per output alert
``produce`` and per visit ``per_visit``; with ``reads="history"`` only a
``history_fraction`` of the alerts pay the history part of the decode (the group's
staged decoding reads prvDiaSources only for alerts passing a diaSource prefilter);
``history_fractions`` gives each group its own fraction (groups run different filters).
*2018 design* (``design="dmtn081_pool"``): a
parent process pays ``consume + decode(reads) + filters * dispatch_parent`` per alert
(it decodes and hands each alert to the pool once per filter) and ``per_visit``; a pool
of ``pool_size`` worker processes pays ``filters * (dispatch_worker + per_filter)`` per
alert and ``produce`` per output, each batch split equally between the workers.

*Outputs*: filter ``i`` of a group passes a deterministic, evenly spaced fraction
``pass_fraction`` of the alerts in the order the group reads them (a per-filter phase
keeps filters from passing the same alerts), at most ``cap`` per visit;
``pass_fractions`` gives every filter (and optionally every visit) its own fraction, so a
filter that reaches its cap early, or passes little, stops producing outputs where the
real one does. As in
``broker.filter_group``, outputs are visible to end consumers when the group's Kafka
transaction commits (``outputs_visible="commit"``): after a job once ``commit_interval``
seconds or ``commit_every`` alerts have passed since the last commit, or when the group
has found nothing to fetch for ``fetch_wait`` seconds (librdkafka's end-of-partition
event needs a long poll that comes back empty, so a group keeping pace with a producer
that is still sending never sees it) and ``commit_idle`` seconds have passed; a commit
costs ``commit`` CPU,
the broker ``broker_commit`` plus ``broker_marker`` per output topic written in the
transaction, and blocks the group ``commit_wait`` seconds; a visit
is *committed* (its input offsets are visible to the lag exporter) by the commit after
its last alert. ``"batch"`` makes outputs visible at the end of
their job (no transactions; always so in the 2018 design), ``"visit"`` at the end of the
visit. *End consumers*: user ``u`` reads filter ``u mod (groups * filters_per_group)``,
paying ``user_receive`` per alert. *Cores*: every process above shares ``cores`` cores
by processor sharing (:mod:`sim.cpu`), except the producer, broker or users when
``dedicated`` names them (they then run on machines of their own, as in the 2018
cluster).

Batching and its error
----------------------
Alerts are never simulated one by one: a producer chunk and a consumer job are batches
of up to ``producer_batch`` / ``fetch_max`` alerts, so a run costs a few events per batch,
not per alert. Costs are linear in the number of alerts and processor sharing is exact,
so a batch's CPU time and end time are exact; batching only changes *when inside* a batch
each alert counts as done:

- an alert becomes visible up to one producer chunk late (``producer_batch / send_rate``,
  0.04 s at the defaults), so a visit's end is at most one chunk late when the group
  keeps pace with the producer;
- a consumer job takes what is available, up to ``fetch_max``, as the real
  ``consume(1000)`` loop does; its alerts count as done at the end of the job, so
  per-alert latencies and lag samples are late by at most one job (``fetch_max`` times
  the per-alert cost) while a visit's start and end stay exact;
- ``producer_batch=1, fetch_max=1`` is the alert-by-alert model (used by the
  queueing-theory tests).

Lag is sampled every ``sample_interval`` seconds and counts alerts not yet processed;
the lag exporter counts alerts not yet committed, at most one commit interval more.
Per-alert group latencies are kept for at most 100,000 alerts per group (every k-th
alert beyond that) to bound memory.

Verdict
-------
A group *keeps up* when every visit's last alert is processed before the next visit
starts (``(v + 1) * interval``) **and** its lag does not grow across visits (the
least-squares slope of its backlog at visit boundaries is at most 1% of a visit). The
configuration keeps up when every group does, the producer publishes each visit within
the interval, and no end consumer is more than ``cap`` alerts behind at a boundary.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import simpy

from sim.costs import READS, Costs
from sim.cpu import CpuPool, Thread

__all__ = [
    "ARRIVALS",
    "DEDICATED",
    "DESIGNS",
    "VISIBILITY",
    "Config",
    "ConfigError",
    "GroupSummary",
    "Result",
    "simulate",
]

DESIGNS = ("minibroker", "dmtn081_pool")
ARRIVALS = ("paced", "poisson")
VISIBILITY = ("commit", "batch", "visit")
DEDICATED = ("producer", "broker", "users")

# With drain=True a run stops at the latest after this many times the nominal duration
# (visits * interval), so a hopelessly overloaded configuration still ends quickly.
_DRAIN_LIMIT = 20.0
# Per-alert group latencies kept per group (every k-th alert beyond this).
_LATENCY_KEEP = 100_000


class ConfigError(ValueError):
    """An impossible configuration (zero cores, negative rates, ...)."""


@dataclass(frozen=True)
class Config:
    """One configuration of the mini-broker to simulate. Times in seconds."""

    alerts_per_visit: int = 10_000
    interval: float = 39.0
    """Seconds between visit starts."""
    visits: int = 10
    groups: int = 5
    filters_per_group: int = 20
    users: int = 100
    """End consumers; user ``u`` reads filter ``u mod (groups * filters_per_group)``."""
    cores: float = 2.0
    """Cores shared by every process not in ``dedicated``."""
    profile: str = "realistic"
    """Alert profile whose costs to use (``realistic`` or ``dmtn081``)."""
    reads: str = "diaSource"
    """What the filters read: ``diaSource``, ``history`` (prvDiaSources) or ``full``."""
    history_fraction: float = 1.0
    """With ``reads="history"``: fraction of alerts whose history is decoded (staged
    decoding decodes it only for alerts that pass a cheap diaSource prefilter)."""
    history_fractions: tuple[float, ...] = ()
    """With ``reads="history"``: one fraction per group, replacing ``history_fraction``
    (empty: every group uses ``history_fraction``)."""
    partitions: int = 1
    cap: int = 20
    """At most this many outputs per filter per visit."""
    pass_fraction: float = 0.01
    """Fraction of alerts each filter passes (before the cap)."""
    pass_fractions: tuple[tuple[float, ...], ...] = ()
    """Per filter (every group's filters in order, ``groups * filters_per_group``): the
    fraction it passes, replacing ``pass_fraction``; one row for all visits or one row
    per visit (empty: every filter passes ``pass_fraction``)."""
    design: str = "minibroker"
    """``minibroker`` (one process per group) or ``dmtn081_pool`` (2018 parent + pool)."""
    pool_size: int = 10
    """Worker processes per group in the ``dmtn081_pool`` design."""
    send_rate: float | None = 5000.0
    """Producer pacing in alerts/s; None sends as fast as its CPU allows."""
    arrivals: str = "paced"
    """``paced`` (evenly spaced sends) or ``poisson`` (exponential gaps at send_rate)."""
    producer_batch: int = 200
    fetch_max: int = 1000
    """Most alerts consumed as one job (broker.filter_group consumes batches of 1000)."""
    fetch_wait: float = 0.1
    outputs_visible: str = "commit"
    """``commit`` (at transaction commits), ``batch`` (as produced) or ``visit``."""
    commit_interval: float = 0.5
    commit_every: int = 5000
    commit_idle: float = 0.05
    dedicated: frozenset[str] = frozenset()
    """Processes that do not share the cores: any of producer, broker, users."""
    jitter: float = 0.0
    """Relative standard deviation of per-alert costs (0: deterministic costs)."""
    sample_interval: float = 1.0
    drain: bool = True
    """Keep simulating after the last visit until every alert is processed."""
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible value."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(isinstance(self.cores, int | float) and self.cores > 0
             and math.isfinite(self.cores),
             f"cores must be a number greater than zero, got {self.cores}")
        for name in ("alerts_per_visit", "visits", "partitions", "pool_size",
                     "producer_batch", "fetch_max", "commit_every"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1,
                 f"{name} must be a whole number >= 1, got {value}")
        for name in ("groups", "filters_per_group", "users", "cap"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 0,
                 f"{name} must be a whole number >= 0, got {value}")
        need(self.groups >= 1, f"groups must be at least 1, got {self.groups}")
        for name in ("interval", "fetch_wait", "sample_interval", "commit_interval"):
            value = getattr(self, name)
            need(value > 0 and math.isfinite(value),
                 f"{name} must be a number of seconds greater than zero, got {value}")
        need(self.send_rate is None or (self.send_rate > 0 and math.isfinite(self.send_rate)),
             f"send_rate must be greater than zero alerts/s (or unlimited), got {self.send_rate}")
        need(0 <= self.history_fraction <= 1,
             f"history_fraction must be between 0 and 1, got {self.history_fraction}")
        need(len(self.history_fractions) in (0, self.groups),
             f"history_fractions needs one value per group ({self.groups}), got "
             f"{len(self.history_fractions)}")
        need(all(0 <= h <= 1 for h in self.history_fractions),
             f"history_fractions must be between 0 and 1, got {list(self.history_fractions)}")
        rows = len(self.pass_fractions)
        need(rows in (0, 1, self.visits),
             f"pass_fractions needs one row, or one row per visit ({self.visits}), got {rows}")
        n_filters = self.groups * self.filters_per_group
        for row in self.pass_fractions:
            need(len(row) == n_filters,
                 f"each pass_fractions row needs one value per filter ({n_filters}), got "
                 f"{len(row)}")
            need(all(0 <= x <= 1 for x in row),
                 "pass_fractions must be between 0 and 1")
        need(0 <= self.pass_fraction <= 1,
             f"pass_fraction must be between 0 and 1, got {self.pass_fraction}")
        need(self.jitter >= 0, f"jitter must be zero or greater, got {self.jitter}")
        need(self.commit_idle >= 0, f"commit_idle must be zero or greater, got {self.commit_idle}")
        need(self.design in DESIGNS,
             f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        need(self.reads in READS, f"reads must be one of {', '.join(READS)}, got {self.reads!r}")
        need(self.arrivals in ARRIVALS,
             f"arrivals must be one of {', '.join(ARRIVALS)}, got {self.arrivals!r}")
        need(self.arrivals != "poisson" or self.send_rate is not None,
             "Poisson arrivals need a send_rate")
        need(self.outputs_visible in VISIBILITY,
             f"outputs_visible must be one of {', '.join(VISIBILITY)}, "
             f"got {self.outputs_visible!r}")
        unknown = set(self.dedicated) - set(DEDICATED)
        need(not unknown, f"dedicated may name {', '.join(DEDICATED)}; got {sorted(unknown)}")

    def with_(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able mapping of the fields."""
        data = asdict(self)
        data["dedicated"] = sorted(self.dedicated)
        data["history_fractions"] = list(self.history_fractions)
        data["pass_fractions"] = [list(row) for row in self.pass_fractions]
        return data


@dataclass(frozen=True)
class GroupSummary:
    """One row of the ``sim run`` table."""

    name: str
    visit_mean: float
    visit_p99: float
    visit_max: float
    visits_done: int
    final_lag_messages: int
    """Alerts not processed when the visit after the last one would start."""
    final_lag_seconds: float
    lag_growth: float
    """Least-squares growth of the backlog at visit boundaries, alerts per visit."""
    cpu_seconds: float
    keeps_up: bool


@dataclass
class Result:
    """What :func:`simulate` returns. Arrays are numpy; times are seconds from t=0.

    ``visit_first[g, v]`` is when group ``g`` consumed visit ``v``'s first alert and
    ``visit_last[g, v]`` when it finished its last one (NaN: not by the end of the run);
    ``visit_acked[g, v]`` when its last output became visible to end consumers.
    ``boundary_lag[g, j]`` counts alerts of visits ``<= j`` that group ``g`` had not
    processed (published yet or not) at ``(j + 1) * interval``, when visit ``j + 1``
    starts (for the last column: the end of the nominal run).
    ``lag_messages[g, s]`` / ``lag_seconds[g, s]`` are sampled at ``lag_t[s]``: alerts
    published but not yet processed, and the age of the oldest of them (0 when none); in
    the 2018 design this includes alerts queued inside the pool, which Kafka's committed
    offsets would hide.
    """

    config: Config
    costs: Costs
    groups: list[str]
    visit_start: np.ndarray
    visit_published: np.ndarray
    visit_first: np.ndarray
    visit_last: np.ndarray
    visit_acked: np.ndarray
    """(groups, visits) when the visit's last output became visible (NaN: no output)."""
    boundary_lag: np.ndarray
    lag_t: np.ndarray
    lag_messages: np.ndarray
    lag_seconds: np.ndarray
    end_to_end: np.ndarray
    """Alert produced -> processed by an end consumer, every delivered alert."""
    group_latency: list[np.ndarray]
    """Per group: alert produced -> processed by the group, every alert."""
    cpu_seconds: dict[str, float]
    group_keeps_up: list[bool]
    reasons: list[str]
    user_backlog: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Largest end-consumer backlog (alerts) at each visit boundary."""
    wall_seconds: float = 0.0
    visit_committed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """(groups, visits) when the commit covering the visit's last alert completed (its
    input offsets visible to the lag exporter; = ``visit_last`` without transactions)."""

    @property
    def keeps_up(self) -> bool:
        """True when nothing falls behind (see the module docstring)."""
        return not self.reasons

    @property
    def visit_seconds(self) -> np.ndarray:
        """(groups, visits) processing time: first alert consumed -> last processed."""
        return self.visit_last - self.visit_first

    @property
    def visit_commit_seconds(self) -> np.ndarray:
        """(groups, visits) first alert consumed -> the visit's last alert committed, as
        a group's committed offsets show it."""
        return self.visit_committed - self.visit_first

    @property
    def visit_metric_seconds(self) -> np.ndarray:
        """(groups, visits) as ``minibroker_filter_visit_seconds`` measures a visit: first
        alert consumed -> last output acknowledged (last alert processed if none)."""
        end = np.where(np.isnan(self.visit_acked), self.visit_last, self.visit_acked)
        return end - self.visit_first

    def lag_records(self) -> list[tuple[float, str, int, float]]:
        """The lag series as (t, group, lag_messages, lag_seconds) rows."""
        rows = []
        for s, t in enumerate(self.lag_t):
            for g, name in enumerate(self.groups):
                rows.append((float(t), name, int(self.lag_messages[g, s]),
                             float(self.lag_seconds[g, s])))
        return rows

    def end_to_end_percentiles(self, qs: tuple[float, ...] = (50, 99)) -> dict[float, float]:
        """Percentiles of end-to-end latency (NaN when nothing was delivered)."""
        if self.end_to_end.size == 0:
            return {q: math.nan for q in qs}
        values = np.percentile(self.end_to_end, qs)
        return {q: float(v) for q, v in zip(qs, values, strict=True)}

    def summary(self) -> list[GroupSummary]:
        """One :class:`GroupSummary` per group."""
        rows = []
        interval = self.config.interval
        for g, name in enumerate(self.groups):
            seconds = self.visit_seconds[g]
            done = seconds[~np.isnan(seconds)]
            stats = (float(np.mean(done)), float(np.percentile(done, 99)),
                     float(np.max(done))) if done.size else (math.nan,) * 3
            rows.append(GroupSummary(
                name=name,
                visit_mean=stats[0], visit_p99=stats[1], visit_max=stats[2],
                visits_done=int(done.size),
                final_lag_messages=int(self.boundary_lag[g, -1]),
                final_lag_seconds=self._lag_seconds_at(g, self.config.visits * interval),
                lag_growth=_slope(self.boundary_lag[g]),
                cpu_seconds=self.cpu_seconds.get(name, 0.0)
                + self.cpu_seconds.get(f"{name}-pool", 0.0),
                keeps_up=self.group_keeps_up[g],
            ))
        return rows

    def _lag_seconds_at(self, g: int, t: float) -> float:
        if self.lag_t.size == 0:
            return 0.0
        s = int(np.searchsorted(self.lag_t, t + 1e-9, side="right")) - 1
        return float(self.lag_seconds[g, max(s, 0)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: config, costs, verdict, per-group rows, latency percentiles."""
        e2e = self.end_to_end_percentiles((50, 90, 99))
        return {
            "config": self.config.to_dict(),
            "costs": self.costs.to_dict(),
            "keeps_up": self.keeps_up,
            "reasons": list(self.reasons),
            "groups": [asdict(row) for row in self.summary()],
            "visit_seconds": [[None if math.isnan(x) else float(x) for x in row]
                              for row in self.visit_seconds],
            "boundary_lag": self.boundary_lag.tolist(),
            "end_to_end": {f"p{int(q)}": v for q, v in e2e.items()},
            "cpu_seconds": self.cpu_seconds,
        }


def _slope(values: np.ndarray) -> float:
    if values.size < 2:
        return 0.0
    x = np.arange(values.size, dtype=float)
    return float(np.polyfit(x, values.astype(float), 1)[0])


class _Group:
    """Mutable state of one filter group during a run."""

    def __init__(self, index: int, name: str, partitions: int, visits: int) -> None:
        self.index = index
        self.name = name
        self.offsets = [0] * partitions  # next alert to fetch, per partition
        self.done_off = [0] * partitions  # first alert not fully processed, per partition
        self.seen = np.zeros(visits, dtype=np.int64)  # alerts fetched, per visit
        self.processed = np.zeros(visits, dtype=np.int64)  # alerts fully processed
        self.processed_total = 0
        self.consumed_total = 0
        self.first = np.full(visits, np.nan)
        self.last = np.full(visits, np.nan)
        self.latencies: list[np.ndarray] = []
        self.acked = np.full(visits, np.nan)  # last output of the visit visible
        self.pending: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.txn: list[tuple[int, list[tuple[int, np.ndarray]]]] = []  # (visit, outputs)
        self.txn_alerts = 0
        self.txn_start = 0.0
        self.txn_finished: list[int] = []  # visits whose last alert is in the open txn
        self.idle_since = math.nan  # since when nothing was available to fetch
        self.committed = np.full(visits, np.nan)
        self.per_alert = 0.0
        self.next_partition = 0
        self.owner = -1
        self.pool: Thread | None = None


class _Sim:
    """One run. Build, :meth:`run`, then read the result."""

    def __init__(self, config: Config, costs: Costs) -> None:
        c = self.config = config
        self.costs = costs
        self.env = simpy.Environment()
        self.rng = np.random.default_rng(c.seed)
        self.cpu = CpuPool(self.env, c.cores)
        elsewhere = CpuPool(self.env, math.inf)
        self.pools = [self.cpu, elsewhere]

        def pool_for(role: str) -> CpuPool:
            return elsewhere if role in c.dedicated else self.cpu

        self.producer_pool = pool_for("producer")
        self.producer_owner = self.producer_pool.owner("producer")
        self.broker_append = Thread(pool_for("broker"), "kafka-append")
        self.broker_fetch = Thread(pool_for("broker"), "kafka-fetch")

        V = c.visits
        self.counts = np.full(V, c.alerts_per_visit, dtype=np.int64)
        self.total = int(self.counts.sum())
        # Partition logs, preallocated: alert timestamp and visit of every offset.
        sizes = self._partition_sizes()
        self.log_time = [np.empty(n) for n in sizes]
        self.log_visit = [np.empty(n, dtype=np.int64) for n in sizes]
        # Keep every k-th alert's group latency: at most _LATENCY_KEEP per group.
        self.latency_stride = max(1, math.ceil(self.total / _LATENCY_KEEP))
        self.log_end = [0] * c.partitions
        self.published = np.zeros(V, dtype=np.int64)
        self.published_total = 0
        self.sending = False  # the producer is in the middle of publishing a visit
        self.visit_start = np.full(V, np.nan)
        self.visit_published = np.full(V, np.nan)
        self.arrival = self.env.event()

        self.groups: list[_Group] = []
        for g in range(c.groups):
            grp = _Group(g, f"group{g + 1}", c.partitions, V)
            grp.owner = self.cpu.owner(grp.name)
            if c.design == "dmtn081_pool":
                grp.pool = Thread(self.cpu, f"{grp.name}-pool", width=c.pool_size)
            self.groups.append(grp)

        n_filters = c.groups * c.filters_per_group
        users_pool = pool_for("users")
        self.users = [Thread(users_pool, f"user{u + 1}") for u in range(c.users)] \
            if n_filters else []
        self.users_of: list[list[int]] = [[] for _ in range(n_filters)]
        for u in range(len(self.users)):
            self.users_of[u % n_filters].append(u)
        self.user_pending = np.zeros(len(self.users), dtype=np.int64)
        self.e2e: list[np.ndarray] = []
        # Pass positions per (pass_fractions row, group): (filters, cap) and the last one.
        F = c.filters_per_group
        self.positions: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        if c.pass_fractions:
            for r, row in enumerate(c.pass_fractions):
                for g in range(c.groups):
                    self.positions[r, g] = self._last(self._pass_positions(
                        np.asarray(row[g * F:(g + 1) * F], dtype=float)))
        else:
            shared = self._last(self._pass_positions(np.full(F, c.pass_fraction)))
            for g in range(c.groups):
                self.positions[0, g] = shared

        self.boundary_lag = np.zeros((c.groups, V), dtype=np.int64)
        self.user_backlog = np.zeros(V, dtype=np.int64)
        self.lag_t: list[float] = []
        self.lag_msgs: list[list[int]] = []
        self.lag_secs: list[list[float]] = []
        decode = costs.decode(c.reads)
        for g, grp in enumerate(self.groups):
            grp_decode = decode
            if c.reads == "history":
                h = c.history_fractions[g] if c.history_fractions else c.history_fraction
                grp_decode = costs.decode_source + h * (decode - costs.decode_source)
            grp.per_alert = costs.consume + grp_decode + costs.group_overhead
        # Visit v is published (every alert appended): the producer serialises v + 1.
        self.published_event = [self.env.event() for _ in range(V)]
        # The 2018 design had no transactions: its outputs were visible as produced.
        self.visibility = "batch" if c.design == "dmtn081_pool" and \
            c.outputs_visible == "commit" else c.outputs_visible

    def _partition_sizes(self) -> list[int]:
        """Alerts each partition will hold: chunk k of the run goes to partition k mod P."""
        c = self.config
        sizes = [0] * c.partitions
        chunk = 0
        for n in self.counts:
            for k in range(0, int(n), c.producer_batch):
                sizes[chunk % c.partitions] += min(c.producer_batch, int(n) - k)
                chunk += 1
        return sizes

    # -- outputs -------------------------------------------------------------------
    def _pass_positions(self, fractions: np.ndarray) -> np.ndarray:
        """(filters, cap) positions, in a group's reading order within a visit, of the
        alerts each filter passes: evenly spaced at its pass fraction (``fractions[i]``)
        with a per-filter phase, the first ``cap`` only; +inf pads filters with fewer
        passes."""
        c = self.config
        F, cap = c.filters_per_group, c.cap
        positions = np.full((F, max(cap, 1)), np.inf)
        if cap == 0 or F == 0:
            return positions
        j = np.arange(1, cap + 1)
        for i in range(F):
            pf = float(fractions[i])
            if pf <= 0:
                continue
            phase = (i + 0.5) / F
            # Alert k passes when floor(pf*(k+1) + phase) steps up: k = ceil((j-phase)/pf)-1.
            k = np.ceil((j - phase) / pf) - 1
            positions[i, :cap] = k
        return positions

    @staticmethod
    def _last(positions: np.ndarray) -> tuple[np.ndarray, float]:
        finite = positions[np.isfinite(positions)]
        return positions, float(finite.max()) if finite.size else -1.0

    def _outputs(self, grp: _Group, v: int, p: int, a: int, s: int, n: int
                 ) -> list[tuple[int, np.ndarray]]:
        """Outputs of a job: (global filter index, produce times of the passing alerts)."""
        row = v if len(self.config.pass_fractions) > 1 else 0
        pos, last_pass = self.positions[row, grp.index]
        if s > last_pass:
            return []  # every filter has reached its cap (or passes nothing) this visit
        hit = (pos >= s) & (pos < s + n)
        if not hit.any():
            return []
        times = self.log_time[p]
        F = self.config.filters_per_group
        out = []
        for i in np.nonzero(hit.any(axis=1))[0]:
            k = pos[i][hit[i]].astype(np.int64) - s
            out.append((grp.index * F + int(i), times[a + k]))
        return out

    def _deliver(self, outputs: list[tuple[int, np.ndarray]]) -> None:
        costs = self.costs
        for f, produced in outputs:
            n = len(produced)
            self.broker_append.submit(n * costs.broker_in)
            for u in self.users_of[f]:
                self.broker_fetch.submit(n * costs.broker_out)
                self.user_pending[u] += n
                self.users[u].submit(n * costs.user_receive,
                                     partial(self._received, u, produced))

    def _received(self, u: int, produced: np.ndarray) -> None:
        self.user_pending[u] -= len(produced)
        self.e2e.append(self.env.now - produced)

    # -- producer and Kafka ----------------------------------------------------------
    def _producer(self) -> Any:
        c, env = self.config, self.env
        chunk = 0
        send = self.costs.producer_send
        prepare = self.costs.producer_prepare
        for v in range(c.visits):
            if v and prepare > 0:
                # Serialise this visit once the previous one is published (acknowledged).
                yield self.published_event[v - 1]
                yield self.producer_pool.run(int(self.counts[v]) * prepare,
                                             self.producer_owner)
            start = v * c.interval
            if env.now < start:
                yield env.timeout(start - env.now)
            self.visit_start[v] = base = env.now
            self.sending = True
            n = int(self.counts[v])
            if c.send_rate is None:
                due = np.zeros(n)
            elif c.arrivals == "poisson":
                due = np.cumsum(self.rng.exponential(1.0 / c.send_rate, n))
            else:
                due = np.arange(1, n + 1) / c.send_rate
            k = 0
            while k < n:
                m = min(c.producer_batch, n - k)
                t0 = env.now
                if send > 0:
                    yield self.producer_pool.run(m * send, self.producer_owner)
                cpu_done = env.now
                last_due = base + due[k + m - 1]
                if cpu_done >= last_due and cpu_done > t0:
                    # CPU-bound: the chunk's alerts went out evenly while it ran.
                    stamps = t0 + (cpu_done - t0) * np.arange(1, m + 1) / m
                else:
                    stamps = np.maximum(base + due[k:k + m], t0)
                    if env.now < last_due:
                        yield env.timeout(last_due - env.now)
                p = chunk % c.partitions
                chunk += 1
                self.broker_append.submit(m * self.costs.broker_in,
                                          partial(self._publish, p, v, stamps))
                k += m

    def _publish(self, p: int, v: int, stamps: np.ndarray) -> None:
        m = len(stamps)
        end = self.log_end[p]
        self.log_time[p][end:end + m] = stamps
        self.log_visit[p][end:end + m] = v
        self.log_end[p] = end + m
        self.published[v] += m
        self.published_total += m
        if self.published[v] == self.counts[v]:
            self.sending = False
            self.visit_published[v] = self.env.now
            self.published_event[v].succeed()
        arrived, self.arrival = self.arrival, self.env.event()
        arrived.succeed()

    def _fetch(self, grp: _Group) -> tuple[int, int, int, int] | None:
        """Take up to fetch_max available alerts of one partition and one visit."""
        P = self.config.partitions
        for attempt in range(P):
            p = (grp.next_partition + attempt) % P
            a, end = grp.offsets[p], self.log_end[p]
            if a < end:
                b = min(end, a + self.config.fetch_max)
                visits = self.log_visit[p]
                v = int(visits[a])
                if visits[b - 1] != v:
                    b = a + int(np.argmax(visits[a:b] != v))
                grp.offsets[p] = b
                grp.next_partition = (p + 1) % P
                return p, a, b, v
        return None

    # -- filter groups ---------------------------------------------------------------
    def _jitter(self, work: float, n: int) -> float:
        if self.config.jitter <= 0 or work <= 0:
            return work
        # Independent per-alert noise averages over a batch: relative sd / sqrt(n).
        factor = 1.0 + self.config.jitter / math.sqrt(n) * self.rng.standard_normal()
        return work * max(factor, 0.0)

    def _group(self, grp: _Group) -> Any:
        c, costs, env = self.config, self.costs, self.env
        F = c.filters_per_group
        commits = self.visibility == "commit"
        # Alerts further apart than a long poll: every gap shows the end of the partition.
        sparse = c.send_rate is not None and 1.0 / c.send_rate >= c.fetch_wait
        while True:
            batch = self._fetch(grp)
            if batch is None:
                if math.isnan(grp.idle_since) or (self.sending and not sparse):
                    grp.idle_since = env.now
                if commits and grp.txn_alerts:
                    # librdkafka reports the end of a partition only when a long poll
                    # (fetch_wait) comes back empty: a group reading a producer that is
                    # still sending (alerts closer together than fetch_wait; the model's
                    # chunks arrive further apart than the real alerts) never sees it and
                    # commits by commit_interval alone (measured: 2 end events in a
                    # 10,000-alert visit). Once it sees the end it commits when
                    # commit_idle has passed since the last commit.
                    due = max(grp.idle_since + c.fetch_wait, grp.txn_start + c.commit_idle)
                    wait = due - env.now
                    if wait <= 1e-12:
                        yield from self._commit(grp)
                        continue
                elif self.published_total == self.total:
                    return
                else:
                    wait = c.fetch_wait
                yield env.any_of([self.arrival, env.timeout(min(wait, c.fetch_wait))])
                continue
            waited = not math.isnan(grp.idle_since)  # it was at the end of the log
            grp.idle_since = math.nan
            p, a, b, v = batch
            n = b - a
            if math.isnan(grp.first[v]):
                grp.first[v] = env.now
            s = int(grp.seen[v])
            grp.seen[v] += n
            last = grp.seen[v] == self.counts[v]
            outputs = self._outputs(grp, v, p, a, s, n)
            n_out = sum(len(t) for _, t in outputs)
            # Caught up with a producer that is still sending, a real consumer fetches
            # each batch as it lands: many more fetch requests per alert than a backlog.
            tail = (self.sending or waited) and b == self.log_end[p]
            self.broker_fetch.submit(n * (costs.broker_out_tail if tail and
                                          costs.broker_out_tail > 0 else costs.broker_out))
            # The group's side of the same small fetches.
            reading = (costs.consume_tail - costs.consume
                       if tail and costs.consume_tail > 0 else 0.0)
            visit_work = costs.per_visit if last else 0.0
            if grp.pool is None:
                work = (n * (grp.per_alert + reading + F * costs.per_filter)
                        + n_out * costs.produce
                        + visit_work)
                yield self.cpu.run(self._jitter(work, n), grp.owner)
                grp.consumed_total += n
                self._complete(grp, p, a, b, v, outputs)
                if commits and (env.now - grp.txn_start >= c.commit_interval
                                or grp.txn_alerts >= c.commit_every):
                    yield from self._commit(grp)
            else:
                parent = n * (grp.per_alert + reading + F * costs.dispatch_parent) + visit_work
                yield self.cpu.run(self._jitter(parent, n), grp.owner)
                grp.consumed_total += n
                workers = n * F * (costs.dispatch_worker + costs.per_filter) \
                    + n_out * costs.produce
                grp.pool.submit(self._jitter(workers, n),
                                partial(self._complete, grp, p, a, b, v, outputs))

    def _available(self, grp: _Group) -> bool:
        return any(off < end for off, end in zip(grp.offsets, self.log_end, strict=True))

    def _commit(self, grp: _Group) -> Any:
        """Commit the group's open transaction: its outputs become visible."""
        costs = self.costs
        if costs.broker_commit > 0 or costs.broker_marker > 0:
            partitions = len({f for _, outputs in grp.txn for f, _ in outputs})
            self.broker_append.submit(costs.broker_commit + partitions * costs.broker_marker)
        if costs.commit > 0:
            yield self.cpu.run(costs.commit, grp.owner)
        if costs.commit_wait > 0:
            yield self.env.timeout(costs.commit_wait)
        for v, outputs in grp.txn:
            grp.acked[v] = self.env.now
            self._deliver(outputs)
        for v in grp.txn_finished:
            grp.committed[v] = self.env.now
        grp.txn_finished = []
        grp.txn = []
        grp.txn_alerts = 0
        grp.txn_start = self.env.now

    def _complete(self, grp: _Group, p: int, a: int, b: int, v: int,
                  outputs: list[tuple[int, np.ndarray]]) -> None:
        now = self.env.now
        n = b - a
        grp.done_off[p] = b
        grp.processed[v] += n
        grp.processed_total += n
        stride = self.latency_stride
        first = (-a) % stride  # offsets that are multiples of the stride
        grp.latencies.append(now - self.log_time[p][a + first:b:stride])
        finished = grp.processed[v] == self.counts[v]
        if finished:
            grp.last[v] = now
            if self.visibility == "commit":
                grp.txn_finished.append(v)
            else:
                grp.committed[v] = now
        if self.visibility == "commit":
            grp.txn_alerts += n
            if outputs:
                grp.txn.append((v, outputs))
        elif self.visibility == "batch":
            if outputs:
                grp.acked[v] = now
            self._deliver(outputs)
        else:
            grp.pending.setdefault(v, []).extend(outputs)
            if finished:
                if grp.pending[v]:
                    grp.acked[v] = now
                self._deliver(grp.pending.pop(v))

    # -- observation -----------------------------------------------------------------
    def _lag(self, grp: _Group) -> tuple[int, float]:
        oldest = math.inf
        for p, done in enumerate(grp.done_off):
            if done < self.log_end[p]:
                oldest = min(oldest, float(self.log_time[p][done]))
        seconds = 0.0 if math.isinf(oldest) else max(self.env.now - oldest, 0.0)
        return self.published_total - grp.processed_total, seconds

    def _finished(self) -> bool:
        return (self.published_total == self.total
                and all(g.processed_total == self.total for g in self.groups)
                and all(u.idle for u in self.users))

    def _sampler(self) -> Any:
        while True:
            self.lag_t.append(self.env.now)
            lags = [self._lag(g) for g in self.groups]
            self.lag_msgs.append([m for m, _ in lags])
            self.lag_secs.append([s for _, s in lags])
            if self._finished() and self.env.now >= self.config.visits * self.config.interval:
                return
            yield self.env.timeout(self.config.sample_interval)

    def _boundaries(self) -> Any:
        c = self.config
        for j in range(c.visits):
            yield self.env.timeout((j + 1) * c.interval - self.env.now)
            for g, grp in enumerate(self.groups):
                # Alerts of visits <= j not processed, published or not (the new visit's
                # excluded): a late producer leaves the system behind the stream too.
                self.boundary_lag[g, j] = int(
                    (self.counts[:j + 1] - grp.processed[:j + 1]).sum())
            if len(self.users):
                self.user_backlog[j] = int(self.user_pending.max())

    # -- run -------------------------------------------------------------------------
    def run(self) -> Result:
        c, env = self.config, self.env
        started = time.perf_counter()
        # The boundary recorder is created first so that, at equal times, it observes
        # the state before the next visit's first events.
        env.process(self._boundaries())
        env.process(self._producer())
        for grp in self.groups:
            env.process(self._group(grp))
        env.process(self._sampler())
        horizon = c.visits * c.interval
        env.run(until=horizon * (_DRAIN_LIMIT if c.drain else 1.0) + 1e-9)
        return self._result(time.perf_counter() - started)

    def _result(self, wall: float) -> Result:
        c = self.config
        G, V = c.groups, c.visits
        first = np.array([g.first for g in self.groups]).reshape(G, V)
        last = np.array([g.last for g in self.groups]).reshape(G, V)
        cpu: dict[str, float] = {}
        for pool in self.pools:
            for name, busy in zip(pool.names, pool.busy, strict=True):
                key = "users" if name.startswith("user") else name
                cpu[key] = cpu.get(key, 0.0) + float(busy)
        reasons: list[str] = []
        keeps: list[bool] = []
        deadlines = (np.arange(V) + 1) * c.interval
        for g, grp in enumerate(self.groups):
            ok = True
            late = np.nonzero(~(last[g] <= deadlines + 1e-9))[0]
            if late.size:
                ok = False
                v = int(late[0])
                if math.isnan(last[g, v]):
                    reasons.append(f"{grp.name}: visit {v} was not processed by the end of "
                                   "the run")
                else:
                    reasons.append(
                        f"{grp.name}: visit {v} finished {last[g, v] - v * c.interval:.1f} s "
                        f"after it started, past the {c.interval:g} s interval "
                        f"({late.size} of {V} visits late)")
            growth = _slope(self.boundary_lag[g])
            if growth > 0.01 * c.alerts_per_visit:
                ok = False
                reasons.append(f"{grp.name}: lag grows by {growth:.0f} alerts per visit")
            keeps.append(ok)
        publish = self.visit_published - self.visit_start
        slow = np.nonzero(~(publish <= c.interval + 1e-9))[0]
        if slow.size:
            worst = np.nanmax(publish) if np.isfinite(publish).any() else math.nan
            reasons.append(f"producer: publishing a visit takes up to {worst:.1f} s, more "
                           f"than the {c.interval:g} s interval")
        if self.users and self.user_backlog.max() > c.cap:
            reasons.append(f"end consumers: up to {int(self.user_backlog.max())} alerts "
                           "behind at a visit boundary")
        lag_t = np.array(self.lag_t)
        return Result(
            config=c,
            costs=self.costs,
            groups=[g.name for g in self.groups],
            visit_start=self.visit_start,
            visit_published=self.visit_published,
            visit_first=first,
            visit_last=last,
            visit_acked=np.array([g.acked for g in self.groups]).reshape(G, V),
            boundary_lag=self.boundary_lag,
            lag_t=lag_t,
            lag_messages=np.array(self.lag_msgs, dtype=np.int64).reshape(-1, G).T.copy(),
            lag_seconds=np.array(self.lag_secs, dtype=float).reshape(-1, G).T.copy(),
            end_to_end=np.concatenate(self.e2e) if self.e2e else np.zeros(0),
            group_latency=[np.concatenate(g.latencies) if g.latencies else np.zeros(0)
                           for g in self.groups],
            cpu_seconds=cpu,
            group_keeps_up=keeps,
            reasons=reasons,
            user_backlog=self.user_backlog,
            wall_seconds=wall,
            visit_committed=np.array([g.committed for g in self.groups]).reshape(G, V),
        )


def simulate(config: Config, costs: Costs) -> Result:
    """Run ``config`` with ``costs`` and return the :class:`Result` (deterministic).

    Raises :class:`ConfigError` for an impossible configuration.
    """
    config.validate()
    return _Sim(config, costs).run()
