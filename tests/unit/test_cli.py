"""The command line: clear one-line errors and env-backed options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.cli import build_parser, main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("filter", "127.0.0.1:1", "full-stream", "30", "10"), "FIRST <= LAST"),
        (("filter", "127.0.0.1:1", "full-stream", "1", "101"), "outside 1..100"),
        (("filter", "127.0.0.1:1", "full-stream", "1", "x"), "must be a positive integer"),
        (("produce", "127.0.0.1:1", "--alerts-per-visit", "0"), "positive integer"),
        (("produce", "127.0.0.1:1", "--source", "/no/such/dir"), "does not exist"),
        (("produce", "127.0.0.1:1", "--schema-version", "99.9"), "unknown --schema-version"),
        (("filter", "127.0.0.1:1", "t", "1", "2", "--filters", "nosuchmod:x"), "cannot import"),
    ],
)
def test_bad_input_gives_one_clear_line_and_nonzero_exit(args: tuple[str, ...],
                                                         needle: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]


def test_unreachable_broker_is_an_error_that_says_what_to_do() -> None:
    done = run_cli("monitor", "127.0.0.1:1", "Filter001",
                   env={"MINIBROKER_CONNECT_TIMEOUT": "2"})
    assert done.returncode == 1
    assert "minibroker kafka start" in done.stderr.strip().splitlines()[-1]


def test_options_read_environment_variables_and_help_names_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIBROKER_CAP", "7")
    args = build_parser("filter").parse_args(["filter", "b:1", "t", "1", "2"])
    assert args.cap == 7
    help_text = build_parser("filter").format_help()
    sub = build_parser("filter")._subparsers._group_actions[0].choices["filter"]  # type: ignore[union-attr]
    assert "MINIBROKER_CAP" in sub.format_help() and help_text


def test_bad_environment_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINIBROKER_CAP", "lots")
    assert main(["filter", "b:1", "t", "1", "2"]) == 2
    assert "MINIBROKER_CAP" in capsys.readouterr().err
