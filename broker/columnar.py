"""Columnar decoding: read chosen ``diaSource`` fields of a whole batch at once, with numpy.

A filter group's cost is decoding, and most of the catalogue only reads a handful of
``diaSource`` columns (band, flux, SNR, reliability, position). Decoding every alert into a
dict of ~100 fields with fastavro and then building numpy columns from those dicts pays
for ~100 Python objects per alert that nobody reads. Avro's binary layout needs no
objects to walk: every field is a varint, a fixed-width number or a length-prefixed
string, in schema order. :class:`ColumnPlan` walks the fields of a batch of messages in
lock-step, one numpy operation per field for every message at once, and keeps only the
columns asked for, already as the numpy arrays the vectorised filters take.

A message the walk cannot read cleanly (a union branch that does not exist, a varint
longer than 10 bytes, a string running past the message, a null visit, a prefix longer
than :data:`PREFIX_BYTES`) is reported as not ``ok``; the caller decodes those with
fastavro, which either reads them or says exactly why they are malformed. Pure: no
Kafka, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from broker.alerts import CCD_VISIT_FACTOR, AlertSchema

__all__ = ["PREFIX_BYTES", "ColumnBatch", "ColumnPlan", "Unsupported"]

# The part of a message copied for the walk. diaSource ends after ~1 KB in every shipped
# schema (numbers are at most 9 bytes with their union index); longer prefixes (long
# strings) are rare and fall back to fastavro.
PREFIX_BYTES = 4096
_PAD = 16  # zero bytes after the buffer beyond the most a walk can overrun it
_TEN = np.arange(10)  # a varint has at most 10 bytes

_FIXED = {"float": 4, "double": 8}
_NUMERIC = {"int", "long", "float", "double", "boolean"}


class Unsupported(ValueError):
    """The schema's prefix holds a type the columnar walk does not read (arrays, maps...)."""


@dataclass
class ColumnBatch:
    """Columns of the messages of one batch; rows whose ``ok`` is False hold no data."""

    columns: dict[str, np.ndarray]
    visit: np.ndarray  # int64
    ok: np.ndarray     # bool


# A normalised type: ("null",), ("prim", name), ("union", [types]), ("record", [(name, type)]),
# ("enum", [symbols]), ("fixed", size).
_Type = tuple[Any, ...]


