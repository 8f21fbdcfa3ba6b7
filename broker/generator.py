"""A deterministic generator of Rubin-like alerts, one visit at a time.

Two profiles:

``dmtn081``
    small alerts as in the 2018 prototype: a ``diaSource`` and ``diaObject``, no history,
    no cutouts (about 2 KB).
``realistic``
    like real Rubin alerts: about 30 ``prvDiaSources`` rows, as many forced-photometry
    rows, a ``diaObject`` and three FITS cutouts, 100-140 KB per alert.

Values are physically plausible in the fields filters use: one band per visit, positions
inside a 3.5-degree field around the visit's pointing on the southern sky, PSF fluxes in
nJy with errors from a ~24.5 mag 5-sigma depth, SNR with a power-law tail above 5,
a reliability score, MJD from the visit number, a detector of LSSTCam's 189.

Speed: a full-scale visit is 10,000 realistic alerts, and serialisation must finish before
the visit starts. Per alert only the head (ids, ``diaSource``) is encoded; the tail
(history, forced sources, ``diaObject``, cutouts) is one of ``pool`` object histories
encoded once. Avro records are their fields' encodings laid end to end, so head bytes +
tail bytes is a valid alert. The history therefore belongs to a pooled object, not to the
alert's own position; filters that compare the current flux with the history still see a
plausible light curve. Everything derives from ``seed``: the same arguments give the
same bytes.
"""

from __future__ import annotations

import io
import math
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro
import numpy as np

from broker.alerts import AlertSchema, load_schema

__all__ = [
    "BANDS",
    "PROFILES",
    "AlertGenerator",
    "generate_visit",
    "visit_mjd",
]

PROFILES = ("dmtn081", "realistic")
BANDS = ("u", "g", "r", "i", "z", "y")
HEAD_FIELDS = 4  # diaSourceId, observation_reason, target_name, diaSource in v8+ schemas
FIELD_RADIUS_DEG = 1.75
DEPTH_MAG = 24.5  # 5-sigma point-source depth of a 30-s visit
AB_ZERO_NJY = 31.4  # m_AB = 31.4 - 2.5 log10(flux / nJy)
MJD_START = 60800.0
VISIT_SECONDS = 39.0
DETECTORS = 189
# Measured quantities filled in history rows (the others stay null).
HISTORY_FLOATS = (
    "raErr", "decErr", "x", "y", "apFlux", "apFluxErr", "psfFlux", "psfFluxErr", "psfChi2",
    "scienceFlux", "scienceFluxErr", "templateFlux", "templateFluxErr", "extendedness",
    "reliability", "snr", "ixx", "iyy", "ixy",
)


def visit_mjd(visit: int) -> float:
    """The MJD (TAI) of a visit: visits every 39 s from MJD 60800."""
    return MJD_START + visit * VISIT_SECONDS / 86400.0


def _nullable(t: Any) -> bool:
    return isinstance(t, list) and "null" in t


def _base(t: Any) -> Any:
    if isinstance(t, list):
        return next(x for x in t if x != "null")
    if isinstance(t, dict) and t.get("type") not in ("record", "array", "map", "enum", "fixed"):
        return t["type"]  # logical types: the underlying primitive
    return t


def _zero(t: Any) -> Any:
    t = _base(t)
    if t in ("int", "long"):
        return 0
    if t in ("float", "double"):
        return 0.0
    if t == "boolean":
        return False
    if t == "string":
        return ""
    if t == "bytes":
        return b""
    return None


