"""Test filters: catalogue Filter001..Filter020 plus one that takes time and never passes.

The slow filter stretches a group's run so a test can kill it mid-visit reliably.
"""

from __future__ import annotations

import time

from broker.catalogue import default_filters
from broker.filters import Filter, FilterRegistry


class Slow(Filter):
    name = "SlowNeverPasses"
    description = "sleeps 0.5 ms per alert, passes nothing"

    def __call__(self, alert: dict) -> bool:
        time.sleep(0.0005)
        return False


class Exploding(Filter):
    name = "ExplodingFilter"
    description = "raises on every alert"

    def __call__(self, alert: dict) -> bool:
        raise RuntimeError("this filter is broken")


def slow_group() -> FilterRegistry:
    return FilterRegistry([*default_filters()[:20], Slow()])


def exploding_group() -> FilterRegistry:
    return FilterRegistry([*default_filters()[:20], Exploding()])


class LegacySnr(Filter):
    name = "LegacySnr"
    description = "2016-schema alerts (the 2018 prototype's) with SNR above 40"

    def __call__(self, alert: dict) -> bool:
        return alert["diaSource"]["snr"] > 40


def legacy_group() -> FilterRegistry:
    return FilterRegistry([LegacySnr()])
