"""Cumulative sums and histograms through the series memory, a message at once (C path).

The C path swaps a whole message's cumulative points into the memory's columns; the
protobuf library path swaps them one by one as tuples. Every test compares the two
(rows, event ids, rejections, buckets, memory counters and size), also with one memory
shared by both decoders message after message, so a series handed from one path to the
other keeps its history. Covered: first points seed only, counter resets (a count that
goes down, a new start time), bucket layout changes, late points, points without a sum,
series across messages and batches, a series twice in one message and memories too
small for the stream (both: point by point), and the memory's own bookkeeping (least
recently seen first out, pools compacted, codes started again).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    Metric,
    Sum,
)

from pipeline.events import otlp_series_slots, otlp_wire
from pipeline.events.otlp import decode_otlp_values
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_series_slots import SeriesSlots
from pipeline.events.schema import RecordKind
from tests.unit.events.otlp_support import NOW_MS, SECOND_NS, T0_NS
from tests.unit.events.test_otlp_wire import (
    _same,
    decode_both,
    histogram_point,
    message,
    number,
    scanned,
)

pytest.importorskip("pipeline.events._otlpwire",
                    reason="the C extension is not built (no C compiler?)")

START = T0_NS - 600 * SECOND_NS
BOUNDS = [1.0, 5.0, 10.0]


def chist(name: str, points: list[Any]) -> Metric:
    """A cumulative histogram metric."""
    return Metric(name=name, unit="ms", histogram=Histogram(aggregation_temporality=2,
                                                            data_points=points))


def hp(t: int, counts: list[int], route: str = "/a", bounds: list[float] | None = None,
       start: int = START, **fields: Any) -> Any:
    """A histogram point at ``t`` seconds with a sum unless ``sum=None``."""
    if "sum" not in fields:
        fields["sum"] = 2.5 * sum(counts)
    elif fields["sum"] is None:
        del fields["sum"]
    return histogram_point(t, counts, BOUNDS if bounds is None else bounds,
                           start_time_unix_nano=start, attributes={"route": route}, **fields)


def csum(name: str, points: list[Any]) -> Metric:
    """A cumulative monotonic sum metric."""
    return Metric(name=name, unit="By", sum=Sum(aggregation_temporality=2, is_monotonic=True,
                                                data_points=points))


def sp(t: int, value: float, route: str = "/a", start: int = START) -> Any:
    return number(t, value, start_time_unix_nano=start, attributes={"route": route})


def exponential(t: int) -> Metric:
    """An exponential histogram with an exemplar: its message goes to the protobuf
    library path whole."""
    dp = ExponentialHistogramDataPoint(time_unix_nano=T0_NS + t * SECOND_NS,
                                       start_time_unix_nano=START, count=t, scale=0)
    dp.positive.bucket_counts.extend([t])
    dp.exemplars.add(time_unix_nano=T0_NS + t * SECOND_NS, as_int=t)
    return Metric(name="expo", exponential_histogram=ExponentialHistogram(
        aggregation_temporality=2, data_points=[dp]))


def scenario() -> list[list[bytes]]:
    """Batches of messages walking through every state a cumulative series can meet."""
    return [
        # batch 1: first points seed; A again in the next message: rates since
        [message([chist("lat", [hp(1, [1, 2, 3, 4]), hp(1, [0, 1, 0, 0], "/b")]),
                  csum("bytes", [sp(1, 100.0), sp(1, 7, "/b")])]),
         message([chist("lat", [hp(2, [2, 4, 6, 8]), hp(1, [5, 5, 5, 5], "/c")]),
                  csum("bytes", [sp(2, 160.0)])])],
        # batch 2: A's counts go down (a reset), B's bounds change (same length), C's
        # layout changes length, the counter's start moves (a reset), D without a sum
        [message([chist("lat", [
            hp(3, [1, 1, 1, 1]),
            hp(3, [0, 2, 0, 0], "/b", bounds=[1.0, 5.0, 20.0]),
            hp(3, [5, 5, 6], "/c", bounds=[1.0, 5.0]),
            hp(3, [1, 0, 0, 0], "/d", sum=None)]),
            csum("bytes", [sp(3, 10.0, start=START + SECOND_NS), sp(3, 9, "/b")])])],
        # batch 3: late points (the same time, an older one), a new start for A, D now
        # with a sum (its previous had none: no sum rate), B and C since their new layouts
        [message([chist("lat", [
            hp(3, [9, 9, 9, 9]), hp(2, [0, 9, 0, 0], "/b", bounds=[1.0, 5.0, 20.0])]),
            csum("bytes", [sp(3, 50.0, start=START + SECOND_NS)])]),
         message([chist("lat", [
             hp(4, [1, 1, 1, 2], start=START + 2 * SECOND_NS),
             hp(4, [0, 3, 1, 0], "/b", bounds=[1.0, 5.0, 20.0]),
             hp(4, [6, 5, 9], "/c", bounds=[1.0, 5.0]),
             hp(4, [2, 0, 0, 1], "/d")]),
             csum("bytes", [sp(4, 30.0, start=START + SECOND_NS), sp(4, 12, "/b")])])],
        # batch 4: a message the library maps (an exponential histogram in it) with A and
        # the counter, then the C path again; E new, zero observations in an interval
        [message([exponential(5), chist("lat", [hp(5, [2, 2, 2, 2],
                                                   start=START + 2 * SECOND_NS)]),
                  csum("bytes", [sp(5, 45.0, start=START + SECOND_NS)])]),
         message([chist("lat", [hp(6, [3, 3, 3, 3], start=START + 2 * SECOND_NS),
                                hp(6, [1, 1, 1, 1], "/e"),
                                hp(6, [2, 0, 0, 1], "/d")]),
                  csum("bytes", [sp(6, 60.0, start=START + SECOND_NS), sp(6, 12, "/b")])])],
        # batch 5: everything once more, all since their previous points
        [message([chist("lat", [hp(7, [4, 4, 4, 4], start=START + 2 * SECOND_NS),
                                hp(7, [0, 4, 1, 0], "/b", bounds=[1.0, 5.0, 20.0]),
                                hp(7, [7, 5, 9], "/c", bounds=[1.0, 5.0]),
                                hp(7, [3, 3, 3, 3], "/e")]),
                  csum("bytes", [sp(7, 61.5, start=START + SECOND_NS), sp(7, 13, "/b")])])],
    ]


def counting_point_by_point(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the messages whose cumulative points go point by point."""
    calls: list[int] = []
    original = otlp_wire.point_by_point

    def counted(*args: Any) -> None:
        calls.append(len(args[1]))
        original(*args)

    monkeypatch.setattr(otlp_wire, "point_by_point", counted)
    return calls


