"""OTLP ``MetricsData`` protobuf into metric rows through the C wire scanner.

The same rows, event ids, rejections and series memory as
:func:`pipeline.events.otlp_metrics.map_metrics` (the protobuf library path), faster: the
C extension ``pipeline.events._otlpwire`` walks the bytes once and returns every gauge,
sum and histogram data point as a packed record (times, value, buckets, the event id
already hashed, the bucket quantiles of a delta histogram); this module adds what is per
resource, scope, metric or attribute set (read with the protobuf library, once each) and
the per-series memory of cumulative points.

:func:`map_metrics_wire` decides before it changes anything: when the scanner cannot
read a message exactly as the protobuf library does (malformed bytes, a non-canonical
encoding, exponential histograms or summaries) it raises :class:`WireFallback` with the
reason, and the caller maps that message with the protobuf library instead.

Which decoder runs is chosen in one place, :func:`metrics_decoder`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import HistogramDataPoint, NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from pipeline.events.otlp_metrics import (
    _GOLDEN,
    DELTA,
    NO_RECORDED_VALUE,
    point_attributes,
    rate_unit,
)
from pipeline.events.otlp_rows import OtlpRows, shared_string_maps
from pipeline.events.otlp_series import (
    QUANTILES,
    SeriesMemory,
    positive_rate,
    quantile_suffix,
)
from pipeline.events.otlp_values import attributes_dict, resource_fields, scope_attributes

try:
    from pipeline.events import _otlpwire
except ImportError:  # built without a C compiler: the protobuf library path only
    _otlpwire = None

DECODERS = ("auto", "c", "python")

POINT = np.dtype([(name, "=u8") for name in ("time", "start", "event", "count", "total")]
                 + [(name, "=f8") for name in ("value", "sum", "min", "max", "lower0", "top",
                                               "q50", "q95", "q99")]
                 + [(name, "=i8") for name in ("ordinal", "origin_start", "origin_end",
                                               "counts_off", "bounds_off")]
                 + [(name, "=i4") for name in ("metric", "region", "ncounts", "nbounds")]
                 + [("flags", "=u4"), ("has", "=u4")])
if _otlpwire is not None and POINT.itemsize != _otlpwire.POINT_SIZE:  # a stale build
    _otlpwire = None
HAS_SUM = 1
GAUGE, SUM, HISTOGRAM = 0, 1, 2
_WHICH = {SUM: "sum", HISTOGRAM: "histogram"}  # the type in a series key, as the library's
# a row's name and unit: 0 the metric's own, then the derived rows' suffixes
SUFFIXES = ("", "rate", "count_rate", "sum_rate", *(quantile_suffix(q) for q in QUANTILES))
RATE, COUNT_RATE, SUM_RATE, P50 = 1, 2, 3, 4


class WireFallback(Exception):
    """The scanner cannot read this message as the protobuf library does (the reason):
    map it with the library. Raised before any row or series memory is changed."""


def metrics_decoder(requested: str | None = None) -> str:
    """The OTLP metrics decoder to use, ``c`` or ``python``, for ``requested`` (setting
    ``ingest.otlp_decoder``): ``auto`` (or None) takes the C scanner when it was built,
    ``c`` insists on it, ``python`` is the protobuf library path."""
    choice = requested or "auto"
    if choice not in DECODERS:
        raise ValueError(f"OTLP decoder {choice!r} is not one of {', '.join(DECODERS)}")
    if choice == "c" and _otlpwire is None:
        raise ValueError("OTLP decoder 'c' asked for, but the C extension "
                         "pipeline.events._otlpwire is not built (pip install -e . with a "
                         "C compiler and the Python headers)")
    if choice == "auto":
        return "c" if _otlpwire is not None else "python"
    return choice


def describe_decoder(decoder: str) -> str:
    """One line for the start-up log: which OTLP metrics decoder runs, and why."""
    if decoder == "c":
        return "OTLP metrics decoder: C wire scanner (pipeline.events._otlpwire)"
    why = "asked for" if _otlpwire is not None else "the C extension is not built"
    return f"OTLP metrics decoder: protobuf library, pure Python ({why})"


class _Prepared:
    """What is per resource, scope, attribute set and metric, read and checked first."""

    def __init__(self, value: bytes) -> None:
        try:
            scanned = _otlpwire.scan_metrics(value)
        except _otlpwire.WireError as exc:
            raise WireFallback(str(exc)) from exc
        resources, scopes, metrics, regions, points, counts, bounds = scanned
        try:
            self._read(resources, scopes, metrics, regions)
        except WireFallback:
            raise
        except Exception as exc:  # DecodeError ...: the library decides what is wrong
            raise WireFallback(f"{type(exc).__name__}: {exc}") from exc
        self.points = np.frombuffer(points, POINT)
        self.counts = np.frombuffer(counts, np.uint64)
        self.bounds = np.frombuffer(bounds, np.float64)

    def _read(self, resources: list, scopes: list, metrics: list, regions: list) -> None:
        where = []
        for raw in resources:
            resource = Resource.FromString(raw)
            if resource.SerializeToString(deterministic=True) != raw:
                raise WireFallback("a resource is not in the canonical encoding")
            where.append(resource_fields(attributes_dict(resource.attributes)))
        self.scopes = []  # (service, host, attributes base, scope key, scope bytes)
        for r, raw, name in scopes:
            scope = InstrumentationScope.FromString(raw)
            if scope.name.encode() != name:
                raise WireFallback("a scope name read differently")
            service, host, kept = where[r]
            self.scopes.append((service, host, scope_attributes(scope, kept),
                                resources[r] + name + b"\x00", raw))
        self.attrs: list[dict[str, str]] = []
        self.region_bytes = [raw for _, _, raw in regions]
        for s, cls, raw in regions:
            point = (HistogramDataPoint if cls else NumberDataPoint).FromString(raw)
            if point.SerializeToString() != raw:
                raise WireFallback("a data point's attributes are not in the canonical "
                                   "encoding")
            self.attrs.append(point_attributes(self.scopes[s][2], point.attributes))
        self.metrics = metrics
        plans = []
        for (_, _, _, kind, temporality, monotonic, *_rest) in metrics:
            if kind > HISTOGRAM:
                raise WireFallback("exponential histograms and summaries are read by the "
                                   "protobuf library")
            # 0 one plain row, 1 cumulative sum, 2 delta histogram, 3 cumulative histogram
            plans.append(0 if kind == GAUGE or (kind == SUM and (
                temporality == DELTA or not monotonic)) else 1 if kind == SUM
                else 2 if temporality == DELTA else 3)
        self.plans = np.asarray(plans, dtype=np.int8)


class _Differences(NamedTuple):
    """Cumulative histogram points with buckets since their previous point (ascending):
    their intervals, lowest and highest bucket edges, and the differences of counts
    (``counts[starts[k]:]`` for point k)."""

    points: np.ndarray
    seconds: np.ndarray
    lower0: np.ndarray
    top: np.ndarray
    counts: np.ndarray
    starts: np.ndarray


class _Rows:
    """The message's rows before ordering: (point, sub-row, name code, value) each."""

    def __init__(self) -> None:
        self.point: list[np.ndarray] = []
        self.sub: list[np.ndarray] = []
        self.code: list[np.ndarray] = []
        self.value: list[np.ndarray] = []

    def add(self, point: Any, sub: Any, code: Any, value: Any) -> None:
        n = len(point)
        self.point.append(np.asarray(point, dtype=np.int64))
        self.sub.append(np.broadcast_to(np.asarray(sub, dtype=np.int64), n))
        self.code.append(np.broadcast_to(np.asarray(code, dtype=np.int64), n))
        self.value.append(np.asarray(value, dtype=np.float64))

    def ordered(self) -> tuple[np.ndarray, ...]:
        point, sub, code, value = (np.concatenate(parts) for parts in
                                   (self.point, self.sub, self.code, self.value))
        order = np.argsort(point * 8 + sub, kind="stable")
        return point[order], sub[order], code[order], value[order]


