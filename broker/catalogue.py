"""The default catalogue: ``Filter001`` .. ``Filter100``, 100 distinct science-like filters.

Each filter is an instance of a small parameterised class (a band and SNR cut, a
magnitude range, a sky region, a history-based light-curve cut, ...) registered in an
explicit order, so ``FilterNNN`` always names the same science case. The parameters are
chosen to spread pass rates from "almost nothing" to "most of the visit", so that the
20-per-visit cap binds for some filters and not for others.
"""

from __future__ import annotations

import itertools
import math
import statistics
from functools import cache
from typing import Any

import numpy as np

from broker.filters import Columns, Filter, FilterRegistry, magnitude

__all__ = ["default_filters", "default_registry", "galactic_latitude"]

Alert = dict[str, Any]
BANDS = ("u", "g", "r", "i", "z", "y")

# North Galactic Pole (J2000), for galactic latitude.
_RA_NGP = math.radians(192.85948)
_DEC_NGP = math.radians(27.12825)


def galactic_latitude(ra_deg: float, dec_deg: float) -> float:
    """Galactic latitude in degrees of an ICRS position."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    sin_b = (math.sin(dec) * math.sin(_DEC_NGP)
             + math.cos(dec) * math.cos(_DEC_NGP) * math.cos(ra - _RA_NGP))
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_b))))


def _mag(flux: np.ndarray) -> np.ndarray:
    """Vectorised :func:`magnitude`: inf where the flux is not positive or missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 31.4 - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)),
                        np.inf)


def _eq(col: np.ndarray, value: str) -> np.ndarray:
    return np.asarray(col == value, dtype=bool)


def _src(alert: Alert) -> dict[str, Any]:
    src = alert.get("diaSource")
    return src if isinstance(src, dict) else {}


def _num(value: Any, default: float = math.nan) -> float:
    return float(value) if isinstance(value, (int, float)) else default


