"""Window aggregation in event time, vectorised with numpy across series and windows.

A rule keeps *items*: partial aggregates per (series, key), sorted by series then key.
For tumbling and hopping windows the key is the pane (``time // step``) and a window is
``size / step`` consecutive panes; for sliding windows the key is the record's event
time and a window ``(t - size, t]`` is evaluated at every record time and at every time
a record leaves the window (so a burst that ends resolves). Window values come from
prefix sums (count, sum, least-squares moments), ``reduceat`` (min, max) or merged quantile
summaries (p50/p95/p99: at most :data:`Q_POINTS` weighted points per pane).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.rules import FITTED, PERCENTILES, Rule

HOUR_MS = 3_600_000.0
Q_POINTS = 32
KEY_BITS = 44  # composite sort key: series << 44 | key (event times up to year 2527)
MERGE = {"n": "add", "sum": "add", "nn": "add", "ns": "add", "sv": "add", "sx": "add",
         "sxx": "add", "sxv": "add", "svv": "add", "cn": "add", "cs": "add", "min": "min",
         "max": "max", "lt": "max", "lv": "last"}


def stat_columns(rule: Rule) -> tuple[str, ...]:
    """The partial aggregates a rule's items carry (``n`` = records first)."""
    agg = rule.aggregation
    if rule.kind == "ratio":
        return ("n", "sum", "nn", "ns")
    if rule.kind == "trend":
        return ("n", "sv", "sx", "sxx", "sxv", "svv")
    if rule.kind == "exhaustion":  # the fit over usage rows, then the limit's rows
        return ("n", "sv", "sx", "sxx", "sxv", "svv", "cn", "cs")
    return {"count": ("n",), "min": ("n", "min"), "max": ("n", "max"),
            "last": ("n", "lt", "lv")}.get(agg, ("n",) if agg in PERCENTILES else ("n", "sum"))


@dataclass
class Items:
    """Partial aggregates of one rule per (series, key), sorted by (series, key)."""

    series: np.ndarray  # int64
    key: np.ndarray  # int64: pane number, or event time (ms) for sliding windows
    stats: np.ndarray  # float64, (items, columns)
    qn: np.ndarray | None = None  # quantile summary points per item (percentile rules)
    qv: np.ndarray | None = None  # their values, item after item
    qw: np.ndarray | None = None  # and weights

    def __len__(self) -> int:
        return int(self.series.size)

    @classmethod
    def empty(cls, rule: Rule) -> Items:
        """No items, shaped for ``rule``."""
        q = rule.aggregation in PERCENTILES
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros((0, len(stat_columns(rule)))),
                   np.zeros(0, np.int64) if q else None, np.zeros(0) if q else None,
                   np.zeros(0) if q else None)

    def composite(self) -> np.ndarray:
        """The sort key ``series << KEY_BITS | key``."""
        return (self.series << KEY_BITS) | self.key

    def take(self, keep: np.ndarray) -> Items:
        """The items where ``keep`` is true (order kept)."""
        if self.qn is None:
            return Items(self.series[keep], self.key[keep], self.stats[keep])
        points = np.repeat(keep, self.qn)
        return Items(self.series[keep], self.key[keep], self.stats[keep], self.qn[keep],
                     self.qv[points], self.qw[points])  # type: ignore[index]


def step_of(rule: Rule) -> int:
    """Key unit in ms: the window step, or 1 ms for sliding windows."""
    assert rule.window is not None
    return rule.window.step_ms or 1


def record_items(rule: Rule, series: np.ndarray, t: np.ndarray, v: np.ndarray,
                 num: np.ndarray | None = None, den: np.ndarray | None = None,
                 stored: Items | None = None) -> Items:
    """Items from selected records (``num``/``den``: ratio membership), merged with
    ``stored`` items when given, grouped."""
    items = raw_items(rule, series, t, v, num, den)
    if stored is not None and len(stored):
        return merge(rule, stored, items)
    return group(rule, items)


