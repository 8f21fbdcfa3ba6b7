"""Rubin alert packets: schemas, the Confluent wire format, partial decoding, Avro files.

Pure: no Kafka import. Schemas come from the ``lsst-alert-packet`` package (every version
it ships). On the wire a message value is byte 0 = 0x00, bytes 1-4 = big-endian schema id
(MAJOR*100 + MINOR), then schemaless Avro. Bare schemaless Avro with a configured schema
(the 2018 behaviour) and Avro object-container files are read too.

Decoding, not filtering, is the cost of a filter group: a real alert's ``prvDiaSources``
history dominates it. A :class:`Decoder` therefore decodes only the top-level fields its
filters read. Avro has no index, but fields are laid out in schema order, so decoding
stops after the last field wanted: the history and the cutouts that follow
``diaSource`` are never touched when no filter reads them.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

__all__ = [
    "MAGIC",
    "AlertSchema",
    "Decoder",
    "MalformedAlert",
    "Resume",
    "available_versions",
    "decode",
    "encode",
    "iter_alert_file",
    "latest_version",
    "load_schema",
    "load_schema_file",
    "resolve_schema",
    "schema_for_id",
    "split_wire",
    "visit_of",
]

MAGIC = 0
_HEADER = struct.Struct(">bI")

# 2016-era schemas pack the visit into ccdVisitId as visit * CCD_VISIT_FACTOR + ccd.
CCD_VISIT_FACTOR = 1000

Alert = dict[str, Any]


class MalformedAlert(ValueError):
    """A message that is not a decodable alert; ``reason`` is a short machine tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AlertSchema:
    """One alert schema: its version, wire id and parsed Avro definition."""

    version: str
    schema_id: int
    definition: dict[str, Any] = field(repr=False, compare=False)
    parsed: Any = field(repr=False, compare=False)

    @property
    def field_names(self) -> list[str]:
        """Top-level field names in schema (wire) order."""
        return [f["name"] for f in self.definition["fields"]]


def _schema_root() -> Path:
    from lsst.alert.packet import get_schema_root

    return Path(get_schema_root())


@cache
def available_versions() -> tuple[str, ...]:
    """Every alert schema version shipped by lsst-alert-packet, oldest first ("3.0"...)."""
    found = []
    for path in _schema_root().glob("*/*/lsst.v*_*.alert.avsc"):
        m = re.match(r"lsst\.v(\d+)_(\d+)\.alert\.avsc", path.name)
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
    return tuple(f"{a}.{b}" for a, b in sorted(found))


def latest_version() -> str:
    """The newest shipped schema version (the default everywhere)."""
    from lsst.alert.packet import get_latest_schema_version

    major, minor = get_latest_schema_version()
    return f"{major}.{minor}"


def _version_id(version: str) -> int:
    major, minor = (int(x) for x in version.split("."))
    return major * 100 + minor


@cache
def load_schema(version: str | None = None) -> AlertSchema:
    """Load an alert schema by version ("11.1"); ``None`` means the latest."""
    version = version or latest_version()
    if version not in available_versions():
        raise ValueError(
            f"unknown alert schema version {version!r}; available: "
            + ", ".join(available_versions())
        )
    major, minor = version.split(".")
    path = _schema_root() / major / minor / f"lsst.v{major}_{minor}.alert.avsc"
    definition = fastavro.schema.load_schema(str(path), _write_hint=False)
    assert isinstance(definition, dict)
    return AlertSchema(version, _version_id(version), definition,
                       fastavro.parse_schema(definition))


def load_schema_file(*paths: str | Path) -> AlertSchema:
    """Load a schema from ``.avsc`` files given in dependency order (the last is the alert).

    This serves the 2016 sample-avro-alert schema of the 2018 prototype, whose files must
    be parsed in order diasource, diaobject, ssobject, cutout, alert.
    """
    if not paths:
        raise ValueError("no schema files given")
    named: dict[str, Any] = {}
    parsed: Any = None
    for p in paths:
        try:
            raw = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read schema file {p}: {exc}") from None
        parsed = fastavro.parse_schema(raw, named_schemas=named)
    name = parsed.get("name", "") if isinstance(parsed, dict) else ""
    m = re.search(r"v(\d+)_(\d+)", name)
    version = f"{m.group(1)}.{m.group(2)}" if m else "0.0"
    return AlertSchema(version, _version_id(version), parsed, parsed)


