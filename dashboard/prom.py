"""Small clients for the Prometheus HTTP API (v1) and the Alertmanager API (v2).

Only what the dashboard needs: instant and range queries, parsed into :class:`Sample` and
:class:`Series`, and the active alerts. Every failure is one of three exceptions whose
message says what to do: :class:`PrometheusUnreachable` (nothing answers, or it answers
that it is not ready), :class:`QueryError` (Prometheus rejected the PromQL) and
:class:`PrometheusError` (anything else odd). The parsing functions are pure and tested
on recorded payloads.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = [
    "AlertmanagerClient",
    "FiringAlert",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnreachable",
    "QueryError",
    "Sample",
    "Series",
    "parse_alerts",
    "parse_matrix",
    "parse_payload",
    "parse_vector",
    "step_for",
]

log = logging.getLogger(__name__)

# Steps a range query may use: "nice" values so that consecutive refreshes ask for the
# same grid (Prometheus aligns nothing for us) and axes read well.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


class PrometheusError(Exception):
    """Prometheus (or Alertmanager) answered, but not with what was asked for."""


class PrometheusUnreachable(PrometheusError):
    """Nothing answers at the URL, or the server says it is not ready yet."""

    def __init__(self, url: str, reason: str, what: str = "Prometheus",
                 hint: str = "--prometheus-url") -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{what} at {url} is unreachable ({reason}); start it or pass "
                         f"{hint} with the right address")


class QueryError(PrometheusError):
    """Prometheus rejected a query (bad PromQL, or a query it could not run)."""

    def __init__(self, expr: str, message: str) -> None:
        self.expr = expr
        super().__init__(f"Prometheus rejected the query {expr!r}: {message}")


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    time: float
    value: float


@dataclass(frozen=True)
class Series:
    """One element of a range matrix: parallel ``times`` (Unix s) and ``values``."""

    labels: dict[str, str]
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FiringAlert:
    """An active, unsilenced alert as Alertmanager (or Prometheus) reports it."""

    name: str
    severity: str
    summary: str
    labels: dict[str, str]
    starts_at: str
    state: str = "active"


def step_for(seconds: float, max_points: int = 240, min_step: float = 1.0) -> float:
    """The smallest nice step that keeps a range of ``seconds`` under ``max_points``.

    This is what keeps hours of data cheap: a 6-h window at 240 points is a 120-s step,
    not one point per scrape.
    """
    if seconds <= 0 or max_points <= 0:
        raise ValueError(f"need a positive range and point count, got {seconds}, {max_points}")
    wanted = max(seconds / max_points, min_step)
    for step in _NICE_STEPS:
        if step >= wanted:
            return float(step)
    return float(math.ceil(wanted / 86400) * 86400)


def _float(text: Any) -> float:
    # Prometheus sends numbers as strings, including "NaN", "+Inf" and "-Inf".
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def parse_payload(payload: Any, expr: str = "") -> dict[str, Any]:
    """Return the ``data`` of a ``/api/v1/query[_range]`` answer, or raise naming the error."""
    if not isinstance(payload, dict):
        raise PrometheusError(f"unexpected answer from Prometheus: {str(payload)[:200]}")
    if payload.get("status") != "success":
        message = f"{payload.get('errorType', 'error')}: {payload.get('error', 'no detail')}"
        raise QueryError(expr, message)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PrometheusError(f"Prometheus answered without data for {expr!r}")
    return data


def parse_vector(data: dict[str, Any]) -> list[Sample]:
    """Samples of an instant query's ``data`` (a vector; a scalar becomes one sample)."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        return [Sample({}, float(result[0]), _float(result[1]))]
    if kind != "vector":
        raise PrometheusError(f"expected an instant vector, got {kind!r}")
    return [Sample(dict(item.get("metric", {})), float(item["value"][0]),
                   _float(item["value"][1])) for item in result or []]