def raw_items(rule: Rule, series: np.ndarray, t: np.ndarray, v: np.ndarray,
              num: np.ndarray | None = None, den: np.ndarray | None = None) -> Items:
    """One item per selected record, not grouped (see :func:`record_items`)."""
    step = step_of(rule)
    key = t // step
    cols = stat_columns(rule)
    stats = np.empty((t.size, len(cols)))
    nd = den.astype(np.float64) if den is not None else 1.0
    nn = num.astype(np.float64) if num is not None else 0.0
    x = (t - key * step) / HOUR_MS if rule.kind in FITTED else 0.0
    source = {"n": lambda: nd, "sum": lambda: v * nd, "nn": lambda: nn, "ns": lambda: v * nn,
              "sv": lambda: v * nd, "sx": lambda: x * nd, "sxx": lambda: x * x * nd,
              "sxv": lambda: x * v * nd, "svv": lambda: v * v * nd, "cn": lambda: nn,
              "cs": lambda: v * nn, "min": lambda: v, "max": lambda: v, "lt": lambda: t,
              "lv": lambda: v}
    for j, name in enumerate(cols):
        stats[:, j] = source[name]()
    items = Items(series.astype(np.int64), key.astype(np.int64), stats)
    if rule.aggregation in PERCENTILES:
        items.qn, items.qv, items.qw = np.ones(t.size, np.int64), v.copy(), np.ones(t.size)
    return items


def concat(parts: list[Items]) -> Items:
    """Items one after the other (not grouped); ``parts`` is not empty."""
    q = parts[0].qn is not None
    return Items(np.concatenate([p.series for p in parts]),
                 np.concatenate([p.key for p in parts]),
                 np.concatenate([p.stats for p in parts]),
                 np.concatenate([p.qn for p in parts]) if q else None,  # type: ignore[misc]
                 np.concatenate([p.qv for p in parts]) if q else None,  # type: ignore[misc]
                 np.concatenate([p.qw for p in parts]) if q else None)  # type: ignore[misc]


def split(items: Items, bounds: np.ndarray) -> list[Items]:
    """Sorted items cut at series ``bounds`` (ascending; part ``i`` holds the series in
    ``[bounds[i], bounds[i + 1])``, renumbered from 0)."""
    cuts = np.searchsorted(items.series, bounds).tolist()
    points = None if items.qn is None else np.concatenate([[0], np.cumsum(items.qn)])
    out = []
    for i in range(len(cuts) - 1):
        a, b = cuts[i], cuts[i + 1]
        part = Items(items.series[a:b] - bounds[i], items.key[a:b], items.stats[a:b])
        if points is not None:
            pa, pb = int(points[a]), int(points[b])
            part.qn = items.qn[a:b]  # type: ignore[index]
            part.qv, part.qw = items.qv[pa:pb], items.qw[pa:pb]  # type: ignore[index]
        out.append(part)
    return out


def merge(rule: Rule, a: Items, b: Items) -> Items:
    """Stored items plus new (possibly ungrouped) ones, grouped."""
    if not len(b):
        return a
    if not len(a):
        return group(rule, b)
    q = a.qn is not None
    both = Items(np.concatenate([a.series, b.series]), np.concatenate([a.key, b.key]),
                 np.concatenate([a.stats, b.stats]),
                 np.concatenate([a.qn, b.qn]) if q else None,  # type: ignore[list-item]
                 np.concatenate([a.qv, b.qv]) if q else None,  # type: ignore[list-item]
                 np.concatenate([a.qw, b.qw]) if q else None)  # type: ignore[list-item]
    return group(rule, both)


