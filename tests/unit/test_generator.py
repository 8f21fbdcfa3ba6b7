"""The seeded alert generator: determinism, profiles and plausible values."""

from __future__ import annotations

import math

import pytest

from broker.alerts import decode, visit_of
from broker.generator import BANDS, AlertGenerator, visit_mjd


@pytest.fixture(scope="module")
def realistic() -> AlertGenerator:
    return AlertGenerator("realistic", seed=11)


def test_same_seed_same_bytes_different_seed_different_bytes(realistic: AlertGenerator) -> None:
    again = AlertGenerator("realistic", seed=11)
    assert again.visit(3, 40) == realistic.visit(3, 40)
    assert AlertGenerator("realistic", seed=12).visit(3, 40) != realistic.visit(3, 40)
    assert realistic.visit(4, 40) != realistic.visit(3, 40)


def test_realistic_profile_is_like_a_real_rubin_alert(realistic: AlertGenerator) -> None:
    alerts = realistic.visit(7, 50)
    assert all(100_000 <= len(a) <= 140_000 for a in alerts)
    alert = decode(alerts[0])
    assert len(alert["prvDiaSources"]) == 30
    assert len(alert["prvDiaForcedSources"]) == 30
    for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
        assert alert[name][:6] == b"SIMPLE"  # a FITS file


def test_dmtn081_profile_is_small_without_history_or_stamps() -> None:
    gen = AlertGenerator("dmtn081", seed=1)
    alerts = gen.visit(2, 30)
    assert all(len(a) < 5_000 for a in alerts)
    alert = decode(alerts[0])
    assert alert["prvDiaSources"] is None and alert["cutoutScience"] is None


def test_values_are_physically_plausible(realistic: AlertGenerator) -> None:
    alerts = [decode(a) for a in realistic.visit(21, 400)]
    bands = {a["diaSource"]["band"] for a in alerts}
    assert len(bands) == 1 and bands <= set(BANDS)  # one filter per visit
    ids = {a["diaSourceId"] for a in alerts}
    assert len(ids) == len(alerts)
    for a in alerts:
        s = a["diaSource"]
        assert visit_of(a) == 21 and 0 <= s["detector"] < 189
        assert s["midpointMjdTai"] == pytest.approx(visit_mjd(21))
        assert 0 <= s["ra"] < 360 and -90 <= s["dec"] <= 90
        assert s["snr"] >= 5.0 - 1e-6
        assert s["snr"] == pytest.approx(abs(s["psfFlux"]) / s["psfFluxErr"], rel=1e-5)
        assert 0 <= s["reliability"] <= 1
        assert s["isNegative"] == (s["psfFlux"] < 0)
    # Positions stay within the 3.5-degree field of the visit's pointing.
    decs = [a["diaSource"]["dec"] for a in alerts]
    assert max(decs) - min(decs) <= 3.6
    mags = [31.4 - 2.5 * math.log10(abs(a["diaSource"]["psfFlux"])) for a in alerts]
    assert min(mags) > 14 and max(mags) < 26


def test_bad_profile_and_count_are_rejected() -> None:
    with pytest.raises(ValueError, match="profile"):
        AlertGenerator("nope")
    with pytest.raises(ValueError, match="count"):
        AlertGenerator("dmtn081").visit(1, -1)
