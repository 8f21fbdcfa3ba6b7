"""Wire format, schemas and partial decoding, on every shipped schema and the real alerts."""

from __future__ import annotations

import math
from pathlib import Path

import fastavro
import pytest

from broker import alerts as A


def _same(a: object, b: object) -> bool:
    """Equality that treats NaN == NaN (real alerts hold NaN floats)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_every_shipped_version_is_available_and_latest_is_default() -> None:
    versions = A.available_versions()
    assert "11.1" in versions and "3.0" in versions and len(versions) >= 15
    assert A.load_schema().version == A.latest_version()
    assert A.load_schema("7.3").schema_id == 703


@pytest.mark.parametrize("version", A.available_versions())
def test_wire_round_trip_of_sample_alert_for_every_version(version: str) -> None:
    from lsst.alert.packet import get_schema_root

    schema = A.load_schema(version)
    major, minor = version.split(".")
    sample = Path(get_schema_root()) / major / minor / "sample_data" / "fakeAlert.avro"
    if not sample.exists():
        pytest.skip(f"v{version} ships no fakeAlert.avro")
    with sample.open("rb") as fh:
        record = next(iter(fastavro.reader(fh)))
    data = A.encode(record, schema)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == schema.schema_id
    assert _same(A.decode(data), record)
    bare = A.encode(record, schema, wire=False)
    assert bare == data[5:]
    assert _same(A.decode(bare, schema), record)
    # An Avro container file yields the same wire bytes.
    assert list(A.iter_alert_file(sample)) == [data]


def test_real_rubin_alerts_round_trip_byte_for_byte(shared_data: Path) -> None:
    files = sorted((shared_data / "boom/tests/data/alerts/lsst").glob("*.avro"))
    assert len(files) == 2
    for path in files:
        data = path.read_bytes()
        schema_id, _ = A.split_wire(data)
        assert schema_id in (701, 703)
        alert = A.decode(data)
        assert A.encode(alert, A.schema_for_id(schema_id)) == data
        assert list(A.iter_alert_file(path)) == [data]
        assert A.visit_of(alert) == alert["diaSource"]["visit"]


def test_partial_decode_stops_early_and_continues_without_redoing(shared_data: Path) -> None:
    data = (shared_data / "boom/tests/data/alerts/lsst/25409136044802067.avro").read_bytes()
    full = A.decode(data)
    dec = A.Decoder({"diaSource"}, later={"prvDiaSources", "diaObject"})
    head, resume = dec.decode_staged(data)
    assert "prvDiaSources" not in head and _same(head["diaSource"], full["diaSource"])
    assert resume is not None
    dec.decode_more(data, head, resume)
    assert _same(head["prvDiaSources"], full["prvDiaSources"])
    assert _same(head["diaObject"], full["diaObject"])
    assert "cutoutDifference" not in head  # never decoded: after the last field wanted


def test_unknown_fields_are_rejected_for_a_bare_schema() -> None:
    with pytest.raises(ValueError, match="no field"):
        A.Decoder({"notAField"}, bare_schema=A.load_schema())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too-short"),
        (b"\x01\x00\x00\x04M" + b"x" * 10, "bad-magic"),
        (b"\x00\x00\x00\x27\x0f" + b"x" * 10, "unknown-schema"),
        (b"\x00\x00\x00\x04M" + b"\xff" * 3, "undecodable"),
    ],
)
def test_malformed_messages_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(A.MalformedAlert) as info:
        A.Decoder({"diaSource"}).decode(data)
    assert info.value.reason == reason


def test_2016_schema_loads_and_visit_comes_from_ccdvisitid(
        alert_2016: tuple[A.AlertSchema, bytes]) -> None:
    schema, data = alert_2016
    alert = A.decode(data, schema)
    ccd = alert["diaSource"]["ccdVisitId"]
    assert A.visit_of(alert) == ccd // A.CCD_VISIT_FACTOR
