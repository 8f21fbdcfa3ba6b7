"""README screenshots of the dashboard, taken from a live run.

Skipped unless ``MINIBROKER_SCREENSHOTS`` names the output directory, e.g.::

    MINIBROKER_SCREENSHOTS=docs pytest -m browser tests/browser/test_screenshots.py

Against the ``live_stack`` fixture (the real pipeline on Kafka, one group frozen, real
Prometheus and Alertmanager); point ``MINIBROKER_SCREENSHOT_PROMETHEUS`` (and
``..._ALERTMANAGER``) at another pipeline's servers, e.g. a ``minibroker demo``, to shoot
that instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import DashboardSettings, create_app

from .conftest import GROUP_IDS, GROUP_REGEX, VISIT, LiveStack, free_port, visits_after
from .test_dashboard_browser import _click_tab, _groups_with_data, _traces, _until

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

OUT = os.environ.get("MINIBROKER_SCREENSHOTS")


def _shoot(dash_duo: Any, path: Path, height: int) -> None:
    dash_duo.driver.set_window_size(1400, height)
    time.sleep(1.5)  # let Plotly re-lay out for the new width
    dash_duo.driver.save_screenshot(str(path))


@pytest.mark.skipif(not OUT, reason="set MINIBROKER_SCREENSHOTS=<dir> to take screenshots")
def test_take_screenshots(dash_duo: Any, request: pytest.FixtureRequest) -> None:
    out = Path(str(OUT))
    out.mkdir(parents=True, exist_ok=True)
    prom = os.environ.get("MINIBROKER_SCREENSHOT_PROMETHEUS")
    groups = GROUP_REGEX
    if prom:
        am = os.environ.get("MINIBROKER_SCREENSHOT_ALERTMANAGER")
        interval = float(os.environ.get("MINIBROKER_SCREENSHOT_INTERVAL", "39"))
        groups = "minibroker-filters-.*"
    else:
        stack: LiveStack = request.getfixturevalue("live_stack")
        prom, am, interval = stack.prometheus_url, stack.alertmanager_url, VISIT
        # Twenty visits for a full heatmap, and rates over more than their 30-s window.
        visits_after(stack, 30, timeout=30 * VISIT + 30)
    settings = DashboardSettings(prometheus_url=prom, alertmanager_url=am,
                                 refresh_interval=2.0, visit_interval=interval, groups=groups)
    dash_duo.start_server(create_app(settings), port=free_port())
    dash_duo.driver.set_window_size(1400, 2300)
    dash_duo.select_dcc_dropdown("#window", value="5 min")
    if groups == GROUP_REGEX:
        _until("lag data", lambda: _groups_with_data(dash_duo, "lag-messages")
               == set(GROUP_IDS), timeout=30)
    else:  # another pipeline: its groups are whatever it runs
        _until("lag data", lambda: _traces(dash_duo, "lag-messages",
                                           lambda t: bool(t["meta"]) and t["x"] > 0),
               timeout=30)
    _until("the heatmap", lambda: _traces(dash_duo, "heatmap", lambda t: t["y"] == 100))
    dash_duo.wait_for_contains_text("#alerts", "MiniBroker", timeout=20)
    _shoot(dash_duo, out / "dashboard-live.png", 2300)
    _click_tab(dash_duo, "Capacity")
    dash_duo.wait_for_contains_text("#cap-verdict", "Keeps up", timeout=30)
    # Model the pipeline that is running, so model and measurements are comparable.
    dash_duo.find_element("#cap-from-live").click()
    dash_duo.wait_for_contains_text("#cap-live-note", "From the live pipeline", timeout=15)
    time.sleep(3)
    _until("measured overlay", lambda: _traces(dash_duo, "cap-visit-seconds",
                                               lambda t: t["meta"] == "measured"))
    _shoot(dash_duo, out / "dashboard-capacity.png", 900)
    _click_tab(dash_duo, "Filters")
    dash_duo.wait_for_contains_text("#filters-note", "100 filters", timeout=20)
    time.sleep(2)
    _shoot(dash_duo, out / "dashboard-filters.png", 1000)
