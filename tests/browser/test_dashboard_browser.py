"""The dashboard in a real headless Chromium against a real Prometheus (``live_stack``).

Each test drives the page as a user would and reads what Plotly actually drew from the
page (``el.data`` of each graph), so an empty or wrong panel fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from dashboard.app import DashboardSettings, create_app

from .conftest import GROUP_IDS, VISIT, LiveStack, free_port

pytestmark = pytest.mark.browser

TRACES_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!el || !el.data) { return null; }
const layout = el.layout || {};
return {
  traces: el.data.map(t => ({name: t.name || '', meta: t.meta || '', type: t.type,
                             x: t.x ? Array.from(t.x).length : 0,
                             y: t.y ? Array.from(t.y).length : 0,
                             ys: t.y ? Array.from(t.y).slice(0, 50) : []})),
  annotations: (layout.annotations || []).map(a => a.text),
};
"""


def _start(dash_duo: Any, stack: LiveStack | None, prometheus_url: str | None = None,
           **kwargs: Any) -> None:
    settings = DashboardSettings(
        prometheus_url=prometheus_url or (stack.prometheus_url if stack else ""),
        alertmanager_url=kwargs.pop("alertmanager_url",
                                    stack.alertmanager_url if stack else None),
        refresh_interval=kwargs.pop("refresh_interval", 1.0), visit_interval=VISIT,
        query_timeout=2.0, **kwargs)
    dash_duo.start_server(create_app(settings), port=free_port())


def _until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def _figure(dash_duo: Any, graph_id: str) -> dict[str, Any] | None:
    result = dash_duo.driver.execute_script(TRACES_JS, graph_id)
    return result if isinstance(result, dict) else None


def _traces(dash_duo: Any, graph_id: str, pred: Callable[[dict[str, Any]], bool]
            ) -> list[dict[str, Any]]:
    fig = _figure(dash_duo, graph_id)
    return [t for t in (fig or {}).get("traces", []) if pred(t)]


def _groups_with_data(dash_duo: Any, graph_id: str) -> set[str]:
    return {t["meta"] for t in _traces(dash_duo, graph_id, lambda t: t["x"] > 0)
            if t["meta"] in GROUP_IDS}


def _click_tab(dash_duo: Any, label: str) -> None:
    tab = dash_duo.driver.find_element(
        By.XPATH, f"//*[@id='tabs']//*[normalize-space(text())='{label}']")
    tab.click()


def _type(dash_duo: Any, selector: str, text: str) -> None:
    field = dash_duo.find_element(selector)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(text, Keys.ENTER)


def _severe_logs(dash_duo: Any) -> list[dict[str, Any]]:
    return [e for e in dash_duo.get_logs() if e.get("level") == "SEVERE"]


