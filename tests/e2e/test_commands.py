"""The demo and the benchmark commands, run as a user runs them (small settings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_demo_runs_the_pipeline_prints_visit_summaries_and_stops_everything(
        tmp_path: Path) -> None:
    done = _run(["demo", "--visits", "2", "--alerts-per-visit", "300", "--interval", "6",
                 "--profile", "dmtn081", "--no-dashboard", "--workdir", str(tmp_path),
                 "--prometheus-port", "19490", "--alertmanager-port", "19493"], 400)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    summaries = re.findall(r"^visit (\d+): 300 alerts sent in [\d.]+ s; groups filtered it "
                           r"in ([\d. ]+) s; (\d+) alerts delivered", out, re.M)
    assert [s[0] for s in summaries] == ["1", "2"], out
    assert all(len(s[1].split()) == 5 for s in summaries)  # all five groups reported
    # 100 per-filter counts per visit, each within the cap.
    grid = re.findall(r"^  Filter(\d{3})-(\d{3}): ((?:\s*\d+){20})$", out, re.M)
    assert len(grid) == 10
    assert all(0 <= int(n) <= 20 for row in grid for n in row[2].split())
    assert "demo: 2 of 2 visits filtered and delivered; stopped" in out
    # Nothing left running from this demo's work directory.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps


def test_bench_writes_a_report_with_one_row_per_visit(tmp_path: Path) -> None:
    report = tmp_path / "BENCH.md"
    report.write_text("# Benchmarks\n\nkept text\n")
    done = _run(["bench", "--scenarios", "one-group", "--visits", "2", "--alerts-per-visit",
                 "400", "--interval", "6", "--output", str(report), "--workdir",
                 str(tmp_path / "work")], 400)
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert "kept text" in text and "<!-- bench:start -->" in text
    rows = re.findall(r"^\| (\d+) \| [\d.]+ \| [\d.]+ \(", text, re.M)
    assert len(rows) == 2
    assert "Verdict:" in text