class ColumnPlan:
    """How to walk one schema's top-level fields up to ``source``, keeping ``columns``.

    ``columns`` name fields of the ``source`` record (default ``diaSource``). Strings and
    enums come back as object arrays (None when null), every other kind as float64 (NaN
    when null), as :func:`broker.filters.build_columns` builds them from dicts. The visit
    comes back as exact int64: ``diaSource.visit``, or ``ccdVisitId // 1000`` in schemas
    without it.
    """

    def __init__(self, schema: AlertSchema, columns: Iterable[str],
                 source: str = "diaSource") -> None:
        self.schema = schema
        self.columns = sorted(set(columns))
        named: dict[str, _Type] = {}
        top = schema.definition["fields"]
        names = [f["name"] for f in top]
        if source not in names:
            raise Unsupported(f"schema v{schema.version} has no {source} field")
        namespace = schema.definition.get("namespace", "")
        self._steps: list[tuple[str | None, _Type]] = []
        for f in top[: names.index(source)]:
            self._steps.append((None, self._norm(f["type"], named, namespace)))
        src = self._norm(top[names.index(source)]["type"], named, namespace)
        if src[0] != "record":
            raise Unsupported(f"{source} is not a record in schema v{schema.version}")
        fields = dict(src[1])
        missing = set(self.columns) - set(fields)
        if missing:
            raise Unsupported(f"{source} of schema v{schema.version} has no {sorted(missing)}")
        self.visit_field = "visit" if "visit" in fields else "ccdVisitId"
        if self.visit_field not in fields:
            raise Unsupported(f"{source} of schema v{schema.version} has no visit")
        self._kinds: dict[str, str] = {}
        for name, t in src[1]:
            keep = name if name in self.columns or name == self.visit_field else None
            if keep is not None:
                kind = _kind(t)
                if kind is None:
                    raise Unsupported(f"column {name} has a type the walk cannot keep: {t}")
                self._kinds[name] = kind
            self._steps.append((keep, t))
        self._ops = _compile(self._steps)
        # Rows of garbage can run past their message, but never by more than every step's
        # widest read: pad the buffer by that, and no read needs bounds checks.
        self._pad = _PAD + sum(_widest(t) for _, t in self._steps)

    def _norm(self, t: Any, named: dict[str, _Type], ns: str) -> _Type:
        if isinstance(t, list):
            return ("union", [self._norm(b, named, ns) for b in t])
        if isinstance(t, str):
            if t == "null":
                return ("null",)
            if t in _NUMERIC or t in ("string", "bytes"):
                return ("prim", t)
            full = t if "." in t else f"{ns}.{t}" if ns else t
            for key in (t, full):
                if key in named:
                    return named[key]
            # Schemas parsed from several files (the 2016 ones) keep their named types
            # aside, in fastavro's table.
            table = self.schema.definition.get("__named_schemas", {})
            for key in (t, full):
                if key in table:
                    return self._norm(table[key], named, ns)
            raise Unsupported(f"unknown named type {t}")
        if not isinstance(t, dict):
            raise Unsupported(f"unexpected type {t!r}")
        kind = t["type"]
        if "logicalType" in t and kind not in ("record", "enum", "fixed"):
            # Kept raw by the walk, but fastavro would convert it: only skip such fields.
            return ("logical", self._norm(kind, named, ns))
        if kind in ("record", "enum", "fixed"):
            own_ns = t.get("namespace", ns)
            name = t["name"]
            full = name if "." in name or not own_ns else f"{own_ns}.{name}"
            if kind == "record":
                out: _Type = ("record", [(f["name"], self._norm(f["type"], named, own_ns))
                                         for f in t["fields"]])
            elif kind == "enum":
                out = ("enum", list(t["symbols"]))
            else:
                out = ("fixed", int(t["size"]))
            named[full] = named[name] = out
            return out
        if kind in ("array", "map"):
            raise Unsupported(f"{kind} before the end of the prefix")
        return self._norm(kind, named, ns)

    def read(self, values: Sequence[bytes], offset: int) -> ColumnBatch:
        """Walk ``values`` (each starting its Avro payload at ``offset``) in lock-step."""
        n = len(values)
        chunks = [v[:offset + PREFIX_BYTES] for v in values]
        lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        walk = _Walk(np.frombuffer(b"".join(chunks) + bytes(self._pad), dtype=np.uint8),
                     starts + offset, starts + lengths)
        # A message cut at PREFIX_BYTES may simply be longer than the copy: not malformed,
        # but the walk cannot tell, so such rows go to fastavro.
        cut = np.fromiter((len(v) > offset + PREFIX_BYTES for v in values), dtype=bool,
                          count=n)
        out: dict[str, np.ndarray] = {}
        for name, kind in self._kinds.items():
            out[name] = (np.full(n, None, dtype=object) if kind == "object"
                         else np.full(n, np.nan))
        visit_null = np.zeros(n, dtype=bool)
        raw_visit = np.zeros(n, dtype=np.int64)
        every = np.arange(n)
        for op, keep, t in self._ops:
            if op == "fixed":
                walk.pos = walk.pos + t
            elif op == "varint":
                walk.skip_varints()
            elif op == "nullfixed":
                walk.skip_nullable_fixed(*t)
            elif op == "nullvarint":
                walk.skip_nullable_varint(*t)
            elif op == "keepfloat":
                assert keep is not None
                out[keep] = walk.floats(*t)
            elif keep is None:
                walk.skip(t, every)
            elif keep == self.visit_field:
                ints, present = walk.integer(t, every)
                raw_visit[:] = ints
                visit_null |= ~present
                if keep in self.columns:
                    col = ints.astype(np.float64)
                    col[~present] = np.nan
                    out[keep] = col
            else:
                walk.keep(t, every, out[keep])
        ok = ~walk.bad & ~visit_null & (walk.pos <= walk.end) & ((walk.branches | 2) == 2)
        ok &= ~(cut & (walk.pos >= walk.end))
        visit = raw_visit if self.visit_field == "visit" else raw_visit // CCD_VISIT_FACTOR
        return ColumnBatch({c: out[c] for c in self.columns}, visit, ok)


