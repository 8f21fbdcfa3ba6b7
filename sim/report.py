"""Text tables, CSV and the plotly lag figure for model results."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.model import Result

__all__ = ["check_figure_path", "describe", "format_rows", "format_table", "lag_figure",
           "write_csv", "write_figure"]


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def format_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table of ``rows`` (dicts), one header line."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_num(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def describe(result: Result) -> str:
    """One line saying which configuration was simulated."""
    c = result.config
    rate = "unpaced" if c.send_rate is None else f"{c.send_rate:g}/s"
    extra = f", pool of {c.pool_size}" if c.design == "dmtn081_pool" else ""
    return (f"{c.alerts_per_visit} {c.profile} alerts/visit every {c.interval:g} s "
            f"(sent at {rate}), {c.visits} visits; {c.groups} groups x "
            f"{c.filters_per_group} filters reading {c.reads}; {c.users} users; "
            f"{c.cores:g} cores; design {c.design}{extra}")


def format_table(result: Result) -> str:
    """The ``sim run`` report: per-group table, end-to-end latency, verdict."""
    rows = []
    for r in result.summary():
        rows.append({
            "group": r.name,
            "visit mean s": r.visit_mean,
            "visit p99 s": r.visit_p99,
            "visit max s": r.visit_max,
            "final lag": r.final_lag_messages,
            "final lag s": r.final_lag_seconds,
            "lag growth/visit": r.lag_growth,
            "cpu s/visit": r.cpu_seconds / result.config.visits,
            "verdict": "keeps up" if r.keeps_up else "FALLS BEHIND",
        })
    e2e = result.end_to_end_percentiles((50, 99))
    lines = [describe(result), "", format_rows(rows), ""]
    if result.end_to_end.size:
        lines.append(f"end-to-end latency (alert produced -> received by a user): "
                     f"p50 {e2e[50]:.2f} s, p99 {e2e[99]:.2f} s "
                     f"({result.end_to_end.size} deliveries)")
    else:
        lines.append("end-to-end latency: no alert delivered to a user")
    used = sum(result.cpu_seconds.values())
    horizon = result.config.visits * result.config.interval
    lines.append(f"CPU used by all modelled processes: {used / horizon:.2f} cores on average "
                 f"over the {horizon:g} s of visits")
    if result.keeps_up:
        lines.append("verdict: KEEPS UP")
    else:
        lines.append("verdict: FALLS BEHIND")
        shown = result.reasons[:12]  # a hundred groups must not flood the terminal
        lines += [f"  - {reason}" for reason in shown]
        if len(result.reasons) > len(shown):
            lines.append(f"  ... and {len(result.reasons) - len(shown)} more")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV."""
    with open(path, "w", newline="") as fh:
        if not rows:
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def lag_figure(result: Result) -> Any:
    """A plotly figure: lag in alerts and in seconds over time, one line per group."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("lag (alerts not yet processed)",
                                        "lag (age of the oldest unprocessed alert, s)"))
    for g, name in enumerate(result.groups):
        fig.add_trace(go.Scatter(x=result.lag_t, y=result.lag_messages[g], name=name,
                                 legendgroup=name, mode="lines"), row=1, col=1)
        fig.add_trace(go.Scatter(x=result.lag_t, y=result.lag_seconds[g], name=name,
                                 legendgroup=name, showlegend=False, mode="lines"),
                      row=2, col=1)
    for v in range(result.config.visits + 1):
        fig.add_vline(x=v * result.config.interval, line_width=1, line_dash="dot",
                      line_color="grey")
    verdict = "keeps up" if result.keeps_up else "falls behind"
    fig.update_layout(title=f"{describe(result)} - {verdict}", title_font_size=12,
                      template="plotly_white", height=650)
    fig.update_xaxes(title_text="time since the first visit started (s)", row=2, col=1)
    return fig


def check_figure_path(path: str | Path) -> None:
    """Raise ValueError early if ``path`` cannot be written (unknown type, no kaleido)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return
    if suffix == ".png":
        try:
            import kaleido  # noqa: F401
        except ImportError:
            raise ValueError("writing a PNG needs the kaleido package (pip install kaleido); "
                             "or give a .html path") from None
        return
    raise ValueError(f"figure path {path} must end in .html or .png")


def write_figure(result: Result, path: str | Path) -> None:
    """Write the lag figure as self-contained HTML (works offline) or PNG (kaleido)."""
    check_figure_path(path)
    fig = lag_figure(result)
    if Path(path).suffix.lower() == ".png":
        fig.write_image(str(path), width=1100, height=650)
    else:
        fig.write_html(str(path), include_plotlyjs=True)
