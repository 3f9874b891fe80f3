"""OTLP ``MetricsData`` as metric rows, one or more per data point.

==========================================  ============================================
OTLP data point                             stored rows (``name``: unit)
==========================================  ============================================
gauge                                       ``<name>``: the value
sum, delta                                  ``<name>``: the value (the interval's sum)
sum, cumulative, not monotonic              ``<name>``: the value
sum, cumulative, monotonic                  ``<name>.rate``: increase per second since
                                            the series' previous point (``<unit>/s``)
histogram, exponential histogram            ``<name>.count_rate`` (``1/s``),
                                            ``<name>.sum_rate`` (``<unit>/s``),
                                            ``<name>.p50`` / ``.p95`` / ``.p99`` (unit)
summary                                     ``<name>.p50`` ... one row per quantile the
                                            point carries, ``.count_rate``, ``.sum_rate``
==========================================  ============================================

Cumulative points become differences with the series' previous point (see
:class:`~pipeline.events.otlp_series.SeriesMemory`): the first point of a series only
seeds it; a count that goes down or a new start time is a reset (the new value counts
from zero). Quantiles of a cumulative histogram are those of the interval since the
previous point; of a delta histogram, those of its own buckets. A delta point without a
start time gives quantiles but no rates. Points flagged "no recorded value" give no row.
Each histogram point with observations also gives a ``metric_buckets`` row: the buckets
its quantiles came from.

Event ids come from the point's resource, scope, name, attributes (with any exemplars,
buckets or quantiles) and time, not from the message: a point sent twice, in whatever
batch, is stored once; the derived rows of a point differ by their name.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from pipeline.events.otlp_rows import OtlpRows
from pipeline.events.otlp_series import (
    QUANTILES,
    SeriesMemory,
    bucket_quantiles,
    explicit_buckets,
    exponential_buckets,
    positive_rate,
    quantile_suffix,
    subtract_indexed,
)
from pipeline.events.otlp_values import (
    attributes_dict,
    resource_fields,
    scope_attributes,
    text_value,
)

DELTA = 1  # AggregationTemporality
NO_RECORDED_VALUE = 1  # DataPointFlags
_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_SUFFIXES = [quantile_suffix(q) for q in QUANTILES]


def _hash(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def rate_unit(unit: str) -> str:
    """The unit of a per-second rate of a quantity in ``unit``.

    >>> rate_unit("By"), rate_unit("1"), rate_unit("")
    ('By/s', '1/s', '1/s')
    """
    return f"{unit}/s" if unit and unit != "1" else "1/s"


def point_attributes(base: dict[str, str], attributes: Any) -> dict[str, str]:
    """A data point's attributes (repeated ``KeyValue``) over ``base`` (the resource's and
    scope's), as strings."""
    attrs = dict(base)
    for kv in attributes:
        v = kv.value
        text = v.string_value
        attrs[kv.key] = text if text or v.WhichOneof("value") == "string_value" \
            else text_value(v)
    return attrs


