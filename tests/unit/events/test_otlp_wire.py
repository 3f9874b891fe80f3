"""The C wire scanner gives exactly the protobuf library path's batches.

Every test decodes the same messages twice, with ``decoder="c"`` and ``decoder="python"``
(each with its own series memory), and compares everything a batch carries: columns,
event ids, sources, rejections (reason and payload), bucket tables, memory counters.
Messages cover every metric type and temporality, every attribute value type, missing
and unknown fields, non-canonical encodings, random structures (seeded) and broken
bytes: the scanner either reads a message as the library does or hands it back.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
    Summary,
    SummaryDataPoint,
)

from pipeline.errors import SettingsError
from pipeline.events import otlp_wire
from pipeline.events.otlp import decode_otlp_values
from pipeline.events.otlp_rows import OtlpRows
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_wire import (
    WireFallback,
    describe_decoder,
    forget_known,
    map_metrics_wire,
    metrics_decoder,
)
from pipeline.events.schema import RecordKind
from tests.unit.events.otlp_support import NOW_MS, SECOND_NS, T0_NS, key_values

wire = pytest.importorskip("pipeline.events._otlpwire",
                           reason="the C extension is not built (no C compiler?)")

ATTRIBUTE_VALUES: dict[str, Any] = {
    "s": "text", "empty": "", "b": True, "f": False, "i": -42, "big": 2**62, "d": 0.1,
    "nan": math.nan, "inf": -math.inf, "bytes": b"\x00\xff", "arr": [1, "two", 3.5, [True]],
    "kv": {"a": 1, "b": {"c": "d"}}, "unicode": "é中😀",
}


def _same(c: Any, p: Any) -> None:
    assert c.columns.keys() == p.columns.keys()
    for name, x in c.columns.items():
        y = p.columns[name]
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, name
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
        elif hasattr(x, "to_pylist"):
            assert x.to_pylist() == y.to_pylist(), name
        else:
            assert list(x) == list(y), name
    for name in ("source_partitions", "source_messages", "source_indexes"):
        assert np.array_equal(getattr(c, name), getattr(p, name)), name
    assert [(r.index, r.reason, r.payload) for r in c.rejections] == \
        [(r.index, r.reason, r.payload) for r in p.rejections]
    assert (c.buckets is None) == (p.buckets is None)
    if c.buckets is not None:
        assert c.buckets.equals(p.buckets), (c.buckets.to_pylist()[:2],
                                             p.buckets.to_pylist()[:2])
    assert c.to_arrow().equals(p.to_arrow())


def decode_both(batches: list[list[bytes]], max_series: int = 100_000) -> list[Any]:
    """Each batch decoded by both decoders (memories carried over batches); asserts they
    agree and returns the C decoder's batches."""
    c_memory, p_memory = SeriesMemory(max_series), SeriesMemory(max_series)
    out = []
    for values in batches:
        c = decode_otlp_values(RecordKind.METRIC, values, NOW_MS, c_memory, decoder="c")
        p = decode_otlp_values(RecordKind.METRIC, values, NOW_MS, p_memory, decoder="python")
        _same(c, p)
        assert c_memory.counters == p_memory.counters
        assert len(c_memory) == len(p_memory)
        out.append(c)
    return out


def scanned(value: bytes) -> bool:
    """Whether the C path maps this message itself (else the library does)."""
    try:
        map_metrics_wire(value, 0, OtlpRows(RecordKind.METRIC), SeriesMemory())
    except WireFallback:
        return False
    return True


def number(i: int, value: float | int, **fields: Any) -> NumberDataPoint:
    attrs = fields.pop("attributes", {"route": f"/r{i % 3}"})
    kind = "as_int" if isinstance(value, int) else "as_double"
    dp = NumberDataPoint(time_unix_nano=fields.pop("time", T0_NS + i * SECOND_NS),
                         **{kind: value}, **fields)
    dp.attributes.extend(key_values(attrs))
    return dp


