"""The filter registry, the default catalogue, user filters and the group core."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from broker.alerts import decode, encode
from broker.catalogue import default_filters, default_registry, galactic_latitude
from broker.core import GroupCore
from broker.filters import Filter, FilterRegistry, load_filters
from broker.generator import AlertGenerator


def test_catalogue_has_100_distinct_named_filters_in_order() -> None:
    reg = default_registry()
    assert reg.names == [f"Filter{i:03d}" for i in range(1, 101)]
    assert len({f.description for f in reg}) == 100
    assert [f.name for f in reg.select(21, 40)] == [f"Filter{i:03d}" for i in range(21, 41)]
    with pytest.raises(ValueError, match="outside"):
        reg.select(90, 101)


def test_catalogue_pass_rates_are_spread(tmp_path: Path) -> None:
    alerts = [decode(a) for a in AlertGenerator("realistic", seed=2).visit(3, 600)]
    rates = [sum(1 for a in alerts if f(a)) / len(alerts) for f in default_filters()]
    assert sum(r > 20 / 600 for r in rates) >= 10  # the cap binds for many
    assert sum(0 < r < 20 / 600 for r in rates) >= 3  # and not for some


def test_galactic_latitude_of_known_points() -> None:
    assert galactic_latitude(192.85948, 27.12825) == pytest.approx(90.0, abs=1e-6)
    assert galactic_latitude(266.405, -28.936) == pytest.approx(0.0, abs=0.1)  # Sgr A*


class _Bright(Filter):
    name = "MyBright"
    description = "mine"

    def __call__(self, alert: dict) -> bool:
        return alert["diaSource"]["snr"] > 10


def test_registry_rejects_duplicates_bad_names_and_non_filters() -> None:
    reg = FilterRegistry([_Bright()])
    with pytest.raises(ValueError, match="already"):
        reg.register(_Bright())
    bad = _Bright()
    bad.name = "has space"
    with pytest.raises(ValueError, match="name"):
        FilterRegistry([bad])
    with pytest.raises(TypeError):
        reg.register(object())  # type: ignore[arg-type]


def test_user_filters_load_from_their_own_module(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myfilters.py").write_text(textwrap.dedent("""
        from broker.filters import Filter

        class Nearby(Filter):
            name = "Nearby"
            description = "dec above -30"
            def __call__(self, alert):
                return alert["diaSource"]["dec"] > -30

        def make():
            return [Nearby()]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_filters("myfilters:make")
    assert reg.names == ["Nearby"]
    sys.modules.pop("myfilters", None)
    with pytest.raises(ValueError, match="module:attribute"):
        load_filters("myfilters")
    with pytest.raises(ValueError, match="cannot import"):
        load_filters("no_such_module_xyz:make")


class _Boom(Filter):
    name = "Boom"

    def __call__(self, alert: dict) -> bool:
        raise RuntimeError("bug in a user filter")


def test_core_caps_counts_errors_and_sets_aside_malformed() -> None:
    gen = AlertGenerator("dmtn081", seed=4)
    core = GroupCore([_Bright(), _Boom()], cap=5)
    outcomes = [core.process(a) for a in gen.visit(8, 200)]
    delivered = sum(1 for o in outcomes if 0 in o.deliver)
    capped = sum(1 for o in outcomes if 0 in o.capped)
    passing = sum(1 for a in gen.visit(8, 200) if decode(a)["diaSource"]["snr"] > 10)
    assert delivered == min(5, passing) and capped == passing - delivered
    assert all(o.errors == [1] for o in outcomes)  # the raising filter never stops the others
    bad = core.process(b"\x00\x00\x00\x04M\xff\xff")
    assert bad.malformed is not None and bad.deliver == []


def test_core_decodes_history_only_for_alerts_a_prefilter_lets_through() -> None:
    class History(Filter):
        name = "History"
        fields = frozenset({"diaSource", "prvDiaSources"})
        seen: list[bool] = []

        def prefilter(self, alert: dict) -> bool:
            return alert["diaSource"]["snr"] > 30

        def __call__(self, alert: dict) -> bool:
            self.seen.append("prvDiaSources" in alert)
            return bool(alert["prvDiaSources"])

    flt = History()
    core = GroupCore([flt], cap=100)
    alerts = AlertGenerator("realistic", seed=9).visit(2, 60)
    outs = [core.process(a) for a in alerts]
    expected = sum(1 for a in alerts if decode(a)["diaSource"]["snr"] > 30)
    assert len(flt.seen) == expected and all(flt.seen)
    assert sum(1 for o in outs if o.deliver) == expected