def _fixed_size(t: _Type) -> int | None:
    if t[0] == "prim" and t[1] in _FIXED:
        return _FIXED[t[1]]
    if t == ("prim", "boolean"):
        return 1
    if t[0] == "fixed":
        return int(t[1])
    return None


def _widest(t: _Type) -> int:
    """Most bytes one value of ``t`` can move a row past its message's end."""
    tag = t[0]
    if tag == "null":
        return 0
    if tag == "union":
        return 10 + max(_widest(b) for b in t[1])
    if tag == "record":
        return sum(_widest(ft) for _, ft in t[1])
    if tag == "logical":
        return _widest(t[1])
    size = _fixed_size(t)
    return size if size is not None else 10  # varints; strings' bytes stay within `end`


def _is_varint(t: _Type) -> bool:
    return (t[0] == "prim" and t[1] in ("int", "long")) or t[0] == "enum"


def _compile(steps: list[tuple[str | None, _Type]]) -> list[tuple[str, str | None, Any]]:
    """Turn the walk's steps into operations over every message at once.

    Most of ``diaSource`` is nullable numbers nobody reads: a one-byte union branch then
    a fixed-width value. Skipping those is a handful of numpy operations on the whole
    batch, without selecting rows per branch, and runs of fixed-width fields merge into
    one jump. Anything else (kept columns, other unions) takes the general path.
    """
    ops: list[tuple[str, str | None, Any]] = []
    for keep, t in steps:
        size = _fixed_size(t)
        if keep is not None:
            ops.append(_keep_op(keep, t))
        elif size is not None:
            if ops and ops[-1][0] == "fixed":
                ops[-1] = ("fixed", None, ops[-1][2] + size)
            else:
                ops.append(("fixed", None, size))
        elif _is_varint(t):
            ops.append(("varint", None, None))
        elif t[0] == "union" and len(t[1]) == 2 and ("null",) in t[1]:
            null = t[1].index(("null",))
            other = t[1][1 - null]
            codes = (2 * (1 - null), 2 * null)  # zigzag of the branch indexes 0 and 1
            osize = _fixed_size(other)
            if osize is not None:
                advance = np.ones(256, dtype=np.int64)  # bad bytes: caught by `branches`
                advance[codes[0]] += osize
                ops.append(("nullfixed", None, (advance,)))
            elif _is_varint(other):
                ops.append(("nullvarint", None, codes))
            else:
                ops.append(("general", None, t))
        else:
            ops.append(("general", None, t))
    return ops


def _keep_op(keep: str, t: _Type) -> tuple[str, str | None, Any]:
    """A kept float or double, nullable or not, is read for every row at once."""
    dtypes = {"float": "<f4", "double": "<f8"}
    if t[0] == "prim" and t[1] in dtypes:
        return ("keepfloat", keep, (_FIXED[t[1]], dtypes[t[1]], None, None))
    if t[0] == "union" and len(t[1]) == 2 and ("null",) in t[1]:
        null = t[1].index(("null",))
        other = t[1][1 - null]
        if other[0] == "prim" and other[1] in dtypes:
            return ("keepfloat", keep,
                    (_FIXED[other[1]], dtypes[other[1]], 2 * (1 - null), 2 * null))
    return ("general", keep, t)


def _kind(t: _Type) -> str | None:
    """'object' (strings, enums), 'float', or None for what a column cannot hold."""
    if t[0] == "union":
        kinds = {_kind(b) for b in t[1] if b[0] != "null"}
        return kinds.pop() if len(kinds) == 1 and None not in kinds else None
    if t[0] == "enum" or t == ("prim", "string"):
        return "object"
    if t[0] == "prim" and t[1] in _NUMERIC:
        return "float"
    return None


