"""Per-series memory for cumulative OTLP metrics, and quantiles estimated from buckets.

A cumulative counter only means something as a difference: the rate between two
points of the same series. :class:`SeriesMemory` keeps the previous point of each series
(bounded: the least recently seen series is forgotten past ``max_series``). It lives in
the ingest worker's memory, so a restart forgets it: the first point of a series after a
start only *seeds* it and gives no row.

Quantiles follow Prometheus' ``histogram_quantile``: find the bucket holding the rank
``q * count`` and interpolate linearly inside it. The lowest bucket starts at the
histogram's ``min`` when known (else at 0 when its upper bound is positive); the open top
bucket ends at ``max`` when known (else at the highest finite bound).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from pipeline.events.otlp_series_slots import SeriesSlots

QUANTILES = (0.5, 0.95, 0.99)


def quantile_suffix(q: float) -> str:
    """The stored-name suffix of a quantile: 0.5 -> ``p50``, 0.999 -> ``p99.9``.

    >>> [quantile_suffix(q) for q in (0.5, 0.95, 0.99, 0.999, 0.0, 1.0)]
    ['p50', 'p95', 'p99', 'p99.9', 'p0', 'p100']
    """
    return f"p{round(q * 100, 6):g}"


@dataclass
class SeriesCounters:
    """What the memory saw: points that only seeded a series, resets, points older than
    the remembered one, forgotten series, points flagged as having no recorded value."""

    seeded: int = 0
    resets: int = 0
    out_of_order: int = 0
    evicted: int = 0
    no_recorded_value: int = 0


@dataclass
class SeriesMemory:
    """The previous point of each cumulative series, least recently seen forgotten first.

    The points live in :class:`~pipeline.events.otlp_series_slots.SeriesSlots`: as tuples
    (:meth:`swap`, the protobuf library path's, one point at a time) or in columns (the C
    wire scanner's path, a message's points at once); either reads the other's.
    """

    max_series: int = 100_000
    counters: SeriesCounters = field(default_factory=SeriesCounters)
    slots: SeriesSlots = field(default_factory=SeriesSlots, repr=False, compare=False)
    # series keys by how a decoder recognises them cheaply (its own hashable), so that a
    # series' key is built once and the same object is looked up afterwards
    interned: dict = field(default_factory=dict, repr=False, compare=False)

    def intern(self, handle: Hashable, key: Hashable) -> Hashable:
        """Remember ``key`` as the series key known by ``handle`` (``interned[handle]``)."""
        if len(self.interned) >= 2 * self.max_series:
            self.interned.clear()
        self.interned[handle] = key
        return key

    def __len__(self) -> int:
        return len(self.slots)

    def swap(self, key: Hashable, point: tuple) -> tuple | None:
        """Remember ``point`` (its second element is the time) for ``key``; returns the
        previous point, or None when the series is new (the point then only seeds it).

        A point not newer than the remembered one changes nothing and returns None.
        """
        slots = self.slots
        slot = slots.slot_of.get(key)
        if slot is None:
            slots.add(key, point)
            self.counters.seeded += 1
            if len(slots) > self.max_series:
                slots.remove(slots.oldest())
                self.counters.evicted += 1
            return None
        slots.touch(slot)
        previous = slots.point(slot)
        if point[1] <= previous[1]:
            self.counters.out_of_order += 1
            return None
        slots.set_point(slot, point)
        return previous

    def previous(self, key: Hashable) -> tuple | None:
        """The remembered point of ``key`` (None: none), without touching it (tests)."""
        slot = self.slots.slot_of.get(key)
        return None if slot is None else self.slots.point(slot)


def bucket_quantiles(lowers: Sequence[float], uppers: Sequence[float],
                     counts: Sequence[float], qs: Sequence[float] = QUANTILES) -> list[float]:
    """Quantiles of observations in buckets ``(lowers[i], uppers[i]]`` holding ``counts[i]``
    (ascending buckets), by linear interpolation inside the bucket holding the rank.

    >>> bucket_quantiles([0, 10, 20], [10, 20, 40], [5, 3, 2], (0.5, 0.9))
    [10.0, 30.0]
    """
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    out = []
    for q in qs:
        if total <= 0:
            out.append(math.nan)
            continue
        rank = q * total
        if rank > 0:
            i = min(bisect_left(cumulative, rank), len(cumulative) - 1)
        else:  # the lowest observation: the start of the first bucket with data
            i = next(j for j, c in enumerate(counts) if c > 0)
        below = cumulative[i] - counts[i]
        inside = counts[i]
        fraction = (rank - below) / inside if inside > 0 else 1.0
        out.append(lowers[i] + (uppers[i] - lowers[i]) * min(max(fraction, 0.0), 1.0))
    return out


def explicit_buckets(bounds: Sequence[float], counts: Sequence[float],
                     minimum: float | None = None, maximum: float | None = None
                     ) -> tuple[list[float], list[float], list[float]]:
    """(lowers, uppers, counts) of an explicit-bounds histogram's buckets.

    >>> explicit_buckets([1, 5], [2, 3, 1])
    ([0.0, 1, 5], [1, 5, 5], [2, 3, 1])
    """
    bounds = list(bounds)
    counts = list(counts)
    if not bounds:
        low = minimum if minimum is not None else 0.0
        return [low], [maximum if maximum is not None else low], counts[:1]
    first_low = minimum if minimum is not None else (0.0 if bounds[0] > 0 else bounds[0])
    lowers = [min(first_low, bounds[0])] + bounds
    top = maximum if maximum is not None and maximum >= bounds[-1] else bounds[-1]
    uppers = bounds + [top]
    n = min(len(lowers), len(counts))
    return lowers[:n], uppers[:n], counts[:n]


def exponential_buckets(scale: int, zero_count: float, zero_threshold: float,
                        positive: tuple[int, Sequence[float]],
                        negative: tuple[int, Sequence[float]]
                        ) -> tuple[list[float], list[float], list[float]]:
    """(lowers, uppers, counts) of an exponential histogram: bucket ``i`` of the positive
    range holds ``(base**i, base**(i+1)]`` with ``base = 2**(2**-scale)``; the negative
    range mirrors it; the zero bucket holds ``[-zero_threshold, zero_threshold]``.

    >>> exponential_buckets(0, 1, 0.5, (0, [2, 3]), (0, []))
    ([-0.5, 1.0, 2.0], [0.5, 2.0, 4.0], [1, 2, 3])
    """
    base = 2.0 ** (2.0 ** -scale)
    lowers: list[float] = []
    uppers: list[float] = []
    counts: list[float] = []
    offset, neg = negative
    for i in range(len(neg) - 1, -1, -1):
        lowers.append(-(base ** (offset + i + 1)))
        uppers.append(-(base ** (offset + i)))
        counts.append(neg[i])
    if zero_count:
        lowers.append(-zero_threshold)
        uppers.append(zero_threshold)
        counts.append(zero_count)
    offset, pos = positive
    for i, count in enumerate(pos):
        lowers.append(base ** (offset + i))
        uppers.append(base ** (offset + i + 1))
        counts.append(count)
    return lowers, uppers, counts


def subtract_indexed(current: tuple[int, Sequence[int]], previous: tuple[int, Sequence[int]]
                     ) -> tuple[int, list[int]] | None:
    """Bucket counts of ``current - previous`` for exponential buckets (offset, counts);
    None when a count went down (the series was reset).

    >>> subtract_indexed((1, [5, 7]), (2, [3]))
    (1, [5, 4])
    """
    offset, counts = current
    p_offset, p_counts = previous
    out = list(counts)
    for j, count in enumerate(p_counts):
        i = p_offset + j - offset
        if count == 0:
            continue
        if not 0 <= i < len(out) or out[i] < count:
            return None
        out[i] -= count
    return offset, out


def positive_rate(delta: float, seconds: float) -> float:
    """``delta / seconds``, NaN when the interval is not positive (the row is rejected)."""
    return delta / seconds if seconds > 0 else math.nan

