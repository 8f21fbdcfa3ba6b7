"""Processor sharing (sim.cpu) against hand-computed schedules."""

from __future__ import annotations

import math

import pytest
import simpy

from sim.cpu import CpuPool, Thread


def finish_times(cores: float, jobs: list[tuple[float, float, int]]) -> list[float]:
    """Run jobs (arrival time, work, width) on one pool; return their finish times."""
    env = simpy.Environment()
    pool = CpuPool(env, cores)
    owner = pool.owner("test")
    done: list[float] = [math.nan] * len(jobs)

    def start(i: int, at: float, work: float, width: int):  # type: ignore[no-untyped-def]
        yield env.timeout(at)
        yield pool.run(work, owner, width)
        done[i] = env.now

    for i, (at, work, width) in enumerate(jobs):
        env.process(start(i, at, work, width))
    env.run()
    return done


def test_two_equal_jobs_on_one_core_take_twice_as_long() -> None:
    assert finish_times(1, [(0, 1.0, 1), (0, 1.0, 1)]) == pytest.approx([2.0, 2.0], abs=1e-12)


def test_two_equal_jobs_on_two_cores_take_as_long_as_alone() -> None:
    assert finish_times(2, [(0, 1.0, 1), (0, 1.0, 1)]) == pytest.approx([1.0, 1.0], abs=1e-12)


def test_one_thread_never_gets_more_than_one_core() -> None:
    assert finish_times(8, [(0, 3.0, 1)]) == pytest.approx([3.0], abs=1e-12)


def test_three_jobs_on_two_cores_share_egalitarianly() -> None:
    # Each gets 2/3 of a core: 1 CPU-second takes 1.5 s.
    assert finish_times(2, [(0, 1.0, 1)] * 3) == pytest.approx([1.5] * 3, abs=1e-12)


def test_rates_are_recomputed_when_a_job_leaves_or_arrives() -> None:
    # 1 core: A (1 s) and B (2 s) share until A is done at t=2 (B has 1 s left, then alone:
    # t=3). C arrives at t=2.5 with 0.25 s: B and C share; C done at 3.0, B at 3.25.
    times = finish_times(1, [(0, 1.0, 1), (0, 2.0, 1), (2.5, 0.25, 1)])
    assert times == pytest.approx([2.0, 3.25, 3.0], abs=1e-12)


def test_a_wide_job_counts_as_that_many_threads() -> None:
    # A pool of 10 symmetric workers alone on 2 cores runs at 2 cores.
    assert finish_times(2, [(0, 10.0, 10)]) == pytest.approx([5.0], abs=1e-12)
    # With one more single thread on 2 cores: 11 threads, each 2/11 of a core; the single
    # thread's 1 s of work takes 5.5 s; the pool (10 * 2/11 = 20/11 cores) has done 10 by
    # then, i.e. all of it, at the same moment.
    assert finish_times(2, [(0, 10.0, 10), (0, 1.0, 1)]) == pytest.approx([5.5, 5.5])


def test_cpu_accounting_adds_up() -> None:
    env = simpy.Environment()
    pool = CpuPool(env, 2)
    a, b = pool.owner("a"), pool.owner("b")
    pool.run(1.0, a)
    pool.run(3.0, b)
    env.run()
    assert pool.busy == pytest.approx([1.0, 3.0])
    assert env.now == pytest.approx(3.0)


def test_thread_serves_fifo_and_merges_background_work() -> None:
    env = simpy.Environment()
    pool = CpuPool(env, 4)
    thread = Thread(pool, "t")
    seen: list[tuple[str, float]] = []
    thread.submit(1.0, lambda: seen.append(("first", env.now)))
    thread.submit(0.5)
    thread.submit(0.5)
    thread.submit(1.0, lambda: seen.append(("last", env.now)))
    assert not thread.idle
    env.run()
    assert seen == [("first", pytest.approx(1.0)), ("last", pytest.approx(3.0))]
    assert thread.idle and thread.queued == pytest.approx(0.0, abs=1e-12)


def test_zero_cores_is_refused() -> None:
    with pytest.raises(ValueError, match="cores"):
        CpuPool(simpy.Environment(), 0)
