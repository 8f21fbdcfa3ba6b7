"""Consumer-group lag and Burrow-style status from offset observations: the pure rules.

No Kafka here: :mod:`monitoring.lag_exporter` polls the broker and hands each poll to
:class:`LagModel` as a :class:`Snapshot` (the time, every partition's end offset, every
watched group's members and committed offsets). The model keeps a short history and returns
one :class:`GroupReport` per group. Times are seconds on any steady clock.

Definitions
-----------
*End offset* is the offset the next produced message will get; for read_committed readers it
is the last stable offset (LSO), so data of an open transaction is not yet lag. *Committed
offset* is the next message the group will read. *Lag in messages* is ``end - committed``
(never negative). *Lag in seconds* of a partition is how long the group's next unread
message has waited: ``now - t(committed)``, where ``t(o)`` is when the end offset passed
``o``, interpolated from the partition's history. A group's lag in seconds is its worst
partition's.

The rules (each one is tested in ``tests/unit/test_lag_rules.py``)
--------------------------------------------------------------------
1. **Caught up is zero.** ``committed >= end`` gives 0 messages and 0 s, however long the
   topic has been idle: lag in seconds is measured from the group's next unread message,
   and there is none.
2. **Idle time is not lag.** The history keeps, for every end offset seen, the *first and
   last* time it was seen. Messages ``[a, b)`` were produced after the last sighting of
   ``a`` and by the first sighting of ``b``, so interpolation runs between those two times.
   Interpolating from the first sighting of ``a`` (as kafka-lag-exporter does) would add
   the whole idle gap before a visit, or a night, to a group that is behind on it.
3. **Replays are bounded by the history.** A committed offset older than the oldest point
   of the history (a group replaying from the start, or a fresh exporter) gets "at least"
   the age of the history (``now - first sighting of the oldest point``), never seconds
   since the epoch or since offset 0. The history is thinned, oldest half first, when it
   exceeds ``history_points``, so it spans hours at a fixed memory cost.
4. **Transaction markers are not lag.** A transactional producer ends every transaction
   with a commit marker that occupies an offset. Consumers that commit their position
   (librdkafka auto-commit, ``commit()``, ``send_offsets_to_transaction(position)``) point
   past it, but one committing ``message.offset() + 1`` stays one behind the end forever.
   When the exporter has verified that ``[committed, end)`` holds no readable record (see
   ``Snapshot.empty_ranges``), the partition counts as caught up (rule 1).
5. **Status** per partition, in this order:
   lag 0 -> OK; no progress for ``stall_after`` seconds while behind -> STOP if the group
   has no members, else STALL; lag >= ``err_seconds`` -> ERR; lag >= ``warn_seconds`` ->
   WARN; else OK. *Progress* is a change of the committed offset or being caught up, so a
   group whose offset stands still because nothing was produced between visits is OK,
   never STALL or STOP (Burrow's false STOP), and a group that commits once per visit is
   judged from the last time it was caught up, not from its last commit. A group's status
   is its worst partition's (OK < WARN < ERR < STALL < STOP).
6. **Series never vanish.** A group seen once is reported on every later poll. A group the
   broker no longer lists (dead, offsets expired, deleted) is reported with 0 members and
   its last known committed offsets, so its lag keeps following the end offsets. A group or
   partition that could not be read on this poll keeps its previous values, and so does
   every unlisted group when part of the listing failed (a broker hiccup is not a death).
   A group without any committed offset is OK with 0 lag and no partition series.
7. **Offsets going backwards.** An end offset below the newest history point (topic
   re-created) clears that partition's history; a committed offset above the end (the end
   was read before the commit) is caught up.
"""

from __future__ import annotations

import bisect
import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "GroupObservation",
    "GroupReport",
    "LagModel",
    "LagRules",
    "OffsetHistory",
    "PartitionReport",
    "Snapshot",
    "Status",
    "TopicPartition",
]

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
"""A (topic, partition) pair."""


class Status(enum.IntEnum):
    """Burrow-style status; the number is the exported gauge value, worse is higher."""

    OK = 0
    WARN = 1
    ERR = 2
    STALL = 3
    STOP = 4


