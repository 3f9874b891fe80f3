"""Exponential histograms and summaries on the C path give the library path's batches.

Differential: seeded random streams of OTLP messages, decoded by the C wire scanner and by
the protobuf library (each with its own series memory, or one memory shared message by
message), compared on every column, event id, rejection, bucket row, Arrow table, memory
counter and remembered point. The streams walk exponential histograms (delta, cumulative
and unspecified temporality) through counter resets (a bucket, the zero count or the count
going down, a new start time), scale changes, buckets shifting offset (index-shifted
subtraction), empty and missing bucket ranges, missing sums, late points and points
flagged without a value; summaries through resets, quantile lists that change, odd
quantiles (-0.0, NaN, more than eight) and missing sums; and memories too small for the
stream (series forgotten: those messages go to the library). Then encodings the scanner
must hand back (non-canonical or out-of-range) and a few values checked by hand.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    Metric,
    Summary,
    SummaryDataPoint,
)

from pipeline.events import otlp
from pipeline.events.otlp import decode_otlp_values
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_wire import WireFallback
from pipeline.events.schema import RecordKind
from tests.unit.events.otlp_support import NOW_MS, SECOND_NS, T0_NS, key_values
from tests.unit.events.test_otlp_wire import (
    _field,
    _same,
    decode_both,
    histogram_point,
    message,
    scanned,
)

pytest.importorskip("pipeline.events._otlpwire",
                    reason="the C extension is not built (no C compiler?)")

START = T0_NS - 600 * SECOND_NS
QUANTILES = [0.5, 0.9, 0.95, 0.99, 0.0, 1.0, -0.0, 0.999, 0.25, 0.75, math.nan]


def ep(t: int, route: str = "/a", scale: int = 2, positive: tuple[int, list[int]] = (0, []),
       negative: tuple[int, list[int]] | None = None, zero: int = 0, start: int = START,
       **fields: Any) -> ExponentialHistogramDataPoint:
    """An exponential histogram point at T0 + t s (count: its buckets' unless given)."""
    count = fields.pop("count", zero + sum(positive[1]) + sum(negative[1] if negative else []))
    dp = ExponentialHistogramDataPoint(time_unix_nano=T0_NS + t * SECOND_NS,
                                       start_time_unix_nano=start, count=count, scale=scale,
                                       zero_count=zero, **fields)
    dp.positive.offset = positive[0]
    dp.positive.bucket_counts.extend(positive[1])
    if negative is not None:
        dp.negative.offset = negative[0]
        dp.negative.bucket_counts.extend(negative[1])
    dp.attributes.extend(key_values({"route": route}))
    return dp


def expo(name: str, points: list[Any], temporality: int = 2) -> Metric:
    return Metric(name=name, unit="ms", exponential_histogram=ExponentialHistogram(
        aggregation_temporality=temporality, data_points=points))


def qp(t: int, count: int, total: float, quantiles: list[tuple[float, float]],
       route: str = "/a", start: int = START, **fields: Any) -> SummaryDataPoint:
    dp = SummaryDataPoint(time_unix_nano=T0_NS + t * SECOND_NS, start_time_unix_nano=start,
                          count=count, sum=total, **fields)
    for q, v in quantiles:
        dp.quantile_values.add(quantile=q, value=v)
    dp.attributes.extend(key_values({"route": route}))
    return dp


def summary(name: str, points: list[Any]) -> Metric:
    return Metric(name=name, unit="s", summary=Summary(data_points=points))


def counting_fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reasons of the messages the C path hands to the library."""
    reasons: list[str] = []
    original = otlp.map_metrics_wire

    def counted(*args: Any) -> int:
        try:
            return original(*args)
        except WireFallback as exc:
            reasons.append(str(exc))
            raise

    monkeypatch.setattr(otlp, "map_metrics_wire", counted)
    return reasons


class _Series:
    """One exponential histogram series' running state in a random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.start = START
        self.scale = rng.choice([-1, 0, 2, 3, 20])
        self.zero = 0
        self.positive = [rng.randint(-3, 25), [0] * rng.randint(0, 5)]
        self.negative = [rng.randint(-3, 3), [0] * rng.randint(0, 3)]
        self.total = 0.0

    def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.07:  # a reset: counts from zero, maybe a new start
            self.zero, self.total = 0, 0.0
            self.positive[1] = [0] * len(self.positive[1])
            self.negative[1] = [0] * len(self.negative[1])
            if rng.random() < 0.5:
                self.start += SECOND_NS
        elif roll < 0.12:  # rescaled (by the SDK: buckets merged two by two)
            self.scale -= 1
            counts = self.positive[1]
            self.positive = [self.positive[0] // 2, [
                sum(counts[i:i + 2]) for i in range(0, len(counts), 2)]]
        elif roll < 0.2:  # a lower bucket appears: the same counts, from one index lower
            self.positive = [self.positive[0] - 1, [0, *self.positive[1]]]
        elif roll < 0.25 and self.positive[1] and not self.positive[1][0]:
            self.positive = [self.positive[0] + 1, self.positive[1][1:]]  # an empty one goes
        elif roll < 0.28:  # a bucket that goes down: a reset
            if self.positive[1]:
                self.positive[1][-1] = max(0, self.positive[1][-1] - 1)
        elif roll < 0.32:  # the zero count alone goes down: a reset
            self.zero = max(0, self.zero - 1)
        for counts in (self.positive[1], self.negative[1]):
            for i in range(len(counts)):
                counts[i] += rng.choice([0, 0, 1, 3])
        if rng.random() < 0.3:
            self.zero += rng.randint(0, 2)
        if rng.random() < 0.05 and self.positive[1]:
            self.positive[1].append(rng.randint(0, 2))  # the range grows at the top
        self.total += rng.choice([0.0, 0.5, 7.25])

    def point(self, t: int, route: str) -> ExponentialHistogramDataPoint:
        rng = self.rng
        extra: dict[str, Any] = {}
        if rng.random() < 0.8:
            extra["sum"] = self.total
        if rng.random() < 0.3:
            extra["min"], extra["max"] = -1.0, 99.0
        if rng.random() < 0.5:
            extra["zero_threshold"] = rng.choice([1e-9, 0.5])
        if rng.random() < 0.04:
            extra["flags"] = 1
        negative = (self.negative[0], list(self.negative[1])) if rng.random() < 0.6 else None
        count = self.zero + sum(self.positive[1]) + (sum(negative[1]) if negative else 0)
        if rng.random() < 0.05:
            count = max(0, count - 5)  # a count going down alone: a reset too
        return ep(t, route, self.scale, (self.positive[0], list(self.positive[1])), negative,
                  self.zero, self.start, count=count, **extra)


