"""The firing state machine of a rule over its evaluations, vectorised across series.

Per series: *idle* -> *pending* when the condition holds -> *firing* once it has held for
``for`` (consecutive evaluations) -> *idle* again when the clear condition holds (a value
between clear and condition keeps firing: hysteresis). A window without data resets a
pending series and never clears a firing one. A firing episode whose condition has held
since the series' first evaluation is *pre-existing* (a condition already present when
the detector began watching, not a change it saw). Every row of the evaluations is processed
with numpy: runs of the condition via ``maximum.accumulate`` of run starts, the firing
state as the last non-zero event (+1 armed, -1 clear) per series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.closing import Evaluations
from detectors.rules import Rule

FIRING, RESOLVED, KEEPALIVE = 1, 2, 3


@dataclass
class Changes:
    """Rows of the evaluations that emit a detection, with the firing start of each."""

    rows: np.ndarray  # int64 indices into the evaluations
    kind: np.ndarray  # FIRING, RESOLVED or KEEPALIVE
    fired_at: np.ndarray  # int64: when the firing episode began
    pre: np.ndarray | None = None  # bool: the episode's condition held since the series'
    # first evaluation (a pre-existing condition); None: none is


def _shift(values: np.ndarray, first: np.ndarray, at_start: np.ndarray) -> np.ndarray:
    """Previous row's value within a series; ``at_start`` on each series' first row."""
    out = np.empty_like(values)
    out[1:] = values[:-1]
    out[first] = at_start
    return out


def run(rule: Rule, ev: Evaluations, series: dict[str, np.ndarray], keepalive_ms: int,
        gate: np.ndarray | None = None, also_clear: np.ndarray | None = None,
        began: int = 0) -> Changes:
    """Advance the firing state of the evaluated series; update ``series`` in place.

    ``began`` is the rule's first evaluation of this service (0: unknown): a series first
    evaluated then whose condition has held since fires *pre-existing*.

    ``gate`` (baseline) must hold for the condition to count; ``also_clear`` marks
    evaluations that resolve besides the clear condition (baseline ``clear_ratio``).
    """
    n = len(ev)
    if n == 0:
        return Changes(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))
    assert rule.condition is not None
    s, t = ev.series, ev.time
    rows = np.arange(n)
    cond = rule.condition.holds(ev.value)
    if gate is not None:
        cond &= gate
    firing0 = series["firing"][s] > 0
    since0 = series["since"][s]
    if not cond.any() and not firing0.any() and not (since0 >= 0).any():
        return Changes(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))
    clear = rule.clear_condition.holds(ev.value)
    if also_clear is not None:
        clear |= also_clear
    clear &= ~cond
    first = np.ones(n, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    seg_start = np.maximum.accumulate(np.where(first, rows, 0))
    fired0, emitted0 = series["fired"][s], series["emitted"][s]

    # runs of the condition; a run at a series' first row continues a pending run
    new_run = cond & ~_shift(cond, first, np.zeros(int(first.sum()), dtype=bool))
    run_start = np.maximum.accumulate(np.where(new_run, rows, 0))
    run_t = t[run_start]
    carried = cond & (run_start == seg_start) & (since0 >= 0)
    run_t = np.where(carried, np.minimum(since0, run_t), run_t)
    armed = cond & (t - run_t >= rule.for_ms)

    # firing state: the last +1 (armed) / -1 (clear) event of the series so far
    event = np.where(armed, 1, np.where(clear, -1, 0))
    last_event = np.maximum.accumulate(np.where(event != 0, rows, -1))
    known = last_event >= seg_start
    fs = np.where(known, event[np.maximum(last_event, 0)] > 0, firing0)
    prev_fs = _shift(fs, first, firing0[first])
    fire = fs & ~prev_fs
    resolve = ~fs & prev_fs

    last_fire = np.maximum.accumulate(np.where(fire, rows, -1))
    fired_at = np.where(last_fire >= seg_start, t[np.maximum(last_fire, 0)], fired0)
    # pre-existing: the run that armed the episode began at the series' first evaluation,
    # which was the rule's first (a series met later appeared in a running system)
    born0 = series["born"][s]
    born = np.where(born0 >= 0, born0, t[seg_start])
    pre_fire = fire & (run_t <= born) & (born == began) & (began > 0)
    pre = np.where(last_fire >= seg_start, pre_fire[np.maximum(last_fire, 0)],
                   series["pre"][s] > 0)
    keep = np.zeros(n, dtype=bool)
    if keepalive_ms > 0:
        k = (t - fired_at) // keepalive_ms
        prev_k = _shift(k, first, ((emitted0 - fired0) // keepalive_ms)[first])
        # a keep-alive re-confirms the alarm on data: a window without any (its series
        # gone quiet) confirms nothing, and the alarm ages out of the correlator's view
        keep = fs & prev_fs & (k > prev_k) & ~np.isnan(ev.value)

    emitted = np.maximum.accumulate(np.where(fire | keep, rows, -1))
    last = np.append(np.flatnonzero(first)[1:], n) - 1
    ids = s[last]
    series["firing"][ids] = fs[last]
    series["since"][ids] = np.where(cond[last] & ~fs[last], run_t[last], -1)
    series["fired"][ids] = np.where(fs[last], fired_at[last], -1)
    series["born"][ids] = born[last]
    series["pre"][ids] = fs[last] & pre[last]
    series["emitted"][ids] = np.where(emitted[last] >= seg_start[last],
                                      t[np.maximum(emitted[last], 0)], emitted0[last])
    out = np.flatnonzero(fire | resolve | keep)
    kind = np.where(fire[out], FIRING, np.where(resolve[out], RESOLVED, KEEPALIVE))
    return Changes(out, kind.astype(np.int8), fired_at[out], pre[out])


def baseline_gate(rule: Rule, ev: Evaluations, series: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The baseline gate per evaluation and the usual level it saw; updates ``series``.

    The usual level is a time-decayed mean (half-life ``halflife``) of the values of
    windows where the rule's condition did not hold, so an incident does not become the
    new normal. Sequential per series by nature: a loop over evaluations (the exception).
    """
    b = rule.baseline
    assert b is not None and rule.condition is not None
    raw = rule.condition.holds(ev.value)
    gate = np.zeros(len(ev), dtype=bool)
    usual_seen = np.full(len(ev), np.nan)
    bsum, bweight, btime, bstart = (series[k] for k in ("bsum", "bweight", "btime",
                                                         "bstart"))
    values, times = ev.value.tolist(), ev.time.tolist()
    for i, (sid, t, v, hit) in enumerate(zip(ev.series.tolist(), times, values,
                                             raw.tolist(), strict=True)):
        usual = bsum[sid] / bweight[sid] if bweight[sid] > 0 else float("nan")
        usual_seen[i] = usual
        ok = bstart[sid] >= 0 and t - bstart[sid] >= b.warmup_ms and usual == usual
        if ok and b.level is not None:
            ok = bool(b.level.holds(usual))
        if ok and b.ratio is not None:
            ok = usual != 0 and bool(b.ratio.holds(v / usual))
        gate[i] = ok
        if v == v and not hit:
            decay = 0.5 ** ((t - btime[sid]) / b.halflife_ms) if btime[sid] >= 0 else 0.0
            bsum[sid] = decay * bsum[sid] + v
            bweight[sid] = decay * bweight[sid] + 1.0
            btime[sid] = t
            if bstart[sid] < 0:
                bstart[sid] = t
    return gate, usual_seen
