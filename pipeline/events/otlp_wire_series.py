"""The cumulative points of one message through the series memory, all at once.

Cumulative monotonic sums become rates, cumulative histograms (explicit or exponential)
differences of buckets and summaries count and sum rates, all against the previous point of
their series (see :class:`~pipeline.events.otlp_series.SeriesMemory`). The protobuf library
path swaps them one by one; :func:`cumulative_points` does the same for a whole message of
the C wire scanner's points over the memory's columns
(:class:`~pipeline.events.otlp_series_slots.SeriesSlots`): sums and summaries with numpy,
histograms in the C extension (``histogram_step``, ``exponential_step``: differences,
rates, quantiles, bucket rows). It gives
exactly what the one-by-one swaps give: the same rows, previous points, counters and least
recently seen order. When that order cannot be kept at once (a series twice in the
message, or new series that would make the memory forget others) it returns False and
:func:`point_by_point` takes the message, as the library path would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.events.otlp_series import SeriesMemory, positive_rate, quantile_suffix
from pipeline.events.otlp_series_slots import (
    EXP_HEADER,
    EXPONENTIAL_COLUMNS,
    HISTOGRAM_COLUMNS,
    SLOT,
    SUM_COLUMNS,
    SUMMARY_COLUMNS,
)
from pipeline.events.otlp_wire_rows import (
    COUNT_RATE,
    HAS_SUM,
    P50,
    RATE,
    SUFFIXES,
    SUM_RATE,
    Differences,
    ExponentialBuckets,
    Picked,
    RowPlan,
    Since,
    cumulative_histograms,
)

try:
    from pipeline.events import _otlpwire
except ImportError:  # only called when it was built
    _otlpwire = None

# a point's plan (see otlp_wire): those through the series memory, and delta exponential
CUMULATIVE_SUM, CUMULATIVE_HISTOGRAM, CUMULATIVE_EXPONENTIAL, SUMMARY = 1, 3, 5, 6
DELTA_EXPONENTIAL = 4
STATEFUL = (CUMULATIVE_SUM, CUMULATIVE_HISTOGRAM, CUMULATIVE_EXPONENTIAL, SUMMARY)
FORMS = {CUMULATIVE_SUM: SUM_COLUMNS, CUMULATIVE_HISTOGRAM: HISTOGRAM_COLUMNS,
         CUMULATIVE_EXPONENTIAL: EXPONENTIAL_COLUMNS, SUMMARY: SUMMARY_COLUMNS}
# a metric's type in a series key, as the library's (WhichOneof)
WHICH = {1: "sum", 2: "histogram", 3: "exponential_histogram", 4: "summary"}
# what the C extension's histogram_step gives: rows, and buckets of points with observations
STEP_ROW = np.dtype([("point", "=i8"), ("sub", "=i8"), ("code", "=i8"), ("value", "=f8")])
STEP_BUCKETS = np.dtype([("point", "=i8"), ("seconds", "=f8"), ("lower0", "=f8"),
                         ("top", "=f8"), ("start", "=i8")])


def cumulative_points(prep: Any, indexes: np.ndarray, kinds: np.ndarray,
                      memory: SeriesMemory, out: RowPlan, differences: list[Differences],
                      exponential: list[ExponentialBuckets]) -> bool:
    """Swap the cumulative points ``indexes`` of ``prep`` (ascending; ``kinds``: plans of
    :data:`STATEFUL`; explicit bucket counts already checked against bounds) into
    ``memory`` at once, and plan their rows. False, having changed nothing the library
    path reads, when it cannot be done at once (then :func:`point_by_point`)."""
    slots = memory.slots
    slots.forget_codes(2 * memory.max_series + 1024)
    if slots.counts.used + slots.bounds.used > slots.compact_at:
        slots.compact()
    sel = Picked(prep.points, indexes)
    metric_of = sel["metric"].astype(np.int64)
    region_of = sel["region"].astype(np.int64)
    metric_ids = np.zeros(len(prep.metrics), np.int64)
    metric_keys: dict[int, tuple] = {}
    for m in np.flatnonzero(np.bincount(metric_of)).tolist():
        scope, name, _, kind = prep.metrics[m][:4]
        metric_keys[m] = (prep.scopes[scope][3], name, WHICH[kind])
        metric_ids[m] = slots.metric_id(metric_keys[m])
    attribute_ids = np.zeros(len(prep.attrs), np.int64)
    for r in np.flatnonzero(np.bincount(region_of)).tolist():
        attribute_ids[r] = slots.attribute_id(prep.attr_sets[r])
    codes = (metric_ids[metric_of] << 32) | attribute_ids[region_of]
    ordered = np.sort(codes)
    if (ordered[1:] == ordered[:-1]).any():
        return False  # a series twice: the second sees the first
    slot = slots.find(codes)
    unknown = np.flatnonzero(slot < 0)
    new_keys = []
    if len(unknown):
        known_at, known_slots = [], []
        for k, m, r in zip(unknown.tolist(), metric_of[unknown].tolist(),
                           region_of[unknown].tolist(), strict=True):
            key = (*metric_keys[m], prep.attr_sets[r])
            s = slots.slot_of.get(key)  # the library path's, or known before by another code
            if s is None:
                new_keys.append((k, key))
            else:
                known_at.append(k)
                known_slots.append(s)
        if len(slots) + len(new_keys) > memory.max_series:
            return False  # new series would make it forget others, one by one
        if known_at:
            slot[known_at] = known_slots
            slots.register(codes[known_at], np.asarray(known_slots, np.int64))
    fresh = slot < 0
    existing = np.flatnonzero(~fresh)
    for k in existing[slots.form[slot[existing]] == 0].tolist():  # kept as tuples
        slots.to_columns(int(slot[k]), FORMS[int(kinds[k])])
    if new_keys:
        at = np.asarray([k for k, _ in new_keys], np.int64)
        slot[at] = [slots.add(key, None) for _, key in new_keys]
        slots.register(codes[at], slot[at])
        memory.counters.seeded += len(new_keys)
    is_sum = kinds == CUMULATIVE_SUM
    if is_sum.any():
        _sums(slots, memory, indexes[is_sum], sel.where(is_sum), slot[is_sum], fresh[is_sum],
              out)
    is_histogram = kinds == CUMULATIVE_HISTOGRAM
    if is_histogram.any():
        _histograms(prep, slots, memory, indexes[is_histogram], slot[is_histogram],
                    fresh[is_histogram], out, differences)
    is_exponential = kinds == CUMULATIVE_EXPONENTIAL
    if is_exponential.any():
        exponential_points(prep, indexes[is_exponential], out, exponential, memory,
                           slot[is_exponential], fresh[is_exponential])
    is_summary = kinds == SUMMARY
    if is_summary.any():
        _summaries(prep, slots, memory, indexes[is_summary], sel.where(is_summary),
                   slot[is_summary], fresh[is_summary], out)
    slots.tick[slot] = slots.clock + np.arange(len(slot))  # seen now, in message order
    slots.clock += len(slot)
    return True


def _sums(slots: Any, memory: SeriesMemory, idx: np.ndarray, p: Picked, s: np.ndarray,
          fresh: np.ndarray, out: RowPlan) -> None:
    """Cumulative sums: rates since their previous points (a reset counts from zero)."""
    late = ~fresh & (p["time"] <= slots.time[s])
    memory.counters.out_of_order += int(np.count_nonzero(late))
    seen = ~fresh & ~late
    value, start, time, sq = p["value"][seen], p["start"][seen], p["time"][seen], s[seen]
    increase = value - slots.value[sq]
    reset = (increase < 0) | ((start != 0) & (start != slots.start[sq]))
    memory.counters.resets += int(np.count_nonzero(reset))
    increase = np.where(reset, value, increase)
    seconds = (time - slots.time[sq]).astype(np.float64) / 1e9
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rates = np.where(seconds > 0, increase / np.where(seconds > 0, seconds, 1.0), np.nan)
    out.add(idx[seen], 0, RATE, rates)
    kept = ~late  # remember the points, not the late ones
    s = s[kept]
    slots.start[s], slots.time[s], slots.value[s] = p["start"][kept], p["time"][kept], \
        p["value"][kept]
    slots.form[s] = SUM_COLUMNS


def _histograms(prep: Any, slots: Any, memory: SeriesMemory, idx: np.ndarray, s: np.ndarray,
                fresh: np.ndarray, out: RowPlan, differences: list[Differences]) -> None:
    """Cumulative histograms: differences since their previous points, in C."""
    p = Picked(prep.points, idx)
    slots.counts.reserve(int(p["ncounts"].sum()))
    slots.bounds.reserve(int(p["nbounds"].sum()))
    rows, buckets, bucket_counts, late, resets, slots.counts.used, slots.bounds.used = \
        _otlpwire.histogram_step(
            prep.points, prep.counts, prep.bounds, np.ascontiguousarray(idx, np.int64),
            np.ascontiguousarray(s, np.int64), fresh.astype(np.uint8), slots.state,
            slots.counts.data, slots.bounds.data, slots.counts.used, slots.bounds.used,
            (COUNT_RATE, SUM_RATE, P50))
    memory.counters.out_of_order += late
    memory.counters.resets += resets
    rows = np.frombuffer(rows, STEP_ROW)
    out.add(rows["point"], rows["sub"], rows["code"], rows["value"])
    buckets = np.frombuffer(buckets, STEP_BUCKETS)
    differences.append(Differences(buckets["point"], buckets["seconds"], buckets["lower0"],
                                   buckets["top"], np.frombuffer(bucket_counts, np.float64),
                                   buckets["start"]))


def exponential_points(prep: Any, idx: np.ndarray, out: RowPlan,
                       exponential: list[ExponentialBuckets],
                       memory: SeriesMemory | None = None, slot: np.ndarray | None = None,
                       fresh: np.ndarray | None = None) -> None:
    """Exponential histogram points ``idx`` (ascending), in C: delta ones (no ``memory``)
    from their own buckets, cumulative ones since the previous points of their series
    (``slot`` in ``memory``; ``fresh``: a new series, the point only seeds it)."""
    if memory is None:  # delta: no series memory read or written
        modes = np.full(len(idx), 2, np.uint8)
        slot, state, pool, used = np.zeros(len(idx), np.int64), np.zeros(0, SLOT), \
            np.zeros(0, np.uint64), 0
    else:
        slots = memory.slots
        modes = fresh.astype(np.uint8)  # 1: seeds, 0: since its previous point
        slots.counts.reserve(int(Picked(prep.points, idx)["ncounts"].sum())
                             + EXP_HEADER * len(idx))
        state, pool, used = slots.state, slots.counts.data, slots.counts.used
    rows, buckets, lower, upper, counts, late, resets, used = _otlpwire.exponential_step(
        prep.points, prep.counts, np.ascontiguousarray(idx, np.int64),
        np.ascontiguousarray(slot, np.int64), modes, state, pool, used,
        (COUNT_RATE, SUM_RATE, P50))
    if memory is not None:
        memory.slots.counts.used = used
        memory.counters.out_of_order += late
        memory.counters.resets += resets
    rows = np.frombuffer(rows, STEP_ROW)
    out.add(rows["point"], rows["sub"], rows["code"], rows["value"])
    buckets = np.frombuffer(buckets, STEP_BUCKETS)
    if len(buckets):
        exponential.append(ExponentialBuckets(
            buckets["point"], buckets["seconds"], buckets["start"],
            np.frombuffer(lower, np.float64), np.frombuffer(upper, np.float64),
            np.frombuffer(counts, np.float64)))


def _summaries(prep: Any, slots: Any, memory: SeriesMemory, idx: np.ndarray, p: Picked,
               s: np.ndarray, fresh: np.ndarray, out: RowPlan) -> None:
    """Summaries: a row per quantile, then count and sum rates since the previous point
    (a count gone down or a new start time: a reset, counted from zero)."""
    n_quantiles = (p["nbounds"] // 2).astype(np.int64)
    summary_quantiles(prep, idx, p["bounds_off"].astype(np.int64), n_quantiles, out)
    late = ~fresh & (p["time"] <= slots.time[s])
    memory.counters.out_of_order += int(np.count_nonzero(late))
    seen = ~fresh & ~late
    sq = s[seen]
    count, total, start = p["count"][seen], p["sum"][seen], p["start"][seen]
    p_count = slots.count[sq]
    reset = (count < p_count) | ((start != 0) & (start != slots.start[sq]))
    memory.counters.resets += int(np.count_nonzero(reset))
    seconds = (p["time"][seen] - slots.time[sq]).astype(np.float64) / 1e9  # newer: > 0
    d_count = count - np.where(reset, np.uint64(0), p_count)
    d_total = total - np.where(reset, 0.0, slots.value[sq])
    at, n_seen = idx[seen], n_quantiles[seen]
    out.add(at, n_seen, COUNT_RATE, d_count / seconds)
    out.add(at, n_seen + 1, SUM_RATE, d_total / seconds)
    kept = ~late  # remember the points, not the late ones
    s = s[kept]
    slots.start[s], slots.time[s], slots.count[s], slots.value[s] = \
        p["start"][kept], p["time"][kept], p["count"][kept], p["sum"][kept]
    slots.form[s] = SUMMARY_COLUMNS


def summary_quantiles(prep: Any, idx: np.ndarray, first: np.ndarray, n: np.ndarray,
                      out: RowPlan) -> None:
    """The quantile rows of summary points ``idx`` (their (quantile, value) pairs from
    ``first`` in ``prep.bounds``, ``n`` each): name codes from ``len(SUFFIXES)`` on, one
    per distinct quantile (by its bits: -0.0 is not 0.0), in ``prep.extra_suffixes``."""
    owner = np.repeat(np.arange(len(idx)), n)
    starts = np.zeros(len(idx), np.int64)
    if len(idx):
        np.cumsum(n[:-1], out=starts[1:])
    j = np.arange(len(owner)) - starts[owner]
    at = first[owner] + 2 * j
    quantiles = prep.bounds[at]
    distinct, code = np.unique(quantiles.view(np.uint64), return_inverse=True)
    prep.extra_suffixes = [quantile_suffix(q) for q in distinct.view(np.float64).tolist()]
    out.add(idx[owner], j, len(SUFFIXES) + code, prep.bounds[at + 1])


def point_by_point(prep: Any, indexes: list[int], kinds: list[int], memory: SeriesMemory,
                   out: RowPlan, differences: list[Differences]) -> None:
    """As :func:`cumulative_points`, one point after another through
    :meth:`SeriesMemory.swap` (as the library path: the order of swaps decides)."""
    pts = prep.points
    sel = Picked(pts, indexes)
    starts, times = sel["start"].tolist(), sel["time"].tolist()
    values, metric_of, region_of = sel["value"].tolist(), sel["metric"].tolist(), \
        sel["region"].tolist()
    rate_points, rate_values = [], []
    since: list[tuple] = []  # cumulative histograms: (point, previous point's fields)
    since_counts: list[int] = []  # and the previous point's bucket counts, one after another
    nc_of = None
    counters = memory.counters
    swap, interned = memory.swap, memory.interned.get
    scopes, metrics, regions = prep.scopes, prep.metrics, prep.region_bytes
    for j, i in enumerate(indexes):
        metric, region = metrics[metric_of[j]], region_of[j]
        _, _, _, scope_key, scope = scopes[metric[0]]
        # the resource and scope as read, the metric's name and type, its attributes
        handle = (scope_key, scope, metric[1], metric[3], regions[region])
        key = interned(handle)
        if key is None:
            key = memory.intern(handle, (scope_key, metric[1], WHICH[metric[3]],
                                         prep.attr_sets[region]))
        start, now = starts[j], times[j]
        if kinds[j] == CUMULATIVE_SUM:
            v = values[j]
            previous = swap(key, (start, now, v))
            if previous is None:
                continue
            p_start, before, last = previous
            increase = v - last
            if increase < 0 or (start and start != p_start):
                counters.resets += 1
                increase = v
            rate_points.append(i)
            rate_values.append(positive_rate(increase, (now - before) / 1e9))
            continue
        if nc_of is None:  # the first cumulative histogram: its columns, once
            nc_of, nb_of = sel["ncounts"].tolist(), sel["nbounds"].tolist()
            c0_of, b0_of = sel["counts_off"].tolist(), sel["bounds_off"].tolist()
            count_of, sum_of = sel["count"].tolist(), sel["sum"].tolist()
            has_of = sel["has"].tolist()
            all_counts, all_bounds = prep.counts.tolist(), prep.bounds.tolist()
        nc, nb = nc_of[j], nb_of[j]
        c0, b0 = c0_of[j], b0_of[j]
        counts, bounds = all_counts[c0:c0 + nc], all_bounds[b0:b0 + nb]
        count = count_of[j]
        total = sum_of[j] if has_of[j] & HAS_SUM else None
        previous = swap(key, (start, now, count, total, counts, bounds))
        if previous is None:
            continue
        p_start, before, p_count, p_total, p_counts, p_bounds = previous
        if p_bounds != bounds or len(p_counts) != len(counts):
            counters.resets += 1
            continue
        since.append((i, p_start, before, p_count, p_total))
        since_counts.extend(p_counts)
    if since:
        cumulative_histograms(prep, Since(
            np.asarray([s[0] for s in since], np.int64),
            np.asarray([s[1] for s in since], np.uint64),
            np.asarray([s[2] for s in since], np.int64),
            np.asarray([s[3] for s in since], np.uint64),
            np.asarray([s[4] is not None for s in since], bool),
            np.asarray([np.nan if s[4] is None else s[4] for s in since], np.float64),
            np.asarray(since_counts, np.uint64)), out, differences, counters)
    out.add(rate_points, 0, RATE, rate_values)
