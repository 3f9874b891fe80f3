"""Every OTLP metric type into stored rows: gauges, sums, histograms, summaries."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
    Summary,
    SummaryDataPoint,
)

from pipeline.events.otlp import decode_otlp_values
from pipeline.events.otlp_series import SeriesMemory, bucket_quantiles
from pipeline.events.schema import RecordKind
from tests.unit.events.otlp_support import NOW_MS, SECOND_NS, T0_NS, key_values, metrics

DELTA, CUMULATIVE = 1, 2


def point(t_s: float, value: float | int, start_s: float | None = 0, **attrs) -> NumberDataPoint:
    dp = NumberDataPoint(time_unix_nano=T0_NS + int(t_s * SECOND_NS),
                         start_time_unix_nano=0 if start_s is None
                         else T0_NS + int(start_s * SECOND_NS))
    if isinstance(value, int):
        dp.as_int = value
    else:
        dp.as_double = value
    dp.attributes.extend(key_values(attrs))
    return dp


def decode(memory: SeriesMemory, *metric_lists: list[Metric]):
    values = [metrics(m).SerializeToString() for m in metric_lists]
    return decode_otlp_values(RecordKind.METRIC, values, NOW_MS, memory)


def table(batch) -> list[tuple[str, float, str]]:
    return list(zip(batch.columns["name"], batch.columns["value"].tolist(),
                    batch.columns["unit"], strict=True))


def test_gauge_points_are_stored_as_they_are():
    memory = SeriesMemory()
    m = Metric(name="system.cpu.utilization", unit="%",
               gauge=Gauge(data_points=[point(0, 42.5, route="/a"), point(1, 7)]))
    batch = decode(memory, [m])
    assert table(batch) == [("system.cpu.utilization", 42.5, "%"),
                            ("system.cpu.utilization", 7.0, "%")]
    assert batch.to_arrow().column("attributes").to_pylist()[0] == [("route", "/a")]
    assert batch.columns["time"].tolist() == [T0_NS // 10**6, T0_NS // 10**6 + 1000]


def test_delta_and_non_monotonic_sums_are_stored_as_they_are():
    delta = Metric(name="requests", unit="{request}", sum=Sum(
        aggregation_temporality=DELTA, is_monotonic=True, data_points=[point(10, 5, 0)]))
    updown = Metric(name="queue.size", sum=Sum(
        aggregation_temporality=CUMULATIVE, is_monotonic=False, data_points=[point(10, 3)]))
    assert table(decode(SeriesMemory(), [delta, updown])) == [
        ("requests", 5.0, "{request}"), ("queue.size", 3.0, "")]


def counter(t_s: float, value: float, start_s: float = 0, **attrs) -> Metric:
    return Metric(name="http.server.requests", unit="{request}", sum=Sum(
        aggregation_temporality=CUMULATIVE, is_monotonic=True,
        data_points=[point(t_s, value, start_s, **attrs)]))


def test_cumulative_counters_become_per_second_rates_first_point_seeds():
    memory = SeriesMemory()
    assert len(decode(memory, [counter(10, 100)])) == 0  # seeds only
    assert memory.counters.seeded == 1
    batch = decode(memory, [counter(20, 150)], [counter(30, 170)])
    assert table(batch) == [("http.server.requests.rate", 5.0, "{request}/s"),
                            ("http.server.requests.rate", 2.0, "{request}/s")]


def test_a_counter_reset_counts_from_zero():
    memory = SeriesMemory()
    decode(memory, [counter(10, 100)])
    # the value went down: the process restarted, 30 requests since
    assert table(decode(memory, [counter(20, 30)]))[0][1] == 3.0
    # a new start time is a reset even when the value did not go down
    assert table(decode(memory, [counter(30, 80, start_s=25)]))[0][1] == 8.0
    assert memory.counters.resets == 2


def test_series_are_kept_apart_by_attributes_and_old_points_change_nothing():
    memory = SeriesMemory()
    decode(memory, [counter(10, 100, route="/a"), counter(10, 1000, route="/b")])
    batch = decode(memory, [counter(20, 110, route="/a"), counter(20, 1500, route="/b"),
                            counter(15, 105, route="/a")])
    assert [v for _, v, _ in table(batch)] == [1.0, 50.0]
    assert memory.counters.out_of_order == 1


def test_the_memory_forgets_the_least_recently_seen_series_past_its_cap():
    memory = SeriesMemory(max_series=2)
    decode(memory, [counter(10, 1, route=r) for r in ("/a", "/b", "/c")])
    assert len(memory) == 2 and memory.counters.evicted == 1
    batch = decode(memory, [counter(20, 11, route=r) for r in ("/b", "/c")])
    assert [v for _, v, _ in table(batch)] == [1.0, 1.0]
    assert len(decode(memory, [counter(20, 11, route="/a")])) == 0  # forgotten: it seeds


def histogram_point(t_s: float, counts: list[int], bounds: list[float], total: float,
                    start_s: float = 0, **extra) -> HistogramDataPoint:
    return HistogramDataPoint(
        time_unix_nano=T0_NS + int(t_s * SECOND_NS), start_time_unix_nano=T0_NS
        + int(start_s * SECOND_NS), count=sum(counts), sum=total, bucket_counts=counts,
        explicit_bounds=bounds, **extra)


def by_name(batch) -> dict[str, float]:
    return dict(zip(batch.columns["name"], batch.columns["value"].tolist(), strict=True))


def test_a_delta_histogram_gives_rates_and_quantiles_of_its_buckets():
    dp = histogram_point(10, [0, 50, 40, 10], [10, 20, 50], total=2000.0, start_s=0,
                         min=11.0, max=80.0)
    m = Metric(name="http.server.request.duration", unit="ms",
               histogram=Histogram(aggregation_temporality=DELTA, data_points=[dp]))
    batch = decode(SeriesMemory(), [m])
    got = by_name(batch)
    name = "http.server.request.duration"
    assert got[f"{name}.count_rate"] == 10.0  # 100 observations in 10 s
    assert got[f"{name}.sum_rate"] == 200.0
    # rank 50 is the top of (10, 20]; rank 95 is half way into (50, max=80]
    assert got[f"{name}.p50"] == 20.0
    assert got[f"{name}.p95"] == pytest.approx(65.0)
    assert got[f"{name}.p99"] == pytest.approx(50 + 30 * 0.9)
    units = dict(zip(batch.columns["name"], batch.columns["unit"], strict=True))
    assert (units[f"{name}.count_rate"], units[f"{name}.sum_rate"], units[f"{name}.p95"]) \
        == ("1/s", "ms/s", "ms")
    assert len(set(batch.columns["event_id"].tolist())) == 5
    [buckets] = batch.buckets.to_pylist()  # enough to recompute any quantile
    assert (buckets["name"], buckets["interval_s"]) == (name, 10.0)
    assert (buckets["lower"], buckets["upper"], buckets["counts"]) == (
        [10.0, 10, 20, 50], [10, 20, 50, 80.0], [0, 50, 40, 10])


def test_a_cumulative_histogram_gives_the_quantiles_of_each_interval():
    bounds = [10.0, 100.0]
    first = histogram_point(10, [100, 0, 0], bounds, total=500.0)
    second = histogram_point(20, [100, 0, 20], bounds, total=500.0 + 20 * 300)
    memory = SeriesMemory()
    hist = [Metric(name="latency", unit="ms", histogram=Histogram(
        aggregation_temporality=CUMULATIVE, data_points=[dp])) for dp in (first, second)]
    assert len(decode(memory, [hist[0]])) == 0
    second = decode(memory, [hist[1]])
    assert second.buckets.column("counts").to_pylist() == [[0, 0, 20]]  # the interval's
    got = by_name(second)
    # only the 20 new observations, all above 100: the open bucket ends at its lower bound
    assert got["latency.p50"] == got["latency.p99"] == 100.0
    assert got["latency.count_rate"] == 2.0 and got["latency.sum_rate"] == 600.0


def test_an_exponential_histogram_gives_quantiles_from_its_scaled_buckets():
    # scale 0: base 2, positive bucket i holds (2**i, 2**(i+1)]; offset 1 starts at (2, 4]
    dp = ExponentialHistogramDataPoint(
        time_unix_nano=T0_NS + 10 * SECOND_NS, start_time_unix_nano=T0_NS, count=100,
        sum=900.0, scale=0, zero_count=0,
        positive=ExponentialHistogramDataPoint.Buckets(offset=1, bucket_counts=[50, 0, 50]))
    m = Metric(name="size", unit="By", exponential_histogram=ExponentialHistogram(
        aggregation_temporality=DELTA, data_points=[dp]))
    got = by_name(decode(SeriesMemory(), [m]))
    assert got["size.p50"] == 4.0  # the top of (2, 4]
    assert got["size.p99"] == pytest.approx(8 + 8 * 0.98)  # inside (8, 16]
    assert got["size.count_rate"] == 10.0 and got["size.sum_rate"] == 90.0


def test_a_cumulative_exponential_histogram_subtracts_bucket_by_bucket():
    def dp(t_s, offset, counts):
        return ExponentialHistogramDataPoint(
            time_unix_nano=T0_NS + t_s * SECOND_NS, start_time_unix_nano=T0_NS,
            count=sum(counts), sum=float(sum(counts)), scale=0,
            positive=ExponentialHistogramDataPoint.Buckets(offset=offset, bucket_counts=counts))
    memory = SeriesMemory()
    metric = [Metric(name="size", exponential_histogram=ExponentialHistogram(
        aggregation_temporality=CUMULATIVE, data_points=[p]))
        for p in (dp(10, 2, [10]), dp(20, 1, [5, 10]))]
    decode(memory, [metric[0]])
    got = by_name(decode(memory, [metric[1]]))
    assert got["size.p50"] == pytest.approx(2 + 2 * 0.5)  # the 5 new ones are in (2, 4]
    assert got["size.count_rate"] == 0.5


def test_a_summary_gives_its_quantiles_and_then_rates():
    def dp(t_s, count, total):
        point = SummaryDataPoint(time_unix_nano=T0_NS + t_s * SECOND_NS,
                                 start_time_unix_nano=T0_NS, count=count, sum=total)
        for q, v in ((0.5, 12.0), (0.99, 80.0), (0.999, 95.0)):
            point.quantile_values.add(quantile=q, value=v)
        return point
    memory = SeriesMemory()
    first = decode(memory, [Metric(name="rpc", unit="ms", summary=Summary(
        data_points=[dp(10, 100, 1000.0)]))])
    assert by_name(first) == {"rpc.p50": 12.0, "rpc.p99": 80.0, "rpc.p99.9": 95.0}
    second = by_name(decode(memory, [Metric(name="rpc", unit="ms", summary=Summary(
        data_points=[dp(20, 150, 1600.0)]))]))
    assert second["rpc.count_rate"] == 5.0 and second["rpc.sum_rate"] == 60.0


def test_points_without_a_value_and_bad_points():
    no_value = point(1, 5.0)
    no_value.flags = 1
    nan = point(2, math.nan)
    metric_list = [Metric(name="g", gauge=Gauge(data_points=[no_value, nan, point(3, 1.0)])),
                   Metric(name="empty"), Metric(name="", gauge=Gauge(data_points=[point(4, 2)]))]
    memory = SeriesMemory()
    batch = decode(memory, metric_list)
    assert table(batch) == [("g", 1.0, "")]
    assert memory.counters.no_recorded_value == 1
    reasons = {r.index: r.reason for r in batch.rejections}
    assert reasons == {1: "value: expected a finite number, got nan",
                       3: "metric 'empty' has no data (gauge, sum, histogram ...)",
                       4: "name: must not be empty"}
    assert NumberDataPoint.FromString(batch.rejections[-1].payload).as_int == 2


def test_event_ids_come_from_the_point_so_a_resent_point_is_stored_once():
    m = Metric(name="g", gauge=Gauge(data_points=[point(1, 1.0), point(2, 2.0)]))
    again = Metric(name="g", gauge=Gauge(data_points=[point(2, 2.0)]))
    ids = decode(SeriesMemory(), [m]).columns["event_id"].tolist()
    assert decode(SeriesMemory(), [again]).columns["event_id"].tolist() == ids[1:]
    assert len(set(ids)) == 2


def test_bucket_quantiles_interpolate_inside_the_bucket():
    assert bucket_quantiles([0, 10], [10, 20], [10, 10], (0.25, 0.5, 0.75)) == [5.0, 10.0, 15.0]
    assert math.isnan(bucket_quantiles([0], [1], [0], (0.5,))[0])


def test_a_histogram_whose_counts_do_not_fit_its_bounds_is_rejected():
    bad = histogram_point(10, [1, 2], [10.0, 20.0], total=3.0)
    m = Metric(name="lat", histogram=Histogram(aggregation_temporality=DELTA,
                                               data_points=[bad]))
    batch = decode(SeriesMemory(), [m])
    assert len(batch) == 0
    assert batch.rejections[0].reason == \
        "histogram 'lat': 2 bucket counts for 2 bounds (expected 3)"
