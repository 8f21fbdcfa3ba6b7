"""How long after ``minibroker demo`` starts does a newcomer see every dashboard panel?

Starts the README's demo (``python -m broker demo --fast`` unless other demo arguments
follow ``--``), opens the dashboard URL the demo prints in a real headless Chromium
(selenium from dash[testing]; Debian's ``chromium`` and ``chromedriver``) and polls what
Plotly drew until every Live panel shows data: lag traces (messages and seconds) and
visit times for every group, the heatmap with one row per filter and deliveries,
latency p50 and p99, the producer rate and the alerts panel. Then it opens the Capacity
page (a prediction with the measured overlay) and the Filters page (a row per filter).

Prints one line and writes the measurement, with the machine, command and date, between
``<!-- demo-startup:start -->`` and ``<!-- demo-startup:end -->`` in ``--report``
(default docs/DEMO_STARTUP.md), replacing an earlier one. The demo is stopped with SIGINT
(its Ctrl-C path, which stops every service it started) whatever happens.

    python scripts/measure_demo_startup.py                    # the README's demo
    python scripts/measure_demo_startup.py -- --visits 3      # other demo arguments

Exit status 0 when every panel showed data within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- demo-startup:start -->", "<!-- demo-startup:end -->"
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--window-size=1400,2300")

# What Plotly drew in one graph: traces with their point counts, heatmap cells > 0.
FIGURE_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!el || !el.data) { return null; }
const cells = z => (z || []).map(r => Array.from(r));
return el.data.map(t => ({name: t.name || '', meta: t.meta || '', type: t.type,
                          x: t.x ? Array.from(t.x).length : 0,
                          y: t.y ? Array.from(t.y).length : 0,
                          ypos: t.y ? Array.from(t.y).filter(v => v > 0).length : 0,
                          zpos: cells(t.z).flat().filter(v => v > 0).length,
                          zrows: cells(t.z).length}));
"""


@dataclass
class DemoOutput:
    """The demo's stdout, read by a thread, with the time each line arrived."""

    t0: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self, stream: Any) -> None:
        """Read ``stream`` to its end (runs in a thread)."""
        for line in stream:
            with self.lock:
                self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))

    def find(self, pattern: str) -> tuple[float, re.Match[str]] | None:
        """(seconds after launch, match) of the first line matching ``pattern``."""
        with self.lock:
            for t, line in self.lines:
                m = re.search(pattern, line)
                if m:
                    return t, m
        return None

    def tail(self, n: int = 15) -> str:
        """The last ``n`` lines."""
        with self.lock:
            return "\n".join(line for _, line in self.lines[-n:])


def _traces(driver: Any, graph: str) -> list[dict[str, Any]]:
    result = driver.execute_script(FIGURE_JS, graph)
    return result if isinstance(result, list) else []


def _groups_with_data(driver: Any, graph: str, positive: bool = False) -> int:
    return len({t["meta"] for t in _traces(driver, graph)
                if t["meta"].startswith("minibroker-") and t["x"] > 0
                and (t["ypos"] > 0 or not positive)})


def live_checks(groups: int, filters: int) -> dict[str, Callable[[Any], bool]]:
    """Per Live panel: does the page show its data now?"""
    return {
        "status banner 'Live.'": lambda d: "Live." in d.find_element(
            "css selector", "#status-banner").text,
        "lag per group (messages)": lambda d: _groups_with_data(d, "lag-messages") >= groups,
        "lag per group (seconds)": lambda d: _groups_with_data(d, "lag-seconds") >= groups,
        # Before its first visit a group draws visit 0 at 0 s: wait for a real visit time.
        "visit processing time": lambda d: _groups_with_data(d, "visit-seconds",
                                                             positive=True) >= groups,
        "heatmap (rows, deliveries)": lambda d: any(
            t["type"] == "heatmap" and t["zrows"] == filters and t["zpos"] > 0
            for t in _traces(d, "heatmap")),
        "latency p50 and p99": lambda d: {t["name"] for t in _traces(d, "latency")
                                          if t["x"] > 0} >= {"p50", "p99"},
        "producer rate": lambda d: any(t["ypos"] > 0 for t in _traces(d, "producer-rate")),
        # The list (or "No alerts firing.") with the source it was read from.
        "firing alerts panel": lambda d: "source: " in d.find_element(
            "css selector", "#alerts").text,
    }


