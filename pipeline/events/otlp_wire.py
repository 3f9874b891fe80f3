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

import os
from typing import Any

import numpy as np
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
from pipeline.events.otlp_rows import OtlpRows
from pipeline.events.otlp_series import (
    QUANTILES,
    SeriesMemory,
    bucket_quantiles,
    explicit_buckets,
    positive_rate,
    quantile_suffix,
)
from pipeline.events.otlp_values import attributes_dict, resource_fields, scope_attributes

try:
    from pipeline.events import _otlpwire
except ImportError:  # built without a C compiler: the protobuf library path only
    _otlpwire = None

DECODERS = ("auto", "c", "python")
DECODER_ENV = "TOCSIN_OTLP_DECODER"

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
# a row's name and unit: 0 the metric's own, then the derived rows' suffixes
SUFFIXES = ("", "rate", "count_rate", "sum_rate", *(quantile_suffix(q) for q in QUANTILES))
RATE, COUNT_RATE, SUM_RATE, P50 = 1, 2, 3, 4


class WireFallback(Exception):
    """The scanner cannot read this message as the protobuf library does (the reason):
    map it with the library. Raised before any row or series memory is changed."""


def metrics_decoder(requested: str | None = None) -> str:
    """The OTLP metrics decoder to use: ``c`` or ``python``.

    ``requested`` (else the ``TOCSIN_OTLP_DECODER`` environment variable, else ``auto``):
    ``auto`` takes the C scanner when it was built, ``c`` insists on it, ``python`` is the
    protobuf library path.
    """
    choice = requested or os.environ.get(DECODER_ENV) or "auto"
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
        self.scopes = []  # (service, host, attributes base, scope key)
        for r, raw, name in scopes:
            scope = InstrumentationScope.FromString(raw)
            if scope.name.encode() != name:
                raise WireFallback("a scope name read differently")
            service, host, kept = where[r]
            self.scopes.append((service, host, scope_attributes(scope, kept),
                                resources[r] + name + b"\x00"))
        self.attrs: list[dict[str, str]] = []
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
    buckets: list[int] = []  # the points giving a metric_buckets row
    intervals: dict[int, float] = {}
    bucket_lists: dict[int, tuple[list, list, list]] = {}
    rejects: list[tuple[int, bytes, str]] = []  # in message order, as the protobuf path

    plain = np.flatnonzero((plan == 0) & ~flagged)
    out.add(plain, 0, 0, pts["value"][plain])

    # delta histograms: counts must match bounds; rates when a start time is set
    hist = np.flatnonzero((plan == 2) & ~flagged)
    if len(hist):
        h = pts[hist]
        mismatch = (h["ncounts"] > 0) & (h["ncounts"] != h["nbounds"] + 1)
        for i in hist[mismatch].tolist():
            _reject_counts(rejects, value, pts[i], prep)
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
        for i, s in zip(hist[quantiles].tolist(), seconds[quantiles].tolist(), strict=True):
            buckets.append(i)
            intervals[i] = s

    stateful = np.flatnonzero(((plan == 1) | (plan == 3)) & ~flagged)
    if len(stateful):
        _stateful(prep, stateful.tolist(), plan, out, buckets, intervals, bucket_lists,
                  memory, rejects, value)
    for ordinal, payload, reason in sorted(rejects, key=lambda r: r[0]):
        rows.reject(message, ordinal, payload, reason)

    point, sub, code, values = out.ordered()
    _append(prep, value, message, rows, point, sub, code, values, buckets, intervals,
            bucket_lists)
    return n_points


def _reject_counts(rejects: list[tuple[int, bytes, str]], value: bytes, pt: Any,
                   prep: _Prepared) -> None:
    name = prep.metrics[int(pt["metric"])][1]
    nc, nb = int(pt["ncounts"]), int(pt["nbounds"])
    rejects.append((int(pt["ordinal"]), value[int(pt["origin_start"]):int(pt["origin_end"])],
                    f"histogram {name!r}: {nc} bucket counts for {nb} bounds "
                    f"(expected {nb + 1})"))


