"""The live Dash dashboard of the mini-broker (``minibroker dashboard``).

Modules: :mod:`dashboard.prom` (Prometheus and Alertmanager HTTP clients),
:mod:`dashboard.live` (the PromQL of each panel and the data it returns),
:mod:`dashboard.capacity` (the SimPy model next to live values),
:mod:`dashboard.figures` (Plotly figures, pure), :mod:`dashboard.layout` and
:mod:`dashboard.app` (the Dash app and the command).
"""
