"""The pure core of a filter group: decode once, run every filter, apply the cap.

No Kafka here: :class:`GroupCore` turns one message value into an :class:`Outcome`
(which filters deliver it, which passed over the cap, which raised, or why the message is
malformed). The Kafka loop in :mod:`broker.filter_group` is a thin adapter around it, and
tests drive it with in-memory messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.alerts import AlertSchema, Decoder, MalformedAlert, Resume, visit_of
from broker.filters import CHEAP_FIELDS, Filter, build_columns
from broker.visits import VisitCaps

Alert = dict[str, Any]

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
    """Filters of one group with their per-visit caps, and the decoder they share.

    :meth:`process_batch` decodes a batch of messages, evaluates the vectorised filters
    once over numpy columns of the batch, the others alert by alert, then applies the cap
    in message order (so the cap admits the first ``cap`` passing alerts of a visit).
    """

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
        # Which filters offer a vectorised form (only those reading just diaSource
        # columns); bound methods are looked up once, since lookups per alert add up.
        self._vec = [i for i in self._cheap if self._offers(i, "select")]
        self._vec_pre = [i for i in self._expensive if self._offers(i, "preselect")]
        self.columns = sorted({c for i in self._vec + self._vec_pre
                               for c in self.filters[i].columns})
        vec, vec_pre = set(self._vec), set(self._vec_pre)
        self._cheap_calls = [(i, self.filters[i].__call__) for i in self._cheap if i not in vec]
        self._prefilters = [(i, self.filters[i].prefilter) for i in self._expensive
                            if i not in vec_pre]
        self._all_cheap = [(i, self.filters[i].__call__) for i in self._cheap]
        self._all_pre = [(i, self.filters[i].prefilter) for i in self._expensive]
        self._full = {i: self.filters[i].__call__ for i in self._expensive}

    def _offers(self, i: int, method: str) -> bool:
        f = self.filters[i]
        return bool(f.columns) and getattr(type(f), method) is not getattr(Filter, method)

    def _guarded(self, calls: Sequence[tuple[int, Callable[[Alert], Any]]], alert: Alert,
                 out: Outcome) -> list[int]:
        """Run ``calls`` one by one, counting and logging the ones that raise."""
        passed = []
        for i, fn in calls:
            try:
                if fn(alert):
                    passed.append(i)
            except Exception:
                out.errors.append(i)
                if i not in self._reported:  # log each failing filter once, with traceback
                    self._reported.add(i)
                    log.exception("filter %s raised; counting and going on", self.names[i])
        return passed

    def _run(self, calls: Sequence[tuple[int, Callable[[Alert], Any]]], alert: Alert,
             out: Outcome) -> list[int]:
        # Fast path: one try around the whole loop (a try per call costs ~30% of filter
        # time). Filters are pure functions of the alert, so after an exception the
        # guarded loop can simply run them all again.
        try:
            return [i for i, fn in calls if fn(alert)]
        except Exception:
            return self._guarded(calls, alert, out)

    def _vectorised(self, alerts: list[Alert]) -> tuple[dict[int, Any], dict[int, Any]]:
        """Boolean arrays of the vectorised filters and prefilters over the batch.

        A filter whose vectorised form fails (a missing column, a bug) is left out and
        runs alert by alert instead, where its errors are counted per alert.
        """
        if not self.columns or len(alerts) < 8:  # too few to pay for building columns
            return {}, {}
        try:
            cols = build_columns([a["diaSource"] for a in alerts], self.columns)
        except Exception:  # odd values (e.g. a string where a number belongs)
            return {}, {}
        n = len(alerts)
        sel: dict[int, Any] = {}
        pre: dict[int, Any] = {}
        for i in self._vec:
            try:
                r = self.filters[i].select(cols)
                if r is not None and len(r) == n:
                    sel[i] = r.tolist()
            except Exception:
                pass
        for i in self._vec_pre:
            try:
                r = self.filters[i].preselect(cols)
                if r is not None and len(r) == n:
                    pre[i] = r.tolist()
            except Exception:
                pass
        return sel, pre

    def process_batch(self, values: Sequence[bytes]) -> list[Outcome]:
        """Decode each message once, run every filter and apply the cap, in order."""
        outs = [Outcome() for _ in values]
        alerts: list[Alert] = []
        resumes: list[Resume | None] = []
        index: list[int] = []
        for k, data in enumerate(values):
            try:
                alert, resume = self.decoder.decode_staged(data)
                outs[k].visit = visit_of(alert)
            except MalformedAlert as exc:
                outs[k].malformed = exc
                continue
            alerts.append(alert)
            resumes.append(resume)
            index.append(k)
        sel, pre = self._vectorised(alerts)
        cheap_calls = self._cheap_calls if len(sel) == len(self._vec) else [
            c for c in self._all_cheap if c[0] not in sel]
        prefilters = self._prefilters if len(pre) == len(self._vec_pre) else [
            c for c in self._all_pre if c[0] not in pre]
        for j, k in enumerate(index):
            alert, out = alerts[j], outs[k]
            passed = [i for i, r in sel.items() if r[j]]
            passed += self._run(cheap_calls, alert, out)
            if self._expensive:
                need = [i for i, r in pre.items() if r[j]]
                need += self._run(prefilters, alert, out)
                if need:
                    try:
                        self.decoder.decode_more(values[k], alert, resumes[j])
                    except MalformedAlert as exc:
                        outs[k] = Outcome(visit=out.visit, malformed=exc)
                        continue
                    passed += self._run([(i, self._full[i]) for i in need], alert, out)
            visit = out.visit
            assert visit is not None
            for i in passed:
                (out.deliver if self.caps.admit(visit, i) else out.capped).append(i)
        return outs

    def process(self, data: bytes) -> Outcome:
        """:meth:`process_batch` for one message."""
        return self.process_batch([data])[0]
