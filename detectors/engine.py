"""The rule engine: batches of one service's records in, state changes out.

Deterministic and clock-free: event time drives every window. Per service and signal the
watermark is the highest event time seen minus ``allowed_lateness_ms`` (or a later
watermark given to :meth:`RuleEngine.advance`); it is tracked record by record in
arrival order, so results do not depend on how records were cut into batches. A record
older than the watermark when it arrives is *late*: it is left out of the windows and
counted in :class:`ProcessStats` (per signal and per rule that selected it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from detectors import absence, machine
from detectors.closing import Evaluations, evaluate, latest_step, next_until, prune
from detectors.columns import Batch
from detectors.concat import ConcatBatch
from detectors.emit import build
from detectors.rules import Rule, RuleSet
from detectors.selectors import Selector
from detectors.state import NO_TIME, RuleState, ServiceState
from detectors.windows import KEY_BITS, Items, concat, group, raw_items, record_items, split
from pipeline.events.columns import TIME_COLUMN
from pipeline.events.detection import Detection


@dataclass(frozen=True)
class ProcessStats:
    """What one :meth:`RuleEngine.process` call saw: records, late records, watermark."""

    signal: str
    records: int
    late: int  # records older than the watermark when they arrived (not in any window)
    late_by_rule: dict[str, int] = field(default_factory=dict)  # late records a rule selected
    watermark: int = NO_TIME  # the signal's watermark after the batch (epoch ms)


Output = tuple[ServiceState, list[Detection], ProcessStats]
"""What :meth:`RuleEngine.process` returns for one batch."""


class RuleEngine:
    """Evaluates a :class:`RuleSet` over per-service state (see the module docstring)."""

    def __init__(self, ruleset: RuleSet, allowed_lateness_ms: int = 60_000,
                 keepalive_ms: int = 0) -> None:
        if allowed_lateness_ms < 0 or keepalive_ms < 0:
            raise ValueError("allowed_lateness_ms and keepalive_ms must be >= 0, got "
                             f"{allowed_lateness_ms} and {keepalive_ms}")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.keepalive_ms = keepalive_ms
        self.reload(ruleset)

    @property
    def ruleset(self) -> RuleSet:
        """The rules being evaluated."""
        return self._ruleset

    def reload(self, ruleset: RuleSet) -> None:
        """Swap rules. A state keeps the windows and firing state of every rule whose
        name and evaluation (selection, window, conditions ...) did not change; state of
        removed or changed rules is dropped the next time the state is processed."""
        self._ruleset = ruleset
        self._by_signal = {s: ruleset.for_signal(s) for s in ("metrics", "logs", "traces")}

    def new_state(self) -> ServiceState:
        """Empty state for a service not seen before."""
        return ServiceState()

    def state_from_bytes(self, data: bytes) -> ServiceState:
        """A state stored with ``ServiceState.to_bytes`` (raises RuleStateError if corrupt)."""
        return ServiceState.from_bytes(data)

    def _sync(self, state: ServiceState) -> None:
        rules = self._ruleset.by_name
        for name in [n for n, rs in state.rules.items()
                     if n not in rules or rules[n].digest != rs.digest]:
            del state.rules[name]

    def _rule_state(self, state: ServiceState, rule: Rule) -> RuleState:
        rs = state.rules.get(rule.name)
        if rs is None:
            rs = state.rules[rule.name] = RuleState.new(rule)
        return rs

    def process(self, signal: str, columns: Mapping[str, Any], state: ServiceState
                ) -> tuple[ServiceState, list[Detection], ProcessStats]:
        """Fold one batch of one service's ``signal`` records into ``state`` (updated in
        place and returned) and return the detections of windows that closed."""
        batch = Batch(signal, columns)
        self._sync(state)
        if not state.service:
            state.service = batch.first_service()
        if batch.n == 0:
            wm = state.watermark(signal, self.allowed_lateness_ms)
            return state, [], ProcessStats(signal, 0, 0, {}, wm)
        t = batch.time
        prev = state.max_time.get(signal, NO_TIME)
        running = np.maximum.accumulate(t)
        before = np.empty_like(t)
        before[0] = prev
        np.maximum(running[:-1], prev, out=before[1:])
        wm_before = np.where(before > NO_TIME, before - self.allowed_lateness_ms, NO_TIME)
        wm_before = np.maximum(wm_before, state.floor)
        late = t < wm_before
        state.max_time[signal] = max(prev, int(running[-1]))
        state.first_time.setdefault(signal, int(t.min()))
        wm = state.watermark(signal, self.allowed_lateness_ms)
        values = batch.values()
        select = _Selections(batch)
        out: list[Detection] = []
        late_by_rule: dict[str, int] = {}
        for rule in self._by_signal[signal]:
            selected, num, den, scale = select(rule)
            if n_late := int(np.count_nonzero(selected & late)):
                late_by_rule[rule.name] = n_late
            rows = np.flatnonzero(selected & ~late)
            rs = state.rules.get(rule.name)
            if rs is None and not rows.size:
                continue  # nothing of this service for this rule yet
            if rs is None:
                rs = self._rule_state(state, rule)
                if rule.window is not None and (int(t[rows].min()) - state.first_time[signal]
                                                > rule.window.size_ms):
                    rs.began = 0  # first met in a running system: nothing is pre-existing
            if not rows.size and not self._closes(rule, rs, wm):
                continue
            sids = self._series(rule, rs, batch, rows)
            if rule.kind == "absence":
                out += self._silences(rule, rs, state, absence.observe(
                    rs.series, rule.for_ms, sids, t[rows], wm_before[rows], self.keepalive_ms))
                out += self._silences(rule, rs, state, absence.check(
                    rs.series, rule.for_ms, wm, self.keepalive_ms))
            else:
                if rows.size:
                    v = values[rows] if scale is None else values[rows] * scale[rows]
                    rs.items = record_items(rule, sids, t[rows], v,
                                            None if num is None else num[rows],
                                            None if den is None else den[rows], rs.items)
                out += self._close(rule, rs, state, wm)
        _drop_empty(state)
        stats = ProcessStats(signal, batch.n, int(np.count_nonzero(late)), late_by_rule, wm)
        return state, _ordered(out), stats

    def process_many(self, batches: Sequence[tuple[str, Mapping[str, Any], ServiceState]]
                     ) -> list[Output]:
        """:meth:`process` of each ``(signal, columns, state)`` in turn, as one pass over
        all of them: the same states after, the same outputs. The slices of distinct
        states are evaluated together (selectors, series and window items once over
        their records); a state met again is evaluated in the next round."""
        for signal, _, _ in batches:  # before any state changes
            if signal not in TIME_COLUMN:
                raise ValueError(f"signal must be one of {', '.join(TIME_COLUMN)}, "
                                 f"got {signal!r}")
        out: list[Output | None] = [None] * len(batches)
        rounds: list[list[int]] = []
        met: dict[int, int] = {}
        for i, (_, _, state) in enumerate(batches):
            k = met.get(id(state), 0)
            met[id(state)] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        for members in rounds:
            alike: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = {}
            for i in members:
                signal, columns, state = batches[i]
                if not len(columns[TIME_COLUMN[signal]]):
                    out[i] = self.process(signal, columns, state)
                else:  # slices of the same columns are read as one
                    alike.setdefault((signal, _shape(columns)), []).append(i)
            for (signal, _), idx in alike.items():
                if len(idx) == 1:
                    out[idx[0]] = self.process(*batches[idx[0]])
                    continue
                found = self._together(signal, [batches[i][1] for i in idx],
                                       [batches[i][2] for i in idx])
                for i, result in zip(idx, found, strict=True):
                    out[i] = result
        return out  # type: ignore[return-value]

    def _together(self, signal: str, columns: list[Mapping[str, Any]],
                  states: list[ServiceState]) -> list[Output]:
        """:meth:`process` of non-empty slices of distinct states, at once."""
        batch = ConcatBatch(signal, [Batch(signal, c) for c in columns])
        m, part, offsets = len(states), batch.part, batch.offsets
        for state, piece in zip(states, batch.parts, strict=True):
            self._sync(state)
            if not state.service:
                state.service = piece.first_service()
        t = batch.time
        starts = offsets[:-1]
        prev = np.array([s.max_time.get(signal, NO_TIME) for s in states], dtype=np.int64)
        floor = np.array([s.floor for s in states], dtype=np.int64)
        running = _running_max(t, part, starts)
        before = np.empty_like(t)
        before[1:] = running[:-1]
        before[starts] = NO_TIME
        np.maximum(before, prev[part], out=before)
        wm_before = np.where(before > NO_TIME, before - self.allowed_lateness_ms, NO_TIME)
        wm_before = np.maximum(wm_before, floor[part])
        late = t < wm_before
        last = np.maximum.reduceat(t, starts).tolist()
        lowest = np.minimum.reduceat(t, starts).tolist()
        wms = []
        for j, state in enumerate(states):
            state.max_time[signal] = max(int(prev[j]), last[j])
            state.first_time.setdefault(signal, lowest[j])
            wms.append(state.watermark(signal, self.allowed_lateness_ms))
        values = batch.values()
        select = _Selections(batch)
        outs: list[list[Detection]] = [[] for _ in range(m)]
        late_by_rule: list[dict[str, int]] = [{} for _ in range(m)]
        for rule in self._by_signal[signal]:
            selected, num, den, scale = select(rule)
            lost = selected & late
            if lost.any():
                for j, n_late in enumerate(np.bincount(part[lost], minlength=m).tolist()):
                    if n_late:
                        late_by_rule[j][rule.name] = n_late
            rows = np.flatnonzero(selected & ~late)
            cuts = np.searchsorted(part[rows], np.arange(m + 1)).tolist()
            # the states this rule has work in: (j, rule state, first row, end row)
            work: list[tuple[int, RuleState, int, int]] = []
            for j, state in enumerate(states):
                a, b = cuts[j], cuts[j + 1]
                rs = state.rules.get(rule.name)
                if rs is None:
                    if a == b:
                        continue
                    rs = self._rule_state(state, rule)
                    if rule.window is not None and (int(t[rows[a:b]].min())
                                                    - state.first_time[signal]
                                                    > rule.window.size_ms):
                        rs.began = 0
                elif a == b and not self._closes(rule, rs, wms[j]):
                    continue
                work.append((j, rs, a, b))
            if not work:
                continue
            sids = self._series_together(rule, batch, rows, work)
            if rule.kind == "absence":
                for j, rs, a, b in work:
                    state, wm = states[j], wms[j]
                    r = rows[a:b]
                    outs[j] += self._silences(rule, rs, state, absence.observe(
                        rs.series, rule.for_ms, sids[a:b], t[r], wm_before[r],
                        self.keepalive_ms))
                    outs[j] += self._silences(rule, rs, state, absence.check(
                        rs.series, rule.for_ms, wm, self.keepalive_ms))
                continue
            if rows.size:
                v = values[rows] if scale is None else values[rows] * scale[rows]
                self._add_items(rule, work, sids, t[rows], v,
                                None if num is None else num[rows],
                                None if den is None else den[rows])
            for j, rs, _, _ in work:
                outs[j] += self._close(rule, rs, states[j], wms[j])
        results = []
        for j, state in enumerate(states):
            _drop_empty(state)
            stats = ProcessStats(signal, batch.parts[j].n,
                                 int(np.count_nonzero(late[starts[j]:offsets[j + 1]])),
                                 late_by_rule[j], wms[j])
            results.append((state, _ordered(outs[j]), stats))
        return results

    @staticmethod
    def _series_together(rule: Rule, batch: ConcatBatch, rows: np.ndarray,
                         work: list[tuple[int, RuleState, int, int]]) -> np.ndarray:
        """Series id of each row in its state (new series added, numbered in the order
        of the part's own factorisation, as :meth:`_series` does for the part alone)."""
        if not rows.size:
            return np.zeros(0, np.int64)
        pair, rep = batch.series_pairs(rule.group_by)
        factors = [batch.factor(label) for label in rule.group_by]
        rpair = pair[rows]
        present = np.unique(rpair)  # in order of part, then of the part's own codes
        first = rep[present]
        pcuts = np.searchsorted(batch.part[first], np.arange(len(batch.parts) + 1)).tolist()
        ids = np.zeros(present.size, np.int64)
        for j, rs, a, b in work:
            if a == b:
                continue
            lo, hi = pcuts[j], pcuts[j + 1]
            keys = [tuple(uniques[codes[r]] for uniques, codes in factors)
                    for r in first[lo:hi].tolist()]
            ids[lo:hi] = rs.ids(keys, rule)
        return ids[np.searchsorted(present, rpair)]

    def _add_items(self, rule: Rule, work: list[tuple[int, RuleState, int, int]],
                   sids: np.ndarray, t: np.ndarray, v: np.ndarray, num: np.ndarray | None,
                   den: np.ndarray | None) -> None:
        """Fold the selected rows into each state's items, grouped in one pass (each
        state's series offset past the states before it)."""
        takes = [(rs, a, b) for _, rs, a, b in work if a < b]
        base = np.cumsum([0] + [len(rs.keys) for rs, _, _ in takes])
        if int(base[-1]) >= 1 << (63 - KEY_BITS):  # series would not fit the sort key
            for rs, a, b in takes:
                rs.items = record_items(rule, sids[a:b], t[a:b], v[a:b],
                                        None if num is None else num[a:b],
                                        None if den is None else den[a:b], rs.items)
            return
        offset = np.repeat(base[:-1], [b - a for _, a, b in takes])
        pick = np.concatenate([np.arange(a, b) for _, a, b in takes])
        fresh = raw_items(rule, sids[pick] + offset, t[pick], v[pick],
                          None if num is None else num[pick],
                          None if den is None else den[pick])
        stored = []
        for (rs, _, _), shift in zip(takes, base[:-1].tolist(), strict=True):
            assert rs.items is not None
            it = rs.items
            if len(it):
                stored.append(Items(it.series + shift, it.key, it.stats, it.qn, it.qv, it.qw))
        grouped = group(rule, concat([*stored, fresh]))
        for (rs, _, _), items in zip(takes, split(grouped, base), strict=True):
            rs.items = items

    def advance(self, state: ServiceState, watermark_ms: int
                ) -> tuple[ServiceState, list[Detection]]:
        """Move the service's watermark to ``watermark_ms`` (time passed without data
        for it: e.g. the highest event time over all services minus the lateness), close
        windows and decide silences. Records older than it are late from now on."""
        self._sync(state)
        state.floor = max(state.floor, int(watermark_ms))
        out: list[Detection] = []
        for rule in self._ruleset.rules:
            rs = state.rules.get(rule.name)
            if rs is None:
                continue
            wm = state.watermark(rule.signal, self.allowed_lateness_ms)
            if not self._closes(rule, rs, wm):
                continue
            if rule.kind == "absence":
                out += self._silences(rule, rs, state, absence.check(
                    rs.series, rule.for_ms, wm, self.keepalive_ms))
            else:
                out += self._close(rule, rs, state, wm)
        _drop_empty(state)
        return state, _ordered(out)

    @staticmethod
    def _closes(rule: Rule, rs: RuleState, wm: int) -> bool:
        """Whether the watermark decides anything new for the rule (cheap pre-check)."""
        if rule.kind == "absence":
            seen = rs.series["seen"]
            return bool(((rs.series["firing"] > 0)
                         | ((seen >= 0) & (wm > seen + rule.for_ms))).any())
        assert rule.window is not None and rs.items is not None
        if not len(rs.items):
            return False
        step = rule.window.step_ms
        return (wm // step * step if step else wm) > rs.until

    def _series(self, rule: Rule, rs: RuleState, batch: Batch, rows: np.ndarray
                ) -> np.ndarray:
        """Series id of each selected record (new series are added to the state)."""
        if not rows.size:
            return np.zeros(0, np.int64)
        keys, inverse = batch.groups(rule.group_by)
        if len(keys) == 1:
            return np.repeat(rs.ids(keys, rule), rows.size)
        sub = inverse[rows]
        present = np.flatnonzero(np.bincount(sub, minlength=len(keys)))
        lookup = np.zeros(len(keys), np.int64)
        lookup[present] = rs.ids([keys[i] for i in present.tolist()], rule)
        return lookup[sub]

    def _close(self, rule: Rule, rs: RuleState, state: ServiceState, wm: int
               ) -> list[Detection]:
        """Evaluate the windows the watermark closed; emit the state changes."""
        if not self._closes(rule, rs, wm):
            return []
        assert rs.items is not None
        ev = evaluate(rule, rs.items, rs.until, wm)
        items = rs.items  # the panes of the closed windows, for the keep-alives' last step
        rs.until = next_until(rule, rs.until, wm)
        rs.items = prune(rule, rs.items, rs.until)
        if not len(ev):
            rs.compact(rule)
            return []
        gate = usual = also_clear = None
        if rule.baseline is not None:
            gate, usual = machine.baseline_gate(rule, ev, rs.series)
            if rule.baseline.clear_ratio is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    also_clear = rule.baseline.clear_ratio.holds(ev.value / usual)
        if rule.min_events > 0 and ev.events is not None:  # too few failures to mean much
            enough = ev.events >= rule.min_events
            gate = enough if gate is None else gate & enough
        if rs.began < 0:
            rs.began = int(ev.time.min())
        changes = machine.run(rule, ev, rs.series, self.keepalive_ms, gate, also_clear,
                              rs.began)
        version = self._ruleset.version
        pre = (changes.pre.tolist() if changes.pre is not None
               else [False] * len(changes.rows))
        now = _latest_steps(rule, items, ev, changes)
        out = [build(rule, version, state.service, rs.keys[ev.series[i]], kind,
                     int(ev.time[i]), int(ev.start[i]), int(ev.time[i]),
                     float(ev.value[i]), int(ev.samples[i]), int(fired),
                     math.nan if usual is None else float(usual[i]), bool(since_start),
                     latest)
               for i, kind, fired, since_start, latest in zip(
                   changes.rows.tolist(), changes.kind.tolist(), changes.fired_at.tolist(),
                   pre, now, strict=True)]
        rs.compact(rule)  # after building: compaction renumbers series
        return out

    def _silences(self, rule: Rule, rs: RuleState, state: ServiceState,
                  sil: absence.Silences) -> list[Detection]:
        version = self._ruleset.version
        return [build(rule, version, state.service, rs.keys[s], kind, t, start, end,
                      (end - start) / 1000.0, 0, fired)
                for s, t, kind, start, end, fired in zip(
                    sil.series.tolist(), sil.time.tolist(), sil.kind.tolist(),
                    sil.start.tolist(), sil.end.tolist(), sil.fired.tolist(), strict=True)]



def _latest_steps(rule: Rule, items: Items, ev: Evaluations, changes: machine.Changes,
                  ) -> list[float | None]:
    """Per state change, the value of its window's last step alone for a keep-alive
    (:func:`~detectors.closing.latest_step`), else None."""
    keep = np.flatnonzero(changes.kind == machine.KEEPALIVE)
    out: list[float | None] = [None] * len(changes.rows)
    if not keep.size:
        return out
    rows = changes.rows[keep]
    values = latest_step(rule, items, ev.series[rows], ev.time[rows])
    if values is not None:
        for j, v in zip(keep.tolist(), values.tolist(), strict=True):
            out[j] = v
    return out


class _Selections:
    """The records of a batch each rule takes, its selectors' masks computed once."""

    def __init__(self, batch: Batch | ConcatBatch) -> None:
        self.batch = batch
        self._masks: dict[Selector, np.ndarray] = {}

    def _mask(self, sel: Selector) -> np.ndarray:
        if sel not in self._masks:
            self._masks[sel] = sel.mask(self.batch)
        return self._masks[sel]

    def __call__(self, rule: Rule) -> tuple[np.ndarray, np.ndarray | None,
                                            np.ndarray | None, np.ndarray | None]:
        """``(selected, num, den, scale)``: the rule's records, a ratio's numerator and
        denominator rows (an exhaustion rule's limit and usage rows), and each record's
        factor to the rule's unit (None: values as they are)."""
        selected = self._mask(rule.select)
        num = den = None
        if rule.kind == "ratio":
            assert rule.numerator is not None and rule.denominator is not None
            num, den = self._mask(rule.numerator), self._mask(rule.denominator)
            selected = selected & (num | den)
        elif rule.capacity_select is not None:  # the limit's rows, the usage's rows
            num = self._mask(rule.capacity_select)
            den = ~num
        scale = None
        if rule.converts:  # each record's value in the rule's unit
            scale = self.batch.unit_factors(rule.series_unit)
            selected = selected & ~np.isnan(scale)  # another dimension: not comparable
        return selected, num, den, scale

def _shape(columns: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Column names and kinds (Arrow columns by type): slices alike concatenate."""
    return tuple(sorted((name, str(col.type) if isinstance(col, (pa.Array, pa.ChunkedArray))
                         else "list" if isinstance(col, list) else "array")
                        for name, col in columns.items()))


def _running_max(t: np.ndarray, part: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running maximum of ``t`` within each part (parts start at ``starts``)."""
    low = int(t.min())
    span = int(t.max()) - low + 1
    if span * (starts.size + 1) < 1 << 62:  # parts stacked in disjoint ranges: one scan
        lift = part * span
        return np.maximum.accumulate(t - low + lift) - lift + low
    ends = [*starts.tolist()[1:], t.size]
    return np.concatenate([np.maximum.accumulate(t[a:b])
                           for a, b in zip(starts.tolist(), ends, strict=True)])


def _drop_empty(state: ServiceState) -> None:
    """Forget rule states without series (their windows hold nothing)."""
    for name in [n for n, rs in state.rules.items() if not rs.keys]:
        del state.rules[name]


def _ordered(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.time, d.detector, d.service, d.host, d.id))
