"""The pure core of a filter group: decode once, run every filter, apply the cap.

No Kafka here: :class:`GroupCore` turns one message value into an :class:`Outcome`
(which filters deliver it, which passed over the cap, which raised, or why the message is
malformed). The Kafka loop in :mod:`broker.filter_group` is a thin adapter around it, and
tests drive it with in-memory messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.alerts import AlertSchema, Decoder, MalformedAlert, visit_of
from broker.filters import CHEAP_FIELDS, Filter
from broker.visits import VisitCaps

__all__ = ["GroupCore", "Outcome"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a group does with one message."""

    visit: int | None = None
    deliver: list[int] = field(default_factory=list)  # filter indexes within the cap
    capped: list[int] = field(default_factory=list)   # passed, but over the cap
    errors: list[int] = field(default_factory=list)   # filters that raised
    malformed: MalformedAlert | None = None


class GroupCore:
    """Filters of one group with their per-visit caps, and the decoder they share."""

    def __init__(self, filters: Sequence[Filter], cap: int = 20,
                 bare_schema: AlertSchema | None = None) -> None:
        if not filters:
            raise ValueError("a filter group needs at least one filter")
        self.filters = list(filters)
        self.names = [f.name for f in self.filters]
        self.caps = VisitCaps(cap, self.names)
        cheap: set[str] = {"diaSource"}  # always: the visit comes from diaSource
        later: set[str] = set()
        self._cheap: list[int] = []
        self._expensive: list[int] = []
        for i, f in enumerate(self.filters):
            extra = f.fields - CHEAP_FIELDS
            cheap |= f.fields & CHEAP_FIELDS
            if extra:
                later |= extra
                self._expensive.append(i)
            else:
                self._cheap.append(i)
        self.decoder = Decoder(cheap, later=later, bare_schema=bare_schema)
        self._reported: set[int] = set()

    def _call(self, index: int, method: str, alert: dict, out: Outcome) -> bool:
        try:
            return bool(getattr(self.filters[index], method)(alert))
        except Exception:
            out.errors.append(index)
            if index not in self._reported:  # log each failing filter once, with traceback
                self._reported.add(index)
                log.exception("filter %s raised; counting and going on", self.names[index])
            return False

    def process(self, data: bytes) -> Outcome:
        """Decode ``data`` once, run every filter and apply the cap."""
        out = Outcome()
        try:
            alert, resume = self.decoder.decode_staged(data)
            out.visit = visit_of(alert)
        except MalformedAlert as exc:
            out.malformed = exc
            return out
        passed = [i for i in self._cheap if self._call(i, "__call__", alert, out)]
        if self._expensive:
            need = [i for i in self._expensive if self._call(i, "prefilter", alert, out)]
            if need:
                try:
                    self.decoder.decode_more(data, alert, resume)
                except MalformedAlert as exc:
                    return Outcome(visit=out.visit, malformed=exc)
                passed += [i for i in need if self._call(i, "__call__", alert, out)]
        visit = out.visit
        for i in passed:
            (out.deliver if self.caps.admit(visit, i) else out.capped).append(i)
        return out
