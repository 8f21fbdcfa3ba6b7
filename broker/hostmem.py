"""Free page reporting: a virtual machine's host taking back the memory its guest frees.

On a VM whose balloon device reports free pages (Linux ``page_reporting``, virtio-balloon
``VIRTIO_BALLOON_F_REPORTING``), each block of at least ``2**page_reporting_order`` pages
the guest frees is handed back to the host, and the guest's next first touch of it waits
for a host page fault. On this project's 2-core KVM machines a fresh GiB cost 2.5 s of CPU
to touch, against 0.08 s for memory the host still backed. The mini-broker moves a lot of
memory: Kafka takes ~1.25 GB of page cache per visit of 10,000 realistic alerts and the
producer's librdkafka buffers as much, so while the host reclaims freed memory their CPU
per alert varied 2-4 times between visits of the same run (from which memory was fresh),
and no model with constant costs can predict it.

:func:`steady_memory` makes such a VM behave like a machine whose memory is its own, for
the duration of a measurement: it stops the reporting (``page_reporting_order`` above the
largest buddy order) and touches the free memory once, then puts the setting back.
:func:`page_reporting` tells whether a machine reports at all and how much it has handed
back so far, so a report can say in which state it was measured.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PageReporting",
    "SteadyMemory",
    "add_option",
    "memory_state",
    "page_reporting",
    "prefault",
    "reported_between",
    "reported_kib",
    "steady_memory",
]

log = logging.getLogger(__name__)

PARAMS = Path("/sys/module/page_reporting/parameters")
BUDDYINFO = Path("/proc/buddyinfo")
MEMINFO = Path("/proc/meminfo")
GIB = 2**30


@dataclass(frozen=True)
class PageReporting:
    """The free page reporting state of this machine."""

    order: int
    """``page_reporting_order``: free blocks of ``2**order`` pages or more are reported."""
    max_order: int
    """The largest buddy allocator order (blocks above it never exist)."""
    reported_kib: int | None
    """KiB handed back to the host since boot, where the kernel counts it."""

    @property
    def active(self) -> bool:
        """True when freed memory is being handed back to the host."""
        return self.order <= self.max_order


def _max_order(buddyinfo: Path = BUDDYINFO) -> int:
    """Largest buddy order: /proc/buddyinfo has one column per order after the zone name."""
    widths = [len(line.split()) - 4 for line in buddyinfo.read_text().splitlines()
              if line.strip()]
    return max(widths) - 1


def page_reporting(params: Path = PARAMS, buddyinfo: Path = BUDDYINFO
                   ) -> PageReporting | None:
    """This machine's free page reporting, or None where the kernel has none."""
    try:
        order = int((params / "page_reporting_order").read_text())
        max_order = _max_order(buddyinfo)
    except (OSError, ValueError):
        return None
    return PageReporting(order, max_order, reported_kib(params))


