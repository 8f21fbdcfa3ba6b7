"""Costs, the calibration file and the calibration measurement (with injected code paths)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sim.calibrate import measure_costs
from sim.costs import (
    DEFAULT_CALIBRATION,
    FORMAT,
    Calibration,
    Costs,
    apply_overrides,
    parse_overrides,
)
from sim.dmtn081 import COSTS_2018


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    original = Calibration(
        {"realistic": Costs(decode_history=6.1e-4, per_filter=3e-7),
         "dmtn081": Costs(consume=1e-5, dispatch_parent=1.1e-4)},
        source="unit test",
        notes={"realistic.decode_history": "measured by the test"},
    )
    path = tmp_path / "cal.json"
    original.save(path)
    loaded = Calibration.load(path)
    assert loaded == original
    assert json.loads(path.read_text())["format"] == FORMAT
    # And once more through the file: byte-identical.
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_missing_costs_take_defaults_and_unknown_ones_are_refused() -> None:
    data = {"format": FORMAT, "profiles": {"realistic": {"decode_full": 1e-3}}}
    assert Calibration.from_dict(data).costs("realistic") == Costs(decode_full=1e-3)
    data["profiles"]["realistic"]["decode_ful"] = 1e-3
    with pytest.raises(ValueError, match="decode_ful"):
        Calibration.from_dict(data)


def test_bad_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        Calibration.load(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Calibration.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a calibration file"):
        Calibration.load(tmp_path / "y.json")
    (tmp_path / "z.json").write_text(json.dumps(
        {"format": FORMAT, "profiles": {"realistic": {"consume": -1}}}))
    with pytest.raises(ValueError, match="consume"):
        Calibration.load(tmp_path / "z.json")


def test_unknown_profile_says_how_to_get_it() -> None:
    with pytest.raises(ValueError, match="sim calibrate --profile ztf"):
        Calibration().costs("ztf")


def test_shipped_calibration_files_load() -> None:
    shipped = Calibration.load(DEFAULT_CALIBRATION)
    assert set(shipped.profiles) >= {"realistic", "dmtn081"}
    assert shipped.source
    for profile in shipped.profiles:
        # Every cost says where it comes from.
        assert {f"{profile}.{n}" for n in Costs.names()} <= set(shipped.notes)
    realistic = shipped.costs("realistic")
    # DESIGN.md: the prvDiaSources history, not diaSource, is the decoding cost.
    assert realistic.decode_history > 5 * realistic.decode_source
    old = Calibration.load(COSTS_2018)
    assert set(old.profiles) == {"dmtn081"}


def test_hand_entered_overrides() -> None:
    pairs = parse_overrides("decode_full=6e-4, per_filter=1e-6")
    assert pairs == [("decode_full", 6e-4), ("per_filter", 1e-6)]
    costs = apply_overrides(Costs(), pairs)
    assert costs.decode_full == 6e-4 and costs.per_filter == 1e-6
    assert costs.consume == Costs().consume
    for bad, message in (("decode=1", "unknown cost 'decode'"), ("consume", "NAME=SECONDS"),
                         ("consume=fast", "not a number"), ("consume=-1", ">= 0")):
        with pytest.raises(ValueError, match=message):
            parse_overrides(bad)


def test_decode_cost_follows_what_filters_read() -> None:
    c = Costs(decode_source=1.0, decode_history=2.0, decode_full=3.0)
    assert [c.decode(r) for r in ("diaSource", "history", "full")] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="reads"):
        c.decode("cutouts")


class FakeClock:
    """A CPU clock that only the fake code paths advance: exact, repeatable timings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_measure_costs_with_injected_code_paths() -> None:
    clock = FakeClock()
    per_decode = {frozenset({"diaSource"}): 2e-5,
                  frozenset({"diaSource", "prvDiaSources"}): 5e-4, None: 6e-4}

    def generate(count: int, profile: str, seed: int) -> list[bytes]:
        clock.now += 1e-4 * count
        return [bytes([seed % 256]) * 100] * count

    class Decoder:
        def __init__(self, fields: frozenset[str] | None) -> None:
            self.cost = per_decode[fields]

        def decode(self, data: bytes) -> dict[str, Any]:
            clock.now += self.cost
            return {"diaSource": {"snr": float(len(data))}}

    class Filter:
        def __init__(self, name: str, cost: float) -> None:
            self.name, self.cost = name, cost

        def __call__(self, alert: dict[str, Any]) -> bool:
            clock.now += self.cost
            return alert["diaSource"]["snr"] > 5

    m = measure_costs("realistic", base=Costs(consume=7e-6), alerts=50, repeats=2,
                      generate=generate, decoder=Decoder,
                      filters=[Filter("a", 1e-6), Filter("b", 3e-6)],
                      kafka={"produce": 4e-5, "producer_kafka": 2e-5}, clock=clock)
    c = m.costs
    assert c.decode_source == pytest.approx(2e-5)
    assert c.decode_history == pytest.approx(5e-4)
    assert c.decode_full == pytest.approx(6e-4)
    assert c.per_filter == pytest.approx(2e-6)  # mean over filters
    assert c.produce == pytest.approx(4e-5)
    assert c.producer_send == pytest.approx(2e-5)  # the Kafka send
    assert c.producer_prepare == pytest.approx(1e-4)  # serialisation, before the visit
    assert c.consume == 7e-6  # not measurable without Kafka: kept from the base
    assert m.alert_bytes == 100
    assert "measured" in m.notes["decode_full"]
    assert "Kafka" in m.notes["produce"]


def test_measure_costs_keeps_base_values_it_cannot_measure() -> None:
    def generate(count: int, profile: str, seed: int) -> list[bytes]:
        return [b"x"] * count

    class Decoder:
        def __init__(self, fields: frozenset[str] | None) -> None:
            if fields and "prvDiaSources" in fields:
                raise ValueError("schema has no field(s) ['prvDiaSources']")

        def decode(self, data: bytes) -> dict[str, Any]:
            return {}

    def broken(alert: dict[str, Any]) -> bool:
        raise KeyError("diaSource")

    base = Costs(decode_history=9e-4, per_filter=5e-7)
    m = measure_costs("dmtn081", base=base, alerts=5, repeats=1, generate=generate,
                      decoder=Decoder, filters=[broken])
    assert m.costs.decode_history == 9e-4
    assert "not measured" in m.notes["decode_history"]
    assert m.costs.per_filter == 5e-7  # every filter failed: nothing measured
    with pytest.raises(ValueError, match="unknown Kafka-measured cost"):
        measure_costs("dmtn081", alerts=5, repeats=1, generate=generate, decoder=Decoder,
                      filters=[], kafka={"latency": 1.0})


def test_decode_source_is_timed_as_the_group_reads_columns() -> None:
    m = measure_costs("dmtn081", alerts=1000, repeats=1)  # batches as a busy group reads
    assert "broker.columnar.ColumnPlan.read" in m.notes["decode_source"]
    # The walk keeps ~10 columns; fastavro decodes ~100 fields into a dict.
    assert 0 < m.costs.decode_source < m.costs.decode_history
