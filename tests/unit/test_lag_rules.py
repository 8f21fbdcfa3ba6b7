"""The lag exporter's pure rules (monitoring/lag.py), one scripted offset history each."""

from __future__ import annotations

import pytest

from monitoring.lag import (
    GroupObservation,
    GroupReport,
    LagModel,
    LagRules,
    OffsetHistory,
    Snapshot,
    Status,
)

TP = ("full-stream", 0)
VISIT = 39.0
RULES = LagRules(warn_seconds=39, err_seconds=78, stall_after=60)


class Script:
    """Drives a LagModel through polls of one topic partition and one group."""

    def __init__(self, rules: LagRules = RULES, group: str = "filter-001-020") -> None:
        self.model = LagModel(rules)
        self.group = group
        self.end = 0
        self.committed = 0
        self.members = 1

    def poll(self, t: float, *, listed: bool = True, failed: bool = False,
             empty: bool = False, complete: bool = True) -> GroupReport:
        groups = {}
        if listed and not failed:
            groups[self.group] = GroupObservation(self.members, {TP: self.committed})
        snapshot = Snapshot(
            time=t, end_offsets={TP: self.end}, groups=groups,
            failed_groups=frozenset({self.group}) if failed else frozenset(),
            empty_ranges=frozenset({(TP, self.committed, self.end)}) if empty else frozenset(),
            listing_complete=complete,
        )
        reports = {r.group: r for r in self.model.observe(snapshot)}
        return reports[self.group]


def test_caught_up_group_has_zero_lag_however_long_the_topic_is_idle() -> None:
    s = Script()
    s.end = s.committed = 10_000
    for t in range(0, 12 * 3600, 300):  # a night of polls, nothing produced or committed
        report = s.poll(float(t))
        assert report.lag_seconds == 0.0
        assert report.status is Status.OK
        assert report.partitions[TP].lag_messages == 0


def test_idle_time_before_a_visit_is_not_counted_as_lag() -> None:
    s = Script()
    s.end = s.committed = 10_000
    for t in range(0, 3600, 5):  # an hour idle, caught up
        s.poll(float(t))
    # Visit 2 is produced from t=3600 to 3610; the group (frozen) stays at 10_000.
    s.end = 15_000
    s.poll(3605.0)
    s.end = 20_000
    report = s.poll(3610.0)
    # Its next message was produced just after the last idle sighting (t=3595): about 15 s,
    # not the hour since offset 10_000 was first seen.
    assert 10.0 <= report.lag_seconds <= 15.0
    assert report.partitions[TP].lag_messages == 10_000
    # And it grows one second per second while the topic is idle again.
    report = s.poll(3640.0)
    assert 40.0 <= report.lag_seconds <= 45.0


def test_interpolates_between_history_points() -> None:
    s = Script()
    s.end = 0
    s.poll(0.0)
    s.end = 1000
    s.poll(10.0)  # offsets 0..999 produced in (0, 10]
    s.committed = 500
    report = s.poll(20.0)
    assert report.lag_seconds == pytest.approx(15.0)  # offset 500 at ~t=5


def test_replay_from_the_start_is_bounded_by_the_history_age() -> None:
    s = Script()
    s.end = 5_000_000  # the topic already holds days of alerts when the exporter starts
    s.committed = 0  # a group replaying from the beginning
    first = s.poll(1000.0)
    assert first.lag_seconds == 0.0  # nothing known yet: "at least 0 s"
    s.committed = 100_000
    report = s.poll(1300.0)
    # At least the age of the history (300 s), never ~1e9 s since the epoch.
    assert report.lag_seconds == pytest.approx(300.0)
    assert report.partitions[TP].lag_messages == 4_900_000


def test_no_false_stop_between_visits() -> None:
    s = Script()
    t = 0.0
    for _visit in range(10):
        s.end += 10_000
        s.poll(t)  # visit produced, group behind
        s.committed = s.end  # the group finishes it within the visit
        for k in range(1, 8):  # idle until the next visit: offsets stand still
            report = s.poll(t + 5 * k)
            assert report.status is Status.OK
        t += VISIT


def test_caught_up_group_without_members_is_ok_not_stop() -> None:
    s = Script()
    s.end = s.committed = 500
    s.members = 0
    for t in range(0, 3600, 60):
        report = s.poll(float(t))
        assert report.status is Status.OK
        assert report.members == 0


def test_group_committing_once_per_visit_is_judged_from_when_it_was_caught_up() -> None:
    s = Script(LagRules(warn_seconds=39, err_seconds=78, stall_after=30))
    s.end = s.committed = 10_000
    s.poll(0.0)
    s.poll(30.0)  # caught up until now, offset unchanged for 30 s: fine
    s.end = 20_000  # a visit arrives; the group commits only when it has filtered it
    assert s.poll(35.0).status is Status.OK
    assert s.poll(50.0).status is Status.OK  # 20 s behind, not "stuck for 50 s"
    s.committed = 20_000
    assert s.poll(55.0).status is Status.OK


