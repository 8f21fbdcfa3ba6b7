"""Measure the model's per-alert costs on this machine through the project's own code.

:func:`measure_costs` times, per alert, on generated alerts of one profile:

- ``decode_source``: as a filter group reads ``diaSource``, the columnar walk
  (``broker.columnar.ColumnPlan.read``) of the catalogue's columns over the whole batch
  (``broker.alerts.Decoder({"diaSource"})`` when test code replaces the decoder);
- ``decode_history``: as a filter group reads an alert its history prefilters let
  through, fastavro up to ``diaSource`` and ``broker.history.HistoryReader`` for the
  history fields its filters name (``broker.alerts.Decoder`` with fields
  ``{"diaSource", "prvDiaSources"}`` when test code replaces the decoder);
- ``decode_full``: ``broker.alerts.Decoder`` with fields ``None``;
- ``per_filter``: every filter of ``broker.catalogue.default_filters()`` called on
  decoded alerts, averaged over filters;
- ``producer_prepare``, serialising a visit: ``broker.generator.generate_visit``.

Costs that need Kafka (``consume``, ``produce``, ``broker_in``, ``broker_out``,
``per_visit``, ``user_receive``, the producer's Kafka send ``producer_send``) are not
measured here (``sim.calibrate_kafka`` measures them): pass them in ``kafka=`` when a
Kafka benchmark has measured them, otherwise they keep their values from the base
calibration. Hand-entered costs of other designs (the
2018 pool's ``dispatch_*``) are kept as well.

Timing uses this thread's CPU clock (``time.thread_time``), so other load on the machine
(Kafka benchmarks) does not inflate the numbers, and takes the best of ``repeats``
passes after a warm-up. The project modules are imported lazily, so the model itself
works without them; tests inject small callables instead.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sim.costs import Costs

__all__ = ["FIELD_SETS", "Measurement", "measure_costs"]

log = logging.getLogger(__name__)

# Top-level alert fields decoded for each ``reads`` level (None: everything).
FIELD_SETS: dict[str, frozenset[str] | None] = {
    "decode_source": frozenset({"diaSource"}),
    "decode_history": frozenset({"diaSource", "prvDiaSources"}),
    "decode_full": None,
}


class _Decoder(Protocol):
    def decode(self, data: bytes) -> dict[str, Any]: ...


GenerateFn = Callable[[int, str, int], list[bytes]]
"""(count, profile, seed) -> wire-format alert bytes."""
DecoderFactory = Callable[[frozenset[str] | None], _Decoder]
_Filter = Callable[[dict[str, Any]], bool]
"""A filter: called on a decoded alert; its ``name`` attribute is used in notes."""


@dataclass
class Measurement:
    """Measured costs plus, per cost, how it was obtained."""

    costs: Costs
    notes: dict[str, str] = field(default_factory=dict)
    alert_bytes: float = 0.0
    """Mean size of the measured alerts, bytes."""


def _default_generate(count: int, profile: str, seed: int) -> list[bytes]:
    from broker.generator import generate_visit

    return generate_visit(1, count, profile=profile, seed=seed)


def _default_decoder(fields: frozenset[str] | None) -> _Decoder:
    from broker.alerts import Decoder

    return Decoder(fields)


def _default_filters() -> Sequence[_Filter]:
    from broker.catalogue import default_filters

    return default_filters()


def _group_filter_cost(data: Sequence[bytes], repeats: int, clock: Callable[[], float]
                       ) -> tuple[float, float, str] | None:
    """Marginal CPU per alert per filter as a filter group runs its filters.

    ``broker.core.GroupCore.evaluate`` evaluates filters that offer a vectorised
    form once per batch over numpy columns and the others alert by alert, so calling each
    filter on each alert (the fallback below) overstates what a group pays. Here a batch
    goes through a group of every catalogue filter that reads only cheap fields and
    through a group of one of them; the difference, per extra filter and alert, is the
    cost the model multiplies by the filters of a group. Returns it, the CPU per alert
    of the one-filter group, and how it was measured; None when the project's code is not
    available.
    """
    try:
        from broker.catalogue import default_filters
        from broker.core import GroupCore

        cheap = [f for f in default_filters() if not f.expensive_fields]
        if len(cheap) < 2:
            return None
        many = GroupCore(cheap, cap=1 << 30)
        one = GroupCore(cheap[:1], cap=1 << 30)
        batch = list(data)
        timed = _best_per_item({"many": many.evaluate, "one": one.evaluate},
                               [batch], repeats, clock)
    except Exception as exc:  # fall back to calling the filters one by one
        log.warning("per-filter cost through GroupCore failed (%s); calling filters", exc)
        return None
    per = max(timed["many"] - timed["one"], 0.0) / (len(cheap) - 1) / len(batch)
    how = (f"GroupCore.evaluate of {len(batch)} alerts through the {len(cheap)} "
           "catalogue filters that read only cheap fields against through one of them, per "
           "extra filter and alert")
    return per, timed["one"] / len(batch), how


def _columnar_cost(data: Sequence[bytes], repeats: int, clock: Callable[[], float]
                   ) -> tuple[float, str] | None:
    """CPU per alert of the columnar walk a filter group does over a batch (see
    ``broker.columnar``), with the columns the catalogue's vectorised filters read."""
    try:
        from broker.alerts import schema_for_id, split_wire
        from broker.catalogue import default_filters
        from broker.columnar import ColumnPlan
        from broker.core import GroupCore

        schema_id, offset = split_wire(data[0])
        columns = GroupCore(default_filters()).columns
        plan = ColumnPlan(schema_for_id(schema_id), columns)
        batch = list(data)
        timed = _best_per_item({"walk": lambda b: plan.read(b, offset)}, [batch], repeats,
                               clock)
    except Exception as exc:  # fall back to fastavro decoding of diaSource
        log.warning("columnar decode cost not measured (%s); using Decoder", exc)
        return None
    return timed["walk"] / len(batch), (
        f"broker.columnar.ColumnPlan.read of {len(batch)} alerts at once, keeping the "
        f"{len(columns)} diaSource columns the catalogue's filters read, per alert")


