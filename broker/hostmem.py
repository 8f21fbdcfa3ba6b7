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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PageReporting",
    "SteadyMemory",
    "memory_state",
    "page_reporting",
    "prefault",
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
    reported: int | None = None
    with contextlib.suppress(OSError, ValueError):
        reported = int((params / "reported_kib").read_text())
    return PageReporting(order, max_order, reported)


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
    """What :func:`steady_memory` did, for reports."""

    before: PageReporting | None
    params: Path = PARAMS
    touched: int = 0
    seconds: float = 0.0
    reported_at_start: int | None = None

    def reported_since(self) -> int | None:
        """KiB handed back to the host since the measurement started (None: unknown)."""
        now = page_reporting(self.params)
        if now is None or now.reported_kib is None or self.reported_at_start is None:
            return None
        return now.reported_kib - self.reported_at_start

    def describe(self) -> str:
        """One sentence for a report."""
        if self.before is None:
            return "no free page reporting on this machine (its memory stays backed)"
        if not self.before.active:
            return (f"free page reporting already off (page_reporting_order "
                    f"{self.before.order} > {self.before.max_order})")
        return (f"free page reporting turned off for the run (page_reporting_order "
                f"{self.before.order} -> {self.before.max_order + 1}) and "
                f"{self.touched / GIB:.1f} GiB of free memory touched once "
                f"({self.seconds:.0f} s) before it")


def _write_order(params: Path, order: int) -> None:
    try:
        (params / "page_reporting_order").write_text(f"{order}\n")
    except PermissionError:
        raise PermissionError(
            f"cannot write {params / 'page_reporting_order'}: turning free page reporting "
            "off needs root; run as root or leave out --steady-memory") from None


@contextlib.contextmanager
def steady_memory(params: Path = PARAMS, *, leave_free: int = 2 * GIB,
                  touch: bool = True) -> Iterator[SteadyMemory]:
    """Within the block, freed memory stays with this machine and is backed by the host.

    Turns free page reporting off (if it is on), touches the free memory once (``touch``)
    and restores the previous ``page_reporting_order`` on exit. Raises PermissionError
    with what to do when the setting cannot be written.
    """
    before = page_reporting(params)
    state = SteadyMemory(before, params)
    changed = False
    try:
        if before is not None and before.active:
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
        now = page_reporting(params)
        state.reported_at_start = now.reported_kib if now is not None else None
        yield state
    finally:
        if changed and before is not None:
            with contextlib.suppress(OSError):
                _write_order(params, before.order)
                log.info("free page reporting restored (page_reporting_order %d)",
                         before.order)


@contextlib.contextmanager
def memory_state(steady: bool) -> Iterator[SteadyMemory | None]:
    """For a measuring command's ``--steady-memory``: :func:`steady_memory` when
    ``steady`` (yields its state), else nothing (yields None). A setting that cannot be
    changed is a :class:`broker.options.UsageError` (one line, what to do)."""
    from broker.options import UsageError

    if not steady:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            state = stack.enter_context(steady_memory())
        except PermissionError as exc:
            raise UsageError(str(exc)) from None
        yield state
