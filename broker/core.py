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

import numpy as np

from broker.alerts import (
    AlertSchema,
    Decoder,
    MalformedAlert,
    Resume,
    schema_for_id,
    split_wire,
    visit_of,
)
from broker.columnar import ColumnPlan, Unsupported
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
        # Columns straight from the bytes when every filter has a vectorised form: no
        # per-alert dicts at all, except for the few alerts a prefilter lets through.
        self._columnar = bool(self.columns) and not self._cheap_calls and not self._prefilters
        self._column_plans: dict[int, ColumnPlan | None] = {}

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
        evaluated = None
        if self._columnar and len(values) >= 8:
            evaluated = self._evaluate_columns(values)
        if evaluated is None:
            evaluated = self._evaluate_dicts(values)
        admit = self.caps.admit_many
        for out, passed in evaluated:
            if out.malformed is None and passed:
                assert out.visit is not None
                admit(out.visit, passed, out.deliver, out.capped)
        return [out for out, _ in evaluated]

    def _evaluate_dicts(self, values: Sequence[bytes]) -> list[tuple[Outcome, list[int]]]:
        """Per message: its outcome so far and the filters it passes (before the cap)."""
        outs = [Outcome() for _ in values]
        passes: list[list[int]] = [[] for _ in values]
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
                    more = self._history(values[k], alert, resumes[j], need, out)
                    if more is None:
                        continue
                    passed += more
            passes[k] = passed
        return list(zip(outs, passes, strict=True))

    def _history(self, data: bytes, alert: Alert, resume: Resume | None, need: list[int],
                 out: Outcome) -> list[int] | None:
        """Decode the later fields of one alert and run the filters that need them.

        None (and ``out`` made malformed) when those fields cannot be decoded.
        """
        try:
            self.decoder.decode_more(data, alert, resume)
        except MalformedAlert as exc:
            out.malformed, out.errors = exc, []
            return None
        return self._run([(i, self._full[i]) for i in need], alert, out)

    def _column_plan(self, schema: AlertSchema) -> ColumnPlan | None:
        if schema.schema_id not in self._column_plans:
            try:
                plan: ColumnPlan | None = ColumnPlan(schema, self.columns)
            except Unsupported as exc:
                log.info("schema v%s is decoded alert by alert: %s", schema.version, exc)
                plan = None
            self._column_plans[schema.schema_id] = plan
        return self._column_plans[schema.schema_id]

    def _evaluate_columns(self, values: Sequence[bytes]
                          ) -> list[tuple[Outcome, list[int]]] | None:
        """:meth:`_evaluate_dicts` for a batch read as columns (see :mod:`broker.columnar`).

        Messages the columnar walk cannot read go through :meth:`_evaluate_dicts`, which
        decodes them or says why they are malformed. None if a vectorised filter fails on
        the batch: the caller then evaluates it alert by alert, where errors are counted.
        """
        n = len(values)
        result: list[tuple[Outcome, list[int]] | None] = [None] * n
        lanes: dict[int, list[int]] = {}
        schemas: dict[int, tuple[AlertSchema, int]] = {}
        rest: list[int] = []
        bare = self.decoder.bare_schema
        for k, data in enumerate(values):
            try:
                if bare is not None:
                    schema, offset = bare, 0
                else:
                    sid, offset = split_wire(data)
                    schema = schema_for_id(sid)
            except MalformedAlert:
                rest.append(k)
                continue
            lanes.setdefault(schema.schema_id, []).append(k)
            schemas[schema.schema_id] = (schema, offset)
        for sid, ks in lanes.items():
            schema, offset = schemas[sid]
            plan = self._column_plan(schema)
            if plan is None:
                rest += ks
                continue
            batch = plan.read([values[k] for k in ks], offset)
            good = np.flatnonzero(batch.ok)
            rest += [ks[j] for j in np.flatnonzero(~batch.ok).tolist()]
            if not len(good):
                continue
            cols = batch.columns if len(good) == len(ks) else {
                c: a[good] for c, a in batch.columns.items()}
            try:
                sel = self._matrix(self._vec, "select", cols, len(good))
                pre = self._matrix(self._vec_pre, "preselect", cols, len(good))
            except Exception:
                return None
            passes = _passing(sel, self._vec, len(good))
            needs = _passing(pre, self._vec_pre, len(good))
            visits = batch.visit[good].tolist()
            for j, k in enumerate(ks[g] for g in good.tolist()):
                out = Outcome(visit=visits[j])
                passed = passes[j]
                if needs[j]:
                    try:
                        alert, resume = self.decoder.decode_staged(values[k])
                    except MalformedAlert as exc:
                        result[k] = (Outcome(visit=visits[j], malformed=exc), [])
                        continue
                    more = self._history(values[k], alert, resume, needs[j], out)
                    if more is None:
                        result[k] = (out, [])
                        continue
                    passed = passed + more
                result[k] = (out, passed)
        if rest:
            rest.sort()
            for k, done in zip(rest, self._evaluate_dicts([values[k] for k in rest]),
                               strict=True):
                result[k] = done
        assert all(r is not None for r in result)
        return result  # type: ignore[return-value]

    def _matrix(self, which: list[int], method: str, cols: dict[str, Any],
                n: int) -> np.ndarray:
        """Boolean (filters x alerts) matrix of the vectorised ``method`` of ``which``."""
        rows = np.zeros((len(which), n), dtype=bool)
        for r, i in enumerate(which):
            rows[r] = np.asarray(getattr(self.filters[i], method)(cols), dtype=bool)
        return rows

    def process(self, data: bytes) -> Outcome:
        """:meth:`process_batch` for one message."""
        return self.process_batch([data])[0]


def _passing(matrix: np.ndarray, which: list[int], n: int) -> list[list[int]]:
    """Per alert, the filter indexes (from ``which``) whose row in ``matrix`` is True."""
    out: list[list[int]] = [[] for _ in range(n)]
    if len(which):
        alerts, rows = np.nonzero(matrix.T)  # alert-major, so each list stays in order
        for a, r in zip(alerts.tolist(), rows.tolist(), strict=True):
            out[a].append(which[r])
    return out