def test_every_state_of_a_cumulative_series_a_message_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_point_by_point(monkeypatch)
    batches = scenario()
    out = decode_both(batches)
    assert not calls  # all at once: no series twice in a message, room for all
    assert not scanned(batches[3][0]) and scanned(batches[3][1])
    names = [list(b.columns["name"]) for b in out]
    assert names[0] == ["lat.count_rate", "lat.sum_rate", "lat.p50", "lat.p95", "lat.p99",
                        "bytes.rate"]  # A and the counter since their first points
    values = out[2].columns["value"].tolist()
    # after the reset (30 - 10) / 1 s; the other counter (12 - 9) / 1 s; late points: none
    assert [v for n, v in zip(names[2], values, strict=True) if n == "bytes.rate"] == \
        [20.0, 3.0]
    # D had no sum before: A's (a reset), B's and C's (since their new layouts) only
    assert names[2].count("lat.count_rate") == 4
    assert names[2].count("lat.sum_rate") == 3


@pytest.mark.parametrize("seed", range(4))
def test_one_memory_shared_by_both_decoders(seed: int) -> None:
    """Message after message the C path or the library path (at random) maps the stream
    into one memory: the same rows as the library path alone, whichever held the series."""
    rng = random.Random(seed)
    batches = scenario() + _random_stream(rng, rounds=8, series=6, repeats=False)
    shared, alone = SeriesMemory(), SeriesMemory()
    for values in batches:
        for value in values:
            decoder = rng.choice(["c", "python"])
            got = decode_otlp_values(RecordKind.METRIC, [value], NOW_MS, shared,
                                     decoder=decoder)
            want = decode_otlp_values(RecordKind.METRIC, [value], NOW_MS, alone,
                                      decoder="python")
            _same(got, want)
            assert shared.counters == alone.counters
            assert len(shared) == len(alone)
    for key, slot in alone.slots.slot_of.items():  # the same previous point of each series
        assert shared.previous(key) == alone.slots.point(slot), key