def test_encode_decode_keeps_filter_results() -> None:
    alerts = [decode(a) for a in AlertGenerator("dmtn081", seed=3).visit(5, 50)]
    f = default_filters()[29]
    assert [f(a) for a in alerts] == [f(decode(encode(a))) for a in alerts]


def _alerts_for_vector_checks() -> list[dict]:
    alerts = []
    for profile, seed in (("dmtn081", 21), ("realistic", 22)):
        gen = AlertGenerator(profile, seed=seed)
        for visit in range(1, 13):  # every band, many pointings
            alerts += [decode(a) for a in gen.visit(visit, 60)]
    # Missing and odd values: the vectorised form must treat them as the scalar one does.
    odd = decode(AlertGenerator("dmtn081", seed=1).visit(1, 1)[0])
    for field, value in (("psfFlux", None), ("snr", None), ("reliability", None),
                         ("psfChi2", None), ("ra", None), ("dec", None), ("band", None),
                         ("extendedness", None), ("psfFlux", 0.0), ("x", None)):
        alert = {**odd, "diaSource": {**odd["diaSource"], field: value}}
        alerts.append(alert)
    return alerts


def test_vectorised_filters_agree_with_their_scalar_form_alert_by_alert() -> None:
    from broker.filters import build_columns

    alerts = _alerts_for_vector_checks()
    filters = default_filters()
    offered = 0
    for f in filters:
        cols = build_columns([a["diaSource"] for a in alerts], sorted(f.columns))
        sel = f.select(cols) if f.columns else None
        if sel is not None:
            offered += 1
            assert sel.tolist() == [f(a) for a in alerts], f.name
        pre = f.preselect(cols) if f.columns else None
        if pre is not None:
            assert pre.tolist() == [f.prefilter(a) for a in alerts], f.name
    assert offered >= 70  # all the diaSource-only filters of the catalogue


def test_batch_and_one_by_one_processing_give_the_same_outcomes() -> None:
    raw = AlertGenerator("realistic", seed=31).visit(4, 300)
    raw.insert(17, b"garbage")
    one = GroupCore(default_filters(), cap=20)
    batch = GroupCore(default_filters(), cap=20)
    singles = [one.process(d) for d in raw]
    batched = [o for k in range(0, len(raw), 64) for o in batch.process_batch(raw[k:k + 64])]
    assert [(o.visit, o.deliver, o.capped, o.errors, o.malformed is None) for o in singles] \
        == [(o.visit, o.deliver, o.capped, o.errors, o.malformed is None) for o in batched]
    assert batched[17].malformed is not None


def test_batch_counts_agree_with_the_outcomes_across_two_visits() -> None:
    gen = AlertGenerator("realistic", seed=32)
    raw = gen.visit(6, 150) + gen.visit(7, 150)
    raw[100:100] = [b"garbage"]
    raw = raw[:200] + [r for pair in zip(raw[200:250], raw[250:], strict=False)
                       for r in pair]  # the two visits interleaved
    res = GroupCore(default_filters(), cap=3).evaluate(raw)
    outs = res.outcomes()
    assert res.consumed == {6: sum(o.visit == 6 and o.malformed is None for o in outs),
                            7: sum(o.visit == 7 and o.malformed is None for o in outs)}
    assert set(res.malformed) == {100}
    for v in (6, 7):
        over = [i for o in outs if o.visit == v for i in o.capped]
        assert res.capped[v].sum() == len(over) > 0
        delivered = [i for o in outs if o.visit == v for i in o.deliver]
        # Exactly the cap where more passed, per filter and visit.
        for i in set(over):
            assert delivered.count(i) == 3
    assert all(k in res.deliver for k, o in enumerate(outs) if o.deliver)