def _stateful(prep: _Prepared, indexes: list[int], plan: np.ndarray, out: _Rows,
              buckets: list[int], intervals: dict[int, float],
              bucket_lists: dict[int, tuple[list, list, list]], memory: SeriesMemory,
              rejects: list[tuple[int, bytes, str]], value: bytes) -> None:
    """Cumulative sums and histograms, point by point in message order (the series memory
    sees them as the protobuf path shows them to it)."""
    pts = prep.points
    sel = pts[indexes]
    starts, times = sel["start"].tolist(), sel["time"].tolist()
    values, metric_of, region_of = sel["value"].tolist(), sel["metric"].tolist(), \
        sel["region"].tolist()
    kinds = plan[indexes].tolist()
    keys: dict[tuple[int, int], tuple] = {}
    rate_points, rate_values = [], []
    hist_points, hist_subs, hist_codes, hist_values = [], [], [], []
    counters = memory.counters
    swap = memory.swap
    for j, i in enumerate(indexes):
        metric, region = metric_of[j], region_of[j]
        key = keys.get((metric, region))
        if key is None:
            scope_key = prep.scopes[prep.metrics[metric][0]][3]
            key = keys[(metric, region)] = (scope_key, prep.metrics[metric][1],
                                            frozenset(prep.attrs[region].items()))
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
        pt = pts[i]
        nc, nb = int(pt["ncounts"]), int(pt["nbounds"])
        if nc and nc != nb + 1:
            _reject_counts(rejects, value, pt, prep)
            continue
        c0, b0 = int(pt["counts_off"]), int(pt["bounds_off"])
        counts = prep.counts[c0:c0 + nc].tolist()
        bounds = prep.bounds[b0:b0 + nb].tolist()
        count = int(pt["count"])
        total = float(pt["sum"]) if int(pt["has"]) & HAS_SUM else None
        previous = swap(key, (start, now, count, total, counts, bounds))
        if previous is None:
            continue
        p_start, before, p_count, p_total, p_counts, p_bounds = previous
        if p_bounds != bounds or len(p_counts) != len(counts):
            counters.resets += 1
            continue
        d_counts = [c - p for c, p in zip(counts, p_counts, strict=True)]
        if min(d_counts, default=0) < 0 or count < p_count or (start and start != p_start):
            counters.resets += 1
            d_counts, d_count, d_total = counts, count, total
        else:
            d_count = count - p_count
            d_total = None if total is None or p_total is None else total - p_total
        seconds = (now - before) / 1e9
        lowers, uppers, bucket_counts = explicit_buckets(bounds, d_counts)
        row_values = [(COUNT_RATE, positive_rate(d_count, seconds))]
        if d_total is not None:
            row_values.append((SUM_RATE, positive_rate(d_total, seconds)))
        if bucket_counts and sum(bucket_counts) > 0:
            qs = bucket_quantiles(lowers, uppers, bucket_counts)
            row_values += [(P50 + k, q) for k, q in enumerate(qs)]
            buckets.append(i)
            intervals[i] = seconds
            bucket_lists[i] = (lowers, uppers, [float(c) for c in bucket_counts])
        for sub, (code, v) in enumerate(row_values):
            hist_points.append(i)
            hist_subs.append(sub)
            hist_codes.append(code)
            hist_values.append(v)
    out.add(rate_points, 0, RATE, rate_values)
    out.add(hist_points, hist_subs, hist_codes, hist_values)