class _Emitter:
    """Appends the rows of one message's data points to :class:`OtlpRows`."""

    def __init__(self, rows: OtlpRows, message: int, memory: SeriesMemory) -> None:
        self.rows = rows
        self.message = message
        self.memory = memory
        c = rows.columns
        self.columns = (c["time"], c["service"], c["host"], c["name"], c["value"], c["unit"],
                      c["attributes"], rows.event_ids, rows.message, rows.ordinal, rows.origin)
        self.service = self.host = ""
        self._names: dict[str, dict[str, str]] = {}  # derived row names, built once

    def derived(self, time_ms: int, name: str, unit: str, attrs: dict[str, str], event_id: int,
                ordinal: int, point: Any, values: list[tuple[str, str, float]]) -> None:
        """Several rows of one data point: (suffix, unit or '', value) each."""
        k = len(values)
        if not k:
            return
        t, s, h, n, v, u, a, e, m, o, p = self.columns
        names = self._names.get(name)
        if names is None:
            names = self._names[name] = {}
        for suffix, row_unit, value in values:
            full = names.get(suffix)
            if full is None:
                full = names[suffix] = f"{name}.{suffix}"
            n.append(full)
            v.append(value)
            u.append(row_unit or unit)
        e.extend([(event_id + sub * _GOLDEN) & _MASK for sub in range(k)])
        t.extend([time_ms] * k)
        s.extend([self.service] * k)
        h.extend([self.host] * k)
        a.extend([attrs] * k)
        m.extend([self.message] * k)
        o.extend([ordinal] * k)
        p.extend([point] * k)

    def histogram(self, time_ms: int, name: str, unit: str, attrs: dict[str, str],
                  event_id: int, ordinal: int, point: Any,
                  values: list[tuple[str, str, float]],
                  buckets: tuple[list[float], list[float], list[float]],
                  seconds: float) -> None:
        """A histogram point's rows, and its buckets for the ``metric_buckets`` table."""
        first = self.rows.row_count()
        self.derived(time_ms, name, unit, attrs, event_id, ordinal, point, values)
        if values and sum(buckets[2]) > 0:
            self.rows.add_buckets(first, time_ms, self.service, self.host, name, unit,
                                  seconds, buckets, attrs, event_id)


def _quantile_values(lowers: list[float], uppers: list[float], counts: list[float]
                     ) -> list[tuple[str, str, float]]:
    if not counts or sum(counts) <= 0:
        return []
    return list(zip(_SUFFIXES, ("",) * len(QUANTILES),
                    bucket_quantiles(lowers, uppers, counts), strict=True))


def map_metrics(data: Any, message: int, rows: OtlpRows, memory: SeriesMemory) -> int:
    """Append the rows of one ``MetricsData`` (message number ``message`` of the batch);
    returns how many data points it held."""
    emit = _Emitter(rows, message, memory)
    t_col, s_col, h_col, n_col, v_col, u_col, a_col, e_col, m_col, o_col, p_col = emit.columns
    ordinal = -1
    for rm in data.resource_metrics:
        resource = rm.resource
        emit.service, emit.host, kept = resource_fields(attributes_dict(resource.attributes))
        resource_key = resource.SerializeToString(deterministic=True)
        for sm in rm.scope_metrics:
            base = scope_attributes(sm.scope, kept)
            scope_name = sm.scope.name
            scope_key = resource_key + scope_name.encode() + b"\x00"
            # the points of one scope mostly repeat a few attribute sets: each is read
            # (and hashed) once, keyed by the point's bytes less its leading fixed64 fields
            seen: dict[bytes, tuple[dict[str, str], int, frozenset]] = {}
            for metric in sm.metrics:
                name, unit = metric.name, metric.unit
                which = metric.WhichOneof("data")
                if which is None:
                    ordinal += 1
                    rows.reject(message, ordinal, metric,
                                f"metric {name!r} has no data (gauge, sum, histogram ...)")
                    continue
                name_id = _hash(name.encode())
                body = getattr(metric, which)
                temporality = getattr(body, "aggregation_temporality", DELTA)
                monotonic = getattr(body, "is_monotonic", False)
                plain = which == "gauge" or (which == "sum" and (
                    temporality == DELTA or not monotonic))
                for dp in body.data_points:
                    ordinal += 1
                    if dp.flags & NO_RECORDED_VALUE:
                        memory.counters.no_recorded_value += 1
                        continue
                    raw = dp.SerializeToString()
                    pos, end = 0, len(raw)
                    while pos < end and raw[pos] & 0x87 == 1:  # times, value, count, sum
                        pos += 9
                    rest = raw[pos:]  # attributes, and exemplars/buckets if any
                    known = seen.get(rest)
                    if known is None:
                        attrs = point_attributes(base, dp.attributes)
                        known = seen[rest] = (attrs, _hash(scope_key + rest),
                                              frozenset(attrs.items()))
                    attrs, attrs_id, series = known
                    event_id = (attrs_id + name_id + dp.time_unix_nano * _GOLDEN) & _MASK
                    time_ms = dp.time_unix_nano // 1_000_000
                    if plain:
                        t_col.append(time_ms)
                        s_col.append(emit.service)
                        h_col.append(emit.host)
                        n_col.append(name)
                        v_col.append(dp.as_double or float(dp.as_int))
                        u_col.append(unit)
                        a_col.append(attrs)
                        e_col.append(event_id)
                        m_col.append(message)
                        o_col.append(ordinal)
                        p_col.append(dp)
                        continue
                    key = (scope_key, name, which, series)  # a renamed type: a new series
                    if which == "sum":
                        _cumulative_sum(emit, memory, key, dp, time_ms, name, unit, attrs,
                                        event_id, ordinal)
                    elif which == "histogram":
                        _histogram(emit, memory, key, dp, temporality, time_ms, name, unit,
                                   attrs, event_id, ordinal)
                    elif which == "exponential_histogram":
                        _exponential(emit, memory, key, dp, temporality, time_ms, name, unit,
                                     attrs, event_id, ordinal)
                    else:
                        _summary(emit, memory, key, dp, time_ms, name, unit, attrs,
                                 event_id, ordinal)
    return ordinal + 1