class BandSnr(Filter):
    """Positive detections in one band at or above an SNR."""

    def __init__(self, band: str, min_snr: float) -> None:
        self.band, self.min_snr = band, min_snr
        self.description = f"{band}-band brightening detections with SNR >= {min_snr:g}"

    columns = frozenset({"band", "psfFlux", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        return (s.get("band") == self.band and _num(s.get("psfFlux")) > 0
                and _num(s.get("snr")) >= self.min_snr)

    def select(self, c: Columns) -> np.ndarray:
        return _eq(c["band"], self.band) & (c["psfFlux"] > 0) & (c["snr"] >= self.min_snr)


class MagnitudeRange(Filter):
    """Positive difference flux with a PSF magnitude in [bright, faint], optionally one band."""

    def __init__(self, bright: float, faint: float, band: str | None = None,
                 min_snr: float = 5.0) -> None:
        self.bright, self.faint, self.band, self.min_snr = bright, faint, band, min_snr
        where = f"{band}-band " if band else ""
        self.description = (f"{where}transients between magnitude {bright:g} and {faint:g} "
                            f"(SNR >= {min_snr:g})")

    columns = frozenset({"band", "psfFlux", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        if self.band and s.get("band") != self.band:
            return False
        return (self.bright <= magnitude(_num(s.get("psfFlux"))) <= self.faint
                and _num(s.get("snr")) >= self.min_snr)

    def select(self, c: Columns) -> np.ndarray:
        mag = _mag(c["psfFlux"])
        ok = (self.bright <= mag) & (mag <= self.faint) & (c["snr"] >= self.min_snr)
        return ok & _eq(c["band"], self.band) if self.band else ok


class ReliableSnr(Filter):
    """Real-bogus reliability and SNR at or above thresholds."""

    def __init__(self, min_reliability: float, min_snr: float) -> None:
        self.min_reliability, self.min_snr = min_reliability, min_snr
        self.description = (f"reliability >= {min_reliability:g} and SNR >= {min_snr:g} "
                            "(any band, either sign)")

    columns = frozenset({"reliability", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        return (_num(s.get("reliability")) >= self.min_reliability
                and _num(s.get("snr")) >= self.min_snr)

    def select(self, c: Columns) -> np.ndarray:
        return (c["reliability"] >= self.min_reliability) & (c["snr"] >= self.min_snr)


class LowReliability(Filter):
    """Likely artefacts, for people training real-bogus classifiers."""

    def __init__(self, max_reliability: float, min_snr: float) -> None:
        self.max_reliability, self.min_snr = max_reliability, min_snr
        self.description = (f"probable artefacts: reliability < {max_reliability:g}, "
                            f"SNR >= {min_snr:g}")

    columns = frozenset({"reliability", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        return (_num(s.get("reliability"), 1.0) < self.max_reliability
                and _num(s.get("snr")) >= self.min_snr)

    def select(self, c: Columns) -> np.ndarray:
        rel = np.where(np.isnan(c["reliability"]), 1.0, c["reliability"])
        return (rel < self.max_reliability) & (c["snr"] >= self.min_snr)


class SkyBox(Filter):
    """Detections inside an RA/Dec box (RA ranges may wrap through 0)."""

    def __init__(self, region: str, ra_min: float, ra_max: float, dec_min: float,
                 dec_max: float, max_mag: float = math.inf) -> None:
        self.ra_min, self.ra_max = ra_min % 360, ra_max % 360
        self.dec_min, self.dec_max, self.max_mag = dec_min, dec_max, max_mag
        bright = f", brighter than {max_mag:g} mag" if math.isfinite(max_mag) else ""
        self.description = f"detections in {region}{bright}"

    columns = frozenset({"ra", "dec", "psfFlux"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        ra, dec = _num(s.get("ra")), _num(s.get("dec"))
        if not self.dec_min <= dec <= self.dec_max:
            return False
        if self.ra_min <= self.ra_max:
            inside = self.ra_min <= ra <= self.ra_max
        else:
            inside = ra >= self.ra_min or ra <= self.ra_max
        return inside and magnitude(abs(_num(s.get("psfFlux"), 0.0))) <= self.max_mag

    def select(self, c: Columns) -> np.ndarray:
        ra, dec = c["ra"], c["dec"]
        ok = (self.dec_min <= dec) & (dec <= self.dec_max)
        if self.ra_min <= self.ra_max:
            ok &= (self.ra_min <= ra) & (ra <= self.ra_max)
        else:
            ok &= (ra >= self.ra_min) | (ra <= self.ra_max)
        flux = np.abs(np.where(np.isnan(c["psfFlux"]), 0.0, c["psfFlux"]))
        return ok & (_mag(flux) <= self.max_mag)


class GalacticLatitude(Filter):
    """Detections within (or beyond) a galactic latitude."""

    def __init__(self, max_abs_b: float | None = None, min_abs_b: float | None = None,
                 min_snr: float = 5.0) -> None:
        self.max_abs_b, self.min_abs_b, self.min_snr = max_abs_b, min_abs_b, min_snr
        if max_abs_b is not None:
            self.description = f"Galactic plane, |b| < {max_abs_b:g} deg, SNR >= {min_snr:g}"
        else:
            self.description = (f"high Galactic latitude, |b| > {min_abs_b:g} deg, "
                                f"SNR >= {min_snr:g}")

    columns = frozenset({"ra", "dec", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        if not _num(s.get("snr")) >= self.min_snr:
            return False
        b = abs(galactic_latitude(_num(s.get("ra"), 0.0), _num(s.get("dec"), 0.0)))
        if self.max_abs_b is not None:
            return b < self.max_abs_b
        return self.min_abs_b is not None and b > self.min_abs_b

    def select(self, c: Columns) -> np.ndarray:
        ra = np.radians(np.where(np.isnan(c["ra"]), 0.0, c["ra"]))
        dec = np.radians(np.where(np.isnan(c["dec"]), 0.0, c["dec"]))
        sin_b = (np.sin(dec) * math.sin(_DEC_NGP)
                 + np.cos(dec) * math.cos(_DEC_NGP) * np.cos(ra - _RA_NGP))
        b = np.abs(np.degrees(np.arcsin(np.clip(sin_b, -1.0, 1.0))))
        bright = c["snr"] >= self.min_snr
        if self.max_abs_b is not None:
            return bright & (b < self.max_abs_b)
        if self.min_abs_b is None:
            return np.zeros(len(b), dtype=bool)
        return bright & (b > self.min_abs_b)


class Fading(Filter):
    """Negative difference flux: a source fainter than in the template."""

    def __init__(self, min_snr: float) -> None:
        self.min_snr = min_snr
        self.description = f"fading sources (negative difference flux), SNR >= {min_snr:g}"

    columns = frozenset({"psfFlux", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        return _num(s.get("psfFlux")) < 0 and _num(s.get("snr")) >= self.min_snr

    def select(self, c: Columns) -> np.ndarray:
        return (c["psfFlux"] < 0) & (c["snr"] >= self.min_snr)


class Extendedness(Filter):
    """Extended (host-galaxy, nuclear) or point-like detections."""

    def __init__(self, min_ext: float = 0.0, max_ext: float = 1.0, min_snr: float = 5.0) -> None:
        self.min_ext, self.max_ext, self.min_snr = min_ext, max_ext, min_snr
        kind = "extended" if min_ext > 0 else "point-like"
        self.description = (f"{kind} detections, extendedness in [{min_ext:g}, {max_ext:g}], "
                            f"SNR >= {min_snr:g}")

    columns = frozenset({"extendedness", "snr", "psfFlux"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        return (self.min_ext <= _num(s.get("extendedness")) <= self.max_ext
                and _num(s.get("snr")) >= self.min_snr and _num(s.get("psfFlux")) > 0)

    def select(self, c: Columns) -> np.ndarray:
        ext = c["extendedness"]
        return ((self.min_ext <= ext) & (ext <= self.max_ext) & (c["snr"] >= self.min_snr)
                & (c["psfFlux"] > 0))


class CleanDetection(Filter):
    """Away from the detector edges and with an acceptable PSF fit."""

    def __init__(self, margin_px: float, max_chi2: float, min_snr: float) -> None:
        self.margin, self.max_chi2, self.min_snr = margin_px, max_chi2, min_snr
        self.description = (f"clean detections: >= {margin_px:g} px from the edges, "
                            f"PSF chi2 <= {max_chi2:g}, SNR >= {min_snr:g}")

    columns = frozenset({"x", "y", "psfChi2", "snr"})

    def __call__(self, alert: Alert) -> bool:
        s = _src(alert)
        x, y = _num(s.get("x")), _num(s.get("y"))
        return (self.margin <= x <= 4072 - self.margin and self.margin <= y <= 4000 - self.margin
                and _num(s.get("psfChi2"), math.inf) <= self.max_chi2
                and _num(s.get("snr")) >= self.min_snr)

    def select(self, c: Columns) -> np.ndarray:
        x, y = c["x"], c["y"]
        chi2 = np.where(np.isnan(c["psfChi2"]), np.inf, c["psfChi2"])
        return ((self.margin <= x) & (x <= 4072 - self.margin) & (self.margin <= y)
                & (y <= 4000 - self.margin) & (chi2 <= self.max_chi2)
                & (c["snr"] >= self.min_snr))


class _HistoryFilter(Filter):
    """A light-curve cut on ``prvDiaSources``, gated by a cheap SNR/reliability prefilter.

    The defaults (SNR >= 50, reliability >= 0.9: light curves worth classifying) let ~1%
    of alerts through the prefilter, so a group decodes the 30-row history (~1.4 ms) of
    few alerts.
    """

    fields = frozenset({"diaSource", "prvDiaSources"})
    history_fields = frozenset({"psfFlux", "midpointMjdTai"})

    def __init__(self, min_snr: float, min_reliability: float) -> None:
        self.min_snr, self.min_reliability = min_snr, min_reliability

    columns = frozenset({"snr", "reliability"})

    def prefilter(self, alert: Alert) -> bool:
        s = _src(alert)
        return (_num(s.get("snr")) >= self.min_snr
                and _num(s.get("reliability")) >= self.min_reliability)

    def preselect(self, c: Columns) -> np.ndarray:
        return (c["snr"] >= self.min_snr) & (c["reliability"] >= self.min_reliability)

    @staticmethod
    def history(alert: Alert) -> list[dict[str, Any]]:
        rows = alert.get("prvDiaSources")
        return rows if isinstance(rows, list) else []


class Brightening(_HistoryFilter):
    """Brighter than the median of the history by at least ``dmag`` magnitudes."""

    def __init__(self, dmag: float, band: str | None = None, min_snr: float = 50.0,
                 min_reliability: float = 0.9) -> None:
        super().__init__(min_snr, min_reliability)
        self.dmag, self.band = dmag, band
        where = f" in {band}" if band else ""
        self.description = (f"brightening{where} by >= {dmag:g} mag over the history median "
                            f"(SNR >= {min_snr:g}, reliability >= {min_reliability:g})")

    columns = frozenset({"snr", "reliability", "psfFlux", "band"})

    def prefilter(self, alert: Alert) -> bool:
        s = _src(alert)
        return (super().prefilter(alert) and _num(s.get("psfFlux")) > 0
                and (self.band is None or s.get("band") == self.band))

    def preselect(self, c: Columns) -> np.ndarray:
        ok = super().preselect(c) & (c["psfFlux"] > 0)
        return ok & _eq(c["band"], self.band) if self.band else ok

    def __call__(self, alert: Alert) -> bool:
        if not self.prefilter(alert):
            return False
        fluxes = [_num(r.get("psfFlux")) for r in self.history(alert)
                  if _num(r.get("psfFlux")) > 0]
        if not fluxes:
            return False
        return magnitude(statistics.median(fluxes)) - magnitude(
            _num(_src(alert).get("psfFlux"))) >= self.dmag


class NewSource(_HistoryFilter):
    """First detection: no previous diaSources."""

    def __init__(self, min_snr: float, min_reliability: float = 0.9) -> None:
        super().__init__(min_snr, min_reliability)
        self.description = (f"new sources without previous detections (SNR >= {min_snr:g}, "
                            f"reliability >= {min_reliability:g})")

    def __call__(self, alert: Alert) -> bool:
        return self.prefilter(alert) and not self.history(alert)


class Variable(_HistoryFilter):
    """History flux scatter above a fraction of its mean (variable stars, AGN)."""

    def __init__(self, min_rms: float, min_points: int = 10, min_snr: float = 50.0,
                 min_reliability: float = 0.9) -> None:
        super().__init__(min_snr, min_reliability)
        self.min_rms, self.min_points = min_rms, min_points
        self.description = (f"variables: history flux rms/mean >= {min_rms:g} over >= "
                            f"{min_points} points (SNR >= {min_snr:g})")

    def __call__(self, alert: Alert) -> bool:
        if not self.prefilter(alert):
            return False
        fluxes = [_num(r.get("psfFlux")) for r in self.history(alert)]
        fluxes = [f for f in fluxes if math.isfinite(f)]
        if len(fluxes) < self.min_points:
            return False
        mean = statistics.fmean(fluxes)
        # statistics.pstdev is exact (Fractions) and ~20x slower; floats suffice for a cut.
        rms = math.sqrt(statistics.fmean([(f - mean) ** 2 for f in fluxes]))
        return mean > 0 and rms / mean >= self.min_rms


class Rising(_HistoryFilter):
    """The last ``points`` history fluxes and the current one strictly increase."""

    def __init__(self, points: int, min_snr: float = 50.0, min_reliability: float = 0.9) -> None:
        super().__init__(min_snr, min_reliability)
        self.points = points
        self.description = (f"rising light curves: last {points} points and now increasing "
                            f"(SNR >= {min_snr:g})")

    def __call__(self, alert: Alert) -> bool:
        if not self.prefilter(alert):
            return False
        rows = sorted(self.history(alert), key=lambda r: _num(r.get("midpointMjdTai"), 0.0))
        if len(rows) < self.points:
            return False
        fluxes = [_num(r.get("psfFlux")) for r in rows[-self.points:]]
        fluxes.append(_num(_src(alert).get("psfFlux")))
        return all(a < b for a, b in itertools.pairwise(fluxes))


class LongLived(_HistoryFilter):
    """Detected over at least ``days`` days (history span)."""

    def __init__(self, days: float, min_snr: float = 50.0, min_reliability: float = 0.9) -> None:
        super().__init__(min_snr, min_reliability)
        self.days = days
        self.description = (f"long-lived sources detected over >= {days:g} days "
                            f"(SNR >= {min_snr:g})")

    def __call__(self, alert: Alert) -> bool:
        if not self.prefilter(alert):
            return False
        mjds = [_num(r.get("midpointMjdTai")) for r in self.history(alert)]
        mjds = [m for m in mjds if math.isfinite(m)]
        now = _num(_src(alert).get("midpointMjdTai"))
        return bool(mjds) and now - min(mjds) >= self.days


# Rubin's Deep Drilling Fields and other named regions (centre-ish boxes, degrees).
_REGIONS: tuple[tuple[str, float, float, float, float], ...] = (
    ("the COSMOS deep drilling field", 148.9, 151.3, 1.0, 3.4),
    ("the XMM-LSS deep drilling field", 34.2, 36.8, -6.0, -3.5),
    ("the ECDFS deep drilling field", 51.9, 54.4, -29.3, -26.8),
    ("the ELAIS-S1 deep drilling field", 8.4, 10.9, -45.2, -42.8),
    ("the Euclid Deep Field South", 57.0, 66.0, -51.0, -46.0),
    ("the Large Magellanic Cloud", 70.0, 92.0, -73.0, -63.0),
    ("the Small Magellanic Cloud", 5.0, 20.0, -76.0, -70.0),
    ("the south celestial cap (Dec < -70)", 0.0, 359.999, -90.0, -70.0),
    ("the equatorial stripe (|Dec| < 5)", 0.0, 359.999, -5.0, 5.0),
    ("the northern sky (Dec > 0)", 0.0, 359.999, 0.0, 90.0),
)


def default_filters() -> list[Filter]:
    """The 100 catalogue filters, ``Filter001`` first."""
    made: list[Filter] = []
    for band in BANDS:                                             # 1-18
        for snr in (5.0, 10.0, 50.0):
            made.append(BandSnr(band, snr))
    for mag in (17.0, 18.0, 19.0, 20.0, 21.0):                     # 19-23
        made.append(MagnitudeRange(0.0, mag))
    for band in ("g", "r", "i"):                                   # 24-29
        made.append(MagnitudeRange(20.0, 22.0, band))
        made.append(MagnitudeRange(22.0, 23.5, band))
    for rel in (0.5, 0.7, 0.9):                                    # 30-41
        for snr in (5.0, 10.0, 20.0, 50.0):
            made.append(ReliableSnr(rel, snr))
    for region in _REGIONS:                                        # 42-51
        made.append(SkyBox(*region))
    made += [                                                      # 52-55
        GalacticLatitude(max_abs_b=10.0), GalacticLatitude(max_abs_b=5.0, min_snr=10.0),
        GalacticLatitude(min_abs_b=30.0), GalacticLatitude(min_abs_b=60.0, min_snr=10.0),
    ]
    made += [Fading(snr) for snr in (5.0, 10.0, 20.0, 50.0)]       # 56-59
    made += [                                                      # 60-65
        Extendedness(min_ext=0.5), Extendedness(min_ext=0.8, min_snr=20.0),
        Extendedness(min_ext=0.5, min_snr=10.0), Extendedness(min_ext=0.9),
        Extendedness(max_ext=0.2, min_snr=10.0), Extendedness(max_ext=0.2, min_snr=30.0),
    ]
    bands_or_any: tuple[str | None, ...] = (None, "g", "r")
    for dmag in (0.5, 1.0, 2.0):                                   # 66-74
        for maybe_band in bands_or_any:
            made.append(Brightening(dmag, maybe_band))
    made += [NewSource(snr) for snr in (50.0, 100.0, 200.0)]          # 75-77
    made += [Variable(rms) for rms in (0.2, 0.3, 0.5)]             # 78-80
    made += [Rising(2), Rising(3)]                                 # 81-82
    made += [LongLived(30.0), LongLived(60.0)]                     # 83-84
    made += [                                                      # 85-88
        CleanDetection(50, 2000.0, 5.0), CleanDetection(100, 1000.0, 10.0),
        CleanDetection(200, 500.0, 10.0), CleanDetection(100, 200.0, 20.0),
    ]
    for band in BANDS:                                             # 89-94
        made.append(MagnitudeRange(16.0, 19.0, band, min_snr=10.0))
    made += [LowReliability(0.1, 5.0), LowReliability(0.05, 10.0)]  # 95-96
    for region in _REGIONS[:4]:                                    # 97-100
        made.append(SkyBox(*region, max_mag=21.0))
    for i, flt in enumerate(made, start=1):
        flt.name = f"Filter{i:03d}"
    return made


@cache
def _default() -> tuple[Filter, ...]:
    return tuple(default_filters())


def default_registry() -> FilterRegistry:
    """A registry of the 100 catalogue filters."""
    return FilterRegistry(_default())