def _record_fields(definition: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Fields of the named record type ``name`` (searching nested definitions)."""
    found: list[dict[str, Any]] = []

    def walk(t: Any) -> None:
        if found:
            return
        if isinstance(t, list):
            for x in t:
                walk(x)
        elif isinstance(t, dict):
            if t.get("type") == "record":
                if t["name"].split(".")[-1] == name:
                    found.extend(t["fields"])
                    return
                for f in t["fields"]:
                    walk(f["type"])
            elif t.get("type") == "array":
                walk(t["items"])

    walk(definition)
    return found


def _template(fields: list[dict[str, Any]], fill: bool) -> dict[str, Any]:
    """A record with every field set: zero values, or None where nullable and not ``fill``."""
    rec: dict[str, Any] = {}
    for f in fields:
        t = f["type"]
        if _nullable(t) and not fill:
            rec[f["name"]] = None
        else:
            rec[f["name"]] = _zero(t)
    return rec


def _fits_cutout(rng: np.random.Generator, size: int, flux: float, noise: float) -> bytes:
    """A FITS cutout like Rubin's: image, mask and variance extensions of size x size."""
    from astropy.io import fits

    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.8**2))
    psf /= psf.sum()
    image = (rng.normal(0.0, noise, (size, size)) + flux * psf).astype(np.float32)
    mask = (rng.random((size, size)) < 0.01).astype(np.int32) * 4
    variance = np.full((size, size), noise**2, dtype=np.float32)
    hdus = fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(image, name="IMAGE"),
        fits.ImageHDU(mask, name="MASK"),
        fits.ImageHDU(variance, name="VARIANCE"),
    ])
    buf = io.BytesIO()
    hdus.writeto(buf)
    return buf.getvalue()


@dataclass(frozen=True)
class _Layout:
    head: Any  # parsed schema of the head fields
    tail: Any  # parsed schema of the remaining fields
    source_template: dict[str, Any]
    history_template: dict[str, Any]
    object_template: dict[str, Any] | None
    forced_template: dict[str, Any] | None
    tail_fields: tuple[str, ...]
    float_fields: tuple[str, ...]


@cache
def _layout(schema: AlertSchema) -> _Layout:
    names = schema.field_names
    if "diaSource" not in names or names.index("diaSource") >= HEAD_FIELDS:
        raise ValueError(
            f"the generator writes schema v8.0 or newer; v{schema.version} puts diaSource "
            "elsewhere"
        )
    named: dict[str, Any] = {}
    head = dict(schema.definition)
    head["fields"] = schema.definition["fields"][:HEAD_FIELDS]
    head["name"] = schema.definition["name"] + "_head"
    head_parsed = fastavro.parse_schema(head, named_schemas=named)
    fastavro.parse_schema(schema.definition, named_schemas=named)
    tail = {
        "type": "record",
        "name": schema.definition["name"] + "_tail",
        "fields": schema.definition["fields"][HEAD_FIELDS:],
    }
    tail_parsed = fastavro.parse_schema(tail, named_schemas=dict(named))
    source_fields = _record_fields(schema.definition, "diaSource")
    obj_fields = _record_fields(schema.definition, "diaObject")
    forced_fields = _record_fields(schema.definition, "diaForcedSource")
    floats = tuple(
        f["name"] for f in source_fields if _base(f["type"]) in ("float", "double")
    )
    return _Layout(
        head=head_parsed,
        tail=tail_parsed,
        source_template=_template(source_fields, fill=True),
        history_template=_template(source_fields, fill=False),
        object_template=_template(obj_fields, fill=False) if obj_fields else None,
        forced_template=_template(forced_fields, fill=False) if forced_fields else None,
        tail_fields=tuple(names[HEAD_FIELDS:]),
        float_fields=floats,
    )