def _cumulative_sum(emit: _Emitter, memory: SeriesMemory, key: tuple, dp: Any, time_ms: int,
                    name: str, unit: str, attrs: dict, event_id: int, ordinal: int) -> None:
    value = dp.as_double or float(dp.as_int)
    previous = memory.swap(key, (dp.start_time_unix_nano, dp.time_unix_nano, value))
    if previous is None:
        return
    start, before, last = previous
    increase = value - last
    if increase < 0 or (dp.start_time_unix_nano and dp.start_time_unix_nano != start):
        memory.counters.resets += 1
        increase = value
    seconds = (dp.time_unix_nano - before) / 1e9
    emit.derived(time_ms, name, unit, attrs, event_id, ordinal, dp,
                 [("rate", rate_unit(unit), positive_rate(increase, seconds))])


def _delta_seconds(dp: Any) -> float:
    """A delta point's interval (0: no start time, so no rates)."""
    start = dp.start_time_unix_nano
    return (dp.time_unix_nano - start) / 1e9 if start else 0.0


def _rates(count: float, total: float | None, seconds: float, unit: str
           ) -> list[tuple[str, str, float]]:
    out = [("count_rate", "1/s", positive_rate(count, seconds))]
    if total is not None:
        out.append(("sum_rate", rate_unit(unit), positive_rate(total, seconds)))
    return out


def _histogram(emit: _Emitter, memory: SeriesMemory, key: tuple, dp: Any, temporality: int,
               time_ms: int, name: str, unit: str, attrs: dict, event_id: int,
               ordinal: int) -> None:
    bounds = list(dp.explicit_bounds)
    counts = list(dp.bucket_counts)
    if counts and len(counts) != len(bounds) + 1:
        emit.rows.reject(emit.message, ordinal, dp, f"histogram {name!r}: {len(counts)} "
                         f"bucket counts for {len(bounds)} bounds (expected {len(bounds) + 1})")
        return
    total = dp.sum if dp.HasField("sum") else None
    if temporality == DELTA:
        values = _rates(dp.count, total, _delta_seconds(dp), unit) \
            if dp.start_time_unix_nano else []
        buckets = explicit_buckets(bounds, counts, dp.min if dp.HasField("min") else None,
                                   dp.max if dp.HasField("max") else None)
        emit.histogram(time_ms, name, unit, attrs, event_id, ordinal, dp,
                       values + _quantile_values(*buckets), buckets, _delta_seconds(dp))
        return
    previous = memory.swap(key, (dp.start_time_unix_nano, dp.time_unix_nano, dp.count,
                                 total, counts, bounds))
    if previous is None:
        return
    start, before, p_count, p_total, p_counts, p_bounds = previous
    if p_bounds != bounds or len(p_counts) != len(counts):
        memory.counters.resets += 1
        return  # new bucket layout: nothing to subtract from, this point seeds again
    d_counts = [c - p for c, p in zip(counts, p_counts, strict=True)]
    if min(d_counts, default=0) < 0 or dp.count < p_count or (
            dp.start_time_unix_nano and dp.start_time_unix_nano != start):
        memory.counters.resets += 1
        d_counts, d_count, d_total = counts, dp.count, total
    else:
        d_count = dp.count - p_count
        d_total = None if total is None or p_total is None else total - p_total
    seconds = (dp.time_unix_nano - before) / 1e9
    buckets = explicit_buckets(bounds, d_counts)
    emit.histogram(time_ms, name, unit, attrs, event_id, ordinal, dp,
                   _rates(d_count, d_total, seconds, unit) + _quantile_values(*buckets),
                   buckets, seconds)