def resolve_schema(spec: str) -> AlertSchema:
    """A schema named on the command line: a version ("11.1") or ``.avsc`` files.

    Files are given comma-separated in dependency order, the alert schema last (the 2016
    schema of the 2018 prototype: diasource, diaobject, ssobject, cutout, alert).
    """
    if spec in available_versions():
        return load_schema(spec)
    paths = [p for p in spec.split(",") if p]
    if paths and all(p.endswith(".avsc") for p in paths):
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise ValueError(f"schema file(s) not found: {', '.join(missing)}")
        return load_schema_file(*paths)
    raise ValueError(
        f"{spec!r} is neither a schema version ({', '.join(available_versions())}) nor "
        "comma-separated .avsc files"
    )


@cache
def schema_for_id(schema_id: int) -> AlertSchema:
    """The shipped schema whose wire id is ``schema_id`` (e.g. 1101 -> v11.1)."""
    version = f"{schema_id // 100}.{schema_id % 100}"
    if version not in available_versions():
        raise MalformedAlert("unknown-schema", f"schema id {schema_id} is not a known version")
    return load_schema(version)


def encode(record: Alert, schema: AlertSchema | None = None, wire: bool = True) -> bytes:
    """Serialise ``record``: Confluent wire format by default, bare Avro with ``wire=False``."""
    schema = schema or load_schema()
    buf = io.BytesIO()
    if wire:
        buf.write(_HEADER.pack(MAGIC, schema.schema_id))
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def split_wire(data: bytes) -> tuple[int, int]:
    """Return (schema id, payload offset) of a wire-format message, or raise MalformedAlert."""
    if len(data) < 6:
        raise MalformedAlert("too-short", f"{len(data)} bytes is too short for an alert")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedAlert("bad-magic", f"first byte is {data[0]:#04x}, not 0x00")
    return schema_id, _HEADER.size


def _check_fields(schema: AlertSchema, fields: frozenset[str]) -> None:
    unknown = fields - set(schema.field_names)
    if unknown:
        raise ValueError(
            f"schema v{schema.version} has no field(s) {sorted(unknown)}; "
            f"fields are {schema.field_names}"
        )


class _Plan:
    """How to read one schema: a prefix record, then an optional window record after it.

    The prefix is the writer schema cut after the last ``fields`` entry: reading stops
    there, so what follows (history, cutouts) is never decoded. The window covers the
    fields after the prefix up to the last ``later`` entry, read from where the prefix
    stopped, only for alerts that need it. Named types defined in the prefix are passed
    to the window so its references resolve.
    """

    def __init__(self, schema: AlertSchema, fields: frozenset[str] | None,
                 later: frozenset[str]) -> None:
        names = schema.field_names
        if fields is None:
            self.prefix: Any = schema.parsed
            self.window: Any = None
            self.window_fields: tuple[str, ...] = ()
            return
        wanted = (fields & set(names)) or frozenset(names[:1])
        cut = max(names.index(f) for f in wanted) + 1
        named: dict[str, Any] = {}
        base = dict(schema.definition)
        base["fields"] = schema.definition["fields"][:cut]
        base["name"] = schema.definition["name"] + "_prefix"
        self.prefix = fastavro.parse_schema(base, named_schemas=named)
        more = [names.index(f) for f in later & set(names) if names.index(f) >= cut]
        self.window = None
        self.window_fields = tuple(names[cut: max(more) + 1]) if more else ()
        if more:
            # Parse the whole schema into `named` so types defined after the cut resolve too.
            fastavro.parse_schema(schema.definition, named_schemas=named)
            window = {
                "type": "record",
                "name": schema.definition["name"] + "_window",
                "fields": schema.definition["fields"][cut: max(more) + 1],
            }
            self.window = fastavro.parse_schema(window, named_schemas=dict(named))


