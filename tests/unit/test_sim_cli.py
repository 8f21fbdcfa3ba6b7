"""``minibroker sim ...`` through the real console-script entry point."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import pytest

from broker.cli import main
from broker.options import UsageError
from sim import cli as sim_cli

SMALL = ["--alerts-per-visit", "2000", "--visits", "3", "--groups", "2",
         "--filters-per-group", "5", "--users", "4"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["sim", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_a_table_and_the_verdict(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    code, out, _ = run(capsys, "run", *SMALL, "--json", str(tmp_path / "r.json"))
    assert code == 0
    assert "group1" in out and "group2" in out
    assert "visit mean s" in out and "end-to-end latency" in out
    assert "verdict: KEEPS UP" in out
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["keeps_up"] is True and len(summary["groups"]) == 2


def test_run_reports_falling_behind(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "run", *SMALL, "--interval", "1", "--cores", "0.5")
    assert code == 0
    assert "verdict: FALLS BEHIND" in out
    assert out.count("FALLS BEHIND") >= 3  # both groups' rows and the verdict


def test_hand_entered_costs_and_the_2018_design(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "run", *SMALL, "--design", "dmtn081_pool", "--reads", "full",
                       "--cost", "dispatch_parent=0.01", "--cost", "dispatch_worker=0")
    assert code == 0
    # 5 filters x 10 ms x 2000 alerts = 100 s of parent work per 39-s visit.
    assert "FALLS BEHIND" in out


def test_figure_html_is_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "lag.html"
    code, out, _ = run(capsys, "run", *SMALL, "--figure", str(path))
    assert code == 0 and f"wrote {path}" in out and path.stat().st_size > 1000
    assert "plotly" in path.read_text()[:100_000].lower()


@pytest.mark.skipif(importlib.util.find_spec("kaleido") is not None,
                    reason="kaleido is installed: PNG export works")
def test_figure_png_without_kaleido_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    code, _, err = run(capsys, "run", *SMALL, "--figure", str(tmp_path / "lag.png"))
    assert code == 2
    assert "kaleido" in err and ".html" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, words", [
    (["--cores", "0"], "--cores"),
    (["--send-rate", "-3"], "--send-rate"),
    (["--cost", "decode_full=-1"], ">= 0"),
    (["--cost", "decode=1"], "unknown cost"),
    (["--pass-fraction", "2"], "pass_fraction"),
])
def test_impossible_inputs_are_one_line_usage_errors(
        capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "run", *SMALL, *argv)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1


def test_main_raises_usage_error_for_zero_cores() -> None:
    parser = argparse.ArgumentParser()
    sim_cli.add_parser_args(parser)
    args = parser.parse_args(["run", *SMALL])
    args.cores = 0.0  # as if it came from code rather than the checked option
    with pytest.raises(UsageError, match="cores must be"):
        sim_cli.main(args)


def test_options_read_environment_variables(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINIBROKER_CORES", "3.5")
    monkeypatch.setenv("MINIBROKER_DESIGN", "dmtn081_pool")
    parser = argparse.ArgumentParser()
    sim_cli.add_parser_args(parser)
    config = sim_cli.build_config(parser.parse_args(["run"]))
    assert config.cores == 3.5 and config.design == "dmtn081_pool"
    with pytest.raises(SystemExit):
        main(["sim", "run", "--help"])
    assert "MINIBROKER_CORES" in capsys.readouterr().out


@pytest.mark.parametrize("repeats", ["0", "10"])
def test_validate_refuses_impossible_repeats_before_starting_anything(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, repeats: str) -> None:
    out = tmp_path / "BENCHMARKS.md"
    code, _, err = run(capsys, "validate", "--repeats", repeats, "--output", str(out))
    assert code == 2
    assert "--repeats must be between 1 and 9" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_calibration_file_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    code, _, err = run(capsys, "run", *SMALL, "--calibration", str(tmp_path / "none.json"))
    assert code == 2 and "cannot read calibration file" in err


def test_sweep_filters_writes_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sweep.csv"
    code, out, _ = run(capsys, "sweep", "filters", *SMALL, "--cores-list", "1,2",
                       "--max-filters", "64", "--csv", str(path))
    assert code == 0 and "max_filters_per_group" in out
    rows = list(csv.DictReader(path.open()))
    assert [r["cores"] for r in rows] == ["1.0", "2.0"]
    assert int(rows[0]["max_filters_per_group"]) <= int(rows[1]["max_filters_per_group"])


def test_calibrate_dry_run_through_the_project_code(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("broker.generator")
    pytest.importorskip("broker.catalogue")
    code, out, _ = run(capsys, "calibrate", "--profile", "dmtn081", "--alerts", "5",
                       "--repeats", "1", "--dry-run")
    assert code == 0
    assert "decode_full" in out and "measured" in out and "nothing written" in out


def test_group_overhead_from_the_measured_loop() -> None:
    from sim.calibrate_kafka import LOOP_FILTERS
    from sim.costs import Costs

    costs = Costs(consume=1e-5, decode_source=2e-5, per_filter=1e-7, group_overhead=1e-6)
    loop = 5e-5
    got, note = sim_cli._loop_overhead(costs, loop)
    assert got.group_overhead == pytest.approx(loop - 1e-5 - 2e-5 - LOOP_FILTERS * 1e-7)
    assert "broker.filter_group.run" in note
    # A loop cheaper than its parts (noise) never takes the core's bookkeeping away.
    low, _ = sim_cli._loop_overhead(costs, 2e-5)
    assert low.group_overhead == 1e-6