def _random_stream(rng: random.Random, rounds: int, series: int, repeats: bool
                   ) -> list[list[bytes]]:
    """Cumulative histograms and counters of ``series`` attribute sets growing round after
    round, with resets, layout changes, late points, points without sum, and (when
    ``repeats``) a series twice in a message."""
    hist = {k: [0, 0, 0, 0] for k in range(series)}
    sums = {k: 0.0 for k in range(series)}
    starts = {k: START for k in range(series)}
    batches = []
    for r in range(1, rounds + 1):
        values = []
        for _ in range(rng.randint(1, 3)):
            points, counters = [], []
            chosen = rng.sample(range(series), rng.randint(1, series))
            if repeats and rng.random() < 0.5:
                chosen.append(rng.choice(chosen))  # the same series twice
            for k in chosen:
                t = r * 10 + rng.randint(0, 3) if rng.random() < 0.9 else r * 10 - 15
                if rng.random() < 0.1:  # a reset: counts from zero, maybe a new start
                    hist[k], sums[k] = [0, 0, 0, 0], 0.0
                    if rng.random() < 0.5:
                        starts[k] += SECOND_NS
                hist[k] = [c + rng.randint(0, 4) for c in hist[k]]
                sums[k] += rng.choice([0.0, 1.5, 10.0])
                layout = rng.random()
                bounds, counts = (BOUNDS, hist[k]) if layout < 0.85 else \
                    ([1.0, 5.0, 11.0], hist[k]) if layout < 0.93 else ([2.0], hist[k][:2])
                extra = {"sum": None} if rng.random() < 0.15 else {}
                points.append(hp(t, counts, f"/{k}", bounds=bounds, start=starts[k],
                                 **extra))
                counters.append(sp(t, sums[k], f"/{k}", start=starts[k]))
            metrics = [chist("lat", points), csum("bytes", counters)]
            if rng.random() < 0.15:
                metrics.append(exponential(r))
            values.append(message(metrics))
        batches.append(values)
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_random_cumulative_streams(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_point_by_point(monkeypatch)
    rng = random.Random(seed)
    repeats = seed % 2 == 1
    decode_both(_random_stream(rng, rounds=12, series=8, repeats=repeats),
                max_series=rng.choice([3, 6, 100_000]) if seed >= 4 else 100_000)
    if seed < 4 and not repeats:
        assert not calls
    if repeats:
        assert calls  # a series twice in a message: point by point


def test_a_series_twice_in_one_message_goes_point_by_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_point_by_point(monkeypatch)
    twice = message([chist("lat", [hp(2, [1, 1, 1, 1]), hp(3, [2, 2, 2, 2]),
                                   hp(2, [3, 3, 3, 3])]),
                     csum("bytes", [sp(2, 1.0), sp(3, 5.0), sp(2, 9.0)])])
    first = message([chist("lat", [hp(1, [0, 1, 0, 0])]), csum("bytes", [sp(1, 0.5)])])
    then = message([chist("lat", [hp(5, [4, 4, 4, 4])]), csum("bytes", [sp(5, 9.0)])])
    out = decode_both([[first], [twice, then]])
    assert len(calls) == 1
    # t2 since t1, t3 since t2, the second t2 late; then t5 since t3
    assert list(out[1].columns["name"]).count("bytes.rate") == 3
    assert list(out[1].columns["name"]).count("lat.count_rate") == 3


def test_a_memory_too_small_forgets_as_the_library_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """New series that would make the memory forget others go point by point, so the
    least recently seen are forgotten in the library path's order."""
    calls = counting_point_by_point(monkeypatch)
    batches = [[message([chist("lat", [hp(t, [t, t, t, t], f"/{k}") for k in ks])])]
               for t, ks in ((1, [0, 1, 2]), (2, [1, 0]), (3, [3]), (4, [0, 2, 1]))]
    out = decode_both(batches, max_series=3)
    assert len(calls) == 2  # the fourth series, then the second again
    # /2 was seen least recently (the second message saw /1 and /0): forgotten for /3
    assert list(out[3].columns["name"]).count("lat.count_rate") == 1


def test_memory_bookkeeping_pools_and_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pools compacted often and codes started again at every message give the same rows
    (slots are then found by their keys)."""
    monkeypatch.setattr(SeriesSlots, "forget_codes",
                        lambda self, limit: SeriesSlots.__dict__["_reset_codes"](self))
    original = SeriesSlots.compact

    def compact_always(self: SeriesSlots) -> None:
        self.compact_at = 0
        original(self)
        self.compact_at = 0

    monkeypatch.setattr(SeriesSlots, "compact", compact_always)
    monkeypatch.setattr(otlp_series_slots, "_COMPACT_FLOOR", 0)
    monkeypatch.setattr(otlp_series_slots, "_GARBAGE", 0)
    decode_both(scenario() + _random_stream(random.Random(7), rounds=10, series=6,
                                            repeats=False))


def test_the_least_recently_seen_slot_goes_first() -> None:
    memory = SeriesMemory(max_series=5000)
    for k in range(3000):
        memory.swap(("k", k), (0, 1, 1.0))
    for k in range(0, 3000, 2):  # the even ones seen again
        memory.swap(("k", k), (0, 2, 1.0))
    order = []
    for _ in range(3000):
        slot = memory.slots.oldest()
        order.append(memory.slots.keys[slot][1])
        memory.slots.remove(slot)
    assert order == list(range(1, 3000, 2)) + list(range(0, 3000, 2))
    assert len(memory) == 0
    assert np.all(memory.slots.tick == np.iinfo(np.int64).max)