def histogram_point(i: int, counts: list[int], bounds: list[float], **fields: Any
                    ) -> HistogramDataPoint:
    attrs = fields.pop("attributes", {"route": "/h"})
    dp = HistogramDataPoint(time_unix_nano=fields.pop("time", T0_NS + i * SECOND_NS),
                            count=fields.pop("count", sum(counts)), bucket_counts=counts,
                            explicit_bounds=bounds, **fields)
    dp.attributes.extend(key_values(attrs))
    return dp


def message(metrics: list[Metric], resource: dict | None = None,
            scope: tuple[str, str] = ("io.test", "1.0")) -> bytes:
    data = MetricsData()
    rm = data.resource_metrics.add()
    rm.resource.attributes.extend(key_values(resource if resource is not None
                                             else {"service.name": "api", "host.name": "h1"}))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope
    sm.metrics.extend(metrics)
    return data.SerializeToString()


# ---------------------------------------------------------------- the pieces


@pytest.mark.parametrize("n", [0, 1, 63, 127, 128, 129, 255, 256, 257, 1000])
def test_blake2b_matches_hashlib(n: int) -> None:
    data = bytes(random.Random(n).randrange(256) for _ in range(n))
    assert wire.blake2b64(data) == int.from_bytes(
        hashlib.blake2b(data, digest_size=8).digest(), "little")


def test_decoder_choice() -> None:
    assert metrics_decoder() == "c"
    assert metrics_decoder("auto") == "c"
    assert metrics_decoder("python") == "python"
    with pytest.raises(SettingsError, match="'fast' is not one of auto, c, python"):
        metrics_decoder("fast")
    assert "C wire scanner" in describe_decoder("c")
    assert "protobuf library" in describe_decoder("python")


def test_the_scanner_reads_the_common_messages_itself() -> None:
    gauge = Metric(name="g", unit="1", gauge=Gauge(data_points=[number(0, 1.5)]))
    summed = Metric(name="s", sum=Sum(data_points=[number(0, 3)], is_monotonic=True,
                                      aggregation_temporality=2))
    hist = Metric(name="h", histogram=Histogram(
        data_points=[histogram_point(0, [1, 2, 3], [1.0, 5.0], sum=9.0, min=0.5, max=7.0)],
        aggregation_temporality=1))
    assert scanned(message([gauge, summed, hist]))
    expo = Metric(name="e", exponential_histogram=ExponentialHistogram(
        data_points=[ExponentialHistogramDataPoint(time_unix_nano=T0_NS, count=1)]))
    summary = Metric(name="q", summary=Summary(data_points=[SummaryDataPoint(
        time_unix_nano=T0_NS, count=2, sum=1.5)]))
    assert scanned(message([gauge, expo, summary]))
    # exemplars of exponential histograms are the library's
    expo.exponential_histogram.data_points[0].exemplars.add(time_unix_nano=T0_NS, as_int=1)
    assert not scanned(message([gauge, expo]))


# ---------------------------------------------------------------- metric types


def test_gauges_and_sums_of_every_kind() -> None:
    def sums(t: int, start: int) -> bytes:
        metrics = [
            Metric(name="cpu", unit="%", gauge=Gauge(data_points=[
                number(t, 0.5 * t), number(t, -3), number(t, 0.0), number(t, -0.0),
                number(t, 2**63 - 1, attributes={"x": "max"})])),
            Metric(name="req", unit="{request}", sum=Sum(
                data_points=[number(t, 10 * t, start_time_unix_nano=start),
                             number(t, 5.5 * t, start_time_unix_nano=start,
                                    attributes={"route": "/b"})],
                aggregation_temporality=2, is_monotonic=True)),
            Metric(name="delta", unit="By", sum=Sum(
                data_points=[number(t, 7, start_time_unix_nano=start)],
                aggregation_temporality=1, is_monotonic=True)),
            Metric(name="queue", sum=Sum(data_points=[number(t, 3.0 - t)],
                                         aggregation_temporality=2, is_monotonic=False)),
            Metric(name="unspecified", sum=Sum(data_points=[number(t, t)],
                                               is_monotonic=True)),
        ]
        return message(metrics)

    start = T0_NS - 100 * SECOND_NS
    batches = [[sums(1, start), sums(2, start)], [sums(3, start)],
               [sums(4, start + 1)],  # a new start: a reset
               [sums(2, start + 1)]]  # older than remembered: out of order
    out = decode_both(batches)
    assert "req.rate" in out[1].columns["name"]
    assert all(scanned(v) for batch in batches for v in batch)