class Decoder:
    """Decode alerts, only up to the last top-level field any filter reads.

    ``fields=None`` decodes everything. ``later`` names fields (e.g. ``prvDiaSources``)
    that only some alerts need: :meth:`decode_more` reads them for one alert, continuing
    from where :meth:`decode` stopped, so nothing is decoded twice. Wire-format messages
    pick their schema by id; ``bare_schema`` decodes schemaless Avro without a header
    instead (the 2018 behaviour).
    """

    def __init__(
        self,
        fields: Iterable[str] | None = None,
        later: Iterable[str] = (),
        bare_schema: AlertSchema | None = None,
    ) -> None:
        self.fields = frozenset(fields) if fields is not None else None
        self.later = frozenset(later)
        self.bare_schema = bare_schema
        self._plans: dict[int, _Plan] = {}
        if bare_schema is not None and self.fields is not None:
            _check_fields(bare_schema, self.fields | self.later)

    def _plan(self, schema: AlertSchema) -> _Plan:
        plan = self._plans.get(schema.schema_id)
        if plan is None:
            plan = _Plan(schema, self.fields, self.later)
            self._plans[schema.schema_id] = plan
        return plan

    def _locate(self, data: bytes) -> tuple[AlertSchema, int]:
        if self.bare_schema is not None:
            return self.bare_schema, 0
        schema_id, offset = split_wire(data)
        return schema_for_id(schema_id), offset

    def decode(self, data: bytes) -> Alert:
        """Decode one message; raise :class:`MalformedAlert` if it is not an alert."""
        return self.decode_staged(data)[0]

    def decode_staged(self, data: bytes) -> tuple[Alert, Resume | None]:
        """Decode ``fields``; also return where to resume for ``later`` (None if nothing)."""
        schema, offset = self._locate(data)
        plan = self._plan(schema)
        stream = io.BytesIO(data)
        stream.seek(offset)
        record = _read(stream, plan.prefix, schema)
        if plan.window is None:
            return record, None
        return record, Resume(stream.tell(), plan.window, schema, plan.window_fields)

    def decode_more(self, data: bytes, record: Alert, resume: Resume | None) -> Alert:
        """Add the ``later`` fields to ``record``, reading on from where it stopped."""
        if resume is not None:
            stream = io.BytesIO(data)
            stream.seek(resume.position)
            record.update(_read(stream, resume.window, resume.schema))
        return record


@dataclass(frozen=True)
class Resume:
    """Where a staged decode stopped, and how to read the fields after it."""

    position: int
    window: Any
    schema: AlertSchema
    fields: tuple[str, ...] = ()
    """The top-level fields the window holds, in order."""


def _read(stream: io.BytesIO, parsed: Any, schema: AlertSchema) -> Alert:
    try:
        record = fastavro.schemaless_reader(stream, parsed, None)
    except Exception as exc:  # fastavro raises many types on corrupt bytes
        raise MalformedAlert(
            "undecodable", f"not a v{schema.version} alert: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(record, dict):
        raise MalformedAlert("undecodable", "decoded value is not a record")
    return record


def decode(data: bytes, schema: AlertSchema | None = None) -> Alert:
    """Fully decode one alert (wire format, or bare Avro when ``schema`` is given)."""
    return Decoder(None, bare_schema=schema).decode(data)


def visit_of(alert: Alert) -> int:
    """The visit of an alert: ``diaSource.visit``, or from ``ccdVisitId`` in old schemas."""
    source = alert.get("diaSource")
    if not isinstance(source, dict):
        raise MalformedAlert("no-visit", "alert has no diaSource record")
    visit = source.get("visit")
    if visit is None:
        ccd_visit = source.get("ccdVisitId")
        if ccd_visit is None:
            raise MalformedAlert("no-visit", "diaSource has neither visit nor ccdVisitId")
        visit = int(ccd_visit) // CCD_VISIT_FACTOR
    return int(visit)


def iter_alert_file(path: str | Path, schema: AlertSchema | None = None) -> Iterator[bytes]:
    """Yield wire-format messages from a file, unchanged when it already holds one.

    A file is either one wire-format message (0x00 + schema id, as a Kafka value) or an
    Avro object-container file (records re-encoded to wire format with the schema whose
    version its embedded writer schema names, or ``schema``).
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] == b"Obj\x01":
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            writer = reader.writer_schema
            name = writer.get("name", "") if isinstance(writer, dict) else ""
            m = re.search(r"v(\d+)_(\d+)", str(name))
            target = schema or (load_schema(f"{m.group(1)}.{m.group(2)}") if m else None)
            if target is None:
                raise ValueError(f"{path}: cannot tell the alert schema version of {name!r}")
            for record in reader:
                yield encode(record, target)  # type: ignore[arg-type]
        return
    if data[:1] == b"\x00":
        split_wire(data)
        yield data
        return
    raise ValueError(f"{path}: neither a wire-format alert (0x00...) nor an Avro container file")
