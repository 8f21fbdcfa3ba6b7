"""The history reader reads exactly what fastavro reads, and gives up where it should."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from samples import alerts_of_version

from broker import alerts as A
from broker.catalogue import default_filters
from broker.core import GroupCore
from broker.filters import Filter
from broker.generator import AlertGenerator
from broker.history import HistoryReader, Unreadable

WANT = frozenset({"psfFlux", "midpointMjdTai"})


def _staged(data: bytes, schema: A.AlertSchema | None = None) -> tuple[A.Resume, Any]:
    """Where the history starts, and fastavro's full history rows."""
    dec = A.Decoder({"diaSource"}, later={"prvDiaSources"}, bare_schema=schema)
    alert, resume = dec.decode_staged(data)
    assert resume is not None and resume.fields == ("prvDiaSources",)
    return resume, dec.decode_more(data, alert, resume)["prvDiaSources"]


def _project(rows: list[dict[str, Any]] | None, fields: frozenset[str]) -> Any:
    return None if rows is None else [{k: r[k] for k in fields} for r in rows]


def _nan_free(rows: Any) -> Any:
    """Rows with NaN replaced by a marker, so equal rows compare equal."""
    if rows is None:
        return None
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in rows]


def test_rows_equal_fastavro_for_generated_alerts() -> None:
    values = AlertGenerator("realistic", seed=21).visit(3, 60)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    reader = HistoryReader(schema, WANT)
    rows_seen = 0
    for data in values:
        resume, full = _staged(data)
        got = reader.read(data, resume.position)
        assert got == _project(full, WANT)
        rows_seen += len(got or [])
    assert rows_seen > 60 * 20  # ~30 rows per realistic alert


def _history_versions() -> list[str]:
    return [v for v in A.available_versions()
            if "prvDiaSources" in A.load_schema(v).field_names]


@pytest.mark.parametrize("version", _history_versions())
def test_every_shipped_schema_with_nulls_strings_and_all_fields(version: str) -> None:
    schema, values = alerts_of_version(version, 6, seed=22)
    cases = []
    for k, data in enumerate(values):
        alert = A.decode(data)
        rows = alert.get("prvDiaSources") or []
        for j, row in enumerate(rows):  # nulls on a pattern, multi-byte strings
            for n, (name, value) in enumerate(sorted(row.items())):
                if (n + j + k) % 4 == 0 and name not in ("visit", "ccdVisitId"):
                    row[name] = None
                if isinstance(value, str) and (n + j) % 3 == 0:
                    row[name] = "é" * (j % 4)
        if k == 0:
            alert["prvDiaSources"] = None
        try:
            data = A.encode(alert, schema)
        except Exception:  # a field that cannot be null in this version: keep the original
            data = values[k]
        cases.append((data, *_staged(data)))
    first = next(full[0] for _, _, full in cases if full)
    # Every field but logical types (fastavro turns those into datetimes; asking for one
    # is refused, and the group then decodes with fastavro).
    logical = {name for name, v in first.items() if isinstance(v, datetime)}
    if logical:
        with pytest.raises(Unreadable, match="logicalType"):
            HistoryReader(schema, frozenset(first))
    reader = HistoryReader(schema, frozenset(first) - logical)
    for data, resume, full in cases:
        got = reader.read(data, resume.position)
        assert _nan_free(got) == _nan_free(_project(full, reader.fields)), version
    assert cases[0][2] is None and reader.read(cases[0][0], cases[0][1].position) is None
    assert sum(len(full or []) for _, _, full in cases) > 0


def test_real_rubin_alerts(shared_data: Path) -> None:
    for path in sorted((shared_data / "boom/tests/data/alerts/lsst").glob("*.avro")):
        data = path.read_bytes()
        schema = A.schema_for_id(A.split_wire(data)[0])
        resume, full = _staged(data)
        fields = frozenset(full[0]) if full else WANT
        got = HistoryReader(schema, fields).read(data, resume.position)
        assert _nan_free(got) == _nan_free(_project(full, fields))


def test_any_single_corrupted_byte_is_read_as_fastavro_reads_it_or_refused() -> None:
    values = AlertGenerator("realistic", seed=23).visit(6, 300)
    schema = A.schema_for_id(A.split_wire(values[0])[0])
    every = frozenset(A.decode(values[0])["prvDiaSources"][0])
    readers = [HistoryReader(schema, WANT), HistoryReader(schema, every)]
    read = refused = 0
    for k, v in enumerate(values):
        resume, full = _staged(v)
        span = 2 + 40 * len(full or [])  # the first rows and the array's header
        at = resume.position + (k * 97) % span
        b = bytearray(v)
        b[at] = (b[at] + 1 + (k * 37) % 255) % 256
        data = bytes(b)
        reader = readers[k % 2]
        try:
            got = reader.read(data, resume.position)
        except Unreadable:
            refused += 1
            continue
        read += 1
        # Accepted: fastavro must read the same bytes, to the same values.
        dec = A.Decoder({"diaSource"}, later={"prvDiaSources"})
        alert, again = dec.decode_staged(data)
        rows = dec.decode_more(data, alert, again)["prvDiaSources"]
        assert _nan_free(got) == _nan_free(_project(rows, reader.fields)), k
    assert read > 50 and refused > 10


def test_truncated_and_bad_branch_are_refused() -> None:
    data = AlertGenerator("realistic", seed=24).visit(2, 1)[0]
    schema = A.schema_for_id(A.split_wire(data)[0])
    resume, _ = _staged(data)
    reader = HistoryReader(schema, WANT)
    with pytest.raises(Unreadable):
        reader.read(data[:resume.position + 500], resume.position)
    bad = bytearray(data)
    bad[resume.position] = 0x06  # union branch 3 of a two-branch union
    with pytest.raises(Unreadable):
        reader.read(bytes(bad), resume.position)
    with pytest.raises(Unreadable, match="noSuchField"):
        HistoryReader(schema, {"noSuchField"})


class _AnyField(Filter):
    """A history filter that does not say which row fields it reads."""

    name = "AnyField"
    fields = frozenset({"diaSource", "prvDiaSources"})

    def __call__(self, alert: dict[str, Any]) -> bool:
        rows = alert.get("prvDiaSources") or []
        return any(r.get("psfFluxErr", 0) > 0 for r in rows)


def test_group_reads_only_declared_fields_and_full_rows_otherwise() -> None:
    history = [f for f in default_filters() if "prvDiaSources" in f.fields]
    assert history and all(f.history_fields for f in history)
    raw = AlertGenerator("realistic", seed=25).visit(4, 400)
    fast = GroupCore(history, cap=1000)
    assert fast._history_fields == frozenset({"psfFlux", "midpointMjdTai"})
    slow = GroupCore(history, cap=1000)
    slow._history_fields = None  # fastavro's full rows, as before
    got = [o.deliver for o in fast.process_batch(raw)]
    want = [o.deliver for o in slow.process_batch(raw)]
    assert got == want and sum(map(len, got)) > 0
    # A filter without history_fields keeps fastavro's full rows for the whole group.
    assert GroupCore([*history, _AnyField()], cap=1000)._history_fields is None