def test_histograms_delta_and_cumulative() -> None:
    bounds = [1.0, 5.0, 10.0]

    def hist(t: int, temporality: int, counts: list[int], **fields: Any) -> Metric:
        return Metric(name=f"latency{temporality}", unit="ms", histogram=Histogram(
            data_points=[histogram_point(t, counts, bounds, **fields)],
            aggregation_temporality=temporality))

    start = T0_NS - 60 * SECOND_NS
    batches = []
    for t, counts in enumerate([[1, 2, 3, 4], [2, 4, 6, 8], [2, 4, 6, 8], [1, 0, 0, 0],
                                [5, 9, 9, 9]]):
        metrics = [
            hist(t + 1, 1, counts, start_time_unix_nano=start + t * SECOND_NS, sum=10.5,
                 min=0.2, max=40.0),
            hist(t + 1, 1, counts),  # no start: quantiles only
            hist(t + 1, 2, counts, start_time_unix_nano=start, sum=1.0 * sum(counts)),
            Metric(name="nosum", histogram=Histogram(aggregation_temporality=2, data_points=[
                histogram_point(t + 1, counts, bounds, start_time_unix_nano=start)])),
            Metric(name="one", histogram=Histogram(aggregation_temporality=1, data_points=[
                histogram_point(t + 1, [4], [], start_time_unix_nano=start, min=1.0,
                                max=2.0)])),
            Metric(name="empty", histogram=Histogram(aggregation_temporality=1, data_points=[
                histogram_point(t + 1, [], [], start_time_unix_nano=start),
                histogram_point(t + 1, [0, 0], [3.0], start_time_unix_nano=start,
                                attributes={"zero": True})])),
            Metric(name="bad", histogram=Histogram(aggregation_temporality=t % 2 + 1,
                                                   data_points=[
                histogram_point(t + 1, [1, 2], bounds, start_time_unix_nano=start)])),
            Metric(name="relayout", histogram=Histogram(aggregation_temporality=2, data_points=[
                histogram_point(t + 1, counts[: 2 + t % 3], bounds[: 1 + t % 3],
                                start_time_unix_nano=start)])),
        ]
        batches.append([message(metrics)])
    out = decode_both(batches)
    assert out[1].buckets is not None and len(out[1].buckets) > 0
    assert any("bucket counts for 3 bounds" in r.reason for r in out[0].rejections)
    assert all(scanned(v) for batch in batches for v in batch)


def test_bucket_rows_of_scanned_and_library_messages_keep_batch_order() -> None:
    """The scanner's bucket rows are made a table per batch, the library's per run of
    messages: in a batch mixing both, the bucket rows stay in message order."""
    bounds = [1.0, 5.0]

    def hist(t: int, route: str, library: bool = False) -> bytes:
        metrics = [Metric(name="lat", unit="ms", histogram=Histogram(
            data_points=[histogram_point(t, [t, 2 * t, 3], bounds, sum=2.0 * t,
                                         start_time_unix_nano=T0_NS,
                                         attributes={"route": route})],
            aggregation_temporality=1))]
        if library:  # a summary series twice in a message: the library reads it all
            points = [SummaryDataPoint(time_unix_nano=T0_NS + k, count=k, sum=1.0 * k)
                      for k in (1, 2)]
            metrics.append(Metric(name="q", summary=Summary(data_points=points)))
        return message(metrics)

    batch = [hist(1, "/a"), hist(2, "/b", library=True), hist(3, "/c"), hist(4, "/d")]
    assert [scanned(value) for value in batch] == [True, False, True, True]
    out = decode_both([batch])[0]
    routes = [dict(m)["route"] for m in out.buckets.column("attributes").to_pylist()]
    assert routes == ["/a", "/b", "/c", "/d"]


