"""Per-visit caps and visit bookkeeping for a filter group (pure: no I/O).

:class:`VisitCaps` admits at most ``cap`` passing alerts per filter per visit. Counts are
kept per visit, so the cap stays exact when several visits are in flight at once (alerts
of visit N+1 arriving before the last of visit N). Its state is a small JSON-able dict,
saved with each Kafka transaction so a restarted group continues the same counts.

:class:`VisitTracker` times visits (first alert consumed -> last output acknowledged)
and decides when a visit is complete: the group has caught up with its input, every
output is acknowledged, and either a newer visit has started or ``idle`` seconds passed
without another alert of it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["VisitCaps", "VisitStats", "VisitTracker"]


class VisitCaps:
    """At most ``cap`` admitted alerts per (visit, filter); remembers ``keep`` visits."""

    def __init__(self, cap: int, filters: list[str], keep: int = 512) -> None:
        if cap < 0:
            raise ValueError(f"cap must be zero or more, got {cap}")
        self.cap = cap
        self.filters = list(filters)
        self.keep = keep
        self._counts: OrderedDict[int, list[int]] = OrderedDict()

    def _row(self, visit: int) -> list[int]:
        row = self._counts.get(visit)
        if row is None:
            row = [0] * len(self.filters)
            self._counts[visit] = row
            # Forget the visit seen longest ago; `keep` visits is hours of survey.
            while len(self._counts) > self.keep:
                self._counts.popitem(last=False)
        return row

    def admit(self, visit: int, index: int) -> bool:
        """Count a passing alert of filter ``index``; True if it is within the cap."""
        row = self._row(visit)
        if row[index] >= self.cap:
            return False
        row[index] += 1
        return True

    def admit_matrix(self, visit: int, passes: np.ndarray) -> np.ndarray:
        """:meth:`admit` a batch of one visit's alerts at once.

        ``passes`` is a (alerts x filters) boolean matrix in message order; the result
        marks the passes within the cap, exactly those :meth:`admit` would accept one by
        one (a busy group has ~10 passes per alert, too many to admit in Python).
        """
        row = self._row(visit)
        if passes.ndim != 2 or passes.shape[1] != len(row):
            raise ValueError(f"passes must be (alerts x {len(row)} filters), "
                             f"got shape {passes.shape}")
        room = self.cap - np.asarray(row, dtype=np.int64)
        admitted = passes & (np.cumsum(passes, axis=0, dtype=np.int64) <= room)
        taken = admitted.sum(axis=0)
        for i in np.flatnonzero(taken).tolist():
            row[i] += int(taken[i])
        return admitted

    def count(self, visit: int, index: int) -> int:
        """Admitted alerts so far for (visit, filter index)."""
        row = self._counts.get(visit)
        return row[index] if row else 0

    def snapshot(self) -> dict[str, Any]:
        """State as a JSON-able dict (visits with no admitted alert are left out)."""
        return {
            "cap": self.cap,
            "filters": self.filters,
            "counts": {str(v): row for v, row in self._counts.items() if any(row)},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``snapshot()`` output; filters are matched by name."""
        self._counts.clear()
        names = state.get("filters", [])
        index = {name: i for i, name in enumerate(self.filters)}
        for visit, row in state.get("counts", {}).items():
            mine = [0] * len(self.filters)
            for name, n in zip(names, row, strict=False):
                if name in index:
                    mine[index[name]] = int(n)
            self._counts[int(visit)] = mine


@dataclass
class VisitStats:
    """What one filter group did with one visit."""

    visit: int
    first_consumed: float
    last_consumed: float
    alerts: int = 0
    last_acked: float | None = None
    passed: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)
    pending_outputs: int = 0
    acked_input: bool = False

    @property
    def seconds(self) -> float:
        """First alert consumed -> last output acknowledged (or last input committed)."""
        end = self.last_acked if self.last_acked is not None else self.last_consumed
        return max(0.0, end - self.first_consumed)


class VisitTracker:
    """Open visits of one group, and the rule for when each is complete."""

    def __init__(self, filters: list[str], idle: float = 2.0) -> None:
        self.filters = list(filters)
        self.idle = idle
        self.open: dict[int, VisitStats] = {}
        self.latest_visit: int | None = None

    def _stats(self, visit: int, now: float) -> VisitStats:
        st = self.open.get(visit)
        if st is None:
            n = len(self.filters)
            st = VisitStats(visit, now, now, passed=[0] * n, delivered=[0] * n,
                            capped=[0] * n)
            self.open[visit] = st
        return st

    def consumed(self, visit: int, now: float, count: int = 1) -> VisitStats:
        """Record ``count`` input alerts of ``visit`` consumed at ``now``."""
        st = self._stats(visit, now)
        st.alerts += count
        st.last_consumed = now
        st.acked_input = False
        if self.latest_visit is None or visit > self.latest_visit:
            self.latest_visit = visit
        return st

    def committed(self, now: float) -> None:
        """Everything consumed and produced so far was acknowledged at ``now``."""
        for st in self.open.values():
            if st.pending_outputs:
                st.last_acked = now
                st.pending_outputs = 0
            st.acked_input = True

    def rolled_back(self) -> None:
        """The open transaction was aborted: forget what it had counted."""
        self.open.clear()

    def complete(self, now: float, caught_up: bool) -> list[VisitStats]:
        """Pop and return visits that are complete at ``now`` (oldest first)."""
        if not caught_up:
            return []
        done = []
        for visit in sorted(self.open):
            st = self.open[visit]
            if not st.acked_input or st.pending_outputs:
                continue
            newer = self.latest_visit is not None and self.latest_visit > visit
            if newer or now - st.last_consumed >= self.idle:
                done.append(self.open.pop(visit))
        return done