@dataclass(frozen=True)
class LagRules:
    """Thresholds of the status rule (rule 5) and the history size (rule 3)."""

    # Half a visit and a visit of Rubin's 39-s cadence (as the alert rules).
    warn_seconds: float = 20.0
    err_seconds: float = 39.0
    stall_after: float = 60.0
    history_points: int = 1000

    def __post_init__(self) -> None:
        if not 0 < self.warn_seconds <= self.err_seconds:
            raise ValueError(
                f"need 0 < warn_seconds <= err_seconds, got {self.warn_seconds} and "
                f"{self.err_seconds}"
            )
        if self.stall_after <= 0:
            raise ValueError(f"stall_after must be > 0, got {self.stall_after}")
        if self.history_points < 4:
            raise ValueError(f"history_points must be >= 4, got {self.history_points}")


@dataclass(frozen=True)
class GroupObservation:
    """One group as read on one poll."""

    members: int
    committed: Mapping[TopicPartition, int]
    state: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything read from the broker on one poll.

    ``groups`` holds every watched group the broker listed and that could be read;
    ``failed_groups`` those it listed but that could not be read this time (they keep
    their previous values, rule 6). A group in neither is gone from the broker, unless
    ``listing_complete`` is False (a broker did not answer the listing): then it is only
    unknown this time and keeps its values too.
    ``empty_ranges`` holds ``(topic_partition, start, end)`` ranges verified to contain no
    record a read_committed consumer would return (rule 4).
    """

    time: float
    end_offsets: Mapping[TopicPartition, int]
    groups: Mapping[str, GroupObservation]
    failed_groups: frozenset[str] = frozenset()
    empty_ranges: frozenset[tuple[TopicPartition, int, int]] = frozenset()
    listing_complete: bool = True


@dataclass(frozen=True)
class PartitionReport:
    """Lag of one group on one partition."""

    committed: int
    end: int
    lag_messages: int
    lag_seconds: float
    status: Status


@dataclass(frozen=True)
class GroupReport:
    """Everything exported for one group."""

    group: str
    members: int
    lag_seconds: float
    status: Status
    partitions: Mapping[TopicPartition, PartitionReport]
    listed: bool = True


class OffsetHistory:
    """(end offset, first seen, last seen) points of one partition, oldest first.

    A point is added only when the end offset changes; while it stands still only its
    ``last seen`` time moves (rule 2).
    """

    def __init__(self, max_points: int = 1000) -> None:
        self.max_points = max_points
        self.offsets: list[int] = []
        self.first_seen: list[float] = []
        self.last_seen: list[float] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def observe(self, end: int, now: float) -> None:
        """Record that the end offset was ``end`` at ``now``."""
        if self.offsets and end < self.offsets[-1]:
            log.info("end offset went back from %d to %d: history cleared",
                     self.offsets[-1], end)
            self.offsets.clear()
            self.first_seen.clear()
            self.last_seen.clear()
        if self.offsets and end == self.offsets[-1]:
            self.last_seen[-1] = now
            return
        self.offsets.append(end)
        self.first_seen.append(now)
        self.last_seen.append(now)
        if len(self.offsets) > self.max_points:
            self._thin()

    def _thin(self) -> None:
        # Drop every second point of the older half. Merging two intervals keeps the
        # bounds true (the messages between the kept points were produced between their
        # times), it only lowers the resolution of old history. The oldest point stays,
        # so the history's age (rule 3) does not shrink.
        half = len(self.offsets) // 2
        keep = [i for i in range(len(self.offsets)) if i >= half or i % 2 == 0]
        self.offsets = [self.offsets[i] for i in keep]
        self.first_seen = [self.first_seen[i] for i in keep]
        self.last_seen = [self.last_seen[i] for i in keep]

    def produced_at(self, offset: int) -> float | None:
        """Estimated time message ``offset`` was produced; None if the history is empty.

        An offset at or past the newest end offset has not been produced yet: the newest
        point's last sighting is returned (lag 0 from then on is the caller's rule 1).
        """
        if not self.offsets:
            return None
        if offset < self.offsets[0]:
            # Older than the history: it existed when the oldest point was first seen (rule 3).
            return self.first_seen[0]
        if offset >= self.offsets[-1]:
            return self.last_seen[-1]
        # offsets[i] <= offset < offsets[i + 1]
        i = bisect.bisect_right(self.offsets, offset) - 1
        a, b = self.offsets[i], self.offsets[i + 1]
        t_a, t_b = self.last_seen[i], self.first_seen[i + 1]
        return t_a + (offset - a) / (b - a) * (t_b - t_a)


@dataclass
class _PartitionState:
    committed: int
    progress_at: float
    report: PartitionReport | None = None


@dataclass
class _GroupState:
    members: int = 0
    listed: bool = True
    partitions: dict[TopicPartition, _PartitionState] = field(default_factory=dict)
    report: GroupReport | None = None


class LagModel:
    """Turns successive snapshots into group reports by the module's rules."""

    def __init__(self, rules: LagRules | None = None) -> None:
        self.rules = rules or LagRules()
        self.histories: dict[TopicPartition, OffsetHistory] = {}
        self._groups: dict[str, _GroupState] = {}

    @property
    def groups(self) -> list[str]:
        """Every group seen so far, sorted."""
        return sorted(self._groups)

    def observe(self, snapshot: Snapshot) -> list[GroupReport]:
        """Apply one poll and return a report for every group seen so far, sorted by name."""
        now = snapshot.time
        for tp, end in snapshot.end_offsets.items():
            self.histories.setdefault(tp, OffsetHistory(self.rules.history_points)).observe(
                end, now
            )
        for name, obs in snapshot.groups.items():
            state = self._groups.setdefault(name, _GroupState())
            state.members = obs.members
            state.listed = True
            self._update_committed(state, obs.committed, now)
        unknown = set(snapshot.failed_groups)
        for name, state in self._groups.items():
            if name in snapshot.groups or name in unknown:
                continue
            if not snapshot.listing_complete:
                unknown.add(name)  # rule 6: maybe only its coordinator did not answer
                continue
            # Rule 6: gone from the broker, so nobody is in it; keep the last offsets.
            state.members = 0
            state.listed = False
        for name, state in self._groups.items():
            if name not in unknown:  # rule 6: unreadable ones keep their report
                self._evaluate(name, state, snapshot)
        return [s.report for _, s in sorted(self._groups.items()) if s.report is not None]

    def _update_committed(
        self, state: _GroupState, committed: Mapping[TopicPartition, int], now: float
    ) -> None:
        for tp, offset in committed.items():
            part = state.partitions.get(tp)
            if part is None:
                # First sight: we cannot know how long it has stood still, so start the
                # stall clock now rather than guess (no false STALL after a restart).
                state.partitions[tp] = _PartitionState(offset, now)
            elif offset != part.committed:
                part.committed = offset
                part.progress_at = now

    def _evaluate(self, name: str, state: _GroupState, snapshot: Snapshot) -> None:
        now = snapshot.time
        reports: dict[TopicPartition, PartitionReport] = {}
        for tp, part in sorted(state.partitions.items()):
            end = snapshot.end_offsets.get(tp)
            if end is None:
                # End offset unreadable this poll: keep the previous report (rule 6).
                if part.report is not None:
                    reports[tp] = part.report
                continue
            lag = max(0, end - part.committed)
            if lag and (tp, part.committed, end) in snapshot.empty_ranges:
                lag = 0  # rule 4: only transaction markers (or aborted data) left
            if lag == 0:
                part.progress_at = now  # caught up counts as progress (rule 5)
                lag_seconds = 0.0
                status = Status.OK
            else:
                produced = self.histories[tp].produced_at(part.committed)
                lag_seconds = max(0.0, now - produced) if produced is not None else 0.0
                status = self._status(lag_seconds, now - part.progress_at, state.members)
            part.report = PartitionReport(part.committed, end, lag, lag_seconds, status)
            reports[tp] = part.report
        worst = max((r.status for r in reports.values()), default=Status.OK)
        lag_seconds = max((r.lag_seconds for r in reports.values()), default=0.0)
        state.report = GroupReport(name, state.members, lag_seconds, worst, reports,
                                   state.listed)

    def _status(self, lag_seconds: float, stuck_for: float, members: int) -> Status:
        rules = self.rules
        if stuck_for >= rules.stall_after:
            return Status.STOP if members == 0 else Status.STALL
        if lag_seconds >= rules.err_seconds:
            return Status.ERR
        if lag_seconds >= rules.warn_seconds:
            return Status.WARN
        return Status.OK