def test_exponential_histograms_and_summaries() -> None:
    def both(t: int) -> bytes:
        expo = ExponentialHistogramDataPoint(
            time_unix_nano=T0_NS + t * SECOND_NS, start_time_unix_nano=T0_NS, count=6 * t,
            sum=3.0 * t, scale=1, zero_count=t, zero_threshold=0.01)
        expo.positive.offset, expo.negative.offset = -1, 2
        expo.positive.bucket_counts.extend([t, 2 * t, 3 * t])
        expo.negative.bucket_counts.extend([0, t])
        summary = SummaryDataPoint(time_unix_nano=T0_NS + t * SECOND_NS, count=10 * t,
                                   sum=2.5 * t)
        summary.quantile_values.add(quantile=0.5, value=1.0 * t)
        summary.quantile_values.add(quantile=0.99, value=9.0 * t)
        return message([
            Metric(name="g", gauge=Gauge(data_points=[number(t, 1.0)])),
            Metric(name="e", exponential_histogram=ExponentialHistogram(
                data_points=[expo], aggregation_temporality=2)),
            Metric(name="q", summary=Summary(data_points=[summary]))])

    assert all(scanned(both(t)) for t in (1, 2, 3))
    decode_both([[both(1)], [both(2)], [both(3)]])


# ---------------------------------------------------------------- attributes, fields


def test_every_attribute_value_type_and_resource_shape() -> None:
    point_attrs = dict(ATTRIBUTE_VALUES)
    resources = [
        {"service.name": "api", "host.name": "h", "k8s.pod.name": "p", "service.version": 2,
         "deployment.environment": "prod", "process.pid": 7},
        {"k8s.pod.name": "pod-1", "container.id": "c"},  # no service: unknown_service
        {},  # an empty resource
        {"service.name": "x" * 300},  # too long: rejected rows
    ]
    values = [message([Metric(name="m", unit="s", gauge=Gauge(data_points=[
        number(0, 1.0, attributes=point_attrs), number(1, 2, attributes={}),
        number(2, 3.0, attributes={"dup": "a", "dup ": "b"})]))], resource=resource,
        scope=scope) for resource in resources
        for scope in (("", ""), ("s", ""), ("s", "9"))]
    out = decode_both([values])
    assert out[0].to_arrow().column("attributes").to_pylist()[0]
    assert all(scanned(v) for v in values)


def test_missing_fields_and_empty_messages() -> None:
    no_name = Metric(unit="1", gauge=Gauge(data_points=[number(0, 1.0)]))
    no_time = Metric(name="t", gauge=Gauge(data_points=[NumberDataPoint(as_double=1.0)]))
    no_value = Metric(name="v", gauge=Gauge(data_points=[NumberDataPoint(
        time_unix_nano=T0_NS)]))
    flagged = Metric(name="f", gauge=Gauge(data_points=[number(0, 1.0, flags=1),
                                                        number(1, 2.0, flags=2)]))
    future = Metric(name="late", gauge=Gauge(data_points=[number(0, 1.0,
                                                                 time=T0_NS * 2)]))
    nan = Metric(name="nan", gauge=Gauge(data_points=[number(0, math.nan)]))
    no_data = Metric(name="nodata")  # the library path rejects it
    empty_gauge = Metric(name="e", gauge=Gauge())
    data = MetricsData()
    data.resource_metrics.add()  # no resource, no scope
    data.resource_metrics.add().scope_metrics.add().metrics.append(
        Metric(name="bare", gauge=Gauge(data_points=[number(0, 1.0)])))
    values = [message([no_name, no_time, no_value, flagged, future, nan]),
              message([no_data, Metric(name="ok", gauge=Gauge(data_points=[number(0, 1)]))]),
              message([empty_gauge]), MetricsData().SerializeToString(), b"",
              data.SerializeToString()]
    out = decode_both([values])
    assert len(out[0].rejections) >= 6


# ---------------------------------------------------------------- the wire itself


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


UNKNOWN = _varint(99 << 3) + _varint(5) + _varint(98 << 3 | 1) + b"\x01" * 8 \
    + _field(97, b"junk") + _varint(96 << 3 | 5) + b"\x02" * 4