def test_live_tab_draws_every_panel_from_prometheus(dash_duo: Any,
                                                     live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    dash_duo.wait_for_contains_text("#status-banner", "Live.", timeout=20)
    every = set(GROUP_IDS)
    for graph in ("lag-messages", "lag-seconds", "visit-seconds"):
        _until(f"{graph} to hold data for each group",
               lambda g=graph: _groups_with_data(dash_duo, g) == every)
    heatmap = _until("the heatmap", lambda: _traces(dash_duo, "heatmap",
                                                    lambda t: t["type"] == "heatmap"))
    assert heatmap[0]["y"] == 100, "one heatmap row per filter"
    assert heatmap[0]["x"] >= 2, "the heatmap shows at least two visits"
    _until("a cap-hit marker", lambda: _traces(dash_duo, "heatmap",
                                               lambda t: t["name"] == "cap hit" and t["x"]))
    _until("p50 and p99 latency", lambda: {t["name"] for t in _traces(
        dash_duo, "latency", lambda t: t["x"] > 0)} == {"p50", "p99"})
    _until("the producer rate", lambda: _traces(dash_duo, "producer-rate",
                                                lambda t: t["x"] > 0))
    # The slow group's rules fire in Prometheus and reach Alertmanager.
    dash_duo.wait_for_contains_text("#alerts", "MiniBrokerGroupLagging", timeout=20)
    dash_duo.wait_for_contains_text("#alerts", "Alertmanager at", timeout=5)
    # Lag markers carry the exporter's status: the slow group is not OK.
    statuses = dash_duo.driver.execute_script(
        "const el = document.querySelector('#lag-seconds .js-plotly-plot');"
        "return el.data.filter(t => t.meta === arguments[0]).map(t => t.customdata)[0];",
        GROUP_IDS[-1])
    assert set(statuses) & {"WARN", "ERR"}, statuses
    assert _severe_logs(dash_duo) == []


def test_window_change_keeps_data(dash_duo: Any, live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    _until("lag data", lambda: _groups_with_data(dash_duo, "lag-messages") == set(GROUP_IDS))
    dash_duo.select_dcc_dropdown("#window", value="6 h")
    dash_duo.wait_for_contains_text("#live-note", "window 360 min", timeout=10)
    _until("lag data at 6 h", lambda: _groups_with_data(dash_duo, "lag-messages")
           == set(GROUP_IDS))
    assert _severe_logs(dash_duo) == []


def test_capacity_input_redraws_prediction(dash_duo: Any, live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    _click_tab(dash_duo, "Capacity")
    dash_duo.wait_for_contains_text("#cap-verdict", "Keeps up", timeout=30)

    def model_ys() -> list[list[float]]:
        return [t["ys"] for t in _traces(dash_duo, "cap-visit-seconds",
                                         lambda t: t["meta"] == "model")]

    before = _until("the model's visit times", model_ys)
    assert len(before) == 5, "one model trace per filter group"
    _until("measured visit times drawn over the model",
           lambda: _traces(dash_duo, "cap-visit-seconds",
                           lambda t: t["meta"] == "measured" and t["y"] > 0))
    _type(dash_duo, "#cap-alerts", "40000")
    after = _until("a new prediction", lambda: (ys := model_ys()) and ys != before and ys)
    assert max(after[0]) > max(before[0]), "four times the alerts take longer"
    # The fake pipeline runs 1000 alerts per 2-s visit in 5 groups of 20 filters.
    dash_duo.find_element("#cap-from-live").click()
    dash_duo.wait_for_contains_text("#cap-live-note", "From the live pipeline", timeout=15)
    _until("live values in the inputs", lambda: [
        dash_duo.find_element(f"#cap-{k}").get_attribute("value")
        for k in ("alerts", "interval", "groups", "filters")] == ["1000", "2", "5", "20"])
    # The same value as typed before the server-side update must still count.
    _type(dash_duo, "#cap-alerts", "40000")
    dash_duo.wait_for_contains_text("#cap-verdict", "Falls behind", timeout=30)
    assert _traces(dash_duo, "cap-lag", lambda t: t["meta"] == "model" and t["x"] > 0)
    assert _severe_logs(dash_duo) == []


def test_filters_tab_lists_the_catalogue_with_rates(dash_duo: Any,
                                                    live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    _click_tab(dash_duo, "Filters")
    dash_duo.wait_for_contains_text("#filters-note", "100 filters in the catalogue",
                                    timeout=20)
    rows = _until("100 rows with groups", lambda: (r := dash_duo.driver.find_elements(
        By.CSS_SELECTOR, "#filters-table tbody tr td[data-dash-column='group']"))
        and all(c.text.startswith("filters ") for c in r) and r)
    assert len(rows) == 100
    text = dash_duo.find_element("#filters-table").text
    assert "Filter100" in text and "SNR" in text  # names and catalogue descriptions
    rates = dash_duo.driver.find_elements(
        By.CSS_SELECTOR, "#filters-table td[data-dash-column='pass_rate']")
    assert any(r.text.endswith("%") and r.text != "0.000%" for r in rates)
    assert _severe_logs(dash_duo) == []


def test_unreachable_prometheus_is_shown(dash_duo: Any) -> None:
    closed = free_port()  # nothing listens there
    _start(dash_duo, None, prometheus_url=f"http://127.0.0.1:{closed}", alertmanager_url=None)
    dash_duo.wait_for_contains_text("#status-banner", "Prometheus unreachable", timeout=20)
    dash_duo.wait_for_contains_text("#status-banner", f"127.0.0.1:{closed}", timeout=5)
    _until("the lag panel to say why it is empty",
           lambda: "Prometheus unreachable" in " ".join(
               (_figure(dash_duo, "lag-messages") or {}).get("annotations", [])))
    _click_tab(dash_duo, "Capacity")
    # The model still answers without Prometheus.
    dash_duo.wait_for_contains_text("#cap-verdict", "Prometheus unreachable: model only",
                                    timeout=30)
    assert _severe_logs(dash_duo) == []
