"""Which windows close, and their values: from a rule's items to evaluations.

Windows close when the watermark passes their end. For tumbling and hopping windows the
evaluated ends are every window holding data plus the first empty window after a run of
data (an empty count window is 0 and resolves; an empty mean window is "no data").
Evaluations come back sorted by series, then time, ready for :mod:`detectors.machine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.rules import PERCENTILES, Rule
from detectors.windows import HOUR_MS, KEY_BITS, Items, stat_columns, step_of


@dataclass
class Evaluations:
    """One row per (series, closed window), sorted by series then time."""

    series: np.ndarray  # int64
    time: np.ndarray  # int64: window end (when the window decided)
    start: np.ndarray  # int64: window start
    value: np.ndarray  # float64, NaN = no data
    samples: np.ndarray  # int64: records in the window (denominator records for ratios)
    events: np.ndarray | None = None  # float64: the numerator's total (ratio rules)

    def __len__(self) -> int:
        return int(self.series.size)


def _ragged_range(a: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(a[i], a[i] + lengths[i])``."""
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(a, lengths) + (np.arange(total) - offsets)


def closing(rule: Rule, items: Items, until: int, watermark: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(series, window end ms) of windows to evaluate now, sorted."""
    assert rule.window is not None
    if not len(items) or watermark <= until:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s, k = items.series, items.key
    if rule.window.type == "sliding":
        size = rule.window.size_ms
        cand_s = np.concatenate([s, s])
        cand_t = np.concatenate([k, k + size])
        ok = (cand_t >= until) & (cand_t < watermark)
        c = np.unique((cand_s[ok] << KEY_BITS) | cand_t[ok])
        return c >> KEY_BITS, c & ((1 << KEY_BITS) - 1)
    step, m = rule.window.step_ms, rule.window.panes
    lo_u, hi_u = until // step, watermark // step
    new_run = np.ones(s.size, dtype=bool)
    new_run[1:] = (s[1:] != s[:-1]) | (k[1:] - k[:-1] > m + 1)
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], s.size) - 1
    a = np.maximum(k[starts] + 1, lo_u + 1)
    b = np.minimum(k[ends] + m + 1, hi_u)
    lengths = np.maximum(b - a + 1, 0)
    return np.repeat(s[starts], lengths), _ragged_range(a, lengths) * step


def evaluate(rule: Rule, items: Items, until: int, watermark: int) -> Evaluations:
    """Values of every window that closes between ``until`` and ``watermark``."""
    assert rule.window is not None
    series, end = closing(rule, items, until, watermark)
    size = rule.window.size_ms
    if rule.window.type == "sliding":
        lo_key, hi_key, start = end - size + 1, end + 1, end - size
    else:
        step = rule.window.step_ms
        lo_key, hi_key, start = end // step - rule.window.panes, end // step, end - size
    c = items.composite()
    lo = np.searchsorted(c, (series << KEY_BITS) | lo_key, side="left")
    hi = np.searchsorted(c, (series << KEY_BITS) | hi_key, side="left")
    value, samples, events = window_values(rule, items, lo, hi, end)
    return Evaluations(series, end, start, value, samples, events)


def window_values(rule: Rule, items: Items, lo: np.ndarray, hi: np.ndarray,
                  end: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Aggregated value, record count and (ratio rules) numerator total of the item
    ranges ``[lo, hi)``; ``end`` (ms) is where each window ends (exhaustion rules project
    from it)."""
    assert rule.window is not None
    cols = stat_columns(rule)
    col = {name: j for j, name in enumerate(cols)}
    stats = items.stats
    agg = rule.aggregation

    def total(values: np.ndarray) -> np.ndarray:
        prefix = np.concatenate([[0.0], np.cumsum(values)])
        return prefix[hi] - prefix[lo]

    n = np.rint(total(stats[:, 0])) if len(items) else np.zeros(lo.size)
    empty = hi <= lo
    num = None
    with np.errstate(invalid="ignore", divide="ignore"):
        if not len(items):
            value = np.zeros(lo.size) if rule.zero_filled else np.full(lo.size, np.nan)
        elif rule.kind == "ratio":
            num = total(stats[:, col["ns"] if agg == "sum" else col["nn"]])
            den = total(stats[:, col["sum"]]) if agg == "sum" else n
            value = np.where((n >= rule.min_samples) & (den != 0), num / den, np.nan)
        elif rule.kind == "trend":
            value = _trend(rule, items, lo, hi, n)
        elif rule.kind == "exhaustion":
            assert end is not None, "exhaustion rules project from the window's end"
            value = _exhaustion(rule, items, lo, hi, n, end)
        elif agg == "count":
            value = n
        elif agg in ("sum", "rate"):
            value = total(stats[:, col["sum"]])
            if agg == "rate":
                value = value / (rule.window.size_ms / 1000.0)
        elif agg == "mean":
            value = total(stats[:, col["sum"]]) / n
        elif agg in ("min", "max"):
            ufunc = np.minimum if agg == "min" else np.maximum
            padded = np.append(stats[:, col[agg]], 0.0)
            pairs = np.column_stack([lo, hi]).ravel()
            value = ufunc.reduceat(padded, pairs)[::2] if pairs.size else np.zeros(0)
        elif agg == "last":
            value = stats[np.maximum(hi - 1, 0), col["lv"]]
        else:
            value = _percentiles(items, lo, hi, PERCENTILES[agg])
    if not rule.zero_filled and rule.kind != "ratio":
        value = np.where(empty | (n < rule.min_samples), np.nan, value)
    return value, n.astype(np.int64), num


# aggregations whose value over one step compares with the window's condition as it is
# (a mean, a ratio, a percentile, an extreme); a count or a sum scales with the window
INTENSIVE = ("mean", "min", "max", "last", *PERCENTILES)


def latest_step(rule: Rule, items: Items, series: np.ndarray, end: np.ndarray
                ) -> np.ndarray | None:
    """The value of the last step (pane) alone of each hopping window of ``series``
    ending at ``end``: how the series stands now, while the window still holds the
    trouble of up to a window ago. None for rules where one step says nothing on its
    own: sliding or single-pane windows, trends and exhaustion fits, counts and sums."""
    assert rule.window is not None
    if (rule.window.type == "sliding" or rule.window.panes < 2
            or rule.kind not in ("threshold", "ratio")
            or (rule.kind == "threshold" and rule.aggregation not in INTENSIVE)):
        return None
    c = items.composite()
    key = end // rule.window.step_ms
    lo = np.searchsorted(c, (series << KEY_BITS) | (key - 1), side="left")
    hi = np.searchsorted(c, (series << KEY_BITS) | key, side="left")
    return window_values(rule, items, lo, hi, end)[0]


@dataclass
class Fit:
    """Least-squares line of each window: hours from ``origin_ms`` against value."""

    ok: np.ndarray  # bool: enough points spread over time for a line
    good: np.ndarray  # bool: the line explains at least ``min_fit`` of the variance
    slope: np.ndarray  # per hour
    mean: np.ndarray  # mean value
    x_mean: np.ndarray  # mean time (hours from origin_ms)
    x_var: np.ndarray  # variance of the times (hours²)
    origin_ms: float


def _fit(rule: Rule, items: Items, lo: np.ndarray, hi: np.ndarray, n: np.ndarray) -> Fit:
    """The least-squares line of each item range ``[lo, hi)`` from the items' moments."""
    st = items.stats
    cnt, sv, sx, sxx, sxv, svv = (st[:, j] for j in range(6))
    anchor = items.key * step_of(rule)
    origin = float(anchor.min()) if anchor.size else 0.0
    d = (anchor - origin) / HOUR_MS  # shift every item to one common origin
    gx = sx + d * cnt
    gxx = sxx + 2 * d * sx + d * d * cnt
    gxv = sxv + d * sv

    def total(values: np.ndarray) -> np.ndarray:
        prefix = np.concatenate([[0.0], np.cumsum(values)])
        return prefix[hi] - prefix[lo]

    tx, txx, txv, tv = total(gx), total(gxx), total(gxv), total(sv)
    var = n * txx - tx * tx
    cov = n * txv - tx * tv
    ok = (n >= max(3, rule.min_samples)) & (var > 1e-9 * n * n)
    good = ok
    if rule.min_fit > 0:
        var_v = n * total(svv) - tv * tv
        good = ok & (cov * cov >= rule.min_fit * var * np.maximum(var_v, 0))
    return Fit(ok, good, cov / var, tv / n, tx / n, var / (n * n), origin)


def _trend(rule: Rule, items: Items, lo: np.ndarray, hi: np.ndarray,
           n: np.ndarray) -> np.ndarray:
    """Least-squares slope per hour relative to the window mean; 0 (no trend) when the
    line explains less than ``min_fit`` of the variance (a step is not a trend). Points
    must span half the window, as for :func:`_exhaustion`."""
    f = _fit(rule, items, lo, hi, n)
    value = np.where(f.good, f.slope / np.abs(f.mean), 0.0)
    return np.where(f.ok & _spread(rule, f) & (f.mean != 0), value, np.nan)


def _spread(rule: Rule, f: Fit) -> np.ndarray:
    """Whether each window's points span at least half the window: the variance of their
    times at least that of a half window filled evenly. A line through the first minutes
    of a window whose series went silent is stale, and short stretches of noise are
    steep."""
    assert rule.window is not None
    half_h = rule.window.size_ms / HOUR_MS / 2
    return f.x_var >= half_h * half_h / 12 * (1 - 1e-9)


def _exhaustion(rule: Rule, items: Items, lo: np.ndarray, hi: np.ndarray, n: np.ndarray,
                end: np.ndarray) -> np.ndarray:
    """Hours until the least-squares line reaches the capacity, from the window's end.

    The capacity is the rule's fixed level or the mean of the limit's rows in the
    window (no limit rows: no data). A line that does not rise, or explains less than
    ``min_fit`` of the variance, never gets there (``inf``); a rising line already past
    the capacity is 0. Points must span at least half the window (:func:`_spread`).
    """
    f = _fit(rule, items, lo, hi, n)
    spread = _spread(rule, f)
    if rule.capacity_select is None:
        capacity = np.full(lo.size, rule.capacity)
    else:
        prefix_n = np.concatenate([[0.0], np.cumsum(items.stats[:, 6])])
        prefix_s = np.concatenate([[0.0], np.cumsum(items.stats[:, 7])])
        count = prefix_n[hi] - prefix_n[lo]
        capacity = np.where(count > 0, (prefix_s[hi] - prefix_s[lo]) / count, np.nan)
    x_end = (end - f.origin_ms) / HOUR_MS
    level = f.mean + f.slope * (x_end - f.x_mean)  # the line at the window's end
    rising = f.good & (f.slope > 0)
    hours = np.where(rising, np.maximum(capacity - level, 0.0) / f.slope, np.inf)
    return np.where(f.ok & spread & ~np.isnan(capacity), hours, np.nan)


def _percentiles(items: Items, lo: np.ndarray, hi: np.ndarray, q: float) -> np.ndarray:
    """Weighted quantile of the summary points of each item range (a loop: the exception)."""
    assert items.qn is not None and items.qv is not None and items.qw is not None
    offsets = np.concatenate([[0], np.cumsum(items.qn)])
    out = np.full(lo.size, np.nan)
    for i, (a, b) in enumerate(zip(offsets[lo].tolist(), offsets[hi].tolist(), strict=True)):
        if b <= a:
            continue
        v, w = items.qv[a:b], items.qw[a:b]
        o = np.argsort(v, kind="stable")
        cw = np.cumsum(w[o])
        pos = int(np.searchsorted(cw, q * cw[-1], side="left"))
        out[i] = v[o][min(pos, v.size - 1)]
    return out


def next_until(rule: Rule, until: int, watermark: int) -> int:
    """What has been evaluated after closing windows up to ``watermark``."""
    assert rule.window is not None
    if rule.window.type == "sliding":
        return max(until, watermark)
    step = rule.window.step_ms
    return max(until, watermark // step * step)


def prune(rule: Rule, items: Items, until: int) -> Items:
    """Drop items no window still to be evaluated needs."""
    assert rule.window is not None
    if not len(items):
        return items
    if rule.window.type == "sliding":
        keep = items.key + rule.window.size_ms >= until
    else:
        keep = items.key + rule.window.panes + 1 > until // rule.window.step_ms
    return items if keep.all() else items.take(keep)
