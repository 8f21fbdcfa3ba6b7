"""Per-visit caps (exact with interleaved visits) and visit completion."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from broker.visits import VisitCaps, VisitTracker


def test_cap_is_exact_with_interleaved_visits() -> None:
    caps = VisitCaps(20, ["A", "B"])
    rng = random.Random(5)
    events = [(v, i) for v in (1, 2, 3) for i in (0, 1) for _ in range(35)]
    rng.shuffle(events)  # visits 1-3 all in flight at once
    admitted: dict[tuple[int, int], int] = {}
    for visit, index in events:
        if caps.admit(visit, index):
            admitted[(visit, index)] = admitted.get((visit, index), 0) + 1
    assert admitted == {(v, i): 20 for v in (1, 2, 3) for i in (0, 1)}


def test_cap_below_the_limit_admits_everything() -> None:
    caps = VisitCaps(20, ["A"])
    assert all(caps.admit(9, 0) for _ in range(7))
    assert caps.count(9, 0) == 7


def test_snapshot_restore_continues_counts_by_filter_name() -> None:
    caps = VisitCaps(3, ["A", "B"])
    for _ in range(3):
        caps.admit(1, 0)
    caps.admit(1, 1)
    state = json.loads(json.dumps(caps.snapshot()))
    other = VisitCaps(3, ["B", "A"])  # a different order must not mix filters up
    other.restore(state)
    assert not other.admit(1, 1)  # A is full
    assert other.admit(1, 0) and other.admit(1, 0) and not other.admit(1, 0)


def test_zero_cap_admits_nothing_and_negative_cap_is_an_error() -> None:
    assert not VisitCaps(0, ["A"]).admit(1, 0)
    with pytest.raises(ValueError):
        VisitCaps(-1, ["A"])


def test_a_visit_completes_only_when_caught_up_committed_and_idle_or_superseded() -> None:
    tr = VisitTracker(["A"], idle=2.0)
    st = tr.consumed(1, now=100.0)
    st.pending_outputs = 1
    assert tr.complete(now=105.0, caught_up=True) == []  # output not yet acknowledged
    tr.committed(now=100.5)
    assert tr.complete(now=101.0, caught_up=False) == []  # still behind
    assert tr.complete(now=101.0, caught_up=True) == []  # not idle long enough
    done = tr.complete(now=102.5, caught_up=True)
    assert [d.visit for d in done] == [1] and done[0].seconds == pytest.approx(0.5)
    tr.consumed(2, now=200.0)
    tr.consumed(3, now=200.1)
    tr.committed(now=200.2)
    assert [d.visit for d in tr.complete(now=200.3, caught_up=True)] == [2]


def test_admit_matrix_equals_admit_one_by_one() -> None:
    names = [f"F{i}" for i in range(5)]
    one, many = VisitCaps(3, names), VisitCaps(3, names)
    rng = np.random.default_rng(7)
    for batch in range(12):
        visit = int(rng.integers(1, 4))  # visits interleave across batches
        passes = rng.random((int(rng.integers(0, 9)), 5)) < 0.4
        want = np.array([[bool(p) and one.admit(visit, i) for i, p in enumerate(r)]
                         for r in passes], dtype=bool).reshape(passes.shape)
        got = many.admit_matrix(visit, passes)
        assert got.tolist() == want.tolist(), batch
        assert not (got & ~passes).any()  # only passes are admitted
    assert one.snapshot() == many.snapshot()
    assert any(many.count(v, i) == 3 for v in (1, 2, 3) for i in range(5))  # caps hit


def test_admit_matrix_respects_restored_counts_and_shape() -> None:
    caps = VisitCaps(2, ["A", "B"])
    caps.restore({"cap": 2, "filters": ["A", "B"], "counts": {"5": [2, 1]}})
    got = caps.admit_matrix(5, np.array([[True, True], [True, True]]))
    assert got.tolist() == [[False, True], [False, False]]
    assert caps.count(5, 1) == 2
    with pytest.raises(ValueError, match="2 filters"):
        caps.admit_matrix(5, np.ones((1, 3), dtype=bool))