def group(rule: Rule, items: Items) -> Items:
    """Merge items with the same (series, key); the result is sorted."""
    if not len(items):
        return items
    cols = stat_columns(rule)
    c = items.composite()
    if "lt" in cols:
        order = np.lexsort((items.stats[:, cols.index("lt")], c))
    else:
        order = np.argsort(c, kind="stable")
    c = c[order]
    first = np.empty(c.size, dtype=bool)
    first[0] = True
    np.not_equal(c[1:], c[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    if starts.size == c.size and np.array_equal(order, np.arange(c.size)):
        return items
    ends = np.append(starts[1:], c.size)
    stats = items.stats[order]
    out = np.empty((starts.size, len(cols)))
    for j, name in enumerate(cols):
        op = MERGE[name]
        if op == "add":
            out[:, j] = np.add.reduceat(stats[:, j], starts)
        elif op == "min":
            out[:, j] = np.minimum.reduceat(stats[:, j], starts)
        elif op == "max":
            out[:, j] = np.maximum.reduceat(stats[:, j], starts)
        else:
            out[:, j] = stats[ends - 1, j]
    merged = Items(items.series[order][starts], items.key[order][starts], out)
    if items.qn is not None:
        merged.qn, merged.qv, merged.qw = _merge_summaries(items, order, first)
    return merged


def _merge_summaries(items: Items, order: np.ndarray, first: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the quantile points of merged items; compress groups > Q_POINTS."""
    qn, qv, qw = items.qn, items.qv, items.qw
    assert qn is not None and qv is not None and qw is not None
    offsets = np.concatenate([[0], np.cumsum(qn)])
    counts = qn[order]
    starts = np.repeat(offsets[:-1][order], counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = starts + within
    gid = np.repeat(np.cumsum(first) - 1, counts)
    vals, w = qv[idx], qw[idx]
    o = np.lexsort((vals, gid))
    vals, w, gid = vals[o], w[o], gid[o]
    ngroups = int(first.sum())
    size = np.bincount(gid, minlength=ngroups)
    big = size > Q_POINTS
    if not big.any():
        return size.astype(np.int64), vals, w
    gstart = np.cumsum(size) - size
    total = np.bincount(gid, weights=w, minlength=ngroups)
    bg = np.flatnonzero(big)
    pos = (gstart[bg, None] + _within_targets(w, gstart[bg], size[bg], total[bg])).ravel()
    keep = ~big[gid]
    all_gid = np.concatenate([gid[keep], np.repeat(bg, Q_POINTS)])
    all_v = np.concatenate([vals[keep], vals[pos]])
    all_w = np.concatenate([w[keep], np.repeat(total[bg] / Q_POINTS, Q_POINTS)])
    o = np.argsort(all_gid, kind="stable")
    return np.bincount(all_gid, minlength=ngroups).astype(np.int64), all_v[o], all_w[o]


def _within_targets(w: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
                    totals: np.ndarray) -> np.ndarray:
    """Per group (``w[starts[g]:starts[g] + sizes[g]]``), the positions within it of the
    :data:`Q_POINTS` weight quantiles. Each group's cumulative weights are summed from
    its own first point, so a group's summary does not depend on the groups before it
    (one service's items merged alone or with other services' give the same bits)."""
    targets = totals[:, None] * (np.arange(Q_POINTS) + 0.5) / Q_POINTS
    width = int(sizes.max())
    if sizes.size * width * Q_POINTS > 1 << 22:  # a few large groups: one at a time
        pos = np.empty((sizes.size, Q_POINTS), dtype=np.int64)
        for g, (a, n) in enumerate(zip(starts.tolist(), sizes.tolist(), strict=True)):
            pos[g] = np.searchsorted(np.cumsum(w[a:a + n]), targets[g], side="left")
        return np.minimum(pos, sizes[:, None] - 1)
    cols = np.arange(width)
    inside = cols[None, :] < sizes[:, None]
    grid = np.zeros((sizes.size, width))
    grid[inside] = w[(starts[:, None] + cols[None, :])[inside]]
    cw = np.cumsum(grid, axis=1)
    cw[~inside] = np.inf
    pos = (cw[:, :, None] < targets[:, None, :]).sum(axis=1)  # points below each target
    return np.minimum(pos, sizes[:, None] - 1)
