"""The pure core of a filter group: decode once, run every filter, apply the cap.

No Kafka here: :class:`GroupCore` turns a batch of message values into a
:class:`BatchOutcome` (which filters deliver each message, how many passes went over the
cap per visit, which filters raised, which messages are malformed and why), or one value
into an :class:`Outcome`. The Kafka loop in :mod:`broker.filter_group` is a thin adapter
around it, and tests drive it with in-memory messages.
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
from broker.history import HISTORY_FIELD, HistoryReader, Unreadable
from broker.visits import VisitCaps

Alert = dict[str, Any]

__all__ = ["BatchOutcome", "GroupCore", "Outcome"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a group does with one message."""

    visit: int | None = None
    deliver: list[int] = field(default_factory=list)  # filter indexes within the cap
    capped: list[int] = field(default_factory=list)   # passed, but over the cap
    errors: list[int] = field(default_factory=list)   # filters that raised
    malformed: MalformedAlert | None = None


@dataclass
class BatchOutcome:
    """What a group does with a batch of messages (see :meth:`GroupCore.evaluate`).

    ``passes`` and ``admitted`` are (messages x filters) booleans: every filter a message
    passes, and the passes within the cap. The dicts hold only the few messages that
    need handling one by one; everything else is counted per visit, since a busy group
    has ~10 passes per alert and almost all of them over the cap.
    """

    visits: list[int | None]
    passes: np.ndarray
    admitted: np.ndarray
    malformed: dict[int, MalformedAlert]
    errors: dict[int, list[int]]
    deliver: dict[int, list[int]]
    """Message index -> filter indexes within the cap, in message order."""
    consumed: dict[int, int]
    """Visit -> well-formed messages of it in the batch."""
    capped: dict[int, np.ndarray]
    """Visit -> passes over the cap, per filter (visits with none left out)."""

    def outcomes(self) -> list[Outcome]:
        """The same, one :class:`Outcome` per message."""
        over = self.passes & ~self.admitted
        outs = [Outcome(visit=v) for v in self.visits]
        for k, fs in self.deliver.items():
            outs[k].deliver = list(fs)
        for k, i in zip(*(a.tolist() for a in np.nonzero(over)), strict=True):
            outs[k].capped.append(i)
        for k, fs in self.errors.items():
            outs[k].errors = list(fs)
        for k, exc in self.malformed.items():
            outs[k].malformed = exc
        return outs


class _Evaluation:
    """Filter results of one batch before the cap: passes, visits, errors, malformed."""

    def __init__(self, n: int, filters: int) -> None:
        self.passes = np.zeros((n, filters), dtype=bool)
        self.visit = np.zeros(n, dtype=np.int64)
        self.known = np.zeros(n, dtype=bool)  # visit known
        self.malformed: dict[int, MalformedAlert] = {}
        self.errors: dict[int, list[int]] = {}

    def take(self, k: int, out: Outcome, passed: list[int]) -> None:
        """Record message ``k`` evaluated alert by alert."""
        if out.visit is not None:
            self.visit[k], self.known[k] = out.visit, True
        if out.malformed is not None:
            self.malformed[k] = out.malformed
            self.passes[k] = False  # passes read before the bad bytes do not count
            return
        if out.errors:
            self.errors[k] = list(out.errors)
        if passed:
            self.passes[k, passed] = True