def _append(prep: _Prepared, value: bytes, message: int, rows: OtlpRows, point: np.ndarray,
            sub: np.ndarray, code: np.ndarray, values: np.ndarray, buckets: list[int],
            intervals: dict[int, float], bucket_lists: dict[int, tuple[list, list, list]]
            ) -> None:
    """The ordered rows into the batch's columns, and the points' bucket rows."""
    pts = prep.points
    n_metrics = len(prep.metrics)
    names = np.empty((n_metrics, len(SUFFIXES)), dtype=object)
    units = np.empty((n_metrics, len(SUFFIXES)), dtype=object)
    for m, entry in enumerate(prep.metrics):
        name, unit = entry[1], entry[2]
        names[m] = [name, *(f"{name}.{s}" for s in SUFFIXES[1:])]
        units[m] = [unit, rate_unit(unit), "1/s", rate_unit(unit), unit, unit, unit]
    scope_of_metric = np.asarray([entry[0] for entry in prep.metrics], dtype=np.int64)
    scope_services = np.empty(len(prep.scopes), dtype=object)
    scope_hosts = np.empty(len(prep.scopes), dtype=object)
    scope_services[:] = [s[0] for s in prep.scopes]
    scope_hosts[:] = [s[1] for s in prep.scopes]
    attrs = np.empty(len(prep.attrs), dtype=object)
    attrs[:] = prep.attrs

    sel = pts[point]
    metric = sel["metric"].astype(np.int64)
    scope = scope_of_metric[metric]
    first_row = len(rows.event_ids)
    c = rows.columns
    c["time"].extend((sel["time"] // 1_000_000).tolist())
    c["service"].extend(scope_services[scope].tolist())
    c["host"].extend(scope_hosts[scope].tolist())
    c["name"].extend(names[metric, code].tolist())
    c["value"].extend(values.tolist())
    c["unit"].extend(units[metric, code].tolist())
    c["attributes"].extend(attrs[sel["region"]].tolist())
    rows.event_ids.extend((sel["event"] + sub.astype(np.uint64) * np.uint64(_GOLDEN))
                          .tolist())
    rows.message.extend([message] * len(point))
    rows.ordinal.extend(sel["ordinal"].tolist())
    # each point's own bytes (a rejected row's payload), once per point
    used, inverse = np.unique(point, return_inverse=True)
    origins = np.empty(len(used), dtype=object)
    origins[:] = [value[a:b] for a, b in zip(pts["origin_start"][used].tolist(),
                                             pts["origin_end"][used].tolist(), strict=True)]
    rows.origin.extend(origins[inverse].tolist())
    if not buckets:
        return
    buckets.sort()
    at = (np.searchsorted(point, np.asarray(buckets, dtype=np.int64)) + first_row).tolist()
    b = pts[buckets]
    metric = b["metric"].astype(np.int64)
    scope = scope_of_metric[metric]
    bounds_all = prep.bounds.tolist()
    counts_all = prep.counts.astype(np.float64).tolist()
    lowers, uppers, counts = [], [], []
    for i, nc, b0, nb, c0, low, top in zip(
            buckets, b["ncounts"].tolist(), b["bounds_off"].tolist(), b["nbounds"].tolist(),
            b["counts_off"].tolist(), b["lower0"].tolist(), b["top"].tolist(), strict=True):
        lists = bucket_lists.get(i)
        if lists is None:  # a delta point: its own buckets, as the scanner bounded them
            bounds = bounds_all[b0:b0 + nb]
            lists = ([low, *bounds][:nc], [*bounds, top][:nc], counts_all[c0:c0 + nc])
        lowers.append(lists[0])
        uppers.append(lists[1])
        counts.append(lists[2])
    rows.extend_buckets(at, {
        "event_id": b["event"].tolist(), "time": (b["time"] // 1_000_000).tolist(),
        "service": scope_services[scope].tolist(), "host": scope_hosts[scope].tolist(),
        "name": names[metric, 0].tolist(), "unit": units[metric, 0].tolist(),
        "interval_s": [intervals[i] for i in buckets], "lower": lowers, "upper": uppers,
        "counts": counts, "attributes": attrs[b["region"]].tolist()})