def _wrapped(unknown_at: str) -> bytes:
    """A message built by hand, with unknown fields at one level."""
    point = number(1, 2.5).SerializeToString()
    if unknown_at == "point":
        point += UNKNOWN
    gauge = _field(1, point) + (UNKNOWN if unknown_at == "body" else b"")
    metric = _field(1, b"m") + _field(5, gauge) + (UNKNOWN if unknown_at == "metric" else b"")
    scope = InstrumentationScope(name="s").SerializeToString()
    scope_metrics = _field(1, scope) + _field(2, metric) + \
        (UNKNOWN if unknown_at == "scope" else b"")
    resource = _field(1, key_values({"service.name": "api"})[0].SerializeToString())
    resource_metrics = (UNKNOWN if unknown_at == "resource" else b"") + _field(1, resource) \
        + _field(2, scope_metrics)
    return _field(1, resource_metrics) + (UNKNOWN if unknown_at == "top" else b"")


@pytest.mark.parametrize("where", ["top", "resource", "scope", "metric", "body", "point"])
def test_unknown_fields_are_skipped(where: str) -> None:
    value = _wrapped(where)
    (out,) = decode_both([[value]])
    assert list(out.columns["value"]) == [2.5]
    # outside data points the scanner skips them; inside one the library reads the point
    assert scanned(value) == (where != "point")


def test_non_canonical_encodings_are_read_by_the_library() -> None:
    dp = number(1, 2.5)
    fields = {"time": bytes([0x19]) + (T0_NS + SECOND_NS).to_bytes(8, "little"),
              "value": bytes([0x21]) + np.float64(2.5).tobytes(),
              "attrs": b"".join(_field(7, kv.SerializeToString()) for kv in dp.attributes)}
    odd = [
        fields["attrs"] + fields["time"] + fields["value"],  # out of order
        fields["time"] + fields["time"] + fields["value"],  # time twice
        fields["time"] + fields["value"] + bytes([0x40, 0x80, 0x00]),  # flags, long varint
        fields["time"] + fields["value"] + bytes([0x31]) + (3).to_bytes(8, "little"),
        bytes([0x11]) + bytes(8) + fields["time"] + fields["value"],  # start written as 0
    ]
    values = []
    for raw in odd:
        metric = _field(1, b"m") + _field(5, _field(1, raw))
        values.append(_field(1, _field(2, _field(2, metric))))
        assert not scanned(values[-1])
    decode_both([values])


def _random_message(rng: random.Random) -> bytes:
    data = MetricsData()
    for _ in range(rng.randint(0, 3)):
        rm = data.resource_metrics.add()
        if rng.random() < 0.8:
            rm.resource.attributes.extend(key_values(
                {"service.name": rng.choice(["a", "b", ""]), "host.name": rng.choice(["h", ""]),
                 **({"k8s.ns": rng.randint(0, 2)} if rng.random() < 0.5 else {})}))
        for _ in range(rng.randint(0, 3)):
            sm = rm.scope_metrics.add()
            if rng.random() < 0.5:
                sm.scope.name = rng.choice(["s1", "s2"])
                sm.scope.version = rng.choice(["", "1"])
            for _ in range(rng.randint(0, 4)):
                sm.metrics.append(_random_metric(rng))
    return data.SerializeToString()


def _random_attrs(rng: random.Random) -> dict[str, Any]:
    keys = rng.sample(sorted(ATTRIBUTE_VALUES), rng.randint(0, 3))
    return {**{k: ATTRIBUTE_VALUES[k] for k in keys}, "route": rng.choice(["/a", "/b"])}


