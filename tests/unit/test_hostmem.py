"""broker.hostmem on sysfs/procfs trees written in tmp_path (no root, no VM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import hostmem

# /proc/buddyinfo of a kernel with orders 0..10 (11 counts per zone).
BUDDY = ("Node 0, zone      DMA " + " 0" * 8 + " 1 1 3\n"
         "Node 0, zone   Normal 13583 8684 10137 8050 6602 5316 4131 3192 2260 1575 2724\n")


def _tree(tmp_path: Path, order: int = 9, reported: int | None = 1000) -> tuple[Path, Path]:
    params = tmp_path / "params"
    params.mkdir()
    (params / "page_reporting_order").write_text(f"{order}\n")
    if reported is not None:
        (params / "reported_kib").write_text(f"{reported}\n")
    buddy = tmp_path / "buddyinfo"
    buddy.write_text(BUDDY)
    return params, buddy


def test_reads_the_reporting_state(tmp_path: Path) -> None:
    params, buddy = _tree(tmp_path)
    pr = hostmem.page_reporting(params, buddy)
    assert pr == hostmem.PageReporting(order=9, max_order=10, reported_kib=1000)
    assert pr.active
    (params / "page_reporting_order").write_text("11\n")
    off = hostmem.page_reporting(params, buddy)
    assert off is not None and not off.active


def test_no_reporting_module_is_none(tmp_path: Path) -> None:
    assert hostmem.page_reporting(tmp_path / "absent", tmp_path / "absent") is None


def test_steady_memory_turns_reporting_off_and_restores_it(tmp_path: Path) -> None:
    params, buddy = _tree(tmp_path)
    with hostmem.steady_memory(params, buddy, touch=False) as state:
        assert (params / "page_reporting_order").read_text().strip() == "11"
        assert state.reported_at_start == 1000
        (params / "reported_kib").write_text("5096\n")
        assert state.reported_since() == 4096
        assert "turned off for the run" in state.describe()
    assert (params / "page_reporting_order").read_text().strip() == "9"


def test_steady_memory_restores_after_an_error(tmp_path: Path) -> None:
    params, buddy = _tree(tmp_path, order=5)
    with pytest.raises(RuntimeError), hostmem.steady_memory(params, buddy, touch=False):
        raise RuntimeError("the measurement failed")
    assert (params / "page_reporting_order").read_text().strip() == "5"


def test_already_off_is_left_alone(tmp_path: Path) -> None:
    params, buddy = _tree(tmp_path, order=11, reported=None)
    with hostmem.steady_memory(params, buddy, touch=False) as state:
        assert state.reported_since() is None
        assert "already off" in state.describe()
    assert (params / "page_reporting_order").read_text().strip() == "11"


def test_unwritable_setting_says_what_to_do(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    params, buddy = _tree(tmp_path)

    def refuse(_params: Path, _order: int) -> None:
        raise PermissionError("cannot write page_reporting_order: turning free page "
                              "reporting off needs root; run as root or leave out "
                              "--steady-memory")

    monkeypatch.setattr(hostmem, "_write_order", refuse)
    with pytest.raises(PermissionError, match="needs root"), \
            hostmem.steady_memory(params, buddy, touch=False):
        pass


def test_prefault_touches_then_frees(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine with 3 chunks' worth of memory above what must stay free.
    chunk = 1 << 20
    avail = [5 * chunk]

    def fake_available() -> int:
        return avail[0]

    monkeypatch.setattr(hostmem, "available_bytes", fake_available)
    real_ones = __import__("numpy").ones

    def ones(n: int, dtype: object) -> object:
        avail[0] -= n
        return real_ones(n, dtype=dtype)

    monkeypatch.setattr("numpy.ones", ones)
    touched, seconds = hostmem.prefault(leave_free=chunk, chunk=chunk)
    assert touched == 3 * chunk and seconds >= 0


def test_steady_memory_restores_when_the_run_is_killed(tmp_path: Path) -> None:
    """``kill`` (SIGTERM) of a measuring command still puts the machine's setting back."""
    import os
    import signal

    params, buddy = _tree(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, hostmem.steady_memory(params, buddy,
                                                                     touch=False):
        assert (params / "page_reporting_order").read_text().strip() == "11"
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert (params / "page_reporting_order").read_text().strip() == "9"
    assert signal.getsignal(signal.SIGTERM) == before