def _delta_point(rng: random.Random, t: int, route: str) -> ExponentialHistogramDataPoint:
    extra: dict[str, Any] = {"sum": rng.uniform(0, 50)} if rng.random() < 0.7 else {}
    start = T0_NS + (t - 10) * SECOND_NS if rng.random() < 0.8 else 0
    if rng.random() < 0.1:
        start = T0_NS + (t + 1) * SECOND_NS  # starts after its time: no rates (NaN)
    positive = (rng.randint(-20, 20), [rng.randint(0, 9) for _ in range(rng.randint(0, 6))])
    negative = (rng.randint(-5, 5), [rng.randint(0, 4) for _ in range(rng.randint(0, 3))])
    return ep(t, route, rng.choice([-2, 0, 1, 4, 10]), positive,
              negative if rng.random() < 0.5 else None, rng.choice([0, 0, 3]), start,
              zero_threshold=rng.choice([0.0, 0.001]), **extra)


def _summary_point(rng: random.Random, state: dict, t: int, route: str) -> SummaryDataPoint:
    count, total, start = state.get(route, (0, 0.0, START))
    if rng.random() < 0.08:  # a reset
        count, total = 0, 0.0
        if rng.random() < 0.5:
            start += SECOND_NS
    count += rng.randint(0, 10)
    total += rng.choice([0.0, 1.5, 20.0])
    state[route] = (count, total, start)
    shown_count = count if rng.random() < 0.95 else max(0, count - 7)  # goes down: reset
    qs = rng.sample(QUANTILES, rng.randint(0, 4)) if rng.random() < 0.9 else QUANTILES
    return qp(t, shown_count, total, [(q, rng.uniform(0, 100)) for q in qs], route, start,
              flags=1 if rng.random() < 0.03 else 0)


def random_stream(rng: random.Random, rounds: int, series: int, repeats: bool = False
                  ) -> list[list[bytes]]:
    """Batches of messages: exponential histograms (cumulative, unspecified, delta) and
    summaries of ``series`` attribute sets each, round after round."""
    cumulative = {k: _Series(rng) for k in range(series)}
    summaries: dict[str, tuple] = {}
    batches = []
    for r in range(1, rounds + 1):
        values = []
        for _ in range(rng.randint(1, 3)):
            chosen = rng.sample(range(series), rng.randint(1, series))
            if repeats and rng.random() < 0.5:
                chosen.append(rng.choice(chosen))  # the same series twice
            points, unspecified, deltas, quantiles = [], [], [], []
            for k in chosen:
                t = r * 10 + rng.randint(0, 3) if rng.random() < 0.92 else r * 10 - 15
                cumulative[k].step()
                (points if k % 3 else unspecified).append(cumulative[k].point(t, f"/{k}"))
                deltas.append(_delta_point(rng, t, f"/{k}"))
                quantiles.append(_summary_point(rng, summaries, t, f"/{k}"))
            metrics = [expo("lat", points), expo("size", unspecified, temporality=0),
                       summary("rpc", quantiles)]
            if rng.random() < 0.7:
                metrics.append(expo("delta", deltas, temporality=1))
            rng.shuffle(metrics)
            values.append(message(metrics))
        batches.append(values)
    return batches


