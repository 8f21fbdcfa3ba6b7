"""The dashboard in a real headless Chromium against the real pipeline (``live_stack``).

``live_stack`` runs Kafka, 5 filter groups of 20 filters, the end consumer, the lag
exporter and the producer as ``minibroker`` processes, scraped by a real Prometheus with a
real Alertmanager; the last group is frozen. Each test drives the page as a user would and
reads what Plotly actually drew from the page (``el.data`` of each graph), so an empty or
wrong panel fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from dashboard.app import DashboardSettings, create_app

from .conftest import (
    ALERTS_PER_VISIT,
    FROZEN,
    GROUP_IDS,
    GROUP_REGEX,
    VISIT,
    LiveStack,
    free_port,
)

pytestmark = pytest.mark.browser
# Tests on the live pipeline also need Kafka (deselected with -m "not kafka").
live = pytest.mark.kafka

TRACES_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!el || !el.data) { return null; }
const layout = el.layout || {};
const cells = z => (z || []).map(r => Array.from(r));
return {
  traces: el.data.map(t => ({name: t.name || '', meta: t.meta || '', type: t.type,
                             x: t.x ? Array.from(t.x).length : 0,
                             y: t.y ? Array.from(t.y).length : 0,
                             ys: t.y ? Array.from(t.y).slice(0, 50) : [],
                             ypos: t.y ? Array.from(t.y).filter(v => v > 0).length : 0,
                             // heatmap: cells with a delivery (> 0), and rows
                             zpos: cells(t.z).flat().filter(v => v > 0).length,
                             zrows: cells(t.z).length})),
  annotations: (layout.annotations || []).map(a => a.text),
  hlines: (layout.shapes || []).filter(s => s.y0 === s.y1).map(s => s.y0),
};
"""


def _start(dash_duo: Any, stack: LiveStack | None, prometheus_url: str | None = None,
           **kwargs: Any) -> None:
    settings = DashboardSettings(
        prometheus_url=prometheus_url or (stack.prometheus_url if stack else ""),
        alertmanager_url=kwargs.pop("alertmanager_url",
                                    stack.alertmanager_url if stack else None),
        refresh_interval=kwargs.pop("refresh_interval", 1.0), visit_interval=VISIT,
        query_timeout=2.0, groups=GROUP_REGEX, **kwargs)
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