class GroupCore:
    """Filters of one group with their per-visit caps, and the decoder they share.

    :meth:`evaluate` decodes a batch of messages, evaluates the vectorised filters
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
        # History rows straight from the bytes, when the expensive filters read nothing
        # but prvDiaSources and say which of its fields.
        history = [self.filters[i] for i in self._expensive]
        self._history_fields: frozenset[str] | None = None
        if history and all(f.expensive_fields == {HISTORY_FIELD}
                           and f.history_fields is not None for f in history):
            self._history_fields = frozenset().union(
                *(f.history_fields or () for f in history))
        self._history_readers: dict[int, HistoryReader | None] = {}

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

    def evaluate(self, values: Sequence[bytes]) -> BatchOutcome:
        """Decode each message once, run every filter and apply the cap, in order."""
        n = len(values)
        ev = _Evaluation(n, len(self.filters))
        if not (self._columnar and n >= 8 and self._evaluate_columns(values, ev)):
            ev = _Evaluation(n, len(self.filters))
            self._evaluate_dicts(values, range(n), ev)
        return self._admit(ev)

    def process_batch(self, values: Sequence[bytes]) -> list[Outcome]:
        """:meth:`evaluate`, one :class:`Outcome` per message."""
        return self.evaluate(values).outcomes()

    def _admit(self, ev: _Evaluation) -> BatchOutcome:
        """Apply the per-visit cap to the passes of well-formed messages, in order."""
        ok = ev.known.copy()
        if ev.malformed:
            ok[list(ev.malformed)] = False
        admitted = np.zeros_like(ev.passes)
        capped: dict[int, np.ndarray] = {}
        rows = np.flatnonzero(ok & ev.passes.any(axis=1))
        if rows.size:
            visits = ev.visit[rows]
            for v in np.unique(visits).tolist():
                mine = rows[visits == v]
                passes = ev.passes[mine]
                got = self.caps.admit_matrix(v, passes)
                admitted[mine] = got
                over = passes.sum(axis=0) - got.sum(axis=0)
                if over.any():
                    capped[v] = over
        deliver: dict[int, list[int]] = {}
        for k, i in zip(*(a.tolist() for a in np.nonzero(admitted)), strict=True):
            deliver.setdefault(k, []).append(i)
        vs, counts = np.unique(ev.visit[ok], return_counts=True)
        visits_out: list[int | None] = [
            v if known else None for v, known in zip(ev.visit.tolist(), ev.known.tolist(),
                                                     strict=True)]
        return BatchOutcome(
            visits=visits_out, passes=ev.passes, admitted=admitted, malformed=ev.malformed,
            errors=ev.errors, deliver=deliver,
            consumed=dict(zip(vs.tolist(), counts.tolist(), strict=True)), capped=capped)

    def _evaluate_dicts(self, values: Sequence[bytes], index: Sequence[int],
                        ev: _Evaluation) -> None:
        """Evaluate messages ``index`` of ``values`` alert by alert into ``ev``."""
        outs = {k: Outcome() for k in index}
        passes: dict[int, list[int]] = {}
        alerts: list[Alert] = []
        resumes: list[Resume | None] = []
        decoded: list[int] = []
        for k in index:
            try:
                alert, resume = self.decoder.decode_staged(values[k])
                outs[k].visit = visit_of(alert)
            except MalformedAlert as exc:
                outs[k].malformed = exc
                continue
            alerts.append(alert)
            resumes.append(resume)
            decoded.append(k)
        sel, pre = self._vectorised(alerts)
        cheap_calls = self._cheap_calls if len(sel) == len(self._vec) else [
            c for c in self._all_cheap if c[0] not in sel]
        prefilters = self._prefilters if len(pre) == len(self._vec_pre) else [
            c for c in self._all_pre if c[0] not in pre]
        for j, k in enumerate(decoded):
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
        for k, out in outs.items():
            ev.take(k, out, passes.get(k, []))

    def _history(self, data: bytes, alert: Alert, resume: Resume | None, need: list[int],
                 out: Outcome) -> list[int] | None:
        """Decode the later fields of one alert and run the filters that need them.

        None (and ``out`` made malformed) when those fields cannot be decoded.
        """
        calls = [(i, self._full[i]) for i in need]
        reader = self._history_reader(resume)
        if reader is not None and resume is not None:
            try:
                alert[HISTORY_FIELD] = reader.read(data, resume.position)
            except Unreadable:  # fastavro reads it, or says why it is malformed
                pass
            else:
                return self._run(calls, alert, out)
        try:
            self.decoder.decode_more(data, alert, resume)
        except MalformedAlert as exc:
            out.malformed, out.errors = exc, []
            return None
        return self._run(calls, alert, out)

    def _history_reader(self, resume: Resume | None) -> HistoryReader | None:
        if self._history_fields is None or resume is None \
                or resume.fields != (HISTORY_FIELD,):
            return None
        sid = resume.schema.schema_id
        if sid not in self._history_readers:
            try:
                reader: HistoryReader | None = HistoryReader(resume.schema,
                                                             self._history_fields)
            except Unreadable as exc:
                log.info("history of schema v%s is decoded with fastavro: %s",
                         resume.schema.version, exc)
                reader = None
            self._history_readers[sid] = reader
        return self._history_readers[sid]

    def _column_plan(self, schema: AlertSchema) -> ColumnPlan | None:
        if schema.schema_id not in self._column_plans:
            try:
                plan: ColumnPlan | None = ColumnPlan(schema, self.columns)
            except Unsupported as exc:
                log.info("schema v%s is decoded alert by alert: %s", schema.version, exc)
                plan = None
            self._column_plans[schema.schema_id] = plan
        return self._column_plans[schema.schema_id]

    def _evaluate_columns(self, values: Sequence[bytes], ev: _Evaluation) -> bool:
        """:meth:`_evaluate_dicts` for a batch read as columns (see :mod:`broker.columnar`).

        Messages the columnar walk cannot read go through :meth:`_evaluate_dicts`, which
        decodes them or says why they are malformed. False if a vectorised filter fails
        on the batch: the caller then evaluates it alert by alert, where errors are
        counted.
        """
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
        vec, vec_pre = np.asarray(self._vec, dtype=np.intp), self._vec_pre
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
                pre = self._matrix(vec_pre, "preselect", cols, len(good))
            except Exception:
                return False
            rows = np.asarray(ks, dtype=np.intp)[good]
            ev.visit[rows] = batch.visit[good]
            ev.known[rows] = True
            if len(vec):
                ev.passes[np.ix_(rows, vec)] = sel.T
            if not len(vec_pre):
                continue
            for j in np.flatnonzero(pre.any(axis=0)).tolist():
                k = int(rows[j])
                need = [vec_pre[r] for r in np.flatnonzero(pre[:, j]).tolist()]
                out = Outcome(visit=int(ev.visit[k]))
                try:
                    alert, resume = self.decoder.decode_staged(values[k])
                except MalformedAlert as exc:
                    out.malformed = exc
                    ev.take(k, out, [])
                    continue
                more = self._history(values[k], alert, resume, need, out)
                ev.take(k, out, more or [])
        if rest:
            self._evaluate_dicts(values, sorted(rest), ev)
        return True

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