def available_bytes(meminfo: Path = MEMINFO) -> int:
    """``MemAvailable`` from /proc/meminfo, in bytes."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no MemAvailable in {meminfo}")


def prefault(leave_free: int = 2 * GIB, chunk: int = 256 * 2**20,
             progress: Callable[[int, float], None] | None = None) -> tuple[int, float]:
    """Touch the machine's free memory once (all but ``leave_free`` bytes), then free it.

    Every chunk is held until the end, so each one lands on guest memory not touched in
    this call. Returns (bytes touched, seconds). ``progress(bytes, seconds)`` is called
    every 4 GiB.
    """
    import numpy as np

    held: list[np.ndarray] = []
    start = time.monotonic()
    touched = 0
    try:
        while available_bytes() - chunk > leave_free:
            held.append(np.ones(chunk, dtype=np.uint8))
            touched += chunk
            if progress is not None and touched % (4 * GIB) == 0:
                progress(touched, time.monotonic() - start)
    finally:
        held.clear()
    return touched, time.monotonic() - start


@dataclass
class SteadyMemory:
    """What :func:`steady_memory` did (or, with ``held=False``, what :func:`memory_state`
    left as found), for reports."""

    before: PageReporting | None
    params: Path = PARAMS
    held: bool = True
    touched: int = 0
    seconds: float = 0.0
    reported_at_start: int | None = None

    def reported_since(self) -> int | None:
        """KiB handed back to the host since the measurement started (None: unknown)."""
        now = reported_kib(self.params)
        if now is None or self.reported_at_start is None:
            return None
        return now - self.reported_at_start

    def describe(self) -> str:
        """One sentence for a report."""
        if self.before is None:
            return "no free page reporting on this machine (its memory stays backed)"
        if not self.held and self.before.active:
            return (f"left as found: free page reporting on (page_reporting_order "
                    f"{self.before.order}), so the VM host takes back freed memory and "
                    f"Kafka's and the producer's costs vary with it")
        if not self.before.active:
            return (f"free page reporting already off (page_reporting_order "
                    f"{self.before.order} > {self.before.max_order})")
        return (f"free page reporting turned off for the run (page_reporting_order "
                f"{self.before.order} -> {self.before.max_order + 1}) and "
                f"{self.touched / GIB:.1f} GiB of free memory touched once "
                f"({self.seconds:.0f} s) before it")


def reported_kib(params: Path = PARAMS) -> int | None:
    """KiB handed back to the host since boot, where the kernel counts it."""
    try:
        return int((params / "reported_kib").read_text())
    except (OSError, ValueError):
        return None


def reported_between(before: int | None, after: int | None) -> int | None:
    """KiB handed back between two readings of :func:`reported_kib` (None: unknown)."""
    return None if before is None or after is None else after - before


def _write_order(params: Path, order: int) -> None:
    try:
        (params / "page_reporting_order").write_text(f"{order}\n")
    except PermissionError:
        raise PermissionError(
            f"cannot write {params / 'page_reporting_order'}: turning free page reporting "
            "off needs root; run as root or leave out --steady-memory") from None


@contextlib.contextmanager
def steady_memory(params: Path = PARAMS, buddyinfo: Path = BUDDYINFO, *,
                  leave_free: int = 2 * GIB, touch: bool = True) -> Iterator[SteadyMemory]:
    """Within the block, freed memory stays with this machine and is backed by the host.

    Turns free page reporting off (if it is on), touches the free memory once (``touch``)
    and restores the previous ``page_reporting_order`` on exit. Raises PermissionError
    with what to do when the setting cannot be written.
    """
    before = page_reporting(params, buddyinfo)
    state = SteadyMemory(before, params)
    changed = False
    old_handler: Any = None
    try:
        if before is not None and before.active:
            # A SIGTERM (kill, a CI timeout) would end Python without running ``finally``
            # and leave the machine's setting changed; as SystemExit, it restores it.
            if threading.current_thread() is threading.main_thread():
                old_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            _write_order(params, before.max_order + 1)
            changed = True
            log.info("free page reporting off for this run (page_reporting_order %d -> %d)",
                     before.order, before.max_order + 1)
        if touch and before is not None:
            log.info("touching the free memory once, so the host backs it (~2.5 s per GiB "
                     "not yet backed)")
            state.touched, state.seconds = prefault(
                leave_free, progress=lambda b, s: log.info("  %.0f GiB touched, %.0f s",
                                                           b / GIB, s))
            log.info("touched %.1f GiB in %.1f s", state.touched / GIB, state.seconds)
        state.reported_at_start = reported_kib(params)
        yield state
    finally:
        if changed and before is not None:
            with contextlib.suppress(OSError):
                _write_order(params, before.order)
                log.info("free page reporting restored (page_reporting_order %d)",
                         before.order)
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def add_option(parser: Any) -> None:
    """The ``--steady-memory`` option of the measuring commands (calibrate, validate,
    bench); its value is ``args.steady_memory``."""
    from broker.options import option

    option(parser, "--steady-memory", flag=True, dest="steady_memory",
           help="on a VM whose host takes back freed memory (free page reporting), turn "
                "that off for the run and touch the free memory once first, so memory "
                "costs hold still (root; see broker/hostmem.py)")


@contextlib.contextmanager
def memory_state(steady: bool, params: Path = PARAMS, buddyinfo: Path = BUDDYINFO
                 ) -> Iterator[SteadyMemory]:
    """The memory state a measuring command runs in, for its report.

    With ``steady`` (``--steady-memory``): :func:`steady_memory`, a setting that cannot be
    changed being a :class:`broker.options.UsageError` (one line, what to do). Without:
    the machine as found, with a warning when its host takes back freed memory.
    """
    from broker.options import UsageError

    if not steady:
        state = SteadyMemory(page_reporting(params, buddyinfo), params, held=False,
                             reported_at_start=reported_kib(params))
        if state.before is not None and state.before.active:
            log.warning("this machine hands freed memory back to its VM host (free page "
                        "reporting): everything that allocates, Kafka and the producer "
                        "most (2-4x), will vary with it; --steady-memory (root) holds it "
                        "still")
        yield state
        return
    with contextlib.ExitStack() as stack:
        try:
            state = stack.enter_context(steady_memory(params, buddyinfo))
        except PermissionError as exc:
            raise UsageError(str(exc)) from None
        yield state
