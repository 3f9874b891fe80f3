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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import absence, machine
from detectors.closing import evaluate, next_until, prune
from detectors.columns import Batch
from detectors.emit import build
from detectors.rules import Rule, RuleSet
from detectors.selectors import Selector
from detectors.state import NO_TIME, RuleState, ServiceState
from detectors.windows import record_items
from pipeline.events.detection import Detection


@dataclass(frozen=True)
class ProcessStats:
    """What one :meth:`RuleEngine.process` call saw: records, late records, watermark."""

    signal: str
    records: int
    late: int  # records older than the watermark when they arrived (not in any window)
    late_by_rule: dict[str, int] = field(default_factory=dict)  # late records a rule selected
    watermark: int = NO_TIME  # the signal's watermark after the batch (epoch ms)


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
        masks: dict[Selector, np.ndarray] = {}

        def mask(sel: Selector) -> np.ndarray:
            if sel not in masks:
                masks[sel] = sel.mask(batch)
            return masks[sel]

        out: list[Detection] = []
        late_by_rule: dict[str, int] = {}
        for rule in self._by_signal[signal]:
            selected = mask(rule.select)
            num = den = None
            if rule.kind == "ratio":
                assert rule.numerator is not None and rule.denominator is not None
                num, den = mask(rule.numerator), mask(rule.denominator)
                selected = selected & (num | den)
            elif rule.capacity_select is not None:  # the limit's rows, the usage's rows
                num = mask(rule.capacity_select)
                den = ~num
            scale = None
            if rule.converts:  # each record's value in the rule's unit
                scale = batch.unit_factors(rule.series_unit)
                selected = selected & ~np.isnan(scale)  # another dimension: not comparable
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
                    rs.series, rule.for_ms, sids, t[rows], wm_before[rows]))
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
        out = [build(rule, version, state.service, rs.keys[ev.series[i]], kind,
                     int(ev.time[i]), int(ev.start[i]), int(ev.time[i]),
                     float(ev.value[i]), int(ev.samples[i]), int(fired),
                     math.nan if usual is None else float(usual[i]), bool(since_start))
               for i, kind, fired, since_start in zip(
                   changes.rows.tolist(), changes.kind.tolist(), changes.fired_at.tolist(),
                   pre, strict=True)]
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


def _drop_empty(state: ServiceState) -> None:
    """Forget rule states without series (their windows hold nothing)."""
    for name in [n for n, rs in state.rules.items() if not rs.keys]:
        del state.rules[name]


def _ordered(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.time, d.detector, d.service, d.host, d.id))