class _Walk:
    """Read positions of every message in one buffer, advanced field by field."""

    def __init__(self, buf: np.ndarray, pos: np.ndarray, end: np.ndarray) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.bad = np.zeros(len(pos), dtype=bool)
        # OR of every nullable branch byte read by the fast paths: 0 (null) or 2 (value)
        # in a well-formed message, so any other bit marks the row bad at the end.
        self.branches = np.zeros(len(pos), dtype=np.uint8)

    def _at(self, ix: np.ndarray) -> np.ndarray:
        return self.pos[ix]

    def skip_varints(self, ix: np.ndarray | None = None) -> None:
        """Skip one varint in every row (or rows ``ix``): its length from the stop bit."""
        p = self.pos if ix is None else self.pos[ix]
        more = self.buf[p[:, None] + _TEN] >= 0x80
        length = np.argmin(more, axis=1) + 1
        endless = more.all(axis=1)
        if ix is None:
            self.pos = p + length
            self.bad |= endless
        else:
            self.pos[ix] = p + length
            self.bad[ix[endless]] = True

    def _branch(self, value: int) -> tuple[np.ndarray, np.ndarray]:
        b = self.buf[self.pos]
        self.branches |= b
        return self.pos + 1, b == value

    def skip_nullable_fixed(self, advance: np.ndarray) -> None:
        """Skip a nullable fixed-width value: ``advance`` maps its branch byte to bytes."""
        self.branches |= (b := self.buf[self.pos])
        self.pos = self.pos + advance[b]

    def floats(self, size: int, dtype: str, value: int | None, null: int | None
               ) -> np.ndarray:
        """A float or double of every row, NaN where null (``value``: the non-null branch
        code of a nullable one, None for a plain one)."""
        if value is None or null is None:
            p = self.pos
            present = None
        else:
            p, present = self._branch(value)
        raw = self.buf[p[:, None] + np.arange(size)].copy().view(dtype)[:, 0]
        values = raw.astype(np.float64)
        if present is None:
            self.pos = p + size
        else:
            values[~present] = np.nan
            self.pos = p + present * size
        return values

    def skip_nullable_varint(self, value: int, null: int) -> None:
        """Skip a nullable int or long."""
        self.pos, present = self._branch(value)
        self.skip_varints(np.flatnonzero(present))

    def varint(self, ix: np.ndarray) -> np.ndarray:
        """Zigzag varints (Avro int/long) of rows ``ix``; advances them."""
        p = self._at(ix)
        acc = np.zeros(len(ix), dtype=np.uint64)
        used = np.zeros(len(ix), dtype=np.int64)
        active = np.ones(len(ix), dtype=bool)
        for k in range(10):
            b = self.buf[p + k].astype(np.uint64)
            acc |= np.where(active, (b & np.uint64(0x7F)) << np.uint64(7 * k), np.uint64(0))
            used += active
            active &= b >= 0x80
            if not active.any():
                break
        else:
            self.bad[ix[active]] = True
        self.pos[ix] = p + used
        half = (acc >> np.uint64(1)).astype(np.int64)
        return half ^ -((acc & np.uint64(1)).astype(np.int64))

    def fixed(self, ix: np.ndarray, size: int) -> np.ndarray:
        """``size`` raw bytes of rows ``ix`` as an (n, size) uint8 array; advances them."""
        p = self._at(ix)
        self.pos[ix] = p + size
        return self.buf[p[:, None] + np.arange(size)]

    def _length(self, ix: np.ndarray) -> np.ndarray:
        n = self.varint(ix)
        wrong = (n < 0) | (self.pos[ix] + n > self.end[ix])
        self.bad[ix[wrong]] = True
        return np.where(wrong, 0, n)

    def _union(self, t: _Type, ix: np.ndarray) -> list[tuple[_Type, np.ndarray]]:
        branch = self.varint(ix)
        branches = t[1]
        self.bad[ix[(branch < 0) | (branch >= len(branches))]] = True
        return [(b, ix[branch == i]) for i, b in enumerate(branches)]

    def skip(self, t: _Type, ix: np.ndarray) -> None:
        """Advance rows ``ix`` over one value of type ``t``."""
        if not len(ix):
            return
        tag = t[0]
        if tag == "null":
            return
        if tag == "logical":
            self.skip(t[1], ix)
        elif tag == "prim":
            name = t[1]
            if name in ("int", "long"):
                self.varint(ix)
            elif name in _FIXED:
                self.pos[ix] = self._at(ix) + _FIXED[name]
            elif name == "boolean":
                self.pos[ix] = self._at(ix) + 1
            else:  # string, bytes
                n = self._length(ix)  # moves pos past the length first
                if name == "string":
                    # fastavro rejects a string that is not UTF-8 even when nobody
                    # reads it; so does the walk, to call the same messages malformed.
                    self._check_utf8(ix[n > 0], n[n > 0])
                self.pos[ix] += n
        elif tag == "union":
            for b, sub in self._union(t, ix):
                self.skip(b, sub)
        elif tag == "record":
            for _, ft in t[1]:
                self.skip(ft, ix)
        elif tag == "enum":
            self.varint(ix)
        elif tag == "fixed":
            self.pos[ix] = self._at(ix) + t[1]
        else:  # pragma: no cover - _norm admits nothing else
            raise Unsupported(str(t))

    def integer(self, t: _Type, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An int/long (or nullable one) of rows ``ix``: values and a 'not null' mask."""
        values = np.zeros(len(ix), dtype=np.int64)
        present = np.zeros(len(ix), dtype=bool)
        if t[0] == "union":
            where = np.empty(len(self.pos), dtype=np.int64)
            where[ix] = np.arange(len(ix))
            for b, sub in self._union(t, ix):
                if b[0] == "null":
                    continue
                v, ok = self.integer(b, sub)
                values[where[sub]] = v
                present[where[sub]] = ok
            return values, present
        if t[0] == "prim" and t[1] in ("int", "long"):
            return self.varint(ix), np.ones(len(ix), dtype=bool)
        raise Unsupported(f"visit of type {t}")

    def _check_utf8(self, ix: np.ndarray, n: np.ndarray) -> None:
        data = self.buf
        for row, s, k in zip(ix.tolist(), self.pos[ix].tolist(), n.tolist(), strict=True):
            try:
                data[s:s + k].tobytes().decode()
            except UnicodeDecodeError:
                self.bad[row] = True

    def keep(self, t: _Type, ix: np.ndarray, out: np.ndarray) -> None:
        """Read one value of type ``t`` for rows ``ix`` into ``out[ix]`` (null: untouched)."""
        if not len(ix):
            return
        tag = t[0]
        if tag == "union":
            for b, sub in self._union(t, ix):
                self.keep(b, sub, out)
            return
        if tag == "null":
            return
        if tag == "enum":
            idx = self.varint(ix)
            symbols = t[1]
            wrong = (idx < 0) | (idx >= len(symbols))
            self.bad[ix[wrong]] = True
            out[ix] = [symbols[i] if 0 <= i < len(symbols) else None for i in idx.tolist()]
            return
        name = t[1]
        if name in ("int", "long"):
            out[ix] = self.varint(ix)
        elif name == "float":
            out[ix] = self.fixed(ix, 4).copy().view("<f4")[:, 0]
        elif name == "double":
            out[ix] = self.fixed(ix, 8).copy().view("<f8")[:, 0]
        elif name == "boolean":
            out[ix] = self.fixed(ix, 1)[:, 0] == 1  # as fastavro reads it
        else:  # string
            n = self._length(ix)
            starts = self.pos[ix]
            self.pos[ix] = starts + n
            data = self.buf
            strings: list[str | None] = []
            for row, s, k in zip(ix.tolist(), starts.tolist(), n.tolist(), strict=True):
                try:
                    strings.append(data[s:s + k].tobytes().decode())
                except UnicodeDecodeError:
                    self.bad[row] = True
                    strings.append(None)
            out[ix] = strings
