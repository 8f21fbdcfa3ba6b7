"""dashboard.prom: parsing recorded Prometheus/Alertmanager answers, and clear errors."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from dashboard.prom import (
    AlertmanagerClient,
    PrometheusClient,
    PrometheusError,
    PrometheusUnreachable,
    QueryError,
    parse_alerts,
    parse_matrix,
    parse_payload,
    parse_vector,
    step_for,
)


@pytest.mark.parametrize("seconds", [60, 900, 3600, 6 * 3600, 24 * 3600, 7 * 86400])
def test_step_for_bounds_the_number_of_points(seconds: float) -> None:
    step = step_for(seconds, 240)
    assert seconds / step <= 240
    assert step >= 1


def test_step_for_picks_nice_steps_and_rejects_nonsense() -> None:
    assert step_for(900, 240) == 5
    assert step_for(6 * 3600, 240) == 120
    with pytest.raises(ValueError, match="positive"):
        step_for(0)


def test_parse_vector_reads_labels_and_special_values() -> None:
    data = {"resultType": "vector", "result": [
        {"metric": {"group": "g1"}, "value": [1700000000.5, "3"]},
        {"metric": {"group": "g2"}, "value": [1700000000.5, "NaN"]},
        {"metric": {}, "value": [1700000000.5, "+Inf"]},
    ]}
    samples = parse_vector(data)
    assert [s.labels for s in samples] == [{"group": "g1"}, {"group": "g2"}, {}]
    assert samples[0].value == 3 and samples[0].time == 1700000000.5
    assert math.isnan(samples[1].value) and math.isinf(samples[2].value)


def test_parse_vector_accepts_a_scalar_and_rejects_a_matrix() -> None:
    assert parse_vector({"resultType": "scalar", "result": [1.0, "39"]})[0].value == 39
    with pytest.raises(PrometheusError, match="instant vector"):
        parse_vector({"resultType": "matrix", "result": []})


def test_parse_matrix_keeps_times_and_values_parallel() -> None:
    data = {"resultType": "matrix", "result": [
        {"metric": {"group": "g"}, "values": [[10, "1"], [20, "2"], [30, "NaN"]]}]}
    (series,) = parse_matrix(data)
    assert series.times == [10.0, 20.0, 30.0]
    assert series.values[:2] == [1.0, 2.0] and math.isnan(series.values[2])


def test_parse_payload_turns_an_error_answer_into_query_error() -> None:
    payload = {"status": "error", "errorType": "bad_data",
               "error": "1:5: parse error: unexpected <EOF>"}
    with pytest.raises(QueryError, match=r"rejected the query 'sum\(':.*parse error"):
        parse_payload(payload, "sum(")
    with pytest.raises(PrometheusError, match="unexpected answer"):
        parse_payload(["not", "a", "dict"])


def test_parse_alerts_keeps_active_ones_critical_first() -> None:
    payload = [
        {"labels": {"alertname": "B", "severity": "warning", "group": "g"},
         "annotations": {"summary": "b"}, "startsAt": "2026-01-01T00:00:00Z",
         "status": {"state": "active"}},
        {"labels": {"alertname": "Silenced", "severity": "critical"},
         "annotations": {}, "status": {"state": "suppressed"}},
        {"labels": {"alertname": "A", "severity": "critical"},
         "annotations": {"description": "only a description"},
         "status": {"state": "active"}},
    ]
    alerts = parse_alerts(payload)
    assert [a.name for a in alerts] == ["A", "B"]
    assert alerts[0].summary == "only a description"
    assert alerts[1].labels["group"] == "g"


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        status, body = self.routes.get(path, (404, "not found"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, tuple[int, str]]]]:
    routes: dict[str, tuple[int, str]] = {}
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_client_reports_an_unreachable_server_with_what_to_do() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(PrometheusUnreachable) as info:
        PrometheusClient(url, timeout=1).query("up")
    assert url in str(info.value) and "--prometheus-url" in str(info.value)
    with pytest.raises(PrometheusUnreachable, match="--alertmanager-url"):
        AlertmanagerClient(url, timeout=1).alerts()


def test_client_rejects_urls_without_a_scheme() -> None:
    with pytest.raises(ValueError, match="http://"):
        PrometheusClient("127.0.0.1:9090")


def test_client_queries_and_parses(server: tuple[str, dict[str, tuple[int, str]]]) -> None:
    url, routes = server
    routes["/api/v1/query"] = (200, json.dumps({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1, "2"]}]}}))
    routes["/api/v1/query_range"] = (200, json.dumps({"status": "success", "data": {
        "resultType": "matrix", "result": [{"metric": {}, "values": [[1, "2"], [3, "4"]]}]}}))
    client = PrometheusClient(url + "/")
    assert client.url == url
    assert client.query("x")[0].value == 2
    assert client.query_range("x", 0, 10, 5)[0].values == [2, 4]


def test_client_errors(server: tuple[str, dict[str, tuple[int, str]]]) -> None:
    url, routes = server
    client = PrometheusClient(url)
    routes["/api/v1/query"] = (400, json.dumps({"status": "error", "errorType": "bad_data",
                                                "error": "parse error"}))
    with pytest.raises(QueryError, match="parse error"):
        client.query("sum(")
    routes["/api/v1/query"] = (503, "Service Unavailable")
    with pytest.raises(PrometheusUnreachable, match="not ready"):
        client.query("up")
    routes["/api/v1/query"] = (200, "<html>Grafana</html>")
    with pytest.raises(PrometheusError, match=r"non-JSON.*right URL"):
        client.query("up")


def test_alertmanager_client_reads_v2_alerts(server: tuple[str, dict[str, tuple[int, str]]]
                                              ) -> None:
    url, routes = server
    routes["/api/v2/alerts"] = (200, json.dumps([
        {"labels": {"alertname": "MiniBrokerGroupLagging", "severity": "critical"},
         "annotations": {"summary": "behind"}, "status": {"state": "active"}}]))
    (alert,) = AlertmanagerClient(url).alerts()
    assert alert.name == "MiniBrokerGroupLagging" and alert.summary == "behind"
