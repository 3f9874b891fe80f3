"""OTLP ``MetricsData`` protobuf into metric rows through the C wire scanner.

The same rows, event ids, rejections and series memory as
:func:`pipeline.events.otlp_metrics.map_metrics` (the protobuf library path), faster: the
C extension ``pipeline.events._otlpwire`` walks the bytes once and returns every data
point (gauge, sum, histogram, exponential histogram, summary) as a packed record (times,
value, buckets or quantiles, the event id already hashed, the bucket quantiles of a delta
histogram); this module adds what is per
resource, scope, metric or attribute set (read with the protobuf library, once each) and
the per-series memory of cumulative points.

:func:`map_metrics_wire` decides before it changes anything: when the scanner cannot
read a message exactly as the protobuf library does (malformed bytes, a non-canonical
encoding, exemplars of exponential histograms, metric metadata) it raises
:class:`WireFallback` with the
reason, and the caller maps that message with the protobuf library instead.

Which decoder runs is chosen in one place, :func:`metrics_decoder`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from pipeline.errors import DecodeError
from pipeline.events.decoders import choose_decoder, describe_decoder_choice
from pipeline.events.otlp_metrics import (
    DELTA,
    NO_RECORDED_VALUE,
    point_attributes,
)
from pipeline.events.otlp_rows import OtlpRows, shared_string_maps
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_series_slots import SLOT
from pipeline.events.otlp_values import attributes_dict, resource_fields, scope_attributes
from pipeline.events.otlp_wire_rows import (
    COUNT_RATE,
    P50,
    SUM_RATE,
    Differences,
    Picked,
    RowPlan,
    append_rows,
)
from pipeline.events.otlp_wire_series import (
    CUMULATIVE_EXPONENTIAL,
    CUMULATIVE_HISTOGRAM,
    DELTA_EXPONENTIAL,
    HAS_SUM,
    STATEFUL,
    STEP_BUCKETS,
    STEP_ROW,
    SUMMARY,
    ExponentialBuckets,
    cumulative_points,
    exponential_points,
    point_by_point,
)

try:
    from pipeline.events import _otlpwire
except ImportError:  # built without a C compiler: the protobuf library path only
    _otlpwire = None


POINT = np.dtype([(name, "=u8") for name in ("time", "start", "event", "count", "total")]
                 + [(name, "=f8") for name in ("value", "sum", "min", "max", "lower0", "top",
                                               "q50", "q95", "q99")]
                 + [(name, "=i8") for name in ("ordinal", "origin_start", "origin_end",
                                               "counts_off", "bounds_off")]
                 + [(name, "=i4") for name in ("metric", "region", "ncounts", "nbounds")]
                 + [("flags", "=u4"), ("has", "=u4"), ("zero_count", "=u8")]
                 + [(name, "=i4") for name in ("scale", "pos_offset", "neg_offset", "nneg")])
if _otlpwire is not None and (
        POINT.itemsize, SLOT.itemsize, STEP_ROW.itemsize, STEP_BUCKETS.itemsize) != (
        _otlpwire.POINT_SIZE, getattr(_otlpwire, "SLOT_SIZE", 0),
        getattr(_otlpwire, "STEP_ROW_SIZE", 0),
        getattr(_otlpwire, "STEP_BUCKETS_SIZE", 0)) \
        or not hasattr(_otlpwire, "exponential_step"):  # a stale build
    _otlpwire = None
GAUGE, SUM, HISTOGRAM, EXPONENTIAL, SUMMARY_KIND = 0, 1, 2, 3, 4
# a region's point type (see scan_metrics): the message its attributes are read as
POINT_TYPES = (NumberDataPoint, HistogramDataPoint, ExponentialHistogramDataPoint,
               SummaryDataPoint)


class WireFallback(DecodeError):
    """The scanner cannot read this message as the protobuf library does (the reason):
    map it with the library. Raised before any row or series memory is changed."""


def metrics_decoder(requested: str | None = None) -> str:
    """The OTLP metrics decoder to use, ``c`` or ``python``, for ``requested`` (setting
    ``ingest.otlp_decoder``): ``auto`` (or None) takes the C scanner when it was built,
    ``c`` insists on it, ``python`` is the protobuf library path."""
    return choose_decoder("ingest.otlp_decoder", requested, _otlpwire,
                          "pipeline.events._otlpwire")


def describe_decoder(decoder: str) -> str:
    """One line for the start-up log: which OTLP metrics decoder runs, and why."""
    return describe_decoder_choice(decoder, _otlpwire, "OTLP metrics decoder",
                                   "C wire scanner (pipeline.events._otlpwire)",
                                   "protobuf library, pure Python")


# What was read from resources, scopes and attribute regions, by their bytes: a stream
# repeats the same few each interval, so each is parsed and checked once, not per message.
# Entries are what the protobuf library read from exactly those bytes (and proved
# canonical), never changed after, so a hit gives what reading them again would.
_RESOURCES: dict[bytes, tuple[str, str, dict[str, str]]] = {}
_SCOPES: dict[tuple[bytes, bytes, bytes], tuple] = {}
_REGIONS: dict[tuple[bytes, bytes, int, bytes], tuple[dict[str, str], frozenset]] = {}
KNOWN_LIMIT = 100_000  # entries per table; past it the table starts again empty
# a message's attribute sets as one Arrow map array, by the identities of _REGIONS' dicts
# in message order (each entry holds its dicts: no id is reused while it is kept)
_MAPS: dict[tuple[int, ...], tuple[list[dict[str, str]], pa.MapArray]] = {}
MAPS_LIMIT = 1_000


def _remember(table: dict, key: Any, value: Any) -> Any:
    if len(table) >= KNOWN_LIMIT:
        table.clear()
    table[key] = value
    return value


def forget_known() -> None:
    """Empty the tables of resources, scopes and attribute sets already read (tests)."""
    for table in (_RESOURCES, _SCOPES, _REGIONS, _MAPS):
        table.clear()


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
        self.extra_suffixes: list[str] = []  # summaries' quantile names (codes from 7)
        self.counts = np.frombuffer(counts, np.uint64)
        self.bounds = np.frombuffer(bounds, np.float64)

    def attribute_maps(self) -> pa.MapArray:
        """The message's attribute sets (one per region) as an Arrow map array; a stream
        sends the same sets in the same order each interval, so it is built once."""
        key = tuple(map(id, self.attrs))
        known = _MAPS.get(key)
        if known is None:
            if len(_MAPS) >= MAPS_LIMIT:
                _MAPS.clear()
            known = _MAPS[key] = (self.attrs, shared_string_maps(self.attrs))
        return known[1]

    def _read(self, resources: list, scopes: list, metrics: list, regions: list) -> None:
        where = []
        for raw in resources:
            fields = _RESOURCES.get(raw)
            if fields is None:
                resource = Resource.FromString(raw)
                if resource.SerializeToString(deterministic=True) != raw:
                    raise WireFallback("a resource is not in the canonical encoding")
                fields = _remember(_RESOURCES, raw,
                                   resource_fields(attributes_dict(resource.attributes)))
            where.append(fields)
        self.scopes = []  # (service, host, attributes base, scope key, scope bytes)
        for r, raw, name in scopes:
            key = (resources[r], raw, name)
            known = _SCOPES.get(key)
            if known is None:
                scope = InstrumentationScope.FromString(raw)
                if scope.name.encode() != name:
                    raise WireFallback("a scope name read differently")
                service, host, kept = where[r]
                known = _remember(_SCOPES, key, (service, host, scope_attributes(scope, kept),
                                                 resources[r] + name + b"\x00", raw))
            self.scopes.append(known)
        self.attrs: list[dict[str, str]] = []
        self.attr_sets: list[frozenset] = []  # the same, as in series keys
        self.region_bytes = [raw for _, _, raw in regions]
        for s, cls, raw in regions:
            scope_key, scope_raw = self.scopes[s][3:]
            key = (scope_key, scope_raw, cls, raw)
            known = _REGIONS.get(key)
            if known is None:
                point = POINT_TYPES[cls].FromString(raw)
                if point.SerializeToString() != raw:
                    raise WireFallback("a data point's attributes are not in the canonical "
                                       "encoding")
                attrs = point_attributes(self.scopes[s][2], point.attributes)
                known = _remember(_REGIONS, key, (attrs, frozenset(attrs.items())))
            self.attrs.append(known[0])
            self.attr_sets.append(known[1])
        self.metrics = metrics
        plans = []
        for (_, _, _, kind, temporality, monotonic, *_rest) in metrics:
            # 0 one plain row, 1 cumulative sum, 2 delta histogram, 3 cumulative histogram,
            # 4 delta exponential histogram, 5 cumulative one, 6 summary (always cumulative)
            plans.append(0 if kind == GAUGE or (kind == SUM and (
                temporality == DELTA or not monotonic)) else 1 if kind == SUM
                else SUMMARY if kind == SUMMARY_KIND
                else (2 if kind == HISTOGRAM else DELTA_EXPONENTIAL) if temporality == DELTA
                else 3 if kind == HISTOGRAM else CUMULATIVE_EXPONENTIAL)
        self.plans = np.asarray(plans, dtype=np.int8)


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
    out = RowPlan()
    differences: list[Differences] = []  # cumulative histograms' buckets, if any
    exponential: list[ExponentialBuckets] = []  # exponential histograms' buckets, if any
    rejects: list[tuple[int, int, str]] = []  # in message order, as the protobuf path
    delta_buckets = (np.zeros(0, np.int64), np.zeros(0))  # points, their intervals

    # first what goes through the series memory: it may still hand the message back
    stateful = np.flatnonzero(np.isin(plan, STATEFUL) & ~flagged)
    if len(stateful):
        _stateful(prep, stateful, plan, out, differences, exponential, memory, rejects)
    memory.counters.no_recorded_value += int(np.count_nonzero(flagged))

    plain = np.flatnonzero((plan == 0) & ~flagged)
    out.add(plain, 0, 0, pts["value"][plain])

    # delta histograms: counts must match bounds; rates when a start time is set
    hist = np.flatnonzero((plan == 2) & ~flagged)
    if len(hist):
        h = Picked(pts, hist)
        mismatch = (h["ncounts"] > 0) & (h["ncounts"] != h["nbounds"] + 1)
        if mismatch.any():
            for i in hist[mismatch].tolist():
                _reject_counts(rejects, pts[i], prep)
            hist, h = hist[~mismatch], h.where(~mismatch)
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

    delta_exponential = np.flatnonzero((plan == DELTA_EXPONENTIAL) & ~flagged)
    if len(delta_exponential):
        exponential_points(prep, delta_exponential, out, exponential)
    for ordinal, payload, reason in sorted(rejects, key=lambda r: r[0]):
        rows.reject(message, ordinal, payload, reason)

    point, sub, code, values = out.ordered()
    diff = differences[0] if differences else None
    bucket_points, bucket_intervals = delta_buckets
    if diff is not None:
        bucket_points = np.concatenate([bucket_points, diff.points])
        bucket_intervals = np.concatenate([bucket_intervals, diff.seconds])
    order = np.argsort(bucket_points, kind="stable")
    append_rows(prep, message, rows, point, sub, code, values, bucket_points[order],
                bucket_intervals[order], diff, exponential)
    return n_points


def _reject_counts(rejects: list[tuple[int, int, str]], pt: Any, prep: _Prepared) -> None:
    name = prep.metrics[int(pt["metric"])][1]
    nc, nb = int(pt["ncounts"]), int(pt["nbounds"])
    rejects.append((int(pt["ordinal"]), int(pt["origin_start"]) << 32 | int(pt["origin_end"]),
                    f"histogram {name!r}: {nc} bucket counts for {nb} bounds "
                    f"(expected {nb + 1})"))


def _stateful(prep: _Prepared, indexes: np.ndarray, plan: np.ndarray, out: RowPlan,
              differences: list[Differences], exponential: list[ExponentialBuckets],
              memory: SeriesMemory, rejects: list[tuple[int, int, str]]) -> None:
    """Cumulative points through the series memory: the whole message at once, or point
    by point in message order when only that gives the same memory (sums and explicit
    histograms here; a message with exponential histograms or summaries then goes to the
    protobuf library, :class:`WireFallback` raised before anything changed)."""
    pts = prep.points
    kinds = plan[indexes]
    sel = Picked(pts, indexes)
    nc = sel["ncounts"].astype(np.int64)
    bad = (kinds == CUMULATIVE_HISTOGRAM) & (nc > 0) & (nc != sel["nbounds"] + 1)
    indexes, kinds = indexes[~bad], kinds[~bad]
    if not cumulative_points(prep, indexes, kinds, memory, out, differences, exponential):
        if ((kinds == CUMULATIVE_EXPONENTIAL) | (kinds == SUMMARY)).any():
            raise WireFallback("a series twice in the message, or new series that make the "
                               "memory forget others: the protobuf library maps its "
                               "exponential histograms and summaries point by point")
        point_by_point(prep, indexes.tolist(), kinds.tolist(), memory, out, differences)
    for i in np.flatnonzero(bad).tolist():  # rejected: the memory never sees them
        _reject_counts(rejects, pts[int(sel.index[i])], prep)