@live
def test_live_tab_draws_every_panel_from_prometheus(dash_duo: Any,
                                                     live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    dash_duo.wait_for_contains_text("#status-banner", "Live.", timeout=20)
    every = set(GROUP_IDS)
    # Lag (messages, seconds) and visit time: a trace with data for every named group.
    for graph in ("lag-messages", "lag-seconds", "visit-seconds"):
        _until(f"{graph} to hold data for each group",
               lambda g=graph: _groups_with_data(dash_duo, g) == every)
    # Real visit times (a group that has completed no visit yet shows visit 0 at 0 s),
    # drawn against the visit interval of the alert rules.
    _until("a visit time > 0 for each group", lambda: {t["meta"] for t in _traces(
        dash_duo, "visit-seconds", lambda t: t["ypos"] > 0)} >= every)
    visit_fig = _figure(dash_duo, "visit-seconds") or {}
    assert VISIT in visit_fig.get("hlines", []), visit_fig.get("hlines")
    assert any(f"visit interval {VISIT:g} s" in a for a in visit_fig.get("annotations", []))
    heatmap = _until("the heatmap with deliveries", lambda: _traces(
        dash_duo, "heatmap", lambda t: t["type"] == "heatmap" and t["zpos"] > 0))
    assert heatmap[0]["y"] == 100 and heatmap[0]["zrows"] == 100, "one row per filter"
    assert heatmap[0]["x"] >= 2, "the heatmap shows at least two visits"
    _until("a cap-hit marker", lambda: _traces(dash_duo, "heatmap",
                                               lambda t: t["name"] == "cap hit" and t["x"]))
    _until("p50 and p99 latency", lambda: {t["name"] for t in _traces(
        dash_duo, "latency", lambda t: t["x"] > 0)} == {"p50", "p99"})
    rate = _until("the producer rate", lambda: _traces(
        dash_duo, "producer-rate", lambda t: t["x"] > 0 and any(y and y > 0 for y in t["ys"])))
    assert rate[0]["name"] == live_stack.pipeline.cfg.topic
    # The frozen group's lag alert fires in Prometheus and reaches Alertmanager.
    dash_duo.wait_for_contains_text("#alerts", "MiniBrokerGroupLagging", timeout=20)
    dash_duo.wait_for_contains_text("#alerts", FROZEN.removeprefix("minibroker-"), timeout=5)
    dash_duo.wait_for_contains_text("#alerts", "Alertmanager at", timeout=5)
    # Lag markers carry the exporter's status: the frozen group went through WARN or ERR.
    statuses = dash_duo.driver.execute_script(
        "const el = document.querySelector('#lag-seconds .js-plotly-plot');"
        "return el.data.filter(t => t.meta === arguments[0]).map(t => t.customdata)[0];",
        FROZEN)
    assert set(statuses) & {"WARN", "ERR"}, statuses
    assert _severe_logs(dash_duo) == []


@live
def test_window_change_keeps_data(dash_duo: Any, live_stack: LiveStack) -> None:
    _start(dash_duo, live_stack)
    _until("lag data", lambda: _groups_with_data(dash_duo, "lag-messages") == set(GROUP_IDS))
    dash_duo.select_dcc_dropdown("#window", value="6 h")
    dash_duo.wait_for_contains_text("#live-note", "window 360 min", timeout=10)
    _until("lag data at 6 h", lambda: _groups_with_data(dash_duo, "lag-messages")
           == set(GROUP_IDS))
    assert _severe_logs(dash_duo) == []


@live
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
    _until("measured lag drawn over the model",
           lambda: _traces(dash_duo, "cap-lag", lambda t: t["meta"] == "measured"
                           and t["x"] > 0))
    _type(dash_duo, "#cap-alerts", "40000")
    after = _until("a new prediction", lambda: (ys := model_ys()) and ys != before and ys)
    assert max(after[0]) > max(before[0]), "four times the alerts take longer"
    # The pipeline runs 1000 alerts per 3-s visit in 5 groups of 20 filters (one frozen:
    # still one of the 5).
    dash_duo.find_element("#cap-from-live").click()
    dash_duo.wait_for_contains_text("#cap-live-note", "From the live pipeline", timeout=15)
    _until("live values in the inputs", lambda: [
        dash_duo.find_element(f"#cap-{k}").get_attribute("value")
        for k in ("alerts", "interval", "groups", "filters")]
        == [str(ALERTS_PER_VISIT), f"{VISIT:g}", "5", "20"])
    # The same value as typed before the server-side update must still count.
    _type(dash_duo, "#cap-alerts", "40000")
    dash_duo.wait_for_contains_text("#cap-verdict", "Falls behind", timeout=30)
    assert _traces(dash_duo, "cap-lag", lambda t: t["meta"] == "model" and t["x"] > 0)
    assert _severe_logs(dash_duo) == []


@live
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
    assert {c.text for c in rows} == {g.removeprefix("minibroker-").replace("-", " ", 1)
                                      for g in GROUP_IDS}
    text = dash_duo.find_element("#filters-table").text
    assert "Filter100" in text and "SNR" in text  # names and catalogue descriptions

    def column(name: str) -> list[str]:
        return [c.text for c in dash_duo.driver.find_elements(
            By.CSS_SELECTOR, f"#filters-table td[data-dash-column='{name}']")]

    rates = column("pass_rate")
    assert any(r.endswith("%") and r != "0.000%" for r in rates), rates[:20]
    # 30-odd catalogue filters pass more than the cap of 20 of each 1,000-alert visit.
    over_cap = [c for c in column("over_cap") if c not in ("", "0", "-")]
    assert over_cap, column("over_cap")[:20]
    assert _severe_logs(dash_duo) == []


def test_unreachable_prometheus_is_shown(dash_duo: Any) -> None:
    closed = free_port()  # nothing listens there
    _start(dash_duo, None, prometheus_url=f"http://127.0.0.1:{closed}", alertmanager_url=None)
    dash_duo.wait_for_contains_text("#status-banner", "Prometheus unreachable", timeout=20)
    dash_duo.wait_for_contains_text("#status-banner", f"127.0.0.1:{closed}", timeout=5)
    for graph in ("lag-messages", "lag-seconds", "visit-seconds", "latency",
                  "producer-rate", "heatmap"):
        _until(f"the {graph} panel to say why it is empty",
               lambda g=graph: "Prometheus unreachable" in " ".join(
                   (_figure(dash_duo, g) or {}).get("annotations", [])))
    dash_duo.wait_for_contains_text("#alerts", "Prometheus unreachable", timeout=5)
    _click_tab(dash_duo, "Capacity")
    # The model still answers without Prometheus.
    dash_duo.wait_for_contains_text("#cap-verdict", "Prometheus unreachable: model only",
                                    timeout=30)
    assert _severe_logs(dash_duo) == []


def test_empty_prometheus_shows_no_data_yet(dash_duo: Any,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real Prometheus that answers but scrapes no mini-broker service yet (the first
    seconds of a deployment): the page says so, panel by panel, and the model still runs."""
    from monitoring import local

    from .conftest import _binaries_from_test_env

    with _binaries_from_test_env():
        try:
            mon = local.start_monitoring(tmp_path_factory.mktemp("empty-prometheus"), {},
                                         free_port(), free_port(), visit_interval=VISIT)
        except local.MonitoringNotAvailable as exc:
            pytest.skip(str(exc))
    try:
        _start(dash_duo, None, prometheus_url=mon.prometheus_url,
               alertmanager_url=mon.alertmanager_url)
        dash_duo.wait_for_contains_text("#status-banner", "No data yet", timeout=20)
        dash_duo.wait_for_contains_text("#status-banner", mon.prometheus_url, timeout=5)
        for graph in ("lag-messages", "lag-seconds", "visit-seconds", "latency",
                      "producer-rate", "heatmap"):
            _until(f"the {graph} panel to say it has no data yet",
                   lambda g=graph: "No data yet" in " ".join(
                       (_figure(dash_duo, g) or {}).get("annotations", [])))
        _click_tab(dash_duo, "Capacity")
        dash_duo.wait_for_contains_text("#cap-verdict", "no live pipeline data to compare",
                                        timeout=30)
        assert _severe_logs(dash_duo) == []
    finally:
        mon.stop()
