"""Predictions of real runs and predicted-against-measured rows, for ``sim validate``.

The validation (``sim/validate.py``) runs the real pipeline, describes each run as a
:class:`~sim.model.Config`, and calls::

    pred = predict(config, costs)                  # model side
    row = compare(name, pred, Measured(...))       # one table row
    text = markdown_table([row, ...])              # for BENCHMARKS.md

Quantities are defined as the pipeline's metrics define them, so both sides mean the
same thing: a visit's time is ``minibroker_filter_visit_seconds`` (first alert consumed
-> last output acknowledged, or last alert if it had no output), lag is
``minibroker_consumer_group_lag_messages`` summed over partitions at the moment the visit
after the last one would start, and the verdict is the model's keeps-up rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.costs import Costs
from sim.model import Config, Result, simulate

__all__ = ["Measured", "Prediction", "compare", "markdown_table", "predict"]


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one configuration (means over groups and visits)."""

    visit_seconds: float
    """Mean ``minibroker_filter_visit_seconds`` (to the last acknowledged output)."""
    visit_processing_seconds: float
    """Mean first alert consumed -> last alert processed."""
    lag_after: int
    """Largest group lag, alerts, when the visit after the last one would start."""
    lag_seconds_after: float
    keeps_up: bool
    result: Result


@dataclass(frozen=True)
class Measured:
    """What a real run measured, in the same terms as :class:`Prediction`."""

    visit_seconds: float
    lag_after: int
    keeps_up: bool


def predict(config: Config, costs: Costs, *, skip_visits: int = 0) -> Prediction:
    """Simulate ``config`` and reduce it to the validated quantities.

    ``skip_visits`` leaves the first visits out of the means (warm-up), as a measured run
    may do; it does not change lag or verdict.
    """
    result = simulate(config, costs)
    metric = result.visit_metric_seconds[:, skip_visits:]
    processing = result.visit_seconds[:, skip_visits:]
    rows = result.summary()
    return Prediction(
        visit_seconds=_nanmean(metric),
        visit_processing_seconds=_nanmean(processing),
        lag_after=max(r.final_lag_messages for r in rows),
        lag_seconds_after=max(r.final_lag_seconds for r in rows),
        keeps_up=result.keeps_up,
        result=result,
    )


def _nanmean(values: np.ndarray) -> float:
    done = values[~np.isnan(values)]
    return float(done.mean()) if done.size else math.nan


def compare(name: str, predicted: Prediction, measured: Measured,
            tolerance: float = 0.15) -> dict[str, Any]:
    """One predicted-against-measured row; ``visit_ok`` means within ``tolerance``."""
    error = (predicted.visit_seconds - measured.visit_seconds) / measured.visit_seconds \
        if measured.visit_seconds > 0 else math.nan
    return {
        "configuration": name,
        "visit_s_predicted": predicted.visit_seconds,
        "visit_s_measured": measured.visit_seconds,
        "visit_error": error,
        "visit_ok": bool(abs(error) <= tolerance) if not math.isnan(error) else False,
        "lag_predicted": predicted.lag_after,
        "lag_measured": measured.lag_after,
        "verdict_predicted": "keeps up" if predicted.keeps_up else "falls behind",
        "verdict_measured": "keeps up" if measured.keeps_up else "falls behind",
        "verdict_ok": predicted.keeps_up == measured.keeps_up,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`compare` as a Markdown table (errors as signed percentages)."""
    head = ("| configuration | visit s predicted | visit s measured | error | "
            "lag predicted | lag measured | verdict predicted | verdict measured |")
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        err = r["visit_error"]
        err_text = "-" if math.isnan(err) else f"{err:+.0%}" + ("" if r["visit_ok"] else " (!)")
        lines.append(
            f"| {r['configuration']} | {r['visit_s_predicted']:.2f} | "
            f"{r['visit_s_measured']:.2f} | {err_text} | {r['lag_predicted']} | "
            f"{r['lag_measured']} | {r['verdict_predicted']} | {r['verdict_measured']}"
            + ("" if r["verdict_ok"] else " (!)") + " |")
    return "\n".join(lines)