def _history_cost(data: Sequence[bytes], repeats: int, clock: Callable[[], float]
                  ) -> tuple[float, str] | None:
    """CPU per alert of what a filter group does for an alert its history prefilters let
    through: fastavro up to ``diaSource``, then ``broker.history.HistoryReader`` for the
    row fields the catalogue's history filters read."""
    try:
        from broker.alerts import Decoder, schema_for_id, split_wire
        from broker.catalogue import default_filters
        from broker.core import GroupCore
        from broker.history import HistoryReader

        fields = GroupCore(default_filters())._history_fields
        if not fields:
            return None
        dec = Decoder({"diaSource"}, later={"prvDiaSources"})
        reader = HistoryReader(schema_for_id(split_wire(data[0])[0]), fields)

        def history(value: bytes) -> object:
            _, resume = dec.decode_staged(value)
            if resume is None:
                raise ValueError("no history window")
            return reader.read(value, resume.position)

        timed = _best_per_item({"history": history}, data, repeats, clock)
    except Exception as exc:  # fall back to fastavro's full decode
        log.warning("history reader cost not measured (%s); using Decoder", exc)
        return None
    return timed["history"], (
        "Decoder({'diaSource'}).decode_staged then broker.history.HistoryReader.read of "
        f"the history fields {sorted(fields)}, per alert")