def map_metrics_wire(value: bytes, message: int, rows: OtlpRows, memory: SeriesMemory) -> int:
    """Append the rows of one encoded ``MetricsData`` (message ``message`` of the batch),
    as :func:`~pipeline.events.otlp_metrics.map_metrics` does; returns how many data points
    it held. Raises :class:`WireFallback` (having changed nothing) when the protobuf
    library must read it."""
    if _otlpwire is None:
        raise WireFallback("the C extension is not built")
    prep = _Prepared(value)
    pts = prep.points
    n_points = len(pts)
    if not n_points:
        return 0
    plan = prep.plans[pts["metric"]]
    flagged = (pts["flags"] & NO_RECORDED_VALUE) != 0
    memory.counters.no_recorded_value += int(np.count_nonzero(flagged))
    out = _Rows()
    differences: list[_Differences] = []  # cumulative histograms' buckets, if any
    rejects: list[tuple[int, int, str]] = []  # in message order, as the protobuf path
    delta_buckets = (np.zeros(0, np.int64), np.zeros(0))  # points, their intervals

    plain = np.flatnonzero((plan == 0) & ~flagged)
    out.add(plain, 0, 0, pts["value"][plain])

    # delta histograms: counts must match bounds; rates when a start time is set
    hist = np.flatnonzero((plan == 2) & ~flagged)
    if len(hist):
        h = pts[hist]
        mismatch = (h["ncounts"] > 0) & (h["ncounts"] != h["nbounds"] + 1)
        for i in hist[mismatch].tolist():
            _reject_counts(rejects, pts[i], prep)
        hist, h = hist[~mismatch], h[~mismatch]
        started = h["start"] != 0
        seconds = np.where(started, (h["time"].astype(np.int64) - h["start"].astype(np.int64))
                           / 1e9, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = seconds > 0
            count_rate = np.where(positive, h["count"] / np.where(positive, seconds, 1.0),
                                  np.nan)
            sum_rate = np.where(positive, h["sum"] / np.where(positive, seconds, 1.0), np.nan)
        has_sum = (h["has"] & HAS_SUM) != 0
        out.add(hist[started], 0, COUNT_RATE, count_rate[started])
        both = started & has_sum
        out.add(hist[both], 1, SUM_RATE, sum_rate[both])
        quantiles = h["total"] > 0
        first_q = started.astype(np.int64) + both
        for k, column in enumerate(("q50", "q95", "q99")):
            out.add(hist[quantiles], first_q[quantiles] + k, P50 + k, h[column][quantiles])
        delta_buckets = (hist[quantiles], seconds[quantiles])

    stateful = np.flatnonzero(((plan == 1) | (plan == 3)) & ~flagged)
    if len(stateful):
        _stateful(prep, stateful.tolist(), plan, out, differences, memory, rejects)
    for ordinal, payload, reason in sorted(rejects, key=lambda r: r[0]):
        rows.reject(message, ordinal, payload, reason)

    point, sub, code, values = out.ordered()
    diff = differences[0] if differences else None
    bucket_points, bucket_intervals = delta_buckets
    if diff is not None:
        bucket_points = np.concatenate([bucket_points, diff.points])
        bucket_intervals = np.concatenate([bucket_intervals, diff.seconds])
    order = np.argsort(bucket_points, kind="stable")
    _append(prep, message, rows, point, sub, code, values, bucket_points[order],
            bucket_intervals[order], diff)
    return n_points


def _reject_counts(rejects: list[tuple[int, int, str]], pt: Any, prep: _Prepared) -> None:
    name = prep.metrics[int(pt["metric"])][1]
    nc, nb = int(pt["ncounts"]), int(pt["nbounds"])
    rejects.append((int(pt["ordinal"]), int(pt["origin_start"]) << 32 | int(pt["origin_end"]),
                    f"histogram {name!r}: {nc} bucket counts for {nb} bounds "
                    f"(expected {nb + 1})"))


def _stateful(prep: _Prepared, indexes: list[int], plan: np.ndarray, out: _Rows,
              differences: list[_Differences], memory: SeriesMemory,
              rejects: list[tuple[int, int, str]]) -> None:
    """Cumulative sums and histograms, point by point in message order (the series memory
    sees them as the protobuf path shows them to it)."""
    pts = prep.points
    sel = pts[indexes]
    starts, times = sel["start"].tolist(), sel["time"].tolist()
    values, metric_of, region_of = sel["value"].tolist(), sel["metric"].tolist(), \
        sel["region"].tolist()
    kinds = plan[indexes].tolist()
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
            key = memory.intern(handle, (scope_key, metric[1], _WHICH[metric[3]],
                                         frozenset(prep.attrs[region].items())))
        start, now = starts[j], times[j]
        if kinds[j] == 1:
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
        if nc and nc != nb + 1:
            _reject_counts(rejects, pts[i], prep)
            continue
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
        _cumulative_histograms(prep, since, since_counts, out, differences, counters)
    out.add(rate_points, 0, RATE, rate_values)


def _cumulative_histograms(prep: _Prepared, since: list[tuple], since_counts: list[int],
                           out: _Rows, differences: list[_Differences], counters: Any) -> None:
    """Rates and quantiles of cumulative histogram points from their previous points, all
    at once, as :func:`~pipeline.events.otlp_metrics._histogram` computes them one by one."""
    idx = np.asarray([s[0] for s in since], dtype=np.int64)
    p_start = np.asarray([s[1] for s in since], dtype=np.uint64)
    before = np.asarray([s[2] for s in since], dtype=np.int64)
    p_count = np.asarray([s[3] for s in since], dtype=np.uint64)
    p_has_total = np.asarray([s[4] is not None for s in since])
    p_total = np.asarray([np.nan if s[4] is None else s[4] for s in since], dtype=np.float64)
    p = prep.points[idx]
    nc = p["ncounts"].astype(np.int64)
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(nc, out=offsets[1:])
    owner = np.repeat(np.arange(len(idx)), nc)
    j = np.arange(offsets[-1]) - offsets[:-1][owner]
    now = prep.counts[p["counts_off"].astype(np.int64)[owner] + j]
    then = np.asarray(since_counts, dtype=np.uint64)
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
    out.add(idx, 0, COUNT_RATE, count_rate)
    out.add(idx[d_has_total], 1, SUM_RATE, sum_rate[d_has_total])
    has_q = q[:, 5] > 0
    first_q = 1 + d_has_total.astype(np.int64)
    for k in range(3):
        out.add(idx[has_q], first_q[has_q] + k, P50 + k, q[has_q, 2 + k])
    k = np.flatnonzero(has_q)
    n_q = nc[k]
    starts = np.zeros(len(k) + 1, dtype=np.int64)
    np.cumsum(n_q, out=starts[1:])
    q_owner = np.repeat(np.arange(len(k)), n_q)
    q_j = np.arange(starts[-1]) - starts[:-1][q_owner]
    differences.append(_Differences(idx[k], seconds[k], q[k, 0], q[k, 1],
                                    d_counts[offsets[k][q_owner] + q_j].astype(np.float64),
                                    starts[:-1]))


def _append(prep: _Prepared, message: int, rows: OtlpRows, point: np.ndarray,
            sub: np.ndarray, code: np.ndarray, values: np.ndarray, buckets: np.ndarray,
            intervals: np.ndarray, diff: _Differences | None) -> None:
    """The ordered rows into the batch, as one chunk, with the points' bucket rows
    (``buckets``: their points, ascending; ``intervals``: their intervals in seconds)."""
    pts = prep.points
    names = np.empty((len(prep.metrics), len(SUFFIXES)), dtype=object)
    units = np.empty((len(prep.metrics), len(SUFFIXES)), dtype=object)
    for m, entry in enumerate(prep.metrics):
        name, unit = entry[1], entry[2]
        rate = rate_unit(unit)
        names[m] = _derived_names(name)
        units[m] = (unit, rate, "1/s", rate, unit, unit, unit)
    scope_of_metric = np.asarray([entry[0] for entry in prep.metrics], dtype=np.int64)
    services = _objects([s[0] for s in prep.scopes])
    hosts = _objects([s[1] for s in prep.scopes])
    attrs = shared_string_maps(prep.attrs)  # one map per attribute set, taken per row

    # the rows come point by point: read each point's fields once, then repeat them
    firsts = np.flatnonzero(np.diff(point, prepend=-1))
    per_point = pts[point[firsts]]
    repeat = np.diff(np.append(firsts, len(point)))

    def each(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, repeat)

    metric = each(per_point["metric"].astype(np.int64))
    scope = scope_of_metric[metric]
    # where each row's point lies in the message (a rejected row's payload): start << 32 | end
    origins = each((per_point["origin_start"] << 32) | per_point["origin_end"])
    first_row = rows.row_count()
    columns = {
        "time": each((per_point["time"] // 1_000_000).astype(np.int64)),
        "service": services[scope], "host": hosts[scope], "name": names[metric, code],
        "value": values, "unit": units[metric, code],
        "attributes": attrs.take(pa.array(each(per_point["region"]))),
        "event_id": each(per_point["event"]) + sub.astype(np.uint64) * np.uint64(_GOLDEN),
        "message": np.full(len(point), message, dtype=np.int64),
        "ordinal": each(per_point["ordinal"]), "origin": origins}
    if not len(buckets):
        rows.add_chunk(columns)
        return
    at = np.searchsorted(point, buckets) + first_row
    b = pts[buckets]
    b_metric = b["metric"].astype(np.int64)
    b_scope = scope_of_metric[b_metric]
    rows.add_chunk(columns, pa.table({
        "event_id": pa.array(b["event"]),
        "time": pa.array((b["time"] // 1_000_000).astype(np.int64),
                         pa.timestamp("ms", tz="UTC")),
        "service": pa.array(services[b_scope], pa.string()),
        "host": pa.array(hosts[b_scope], pa.string()),
        "name": pa.array(names[b_metric, 0], pa.string()),
        "unit": pa.array(units[b_metric, 0], pa.string()),
        "interval_s": pa.array(intervals, pa.float64()),
        **_bucket_lists(prep, buckets, b, diff),
        "attributes": attrs.take(pa.array(b["region"])),
    }), at.tolist())


_NAMES: dict[str, tuple[str, ...]] = {}


def _derived_names(name: str) -> tuple[str, ...]:
    names = _NAMES.get(name)
    if names is None:
        if len(_NAMES) > 100_000:
            _NAMES.clear()
        names = _NAMES[name] = (name, *(f"{name}.{s}" for s in SUFFIXES[1:]))
    return names


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _bucket_lists(prep: _Prepared, buckets: np.ndarray, b: np.ndarray,
                  diff: _Differences | None) -> dict[str, pa.Array]:
    """lower, upper, counts of each point's buckets, as Arrow lists built from offsets:
    bucket j of a point runs from its lower (j = 0) or bound j-1, to bound j or its top."""
    lower0, top = b["lower0"].copy(), b["top"].copy()
    n = b["ncounts"].astype(np.int64)
    counts_from = b["counts_off"].astype(np.int64)
    counts = prep.counts.astype(np.float64)
    if diff is not None:  # cumulative points: their buckets are the differences
        at = np.searchsorted(buckets, diff.points)
        lower0[at], top[at] = diff.lower0, diff.top
        counts_from[at] = len(counts) + diff.starts
        counts = np.concatenate([counts, diff.counts])
    offsets = np.zeros(len(n) + 1, dtype=np.int32)
    np.cumsum(n, out=offsets[1:])
    owner = np.repeat(np.arange(len(n)), n)
    j = np.arange(offsets[-1]) - offsets[:-1].astype(np.int64)[owner]
    bound = b["bounds_off"].astype(np.int64)[owner] + j
    nb = b["nbounds"].astype(np.int64)[owner]
    bounds = prep.bounds
    lower = np.where(j == 0, lower0[owner], bounds[np.clip(bound - 1, 0, None)]
                     if len(bounds) else 0.0)
    upper = np.where(j < nb, bounds[np.minimum(bound, len(bounds) - 1)]
                     if len(bounds) else 0.0, top[owner])
    arrow_offsets = pa.array(offsets)
    return {"lower": pa.ListArray.from_arrays(arrow_offsets, pa.array(lower)),
            "upper": pa.ListArray.from_arrays(arrow_offsets, pa.array(upper)),
            "counts": pa.ListArray.from_arrays(
                arrow_offsets, pa.array(counts[counts_from[owner] + j]))}