def _random_metric(rng: random.Random) -> Metric:
    kind = rng.choice(["gauge", "sum", "histogram", "histogram", "sum", "exponential",
                       "summary"])
    metric = Metric(name=rng.choice(["m1", "m2", "m3"]), unit=rng.choice(["", "1", "ms"]))
    start = T0_NS - rng.choice([0, 1, 2]) * 100 * SECOND_NS if rng.random() < 0.9 else 0
    times = [T0_NS + rng.randint(-5, 30) * SECOND_NS if rng.random() < 0.97 else 0
             for _ in range(rng.randint(0, 5))]
    if kind == "exponential":
        body = metric.exponential_histogram
        body.aggregation_temporality = rng.choice([0, 1, 2])
        for t in times:
            dp = ExponentialHistogramDataPoint(
                time_unix_nano=t, start_time_unix_nano=start, count=rng.randint(0, 40),
                scale=rng.choice([-1, 0, 3]), zero_count=rng.choice([0, 2]),
                flags=1 if rng.random() < 0.05 else 0,
                **{k: rng.uniform(-5, 50) for k in ("sum", "min", "max", "zero_threshold")
                   if rng.random() < .5})
            for side in (dp.positive, dp.negative):
                if rng.random() < 0.7:
                    side.offset = rng.randint(-4, 8)
                    side.bucket_counts.extend(rng.randint(0, 9)
                                              for _ in range(rng.randint(0, 4)))
            dp.attributes.extend(key_values(_random_attrs(rng)))
            body.data_points.append(dp)
        return metric
    if kind == "summary":
        for t in times:
            dp = SummaryDataPoint(time_unix_nano=t, start_time_unix_nano=start,
                                  count=rng.randint(0, 40), sum=rng.choice([0.0, 12.5]),
                                  flags=1 if rng.random() < 0.05 else 0)
            for q in rng.sample([0.5, 0.9, 0.99, 0.0], rng.randint(0, 3)):
                dp.quantile_values.add(quantile=q, value=rng.uniform(0, 9))
            dp.attributes.extend(key_values(_random_attrs(rng)))
            metric.summary.data_points.append(dp)
        return metric
    if kind == "histogram":
        body = metric.histogram
        body.aggregation_temporality = rng.choice([0, 1, 2])
        bounds = sorted(rng.sample([0.5, 1.0, 2.0, 5.0, 10.0, -1.0], rng.randint(0, 4)))
        for t in times:
            n = len(bounds) + 1 if rng.random() < 0.9 else rng.randint(0, 3)
            counts = [rng.randint(0, 20) for _ in range(n)]
            extra = {k: rng.uniform(-5, 50) for k in ("sum", "min", "max") if rng.random() < .5}
            dp = histogram_point(0, counts, bounds, time=t, start_time_unix_nano=start,
                                 attributes=_random_attrs(rng),
                                 flags=1 if rng.random() < 0.05 else 0, **extra)
            if rng.random() < 0.1:
                dp.exemplars.add(time_unix_nano=t, as_double=1.0, span_id=b"\x01" * 8)
            body.data_points.append(dp)
        return metric
    body = metric.gauge if kind == "gauge" else metric.sum
    if kind == "sum":
        body.aggregation_temporality = rng.choice([0, 1, 2, 2])
        body.is_monotonic = rng.random() < 0.7
    for t in times:
        value = rng.choice([rng.randint(-10, 1000), rng.uniform(-10, 1000), 0.0, math.inf])
        dp = number(0, value, time=t, start_time_unix_nano=start,
                    attributes=_random_attrs(rng), flags=1 if rng.random() < 0.05 else 0)
        if rng.random() < 0.1:
            dp.exemplars.add(time_unix_nano=t, as_int=3, trace_id=b"\x02" * 16)
        body.data_points.append(dp)
    return metric


@pytest.mark.parametrize("seed", range(6))
def test_random_messages(seed: int) -> None:
    rng = random.Random(seed)
    batches = [[_random_message(rng) for _ in range(rng.randint(1, 6))] for _ in range(6)]
    decode_both(batches, max_series=rng.choice([3, 100_000]))