@pytest.mark.parametrize("seed", range(8))
def test_random_streams(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fallbacks = counting_fallbacks(monkeypatch)
    rng = random.Random(seed)
    repeats = seed % 4 == 3
    max_series = [100_000, 100_000, 100_000, 100_000, 4, 7, 10, 100_000][seed]
    out = decode_both(random_stream(rng, rounds=12, series=6, repeats=repeats), max_series)
    assert sum(len(b) for b in out) > 300
    if max_series == 100_000 and not repeats:
        assert not fallbacks  # every message on the C path
    else:  # a series twice, or series forgotten: those messages go to the library
        assert fallbacks and all("forget" in reason for reason in fallbacks)


@pytest.mark.parametrize("seed", range(4))
def test_one_memory_shared_by_both_decoders(seed: int) -> None:
    """Message after message the C path or the library path (at random) maps the stream
    into one memory: the same rows and remembered points as the library path alone."""
    rng = random.Random(50 + seed)
    shared, alone = SeriesMemory(), SeriesMemory()
    for values in random_stream(rng, rounds=10, series=5):
        for value in values:
            got = decode_otlp_values(RecordKind.METRIC, [value], NOW_MS, shared,
                                     decoder=rng.choice(["c", "python"]))
            want = decode_otlp_values(RecordKind.METRIC, [value], NOW_MS, alone,
                                      decoder="python")
            _same(got, want)
            assert shared.counters == alone.counters
    assert len(shared) == len(alone) > 0
    for key, slot in alone.slots.slot_of.items():  # tuples <-> columns, both ways
        assert shared.previous(key) == alone.slots.point(slot), key


def test_exponential_differences_by_bucket_index(monkeypatch: pytest.MonkeyPatch) -> None:
    fallbacks = counting_fallbacks(monkeypatch)
    first = message([expo("lat", [ep(1, positive=(4, [2, 3]), negative=(1, [1]), zero=1,
                                     sum=10.0, zero_threshold=0.5)])])
    # one index lower, the same counts plus some; the zero count and negatives grow
    second = message([expo("lat", [ep(3, positive=(3, [1, 2, 5]), negative=(1, [3]),
                                      zero=2, sum=16.0, zero_threshold=0.5)])])
    rescaled = message([expo("lat", [ep(5, scale=1, positive=(2, [1, 7]), sum=20.0)])])
    reset = message([expo("lat", [ep(7, scale=1, positive=(2, [0, 9]), sum=21.0)])])
    out = decode_both([[first], [second], [rescaled], [reset]])
    assert not fallbacks
    rows = dict(zip(out[1].columns["name"], out[1].columns["value"].tolist(), strict=True))
    # count 6 -> 11 and sum 10 -> 16 in 2 s
    assert rows["lat.count_rate"] == 3.0 and rows["lat.sum_rate"] == 3.0  # 7 -> 13, 10 -> 16
    buckets = out[1].buckets.to_pylist()[0]
    # differences: negative index 1 +2, zero +1, positive index 3 +1, 4 +0, 5 +2
    assert buckets["counts"] == [2.0, 1.0, 1.0, 0.0, 2.0]
    base = 2.0 ** 0.25  # scale 2
    assert buckets["lower"][:3] == [-(base ** 2), -0.5, base ** 3]
    assert buckets["upper"][:3] == [-base, 0.5, base ** 4]
    assert not len(out[2].columns["name"])  # a new scale: seeds again
    # a bucket went down (7 -> 0): counted from zero, so the rates are the point's own
    rows = dict(zip(out[3].columns["name"], out[3].columns["value"].tolist(), strict=True))
    assert rows["lat.count_rate"] == 4.5 and rows["lat.sum_rate"] == 10.5


def test_summaries_quantile_names_and_rates() -> None:
    many = [(q / 20, float(q)) for q in range(12)]  # twelve quantile rows, then the rates
    batches = [[message([summary("rpc", [qp(1, 10, 5.0, [(0.5, 1.0), (-0.0, 0.5)]),
                                         qp(1, 3, 0.0, [], route="/b")])])],
               [message([summary("rpc", [qp(3, 14, 9.0, many),
                                         qp(2, 1, 0.0, [(math.nan, 2.0)], route="/b")])])]]
    out = decode_both(batches)
    assert list(out[0].columns["name"]) == ["rpc.p50", "rpc.p-0"]  # first points: seeds
    names = list(out[1].columns["name"])
    assert names[:3] == ["rpc.p0", "rpc.p5", "rpc.p10"] and names[12:14] == \
        ["rpc.count_rate", "rpc.sum_rate"]
    assert out[1].columns["value"][12:14].tolist() == [2.0, 2.0]
    assert names[14:] == ["rpc.pnan", "rpc.count_rate", "rpc.sum_rate"]  # 3 -> 1: a reset


def _raw_point(fields: bytes) -> bytes:
    """A message of one cumulative exponential histogram point of these encoded fields."""
    metric = _field(1, b"e") + _field(10, _field(1, fields) + bytes([0x10, 0x02]))
    return _field(1, _field(2, _field(2, metric)))


def test_encodings_the_scanner_hands_back() -> None:
    time = bytes([0x19]) + (T0_NS + SECOND_NS).to_bytes(8, "little")
    count = bytes([0x21]) + (3).to_bytes(8, "little")
    packed = _field(8, _field(2, bytes([1, 2])))
    odd = [
        time + count + _field(8, bytes([0x10, 0x01, 0x10, 0x02])),  # counts not packed
        time + count + _field(8, _field(2, bytes([0x81, 0x00, 0x02]))),  # long varint
        time + count + bytes([0x30, 0x00]) + packed,  # scale written as 0
        time + count + bytes([0x30, 0x80, 0x80, 0x80, 0x80, 0x10]) + packed,  # past 32 bits
        time + count + _field(8, bytes([0x08, 0x00]) + _field(2, bytes([3]))),  # offset 0
        time + count + _field(8, _field(2, bytes([3])) + bytes([0x08, 0x02])),  # out of order
        time + count + _field(8, _field(2, bytes([3])) + bytes([0x18, 0x01])),  # unknown
        time + count + packed + bytes([0x71]) + bytes(8),  # zero threshold written as 0
        time + count + packed + _field(11, bytes([0x11]) + bytes(8)),  # an exemplar
        count + time + packed,  # fields out of order
        time + count + bytes([0x30, 0x4f]) + packed,  # scale -40: 2 ** 2 ** 40 overflows
    ]
    values = [_raw_point(raw) for raw in odd]
    assert not any(scanned(v) for v in values)
    summaries = [
        time + count + _field(6, bytes([0x09]) + bytes(8)),  # a quantile written as 0
        time + count + bytes([0x29]) + bytes(8),  # the sum written as 0
        time + count + _field(6, bytes([0x11]) + bytes(7) + b"\x01" + bytes([0x09])
                              + bytes(7) + b"\x01"),  # value before quantile
    ]
    values += [_field(1, _field(2, _field(2, _field(1, b"q") + _field(11, _field(1, raw)))))
               for raw in summaries]
    assert not any(scanned(v) for v in values[-3:])
    # a good one, to be sure the encoder above is right
    assert scanned(_raw_point(time + count + packed))
    decode_both([values, values])


def test_bounds_out_of_range_go_to_the_library() -> None:
    """Python raises OverflowError on ``base ** index`` past the float range: the message
    is dead-lettered by both decoders, with the same reason."""
    far = message([expo("lat", [ep(1, scale=4, positive=(20_000, [1]))], temporality=1)])
    assert not scanned(far)
    out = decode_both([[far]])
    assert "OverflowError" in out[0].rejections[0].reason


def test_explicit_and_exponential_buckets_in_one_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bucket rows of explicit and exponential histograms, delta and cumulative, come in
    point order whichever kind each point is."""
    fallbacks = counting_fallbacks(monkeypatch)

    def batch(t: int) -> list[bytes]:
        return [message([
            expo("e_delta", [ep(t, positive=(1, [t, 2]), sum=1.0)], temporality=1),
            Metric(name="h", histogram=Histogram(aggregation_temporality=1, data_points=[
                histogram_point(t, [1, t, 0], [1.0, 2.0], start_time_unix_nano=START)])),
            expo("e_cum", [ep(t, positive=(0, [t, 2 * t]), route=r) for r in ("/a", "/b")]),
            Metric(name="hc", histogram=Histogram(aggregation_temporality=2, data_points=[
                histogram_point(t, [t, t, t], [1.0, 2.0], start_time_unix_nano=START)])),
            expo("e_delta2", [ep(t, negative=(0, [3]))], temporality=1)])]

    out = decode_both([batch(1), batch(2), batch(3)])
    assert not fallbacks
    assert out[2].buckets["name"].to_pylist() == \
        ["e_delta", "h", "e_cum", "e_cum", "hc", "e_delta2"]