def _best_per_item(fns: Mapping[str, Callable[[Any], object]], items: Sequence[Any],
                   repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    """Best (smallest) mean CPU seconds per item of each function over ``repeats`` passes.

    The functions take turns within each pass, so a burst of load from other processes
    hits them alike instead of skewing one (the machine is shared with Kafka benchmarks).
    """
    for fn in fns.values():  # warm-up: caches, lazily built decoding plans
        for item in items[: min(len(items), 20)]:
            fn(item)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            for item in items:
                fn(item)
            best[name] = min(best[name], clock() - start)
    return {name: max(t, 0.0) / len(items) for name, t in best.items()}


def measure_costs(
    profile: str = "realistic",
    *,
    base: Costs | None = None,
    alerts: int = 300,
    repeats: int = 5,
    seed: int = 0,
    generate: GenerateFn | None = None,
    decoder: DecoderFactory | None = None,
    filters: Sequence[_Filter] | None = None,
    kafka: Mapping[str, float] | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> Measurement:
    """Measure decode, filter and serialisation costs of ``profile`` on this machine.

    ``base`` supplies every cost not measured (default: :class:`Costs` defaults).
    ``kafka`` sets costs measured on a real Kafka (any :class:`Costs` field, plus
    ``producer_kafka``: the producer's per-alert send cost, which becomes
    ``producer_send``; the measured serialisation is ``producer_prepare``). ``generate``,
    ``decoder`` and ``filters`` replace the project's code paths (for tests); ``clock``
    the CPU clock.
    """
    if alerts < 1 or repeats < 1:
        raise ValueError(f"alerts and repeats must be >= 1, got {alerts} and {repeats}")
    base = base or Costs()
    generate = generate or _default_generate
    decoder = decoder or _default_decoder
    host = platform.node() or "unknown host"
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    where = f"measured {when} on {host} ({platform.python_implementation()} " \
            f"{platform.python_version()}, {alerts} {profile} alerts, best of {repeats})"
    values: dict[str, float] = {}
    notes: dict[str, str] = {}

    generate(min(alerts, 10), profile, seed)  # warm-up: schema loading, cached templates
    serialise = float("inf")
    data: list[bytes] = []
    for _ in range(repeats):  # best of repeats, as for the other costs
        start = clock()
        data = generate(alerts, profile, seed)
        serialise = min(serialise, (clock() - start) / max(len(data), 1))
    if not data:
        raise ValueError(f"the generator returned no {profile} alerts")
    size = sum(len(d) for d in data) / len(data)

    decoders = {}
    for name, fields in FIELD_SETS.items():
        try:
            dec = decoder(fields)
            dec.decode(data[0])
        except Exception as exc:  # a profile may lack a field: keep the base value, say so
            notes[name] = f"not measured ({exc}); kept from the base calibration"
            log.warning("%s %s: %s", profile, name, exc)
            continue
        decoders[name] = dec.decode
        notes[name] = f"{where}: Decoder({sorted(fields) if fields else None}).decode"
    values.update(_best_per_item(decoders, data, repeats, clock))
    # A filter group reads diaSource as columns of the whole batch, not with fastavro.
    columnar = _columnar_cost(data, repeats, clock) if decoder is _default_decoder else None
    if columnar is not None:
        values["decode_source"], how = columnar
        notes["decode_source"] = f"{where}: {how}"
    # ...and reads history rows with broker.history, when its filters name their fields.
    history = _history_cost(data, repeats, clock) if decoder is _default_decoder else None
    if history is not None:
        values["decode_history"], how = history
        notes["decode_history"] = f"{where}: {how}"

    group_cost = _group_filter_cost(data, repeats, clock) if filters is None else None
    chosen = list(filters) if filters is not None else list(_default_filters())
    if group_cost is not None:
        values["per_filter"], one_filter, how = group_cost
        notes["per_filter"] = f"{where}: {how}"
        if "decode_source" in values:
            values["group_overhead"] = max(
                0.0, one_filter - values["decode_source"] - values["per_filter"])
            notes["group_overhead"] = (
                f"{where}: GroupCore.evaluate through one filter, per alert, less "
                f"decode_source and per_filter (outcomes, visit, cap bookkeeping)")
    elif chosen:
        full = decoder(None)
        decoded = [full.decode(d) for d in data]
        working, failed = {}, []
        for i, flt in enumerate(chosen):
            try:
                for alert in decoded:
                    flt(alert)
            except Exception as exc:  # a broken filter must not stop the calibration
                failed.append(f"{getattr(flt, 'name', flt)}: {exc}")
                continue
            working[f"{i}"] = flt
        if working:
            per = _best_per_item(working, decoded, repeats, clock)
            values["per_filter"] = sum(per.values()) / len(per)
            notes["per_filter"] = f"{where}: mean over {len(per)} filters" + (
                f" ({len(failed)} failed: {'; '.join(failed[:3])})" if failed else "")

    kafka = dict(kafka or {})
    producer_kafka = kafka.pop("producer_kafka", None)
    # broker.producer serialises a visit before it is due, never in the send loop: the
    # serialisation is its own cost, producer_send is the Kafka send alone.
    values["producer_prepare"] = serialise
    notes["producer_prepare"] = f"{where}: broker.generator.generate_visit serialisation"
    if producer_kafka is not None:
        values["producer_send"] = float(producer_kafka)
        notes["producer_send"] = f"{where}: Kafka send {float(producer_kafka):.3g} s"
    else:
        notes["producer_send"] = "kept from the base calibration (the Kafka send needs " \
            "Kafka: minibroker sim calibrate --kafka)"
    unknown = sorted(set(kafka) - set(Costs.names()))
    if unknown:
        raise ValueError(f"unknown Kafka-measured cost(s) {', '.join(unknown)}; "
                         f"known: {', '.join(Costs.names())}, producer_kafka")
    for name, value in kafka.items():
        values[name] = float(value)
        notes[name] = f"measured on Kafka, given to calibrate ({when})"
    # Three significant digits: more would be noise on a shared machine.
    values = {k: float(f"{v:.3g}") for k, v in values.items()}
    costs = replace(base, **values)  # Costs validates the values (>= 0, finite)
    return Measurement(costs, notes, size)