def parse_matrix(data: dict[str, Any]) -> list[Series]:
    """Series of a range query's ``data`` (a matrix)."""
    if data.get("resultType") != "matrix":
        raise PrometheusError(f"expected a range matrix, got {data.get('resultType')!r}")
    out = []
    for item in data.get("result") or []:
        points = item.get("values") or []
        out.append(Series(dict(item.get("metric", {})),
                          [float(t) for t, _ in points], [_float(v) for _, v in points]))
    return out


def parse_alerts(payload: Any) -> list[FiringAlert]:
    """Active, unsilenced alerts from Alertmanager's ``GET /api/v2/alerts``."""
    if not isinstance(payload, list):
        raise PrometheusError(f"unexpected answer from Alertmanager: {str(payload)[:200]}")
    alerts = []
    for item in payload:
        labels = dict(item.get("labels") or {})
        state = (item.get("status") or {}).get("state", "active")
        if state != "active":
            continue  # suppressed (silenced or inhibited): not something to act on now
        annotations = item.get("annotations") or {}
        alerts.append(FiringAlert(
            name=labels.get("alertname", "?"), severity=labels.get("severity", ""),
            summary=annotations.get("summary", "") or annotations.get("description", ""),
            labels=labels, starts_at=str(item.get("startsAt", "")), state=state,
        ))
    return sorted(alerts, key=lambda a: (a.severity != "critical", a.name, a.starts_at))


class _Http:
    """GET JSON with one session per thread (Dash serves callbacks from many threads)."""

    def __init__(self, url: str, timeout: float, what: str, hint: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{what} URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.what, self.hint = what, hint
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._session().get(self.url + path, params=params,
                                           timeout=self.timeout)
        except requests.Timeout:
            raise PrometheusUnreachable(self.url, f"no answer within {self.timeout:g} s",
                                        self.what, self.hint) from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.ConnectionError):
                reason = "connection refused or host unknown"
            raise PrometheusUnreachable(self.url, reason, self.what, self.hint) from None
        if response.status_code == 503:
            raise PrometheusUnreachable(self.url, "not ready yet (HTTP 503)", self.what,
                                        self.hint)
        try:
            payload = response.json()
        except ValueError:
            raise PrometheusError(
                f"{self.what} at {self.url}{path} answered HTTP {response.status_code} "
                f"with non-JSON ({response.text[:120]!r}); is this the right URL?"
            ) from None
        if response.status_code >= 400 and not isinstance(payload, dict):
            raise PrometheusError(f"{self.what} answered HTTP {response.status_code}")
        return payload


class PrometheusClient:
    """Instant and range queries against one Prometheus server."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._http = _Http(url, timeout, "Prometheus", "--prometheus-url")

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._http.url

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Evaluate ``expr`` now (or at Unix time ``at``)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return parse_vector(parse_payload(self._http.get("/api/v1/query", params), expr))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate ``expr`` at ``start, start + step, ... <= end``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step:g}"}
        return parse_matrix(parse_payload(self._http.get("/api/v1/query_range", params), expr))

    def firing_alerts(self) -> list[FiringAlert]:
        """Alerts Prometheus itself holds as firing (when no Alertmanager is configured)."""
        data = parse_payload(self._http.get("/api/v1/alerts"), "ALERTS")
        alerts = []
        for item in data.get("alerts") or []:
            if item.get("state") != "firing":
                continue
            labels = dict(item.get("labels") or {})
            annotations = item.get("annotations") or {}
            alerts.append(FiringAlert(
                name=labels.get("alertname", "?"), severity=labels.get("severity", ""),
                summary=annotations.get("summary", ""), labels=labels,
                starts_at=str(item.get("activeAt", "")), state="firing",
            ))
        return sorted(alerts, key=lambda a: (a.severity != "critical", a.name, a.starts_at))


class AlertmanagerClient:
    """Reads active alerts from Alertmanager's API v2."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._http = _Http(url, timeout, "Alertmanager", "--alertmanager-url")

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._http.url

    def alerts(self) -> list[FiringAlert]:
        """Active alerts that are neither silenced nor inhibited."""
        payload = self._http.get("/api/v2/alerts", {"active": "true", "silenced": "false",
                                                     "inhibited": "false"})
        return parse_alerts(payload)