@pytest.mark.parametrize("seed", range(4))
def test_truncated_and_corrupted_bytes(seed: int) -> None:
    rng = random.Random(100 + seed)
    good = [_random_message(rng) for _ in range(8)]
    good = [g for g in good if g] or [message([Metric(name="m", gauge=Gauge(
        data_points=[number(0, 1.0)]))])]
    broken = []
    for value in good:
        for _ in range(12):
            cut = rng.randrange(len(value))
            broken.append(value[:cut])
            flipped = bytearray(value)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            broken.append(bytes(flipped))
    broken += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
               for _ in range(50)]
    broken += [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x80", b"\xff" * 11, b"\x0b\x0c",
               b"\x0a\x05\x12\x03\x0a\x01"]
    for value in broken:  # never a crash: read, or refused with a reason
        try:
            wire.scan_metrics(value)
        except wire.WireError as exc:
            assert "at byte" in str(exc)
    decode_both([broken])


def test_a_refused_message_changes_nothing() -> None:
    rows, memory = OtlpRows(RecordKind.METRIC), SeriesMemory()
    value = message([Metric(name="s", sum=Sum(data_points=[number(0, 1.0)],
                                              aggregation_temporality=2,
                                              is_monotonic=True))])
    with pytest.raises(WireFallback, match="truncated|past its end"):
        map_metrics_wire(value[:-3], 0, rows, memory)
    assert rows.row_count() == 0 and len(memory) == 0 and not rows.early


@pytest.mark.parametrize("limit", [1, 3, 100_000])
def test_resources_scopes_and_attributes_read_once_give_the_same_rows(
        limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resources, scopes and attribute sets are remembered by their bytes across messages
    (also when the tables fill and start again): the rows stay the library's, and a
    remembered entry never leaks into a message whose bytes differ."""
    monkeypatch.setattr(otlp_wire, "KNOWN_LIMIT", limit)
    monkeypatch.setattr(otlp_wire, "MAPS_LIMIT", limit)
    forget_known()
    rng = random.Random(limit)
    messages = [_random_message(rng) for _ in range(12)]
    # the same attribute bytes under other resources and scopes: each keeps its own base
    same = [message([Metric(name="m", gauge=Gauge(data_points=[number(0, 1.0)]))],
                    resource=resource, scope=scope)
            for resource in ({"service.name": "a"}, {"service.name": "b", "k8s.ns": "x"})
            for scope in (("s", "1"), ("s", "2"), ("", ""))]
    first = decode_both([messages, same, messages + same])
    again = decode_both([messages, same, messages + same])  # now all remembered
    for a, b in zip(first, again, strict=True):
        _same(a, b)
    assert len({str(r) for b in first[1:2] for r in b.columns["attributes"].to_pylist()}) == 6
    assert len(otlp_wire._REGIONS) <= limit and len(otlp_wire._MAPS) <= limit


def test_names_units_and_services_too_long_only_where_they_are() -> None:
    """The checks read a chunk's few distinct strings first: a name too long only with a
    derived suffix (``.count_rate``), a unit or service too long, in one batch with good
    rows, are rejected exactly as the library path rejects them."""
    bounds = [1.0, 5.0]
    edge = "n" * 250  # 256 long only as "<edge>.count_rate" or "<edge>.sum_rate"

    def hist(name: str, unit: str = "ms") -> Metric:
        return Metric(name=name, unit=unit, histogram=Histogram(
            aggregation_temporality=1, data_points=[histogram_point(
                i, [1, 2, i], bounds, sum=3.0, start_time_unix_nano=T0_NS - SECOND_NS)
                for i in range(3)]))

    values = [message([hist("ok"), hist(edge), hist("u", unit="u" * 65)]),
              message([hist("ok")], resource={"service.name": "s" * 257}),
              message([hist("ok"), Metric(name="g" * 257, gauge=Gauge(
                  data_points=[number(0, 1.0)]))])]
    assert all(scanned(v) for v in values)
    batch, = decode_both([values])
    reasons = {r.reason for r in batch.rejections}
    assert any("longer than 256" in r for r in reasons)
    assert any("longer than 64" in r for r in reasons)
    assert "ok.p50" in batch.columns["name"]
    assert f"{edge}.p50" in batch.columns["name"]  # only its too long rows go
    assert f"{edge}.count_rate" not in batch.columns["name"]
    assert "name: longer than 256 characters (261)" in reasons  # edge + ".count_rate"