def test_frozen_group_with_members_stalls_then_stops_when_members_leave() -> None:
    s = Script()
    s.end = s.committed = 1000
    s.poll(0.0)
    s.end = 2000  # next visit; the group is frozen (SIGSTOP) and keeps its members
    statuses = [s.poll(float(t)).status for t in range(5, 121, 5)]
    assert Status.STALL in statuses
    assert statuses[0] is Status.OK
    # 60 s without progress since it was last caught up at t=0.
    assert statuses[statuses.index(Status.STALL) - 1] is not Status.STALL
    s.members = 0  # session timeout: the coordinator removes the frozen member
    assert s.poll(125.0).status is Status.STOP


def test_warn_and_err_thresholds_while_progressing() -> None:
    s = Script(LagRules(warn_seconds=10, err_seconds=20, stall_after=1000))
    s.end = 0
    s.poll(0.0)
    s.end = 100_000
    s.poll(1.0)  # produced in (0, 1]
    s.committed = 10
    assert s.poll(5.0).status is Status.OK
    s.committed = 20
    assert s.poll(12.0).status is Status.WARN
    s.committed = 30
    assert s.poll(25.0).status is Status.ERR
    s.committed = 100_000
    report = s.poll(26.0)
    assert report.status is Status.OK and report.lag_seconds == 0.0


def test_dead_group_keeps_its_series_with_zero_members() -> None:
    s = Script()
    s.end = s.committed = 1000
    s.poll(0.0)
    gone = s.poll(5.0, listed=False)  # offsets expired / group deleted
    assert gone.members == 0 and not gone.listed
    assert gone.partitions[TP].committed == 1000
    s.end = 3000
    later = s.poll(100.0, listed=False)
    assert later.partitions[TP].lag_messages == 2000  # follows the end offset
    assert later.status is Status.STOP
    assert [r.group for r in s.model.observe(Snapshot(200.0, {TP: 3000}, {}))] == [s.group]


def test_unreadable_group_keeps_its_previous_report() -> None:
    s = Script()
    s.end, s.committed = 1000, 400
    before = s.poll(0.0)
    after = s.poll(5.0, failed=True)
    assert after == before
    assert after.members == 1  # not reported as empty because one request failed


def test_unlisted_group_is_not_dead_when_the_listing_was_incomplete() -> None:
    s = Script()
    s.end, s.committed = 1000, 400
    before = s.poll(0.0)
    after = s.poll(5.0, listed=False, complete=False)  # a broker did not answer
    assert after == before and after.members == 1 and after.listed


def test_transaction_marker_is_not_lag_when_verified() -> None:
    s = Script()
    s.end, s.committed = 11, 10  # committed = last message + 1; offset 10 is the marker
    for t in range(0, 600, 5):
        report = s.poll(float(t), empty=True)
        assert report.status is Status.OK
        assert report.lag_seconds == 0.0
        assert report.partitions[TP].lag_messages == 0


def test_unverified_one_message_lag_is_real_lag() -> None:
    s = Script()
    s.end, s.committed = 11, 10
    s.poll(0.0)
    assert s.poll(120.0).status is Status.STALL


def test_worst_partition_decides_status_and_lag_seconds() -> None:
    model = LagModel(RULES)
    a, b = ("t", 0), ("t", 1)

    def snap(t: float, committed_a: int) -> Snapshot:
        obs = GroupObservation(2, {a: committed_a, b: 50})
        return Snapshot(t, {a: 100, b: 50}, {"g": obs})

    model.observe(snap(0.0, 100))
    model.observe(snap(1.0, 100))
    report = model.observe(snap(200.0, 90))[0]  # partition a behind since t=1
    assert report.partitions[b].status is Status.OK
    assert report.status is report.partitions[a].status
    assert report.lag_seconds == report.partitions[a].lag_seconds > 0


def test_group_without_committed_offsets_is_ok_without_partitions() -> None:
    model = LagModel(RULES)
    report = model.observe(Snapshot(0.0, {}, {"new": GroupObservation(3, {})}))[0]
    assert (report.members, report.status, report.lag_seconds) == (3, Status.OK, 0.0)
    assert report.partitions == {}


def test_committed_past_the_end_is_caught_up() -> None:
    s = Script()
    s.end, s.committed = 100, 105
    report = s.poll(0.0)
    assert report.partitions[TP].lag_messages == 0 and report.status is Status.OK


def test_end_offset_going_back_clears_the_history() -> None:
    h = OffsetHistory()
    h.observe(1000, 0.0)
    h.observe(2000, 10.0)
    h.observe(5, 20.0)  # topic re-created
    assert h.offsets == [5] and h.produced_at(0) == 20.0


def test_history_is_thinned_but_keeps_its_oldest_point_and_bounds() -> None:
    h = OffsetHistory(max_points=100)
    for i in range(1000):
        h.observe(i * 10, float(i))
    assert len(h) <= 100
    assert h.offsets[0] == 0 and h.first_seen[0] == 0.0
    assert h.offsets[-1] == 9990
    # Offset 5005 was produced in (500, 501]; thinning may only widen the bracket.
    assert 400.0 <= (h.produced_at(5005) or 0.0) <= 600.0
    assert h.produced_at(9985) == pytest.approx(999.0, abs=1.0)


def test_rules_reject_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="warn_seconds"):
        LagRules(warn_seconds=100, err_seconds=50)
    with pytest.raises(ValueError, match="stall_after"):
        LagRules(stall_after=0)