def _poll(driver: Any, checks: dict[str, Callable[[Any], bool]], seen: dict[str, float],
          t0: float) -> None:
    for name, check in checks.items():
        if name in seen:
            continue
        try:
            ok = check(driver)
        except Exception:  # an element mid-redraw: ask again next round
            ok = False
        if ok:
            seen[name] = time.monotonic() - t0


def _click_tab(driver: Any, label: str) -> None:
    driver.find_element(
        "xpath", f"//*[@id='tabs']//*[normalize-space(text())='{label}']").click()


def _chrome(chromium: str, chromedriver: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 ** 2:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    # Another job on a 2-core machine slows the demo: say how busy it was.
    load = f", load average {os.getloadavg()[0]:.1f} at launch"
    return (f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{load}")


def _stop_demo(proc: subprocess.Popen[str], timeout: float) -> str:
    """SIGINT (the demo's Ctrl-C path stops every service it started), then harder."""
    if proc.poll() is not None:
        return f"had exited by itself (exit {proc.returncode})"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
        return f"stopped by SIGINT (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.terminate()  # the demo turns SIGTERM into the same clean stop
        try:
            proc.wait(30)
            return "stopped by SIGTERM"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "killed"


def render_section(result: dict[str, Any]) -> str:
    """The report section (markers included)."""
    rows = "\n".join(f"| {name} | {secs:.1f} |" if secs is not None else f"| {name} | not seen |"
                     for name, secs in result["panels"].items())
    milestones = "\n".join(f"| {name} | {secs:.1f} |"
                           for name, secs in result["milestones"].items())
    verdict = (f"**every panel showed data {result['all']:.1f} s after launch**"
               if result["all"] is not None else "**not every panel showed data**")
    return f"""{START}
## Demo start-up: time to a full dashboard

Measured by `python scripts/measure_demo_startup.py` on {result['date']}: it launches
`{result['command']}`, opens the dashboard URL the demo prints in headless Chromium and
polls what Plotly drew (every 0.5 s) until each panel shows data. Seconds are from the
launch of the command ({result['cache']}).

- Machine: {result['machine']}
- Result: {verdict}; browser console errors (SEVERE): {result['severe']}
- Demo: {result['stopped']}

| Demo milestone (its own output) | s after launch |
|---|---|
{milestones}

| Panel shows data | s after launch |
|---|---|
{rows}
{END}
"""


def write_report(path: Path, section: str) -> None:
    """Replace the marked section of ``path`` (or append it; create the file if needed)."""
    text = path.read_text() if path.exists() else "# Demo start-up\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def measure(demo_args: list[str], timeout: float, chromium: str, chromedriver: str,
            groups: int, filters: int) -> dict[str, Any]:
    """Run the demo, watch the dashboard, stop the demo; the measurement as a dict."""
    command = [sys.executable, "-m", "broker", "demo", *demo_args]
    machine = _machine()
    # A first run resolves the Kafka jars with Maven: say whether this one had to.
    cache = Path(os.environ.get("MINIBROKER_CACHE") or Path.home() / ".cache" / "minibroker")
    cached = any(cache.glob("kafka-*"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    started = dt.datetime.now(dt.UTC)
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    out = DemoOutput(t0)
    threading.Thread(target=out.pump, args=(proc.stdout,), daemon=True).start()
    seen: dict[str, float] = {}
    driver = None
    severe: list[Any] = []
    stopped = "not started"
    try:
        deadline = t0 + timeout
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = out.find(r"demo: dashboard\s+(http://\S+)")
            url = found[1].group(1) if found else None
            time.sleep(0.2)
        if url is None:
            raise RuntimeError("the demo printed no dashboard URL:\n" + out.tail())
        driver = _chrome(chromium, chromedriver)
        driver.set_page_load_timeout(30)
        while time.monotonic() < deadline:  # the dashboard process may still be starting
            try:
                driver.get(url)
                break
            except Exception:
                time.sleep(0.5)
        checks = live_checks(groups, filters)
        while time.monotonic() < deadline and proc.poll() is None:
            _poll(driver, checks, seen, t0)
            if len(seen) == len(checks):
                break
            time.sleep(0.5)
        # The other pages: the capacity prediction with the live overlay, the filter table.
        pages: dict[str, Callable[[Any], bool]] = {
            "Capacity: prediction + measured overlay": lambda d: (
                bool(d.find_element("css selector", "#cap-verdict").text)
                and any(t["meta"] == "model" for t in _traces(d, "cap-visit-seconds"))
                and any(t["meta"] == "measured" and t["y"] > 0
                        for t in _traces(d, "cap-visit-seconds"))),
            "Filters: one row per filter": lambda d: len(d.find_elements(
                "css selector", "#filters-table td[data-dash-column='group']")) == filters
                and any(c.text.endswith("%") and c.text != "0.000%" for c in d.find_elements(
                    "css selector", "#filters-table td[data-dash-column='pass_rate']")),
        }
        for (name, check), tab in zip(pages.items(), ("Capacity", "Filters"), strict=True):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            _click_tab(driver, tab)
            while name not in seen and time.monotonic() < deadline and proc.poll() is None:
                _poll(driver, {name: check}, seen, t0)
                time.sleep(0.5)
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        if driver is not None:
            driver.quit()
        stopped = _stop_demo(proc, 90)
    names = [*live_checks(groups, filters), "Capacity: prediction + measured overlay",
             "Filters: one row per filter"]
    panels = {n: seen.get(n) for n in names}
    milestones = {}
    for label, pattern in (("Kafka ready", r"demo: Kafka at"),
                           ("Prometheus ready", r"demo: Prometheus"),
                           ("dashboard URL printed", r"demo: dashboard"),
                           ("first visit started", r"visit 1: started"),
                           ("first visit filtered and delivered", r"visit 1: \d+ alerts sent")):
        found = out.find(pattern)
        if found:
            milestones[label] = found[0]
    live_names = list(live_checks(groups, filters))
    every = all(panels[n] is not None for n in names)
    return {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m broker demo " + " ".join(demo_args),
        "machine": machine,
        "cache": (f"the Kafka jars were already in {cache}" if cached
                  else f"the Kafka jars were fetched into {cache} during this run"),
        "panels": panels,
        "milestones": milestones,
        "live": max(panels[n] or 0.0 for n in live_names) if all(
            panels[n] is not None for n in live_names) else None,
        "all": max(v or 0.0 for v in panels.values()) if every else None,
        "severe": len(severe),
        "stopped": stopped,
        "tail": out.tail(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module doc."""
    argv = list(sys.argv[1:] if argv is None else argv)
    demo_args = ["--fast"]
    if "--" in argv:
        at = argv.index("--")
        argv, demo_args = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "DEMO_STARTUP.md",
                        help="markdown file to write the section to (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="give up after this many seconds (default: %(default)s)")
    parser.add_argument("--groups", type=int, default=5,
                        help="filter groups the demo runs (default: %(default)s)")
    parser.add_argument("--filters", type=int, default=100,
                        help="filters the demo runs (default: %(default)s)")
    parser.add_argument("--chromium", default=os.environ.get("DASH_TEST_CHROMEPATH",
                                                             "/usr/bin/chromium"))
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver")
                        or "/usr/bin/chromedriver")
    args = parser.parse_args(argv)
    result = measure(demo_args, args.timeout, args.chromium, args.chromedriver,
                     args.groups, args.filters)
    write_report(args.report, render_section(result))
    slowest = max(((v, k) for k, v in result["panels"].items()
                   if v is not None and k in live_checks(args.groups, args.filters)),
                  default=(0.0, "none"))
    if result["all"] is None:
        missing = [k for k, v in result["panels"].items() if v is None]
        print(f"demo startup: NOT every panel showed data within {args.timeout:g} s; "
              f"missing: {', '.join(missing)}; demo {result['stopped']}; "
              f"report {args.report}\n{result['tail']}")
        return 1
    print(f"demo startup: every Live panel showed data {result['live']:.1f} s after "
          f"launching `{result['command']}` (slowest: {slowest[1]}), all pages "
          f"{result['all']:.1f} s; console errors {result['severe']}; demo "
          f"{result['stopped']}; report {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
