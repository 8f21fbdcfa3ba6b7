"""Cores shared by processor sharing, in SimPy, exactly (no time slicing).

The model's processes (producer, Kafka broker threads, filter groups, pool workers, end
consumers) all run on the same ``C`` cores. The operating system's scheduler is
approximated by *egalitarian processor sharing* (PS): with ``k`` runnable threads each
gets ``min(1, C / k)`` of a core, so one thread (one Python process under the GIL) never
gets more than one core and contention between groups slows every group down.

:class:`CpuPool` is event-driven: whenever the set of runnable jobs changes (a job
arrives or one finishes) it charges the elapsed time to every job at the old rate,
recomputes the rate and schedules one SimPy timeout for the next completion. Timeouts
made stale by a later change are ignored (a version counter), because SimPy cannot cancel
them. There is no quantum, so the only error against ideal PS is floating-point rounding
(jobs finish within 1e-12 s of their exact time); the error against a real scheduler is
that of the PS idealisation itself (context switches, cache effects, CFS granularity of
a few ms), which is small against batches of hundreds of alerts.

A job may have a ``width`` > 1: ``width`` identical threads that are always runnable
together (a pool of symmetric workers fed identical work). It counts as ``width``
runnable threads and progresses at ``width * min(1, C / k)``; this is exact for a pool
whose workers receive equal shares of each batch at the same time.

:class:`Thread` is a sequential process on top of the pool: a FIFO of work items, one
job at a time, with a callback per item.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import simpy

__all__ = ["CpuPool", "Thread"]

# A job whose remaining work, at its current rate, is within this many seconds of zero
# is finished: the absolute error of the PS schedule.
_EPS_SECONDS = 1e-12


class _Job:
    __slots__ = ("done", "owner", "remaining", "width")

    def __init__(self, remaining: float, width: int, owner: int, done: simpy.Event) -> None:
        self.remaining = remaining
        self.width = width
        self.owner = owner
        self.done = done


class CpuPool:
    """``cores`` cores shared by egalitarian processor sharing (``math.inf``: dedicated).

    ``busy[owner]`` accumulates the CPU-seconds served to each owner index (for
    utilisation reports); owners are registered with :meth:`owner`.
    """

    def __init__(self, env: simpy.Environment, cores: float) -> None:
        if not cores > 0:
            raise ValueError(f"cores must be greater than zero, got {cores}")
        self.env = env
        self.cores = float(cores)
        self.busy: list[float] = []
        self.names: list[str] = []
        self._jobs: list[_Job] = []
        self._last = env.now
        self._share = 1.0
        self._version = 0

    def owner(self, name: str) -> int:
        """Register an owner (a process name) for CPU accounting; return its index."""
        self.names.append(name)
        self.busy.append(0.0)
        return len(self.names) - 1

    @property
    def runnable(self) -> int:
        """Runnable threads right now (the ``k`` of ``min(1, C / k)``)."""
        return sum(j.width for j in self._jobs)

    def run(self, work: float, owner: int, width: int = 1) -> simpy.Event:
        """Serve ``work`` CPU-seconds to ``owner``; the event fires when it is done."""
        done = self.env.event()
        if not work > 0:
            done.succeed()
            return done
        self._advance()
        self._jobs.append(_Job(work, width, owner, done))
        self._reschedule()
        return done

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0 and self._jobs:
            share = self._share
            busy = self.busy
            for job in self._jobs:
                served = dt * share * job.width
                job.remaining -= served
                busy[job.owner] += served
        self._last = now

    def _reschedule(self) -> None:
        self._version += 1
        if not self._jobs:
            return
        k = sum(j.width for j in self._jobs)
        self._share = 1.0 if math.isinf(self.cores) else min(1.0, self.cores / k)
        share = self._share
        delay = min(j.remaining / (share * j.width) for j in self._jobs)
        version = self._version
        timer = self.env.timeout(max(delay, 0.0))
        timer.callbacks.append(lambda _event: self._on_timer(version))

    def _on_timer(self, version: int) -> None:
        if version != self._version:
            return  # a job arrived or left since this timer was set: stale
        self._advance()
        share = self._share
        times = [j.remaining / (share * j.width) for j in self._jobs]
        first = min(range(len(times)), key=times.__getitem__)
        keep: list[_Job] = []
        for i, job in enumerate(self._jobs):
            # The job that set the timer always finishes, so rounding cannot stall time.
            if i == first or times[i] <= _EPS_SECONDS:
                job.done.succeed()
            else:
                keep.append(job)
        self._jobs = keep
        self._reschedule()


class Thread:
    """A sequential process: a FIFO of CPU work items served one at a time on a pool.

    ``submit(work, callback)`` queues an item; ``callback()`` runs when it is done.
    Items without a callback (background work, e.g. Kafka serving fetches) are merged
    into one job when the thread picks them up, to keep the event count low.
    """

    def __init__(self, pool: CpuPool, name: str, width: int = 1) -> None:
        self.pool = pool
        self.name = name
        self.width = width
        self.owner = pool.owner(name)
        self.queued = 0.0  # CPU-seconds submitted and not yet finished
        self._items: deque[tuple[float, Callable[[], None] | None]] = deque()
        self._busy = False

    @property
    def idle(self) -> bool:
        """True when nothing is queued or running."""
        return not self._busy and not self._items

    def submit(self, work: float, callback: Callable[[], None] | None = None) -> None:
        """Queue ``work`` CPU-seconds; call ``callback`` when they have been served."""
        self._items.append((max(work, 0.0), callback))
        self.queued += max(work, 0.0)
        if not self._busy:
            self._start()

    def _start(self) -> None:
        work, callback = self._items.popleft()
        if callback is None:
            # Merge consecutive background items: nobody waits for them individually.
            while self._items and self._items[0][1] is None:
                work += self._items.popleft()[0]
        self._busy = True
        event = self.pool.run(work, self.owner, self.width)
        event.callbacks.append(lambda _e: self._finish(work, callback))

    def _finish(self, work: float, callback: Callable[[], None] | None) -> None:
        self._busy = False
        self.queued -= work
        if callback is not None:
            callback()
        if self._items and not self._busy:
            self._start()
