"""The columnar walk reads exactly what fastavro reads, and gives up where it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from samples import alerts_of_version

from broker import alerts as A
from broker.catalogue import default_filters
from broker.columnar import PREFIX_BYTES, ColumnPlan, Unsupported
from broker.core import GroupCore
from broker.filters import build_columns
from broker.generator import AlertGenerator

COLUMNS = ["band", "dec", "extendedness", "psfChi2", "psfFlux", "ra", "reliability", "snr",
           "x", "y"]


def _reference(values: list[bytes], columns: list[str],
               schema: A.AlertSchema | None = None) -> tuple[dict[str, np.ndarray], list[int]]:
    dec = A.Decoder({"diaSource"}, bare_schema=schema)
    decoded = [dec.decode(v) for v in values]
    return (build_columns([d["diaSource"] for d in decoded], columns),
            [A.visit_of(d) for d in decoded])


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, col in want.items():
        if col.dtype == object:
            assert got[name].tolist() == col.tolist(), name
        else:
            assert np.array_equal(got[name], col, equal_nan=True), name


def _with_nulls(values: list[bytes], schema: A.AlertSchema) -> list[bytes]:
    """Re-encode alerts with nullable columns set to None on a pattern, and odd strings."""
    out = []
    for k, data in enumerate(values):
        alert = A.decode(data)
        src = alert["diaSource"]
        nullable = [f["name"] for f in _source_fields(schema)
                    if isinstance(f["type"], list) and "null" in f["type"]]
        for j, name in enumerate(nullable):
            if (j + k) % 3 == 0 and name not in ("visit", "ccdVisitId"):
                src[name] = None
        for name in ("band", "filterName"):
            if k % 5 == 0 and isinstance(src.get(name), str):
                src[name] = "é" * (k % 7)  # multi-byte UTF-8, sometimes empty
        out.append(A.encode(alert, schema))
    return out


def _source_fields(schema: A.AlertSchema) -> list[dict]:
    for f in schema.definition["fields"]:
        if f["name"] == "diaSource":
            return list(f["type"]["fields"])
    raise AssertionError("no diaSource")


@pytest.mark.parametrize("profile", ["realistic", "dmtn081"])
def test_columns_equal_fastavro_then_build_columns(profile: str) -> None:
    values = AlertGenerator(profile, seed=5).visit(3, 400)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    batch = ColumnPlan(schema, COLUMNS).read(values, 5)
    want, visits = _reference(values, COLUMNS)
    assert batch.ok.all()
    _assert_same(batch.columns, want)
    assert batch.visit.tolist() == visits == [3] * 400


@pytest.mark.parametrize("version", A.available_versions())
def test_every_shipped_schema_with_nulls_and_unicode(version: str) -> None:
    schema, values = alerts_of_version(version, 12, seed=9)
    values = _with_nulls(values, schema)
    names = {f["name"] for f in _source_fields(schema)}
    columns = sorted({c for c in (*COLUMNS, "ccdVisitId", "filterName", "psFlux") if c in names})
    batch = ColumnPlan(schema, columns).read(values, 5)
    want, visits = _reference(values, columns)
    assert batch.ok.all()
    _assert_same(batch.columns, want)
    assert batch.visit.tolist() == visits


def test_real_rubin_alerts(shared_data: Path) -> None:
    values = [p.read_bytes() for p in
              sorted((shared_data / "boom/tests/data/alerts/lsst").glob("*.avro"))]
    assert len(values) == 2
    for data in values:
        schema = A.schema_for_id(A.split_wire(data)[0])
        columns = sorted(c for c in COLUMNS if c in {f["name"] for f in _source_fields(schema)})
        batch = ColumnPlan(schema, columns).read([data], 5)
        want, visits = _reference([data], columns)
        assert batch.ok.all()
        _assert_same(batch.columns, want)
        assert batch.visit.tolist() == visits


def test_2016_bare_schema(alert_2016: tuple[A.AlertSchema, bytes]) -> None:
    schema, data = alert_2016
    batch = ColumnPlan(schema, ["ccdVisitId"]).read([data] * 3, 0)
    want, visits = _reference([data] * 3, ["ccdVisitId"], schema)
    assert batch.ok.all()
    _assert_same(batch.columns, want)
    assert batch.visit.tolist() == visits


def test_malformed_rows_are_not_ok_and_do_not_disturb_the_others() -> None:
    values = AlertGenerator("realistic", seed=2).visit(1, 20)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    broken = list(values)
    broken[3] = values[3][:60]                         # cut inside diaSource
    broken[5] = values[5][:5] + b"\xff" * 200          # varints that never end
    broken[8] = values[8][:5] + b"\x02" + b"\x7f" * 10  # a string longer than the message
    bad_union = bytearray(values[11])
    bad_union[5 + 9] = 0x0A  # observation_reason's union branch 5 does not exist
    broken[11] = bytes(bad_union)
    batch = ColumnPlan(schema, COLUMNS).read(broken, 5)
    assert batch.ok.tolist() == [k not in (3, 5, 8, 11) for k in range(20)]
    good = [k for k in range(20) if batch.ok[k]]
    want, _ = _reference([values[k] for k in good], COLUMNS)
    _assert_same({c: a[good] for c, a in batch.columns.items()}, want)


def test_a_prefix_longer_than_the_copy_goes_to_fastavro() -> None:
    values = AlertGenerator("realistic", seed=4).visit(2, 10)
    alert = A.decode(values[0])
    alert["observation_reason"] = "x" * (PREFIX_BYTES + 10)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    values[0] = A.encode(alert, schema)
    batch = ColumnPlan(schema, COLUMNS).read(values, 5)
    assert batch.ok.tolist() == [False] + [True] * 9


def test_unknown_column_is_refused() -> None:
    with pytest.raises(Unsupported):
        ColumnPlan(A.load_schema(), ["noSuchColumn"])


def test_group_outcomes_equal_the_dict_path_with_malformed_and_history() -> None:
    gen = AlertGenerator("realistic", seed=41)
    raw = gen.visit(4, 500) + gen.visit(5, 300)
    raw.insert(17, b"garbage")
    raw.insert(90, raw[40][:70])
    raw.insert(200, b"\x00\x00\x00\x04\x4d" + b"\x00" * 40)  # v11.1 header, empty record
    # An alert a history prefilter lets through, cut inside its history: its diaSource
    # columns read cleanly, its history does not.
    history = {i for i, f in enumerate(default_filters()) if "prvDiaSources" in f.fields}
    cut = next(v for v in raw[300:] if v[:1] == b"\x00" and any(
        default_filters()[i].prefilter(A.decode(v)) for i in history))
    raw.insert(300, cut[:3000])
    columnar = GroupCore(default_filters(), cap=20)
    dicts = GroupCore(default_filters(), cap=20)
    assert columnar._columnar
    dicts._columnar = False
    got = [o for k in range(0, len(raw), 250) for o in columnar.process_batch(raw[k:k + 250])]
    want = [o for k in range(0, len(raw), 250) for o in dicts.process_batch(raw[k:k + 250])]
    key = [(o.visit, o.deliver, o.capped, o.errors, o.malformed and o.malformed.reason)
           for o in want]
    assert [(o.visit, o.deliver, o.capped, o.errors, o.malformed and o.malformed.reason)
            for o in got] == key
    # The comparison means something: alerts were delivered, capped, and history
    # filters (which need the full decode) delivered some too.
    assert sum(len(o.deliver) for o in got) > 100
    assert sum(len(o.capped) for o in got) > 0
    assert any(set(o.deliver) & history for o in got)
    assert sum(o.malformed is not None for o in got) == 4
    assert got[300].malformed is not None and got[300].visit == 4 and not got[300].capped


def test_any_single_corrupted_byte_is_read_as_fastavro_reads_it_or_set_aside() -> None:
    values = AlertGenerator("realistic", seed=8).visit(6, 400)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    # Where diaSource ends in each message, so every byte of the prefix gets hit.
    dec = A.Decoder({"diaSource"}, later={"prvDiaSources"})
    ends = [dec.decode_staged(v)[1].position for v in values]  # type: ignore[union-attr]
    broken = []
    for k, v in enumerate(values):
        at = 5 + (k * 131) % (ends[k] - 5)
        b = bytearray(v)
        b[at] = (b[at] + 1 + (k * 37) % 255) % 256  # always a different byte
        broken.append(bytes(b))
    batch = ColumnPlan(schema, COLUMNS).read(broken, 5)
    accepted = 0
    for k, data in enumerate(broken):
        if not batch.ok[k]:
            continue  # the group decodes it with fastavro, which decides
        accepted += 1
        want, visits = _reference([data], COLUMNS)  # must not raise: the walk accepted it
        _assert_same({c: a[k:k + 1] for c, a in batch.columns.items()}, want)
        assert batch.visit[k] == visits[0]
    assert 50 < accepted < 400  # flipped floats stay readable; broken branches do not