class AlertGenerator:
    """Deterministic visits of alerts for one schema, profile and seed."""

    def __init__(self, profile: str = "realistic", seed: int = 0,
                 schema: AlertSchema | None = None, pool: int = 96,
                 history: int = 30, cutout_size: int = 45) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.profile = profile
        self.seed = seed
        self.schema = schema or load_schema()
        self.layout = _layout(self.schema)
        self.history = history
        self.cutout_size = cutout_size
        self._tails = [self._tail(i) for i in range(pool)]

    # -- per-object tails, encoded once ------------------------------------------------
    def _tail(self, index: int) -> bytes:
        rng = np.random.default_rng([self.seed, 7, index])
        lay = self.layout
        values: dict[str, Any] = {name: None for name in lay.tail_fields}
        object_id = int(rng.integers(1 << 40, 1 << 52))
        ra = float(rng.uniform(0, 360))
        dec = math.degrees(math.asin(rng.uniform(-1.0, 0.5)))
        mean_flux = float(10 ** ((AB_ZERO_NJY - rng.uniform(18.0, 24.0)) / 2.5))
        if lay.object_template is not None:
            obj = dict(lay.object_template)
            obj.update({k: v for k, v in {
                "diaObjectId": object_id, "ra": ra, "dec": dec,
                "nDiaSources": self.history + 1 if self.profile == "realistic" else 1,
            }.items() if k in obj})
            for band in BANDS:
                for key, val in ((f"{band}_psfFluxMean", mean_flux),
                                 (f"{band}_psfFluxMeanErr", mean_flux * 0.05),
                                 (f"{band}_psfFluxNdata", self.history // 6)):
                    if key in obj:
                        obj[key] = val
            values["diaObject"] = obj
        if self.profile == "realistic":
            rows = []
            for j in range(self.history):
                # History rows carry the measured quantities and leave the rest null,
                # which puts a full decode near the ~0.6 ms measured on real alerts.
                row = dict(lay.history_template)
                self._fill_source(row, rng)
                flux = mean_flux * float(rng.lognormal(0.0, 0.3))
                err = flux / float(rng.uniform(5.0, 50.0))
                row.update(
                    diaSourceId=object_id + j + 1, diaObjectId=object_id,
                    visit=int(rng.integers(1, 10**6)), ra=ra, dec=dec,
                    midpointMjdTai=MJD_START - 3.0 * (self.history - j),
                    psfFlux=flux, psfFluxErr=err, snr=flux / err,
                    band=BANDS[j % len(BANDS)],
                )
                rows.append(row)
            values["prvDiaSources"] = rows
            if lay.forced_template is not None:
                forced = []
                for j in range(self.history):
                    frow = dict(lay.forced_template)
                    frow.update({k: v for k, v in {
                        "diaForcedSourceId": object_id + 10_000 + j,
                        "diaObjectId": object_id, "ra": ra, "dec": dec,
                        "visit": int(rng.integers(1, 10**6)), "detector": j % DETECTORS,
                        "psfFlux": mean_flux * float(rng.lognormal(0.0, 0.3)),
                        "psfFluxErr": mean_flux * 0.1, "band": BANDS[j % len(BANDS)],
                        "midpointMjdTai": MJD_START - 3.0 * (self.history - j) + 0.5,
                    }.items() if k in frow})
                    forced.append(frow)
                values["prvDiaForcedSources"] = forced
            noise = 40.0
            for name, flux in (("cutoutDifference", mean_flux * 0.5),
                               ("cutoutScience", mean_flux * 1.5),
                               ("cutoutTemplate", mean_flux)):
                if name in values:
                    values[name] = _fits_cutout(rng, self.cutout_size, flux, noise)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, lay.tail, values)
        return buf.getvalue()

    def _fill_source(self, row: dict[str, Any], rng: np.random.Generator) -> None:
        for name in HISTORY_FLOATS:
            if name in row:
                row[name] = float(rng.normal(0.0, 1.0))
        for key, val in (("x", float(rng.uniform(0, 4000))), ("y", float(rng.uniform(0, 4000))),
                         ("psfNdata", 441), ("bboxSize", 21)):
            if key in row:
                row[key] = val

    # -- per-visit heads ---------------------------------------------------------------
    def visit(self, visit: int, count: int) -> list[bytes]:
        """Wire-format alerts of one visit (``count`` of them), the same for the same args."""
        return list(self.iter_visit(visit, count))

    def iter_visit(self, visit: int, count: int) -> Iterator[bytes]:
        """Yield the alerts of one visit, wire format, one at a time."""
        if count < 0:
            raise ValueError(f"alert count must be zero or more, got {count}")
        rng = np.random.default_rng([self.seed, visit])
        pick = random.Random(self.seed * 1_000_003 + visit)
        lay = self.layout
        band = BANDS[int(rng.integers(len(BANDS)))]
        ra0 = float(rng.uniform(0, 360))
        dec0 = math.degrees(math.asin(rng.uniform(-1.0, 0.5)))
        mjd = visit_mjd(visit)
        # Vectorised draws: one numpy call per quantity for the whole visit.
        r = FIELD_RADIUS_DEG * np.sqrt(rng.random(count))
        theta = rng.uniform(0, 2 * math.pi, count)
        decs = np.clip(dec0 + r * np.sin(theta), -90, 90)
        ras = (ra0 + r * np.cos(theta) / np.maximum(np.cos(np.radians(decs)), 1e-3)) % 360
        depth_err = 10 ** ((AB_ZERO_NJY - DEPTH_MAG) / 2.5) / 5.0
        errs = depth_err * rng.lognormal(0.0, 0.25, count)
        snrs = 5.0 * (1.0 - rng.random(count)) ** (-1.0 / 1.3)  # Pareto tail above 5 sigma
        signs = np.where(rng.random(count) < 0.3, -1.0, 1.0)
        fluxes = signs * snrs * errs
        reliab = np.where(rng.random(count) < 0.6, rng.beta(5, 1.5, count), rng.beta(1, 6, count))
        detectors = rng.integers(0, DETECTORS, count)
        xs = rng.uniform(0, 4072, count)
        ys = rng.uniform(0, 4000, count)
        extended = rng.random(count)
        noise = rng.normal(0.0, 1.0, (count, 4))
        header = struct.pack(">bI", 0, self.schema.schema_id)
        template = lay.source_template
        tails = self._tails
        for i in range(count):
            source = dict(template)
            flux = float(fluxes[i])
            err = float(errs[i])
            source_id = visit * 100_000 + i
            source.update(
                diaSourceId=source_id, visit=visit, detector=int(detectors[i]),
                diaObjectId=source_id + (1 << 50), midpointMjdTai=mjd,
                ra=float(ras[i]), dec=float(decs[i]), raErr=2e-5, decErr=2e-5,
                x=float(xs[i]), y=float(ys[i]), psfFlux=flux, psfFluxErr=err,
                snr=abs(flux) / err, apFlux=flux * (1 + 0.05 * float(noise[i, 0])),
                apFluxErr=err * 1.2, scienceFlux=abs(flux) * 1.5 + 300.0,
                scienceFluxErr=err, templateFlux=300.0 + 20 * float(noise[i, 1]),
                templateFluxErr=err, isNegative=flux < 0, reliability=float(reliab[i]),
                extendedness=float(extended[i]), band=band, psfChi2=float(abs(noise[i, 2])) * 400,
                psfNdata=441, bboxSize=21, timeProcessedMjdTai=mjd + 60.0 / 86400.0,
            )
            head = {"diaSourceId": source_id, "observation_reason": None,
                    "target_name": None, "diaSource": source}
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, lay.head, head)
            buf.write(tails[pick.randrange(len(tails))])
            yield buf.getvalue()


def generate_visit(visit: int, count: int, profile: str = "realistic", seed: int = 0,
                   schema: AlertSchema | None = None) -> list[bytes]:
    """The alerts of one visit as wire-format bytes (see :class:`AlertGenerator`)."""
    return _generator(profile, seed, schema).visit(visit, count)


@cache
def _generator(profile: str, seed: int, schema: AlertSchema | None) -> AlertGenerator:
    return AlertGenerator(profile, seed, schema)
