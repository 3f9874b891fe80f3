"""Rows of the C wire scanner's data points, built for a whole message at once.

:mod:`pipeline.events.otlp_wire` reads a message (``prep``: its points as packed records,
their buckets, and what is per metric, scope and attribute set) and decides each point's
rows; this module turns those decisions into one chunk of :class:`OtlpRows` columns and
``metric_buckets`` rows, and computes the cumulative histograms' differences, rates and
quantiles (in C, as :mod:`pipeline.events.otlp_series` rounds them) for all points at once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from pipeline.events.otlp_metrics import _GOLDEN, rate_unit
from pipeline.events.otlp_rows import (
    VOCABULARY,
    BucketPart,
    MapRows,
    OtlpRows,
    StringRows,
)
from pipeline.events.otlp_series import QUANTILES, quantile_suffix
from pipeline.events.otlp_series_slots import runs

try:
    from pipeline.events import _otlpwire
except ImportError:  # only called when it was built
    _otlpwire = None

# a row's name and unit: 0 the metric's own, then the derived rows' suffixes
HAS_SUM = 1  # a point record's ``has`` bits (1 sum, 2 min, 4 max)
SUFFIXES = ("", "rate", "count_rate", "sum_rate", *(quantile_suffix(q) for q in QUANTILES))
RATE, COUNT_RATE, SUM_RATE, P50 = 1, 2, 3, 4


class Differences(NamedTuple):
    """Cumulative histogram points with buckets since their previous point (ascending):
    their intervals, lowest and highest bucket edges, and the differences of counts
    (``counts[starts[k]:]`` for point k)."""

    points: np.ndarray
    seconds: np.ndarray
    lower0: np.ndarray
    top: np.ndarray
    counts: np.ndarray
    starts: np.ndarray


class ExponentialBuckets(NamedTuple):
    """Exponential histogram points with observations (ascending): their intervals, and
    their buckets' lower and upper edges and counts, one point's after another (point k's
    from ``starts[k]``)."""

    points: np.ndarray
    seconds: np.ndarray
    starts: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray


class Picked:
    """Some records of a structured array (``records[index]``), read field by field:
    numpy copies whole records of a structured dtype slowly, one field is a plain take."""

    def __init__(self, records: np.ndarray, index: Any) -> None:
        self.records = records
        self.index = index
        self._fields: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        values = self._fields.get(name)
        if values is None:
            values = self._fields[name] = self.records[name][self.index]
        return values

    def __len__(self) -> int:
        return len(self.index)

    def where(self, mask: np.ndarray) -> Picked:
        """The records where ``mask`` is true."""
        return Picked(self.records, np.asarray(self.index)[mask])


class Since(NamedTuple):
    """Cumulative histogram points (ascending) with the previous point of their series:
    its start, time, count, whether it had a sum, the sum (NaN: none), and its bucket
    counts (one point's after another)."""

    points: np.ndarray
    start: np.ndarray
    time: np.ndarray
    count: np.ndarray
    has_total: np.ndarray
    total: np.ndarray
    counts: np.ndarray


class RowPlan:
    """The message's rows before ordering: (point, sub-row, name code, value) each."""

    def __init__(self) -> None:
        self.point: list[np.ndarray] = []
        self.sub: list[np.ndarray] = []
        self.code: list[np.ndarray] = []
        self.value: list[np.ndarray] = []

    def add(self, point: Any, sub: Any, code: Any, value: Any) -> None:
        """Rows of these points: sub-row numbers and name codes (arrays or one each)."""
        n = len(point)
        self.point.append(np.asarray(point, dtype=np.int64))
        self.sub.append(np.broadcast_to(np.asarray(sub, dtype=np.int64), n))
        self.code.append(np.broadcast_to(np.asarray(code, dtype=np.int64), n))
        self.value.append(np.asarray(value, dtype=np.float64))

    def ordered(self) -> tuple[np.ndarray, ...]:
        """(point, sub, code, value) of every row, point by point, each point's in order."""
        point, sub, code, value = (np.concatenate(parts) for parts in
                                   (self.point, self.sub, self.code, self.value))
        rows_per_point = int(sub.max()) + 1 if len(sub) else 1  # summaries: maybe many
        order = np.argsort(point * rows_per_point + sub, kind="stable")
        return point[order], sub[order], code[order], value[order]


def cumulative_histograms(prep: Any, since: Since, out: RowPlan,
                          differences: list[Differences], counters: Any) -> None:
    """Rates and quantiles of cumulative histogram points from their previous points, all
    at once, as :func:`~pipeline.events.otlp_metrics._histogram` computes them one by one."""
    idx, p_start, before, p_count = since.points, since.start, since.time, since.count
    p_has_total, p_total = since.has_total, since.total
    p = Picked(prep.points, idx)
    nc = p["ncounts"].astype(np.int64)
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(nc, out=offsets[1:])
    owner = np.repeat(np.arange(len(idx)), nc)
    j = np.arange(offsets[-1]) - offsets[:-1][owner]
    now = prep.counts[p["counts_off"].astype(np.int64)[owner] + j]
    then = since.counts
    went_down = np.bincount(owner[now < then], minlength=len(idx)) > 0
    start, count, total = p["start"], p["count"], p["sum"]
    reset = went_down | (count < p_count) | ((start != 0) & (start != p_start))
    counters.resets += int(np.count_nonzero(reset))
    d_counts = np.where(reset[owner], now, now - np.where(reset[owner], 0, then))
    d_count = np.where(reset, count, count - np.where(reset, 0, p_count))
    has_total = (p["has"] & HAS_SUM) != 0
    d_has_total = has_total & (reset | p_has_total)
    d_total = np.where(reset, total, total - p_total)
    seconds = (p["time"].astype(np.int64) - before) / 1e9
    positive = seconds > 0
    safe = np.where(positive, seconds, 1.0)
    count_rate = np.where(positive, d_count / safe, np.nan)
    sum_rate = np.where(positive, d_total / safe, np.nan)
    spans = np.stack([offsets[:-1], nc, p["bounds_off"].astype(np.int64),
                      p["nbounds"].astype(np.int64)], axis=1)
    q = np.frombuffer(_otlpwire.quantiles(np.ascontiguousarray(d_counts, dtype=np.uint64),
                                          prep.bounds, np.ascontiguousarray(spans)),
                      np.float64).reshape(-1, 6)
    since_rows(idx, nc, seconds, count_rate, sum_rate, d_has_total, q, d_counts, out,
               differences)


def since_rows(idx: np.ndarray, nc: np.ndarray, seconds: np.ndarray, count_rate: np.ndarray,
               sum_rate: np.ndarray, has_sum: np.ndarray, q: np.ndarray, d_counts: np.ndarray,
               out: RowPlan, differences: list[Differences]) -> None:
    """The rows of cumulative histogram points ``idx`` (ascending) since their previous
    points: count rate, sum rate where ``has_sum``, quantiles where the interval saw
    observations (``q``: lowest edge, top, p50, p95, p99, observations per point), and
    their buckets' differences (``d_counts``, ``nc`` per point) for ``metric_buckets``."""
    out.add(idx, 0, COUNT_RATE, count_rate)
    out.add(idx[has_sum], 1, SUM_RATE, sum_rate[has_sum])
    has_q = q[:, 5] > 0
    first_q = 1 + has_sum.astype(np.int64)
    for k in range(3):
        out.add(idx[has_q], first_q[has_q] + k, P50 + k, q[has_q, 2 + k])
    k = np.flatnonzero(has_q)
    offsets = np.zeros(len(idx), dtype=np.int64)
    if len(idx):
        np.cumsum(nc[:-1], out=offsets[1:])
    n_q = nc[k]
    starts = np.zeros(len(k) + 1, dtype=np.int64)
    np.cumsum(n_q, out=starts[1:])
    q_owner = np.repeat(np.arange(len(k)), n_q)
    q_j = np.arange(starts[-1]) - starts[:-1][q_owner]
    differences.append(Differences(idx[k], seconds[k], q[k, 0], q[k, 1],
                                   d_counts[offsets[k][q_owner] + q_j].astype(np.float64),
                                   starts[:-1]))


def append_rows(prep: Any, message: int, rows: OtlpRows, point: np.ndarray,
                sub: np.ndarray, code: np.ndarray, values: np.ndarray, buckets: np.ndarray,
                intervals: np.ndarray, diff: Differences | None,
                exponential: list[ExponentialBuckets] = ()) -> None:
    """The ordered rows into the batch, as one chunk, with the points' bucket rows
    (``buckets``: explicit histogram points, ascending; ``intervals``: their intervals in
    seconds; ``exponential``: exponential histogram points with their buckets)."""
    pts = prep.points
    names = _table([_derived_names(entry[1]) for entry in prep.metrics])
    units = _table([_derived_units(entry[2]) for entry in prep.metrics])
    if prep.extra_suffixes:  # summaries' quantiles: a name code each, from len(SUFFIXES)
        names = np.concatenate([names, _table([tuple(f"{entry[1]}.{s}" for s in
                                                     prep.extra_suffixes)
                                               for entry in prep.metrics],
                                              len(prep.extra_suffixes))], axis=1)
        units = np.concatenate([units, _table([(entry[2],) * len(prep.extra_suffixes)
                                               for entry in prep.metrics],
                                              len(prep.extra_suffixes))], axis=1)
    scope_of_metric = np.asarray([entry[0] for entry in prep.metrics], dtype=np.int64)
    services = _objects([s[0] for s in prep.scopes])
    hosts = _objects([s[1] for s in prep.scopes])
    attrs = prep.attribute_maps()  # one map per attribute set, taken per row

    # the rows come point by point: read each point's fields once, then repeat them
    firsts = np.flatnonzero(np.diff(point, prepend=-1))
    per_point = Picked(pts, point[firsts])
    repeat = np.diff(np.append(firsts, len(point)))

    def each(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, repeat)

    metric = each(per_point["metric"].astype(np.int64))
    scope = scope_of_metric[metric]
    # where each row's point lies in the message (a rejected row's payload): start << 32 | end
    origins = each((per_point["origin_start"] << 32) | per_point["origin_end"])
    first_row = rows.row_count()
    row_attrs = MapRows(attrs, each(per_point["region"].astype(np.int64)))
    row_names, row_units = names[metric, code], units[metric, code]
    row_services, row_hosts = services[scope], hosts[scope]
    columns = {
        "time": each((per_point["time"] // 1_000_000).astype(np.int64)),
        "service": row_services, "host": row_hosts, "name": row_names,
        "value": values, "unit": row_units, "attributes": row_attrs,
        "event_id": each(per_point["event"]) + sub.astype(np.uint64) * np.uint64(_GOLDEN),
        "message": np.full(len(point), message, dtype=np.int64),
        "ordinal": each(per_point["ordinal"]), "origin": origins,
        # every string the rows can hold (a few per metric and scope): what the checks read
        VOCABULARY: {"service": set(services.tolist()), "host": set(hosts.tolist()),
                     "name": set(names.ravel().tolist()), "unit": set(units.ravel().tolist())}}
    if not len(buckets) and not exponential:
        rows.add_chunk(columns)
        return
    lists = bucket_arrays(prep, buckets, Picked(pts, buckets), diff) if len(buckets) \
        else None
    for part in exponential:  # merged in point order
        more = (np.append(part.starts, len(part.lower)), part.lower, part.upper, part.counts)
        buckets, intervals, lists = (part.points, part.seconds, more) if lists is None \
            else _merge(buckets, intervals, lists, part.points, part.seconds, more)
    b = Picked(pts, buckets)
    at = np.searchsorted(point, buckets) + first_row
    b_metric = b["metric"].astype(np.int64)
    b_scope = scope_of_metric[b_metric]
    rows.add_chunk(columns, BucketPart(
        b["event"], (b["time"] // 1_000_000).astype(np.int64),
        StringRows(services, b_scope), StringRows(hosts, b_scope),
        StringRows(names[:, 0], b_metric), StringRows(units[:, 0], b_metric),
        np.asarray(intervals, np.float64), lists[0].astype(np.int32), *lists[1:],
        MapRows(attrs, np.ascontiguousarray(b["region"], np.int64))), at.tolist())


@lru_cache(maxsize=100_000)
def _derived_names(name: str) -> tuple[str, ...]:
    return (name, *(f"{name}.{s}" for s in SUFFIXES[1:]))


@lru_cache(maxsize=10_000)
def _derived_units(unit: str) -> tuple[str, ...]:
    rate = rate_unit(unit)
    return (unit, rate, "1/s", rate, unit, unit, unit)


def _table(rows: list[tuple[str, ...]], width: int = len(SUFFIXES)) -> np.ndarray:
    """Equal-length tuples of strings as a 2-D object array (empty: zero rows)."""
    out = np.empty((len(rows), width), dtype=object)
    if rows:
        out[:] = rows
    return out


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _merge(points: np.ndarray, intervals: np.ndarray, lists: tuple[np.ndarray, ...],
           more: np.ndarray, more_intervals: np.ndarray, more_lists: tuple[np.ndarray, ...]
           ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Two sets of points (each ascending, disjoint) with their intervals and bucket lists
    (offsets, lower, upper, counts) as one, in point order."""
    merged = np.concatenate([points, more])
    order = np.argsort(merged, kind="stable")
    offsets, more_offsets = lists[0].astype(np.int64), more_lists[0].astype(np.int64)
    lengths = np.concatenate([np.diff(offsets), np.diff(more_offsets)])[order]
    starts = np.concatenate([offsets[:-1], more_offsets[:-1] + offsets[-1]])[order]
    index, _ = runs(starts, lengths)
    new_offsets = np.zeros(len(merged) + 1, np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    return merged[order], np.concatenate([intervals, more_intervals])[order], (
        new_offsets, *(np.concatenate([a, b])[index]
                       for a, b in zip(lists[1:], more_lists[1:], strict=True)))


def bucket_arrays(prep: Any, buckets: np.ndarray, b: Picked, diff: Differences | None
                  ) -> tuple[np.ndarray, ...]:
    """(offsets, lower, upper, counts) of each explicit histogram point's buckets (list
    offsets, then the values one point's after another): bucket j of a point runs from its
    lower (j = 0) or bound j-1, to bound j or its top."""
    lower0, top = b["lower0"].copy(), b["top"].copy()
    counts_from = b["counts_off"].astype(np.int64)
    counts = prep.counts.astype(np.float64)
    if diff is not None:  # cumulative points: their buckets are the differences
        at = np.searchsorted(buckets, diff.points)
        lower0[at], top[at] = diff.lower0, diff.top
        counts_from[at] = len(counts) + diff.starts
        counts = np.concatenate([counts, diff.counts])
    offsets, lower, upper, values = _otlpwire.bucket_lists(
        prep.points, prep.bounds, np.ascontiguousarray(buckets, np.int64),
        np.ascontiguousarray(lower0, np.float64), np.ascontiguousarray(top, np.float64),
        np.ascontiguousarray(counts_from, np.int64), np.ascontiguousarray(counts, np.float64))
    return (np.frombuffer(offsets, np.int32), *(np.frombuffer(data, np.float64)
                                                 for data in (lower, upper, values)))