def _exponential(emit: _Emitter, memory: SeriesMemory, key: tuple, dp: Any, temporality: int,
                 time_ms: int, name: str, unit: str, attrs: dict, event_id: int,
                 ordinal: int) -> None:
    positive = (dp.positive.offset, list(dp.positive.bucket_counts))
    negative = (dp.negative.offset, list(dp.negative.bucket_counts))
    total = dp.sum if dp.HasField("sum") else None
    if temporality == DELTA:
        values = _rates(dp.count, total, _delta_seconds(dp), unit) \
            if dp.start_time_unix_nano else []
        buckets = exponential_buckets(dp.scale, dp.zero_count, dp.zero_threshold, positive,
                                      negative)
        emit.histogram(time_ms, name, unit, attrs, event_id, ordinal, dp,
                       values + _quantile_values(*buckets), buckets, _delta_seconds(dp))
        return
    previous = memory.swap(key, (dp.start_time_unix_nano, dp.time_unix_nano, dp.count, total,
                                 dp.scale, dp.zero_count, positive, negative))
    if previous is None:
        return
    start, before, p_count, p_total, p_scale, p_zero, p_positive, p_negative = previous
    if p_scale != dp.scale:
        memory.counters.resets += 1
        return  # a rescaled histogram: this point seeds again
    d_positive = subtract_indexed(positive, p_positive)
    d_negative = subtract_indexed(negative, p_negative)
    if d_positive is None or d_negative is None or dp.zero_count < p_zero \
            or dp.count < p_count or (dp.start_time_unix_nano
                                      and dp.start_time_unix_nano != start):
        memory.counters.resets += 1
        d_positive, d_negative, d_zero, d_count, d_total = (
            positive, negative, dp.zero_count, dp.count, total)
    else:
        d_zero, d_count = dp.zero_count - p_zero, dp.count - p_count
        d_total = None if total is None or p_total is None else total - p_total
    seconds = (dp.time_unix_nano - before) / 1e9
    buckets = exponential_buckets(dp.scale, d_zero, dp.zero_threshold, d_positive, d_negative)
    emit.histogram(time_ms, name, unit, attrs, event_id, ordinal, dp,
                   _rates(d_count, d_total, seconds, unit) + _quantile_values(*buckets),
                   buckets, seconds)


def _summary(emit: _Emitter, memory: SeriesMemory, key: tuple, dp: Any, time_ms: int,
             name: str, unit: str, attrs: dict, event_id: int, ordinal: int) -> None:
    values = [(quantile_suffix(qv.quantile), "", qv.value) for qv in dp.quantile_values]
    previous = memory.swap(key, (dp.start_time_unix_nano, dp.time_unix_nano, dp.count, dp.sum))
    if previous is not None:
        start, before, p_count, p_total = previous
        if dp.count < p_count or (dp.start_time_unix_nano and dp.start_time_unix_nano != start):
            memory.counters.resets += 1
            p_count, p_total = 0, 0.0
        values += _rates(dp.count - p_count, dp.sum - p_total,
                         (dp.time_unix_nano - before) / 1e9, unit)
    emit.derived(time_ms, name, unit, attrs, event_id, ordinal, dp, values)
