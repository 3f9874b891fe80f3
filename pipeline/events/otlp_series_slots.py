"""Where :class:`~pipeline.events.otlp_series.SeriesMemory` keeps its series: numbered slots.

Each series key has a slot; each slot has a tick (when it was last seen: the least recently
seen series is the oldest tick) and the series' previous point in one of two forms:

- a tuple, as the protobuf library path swaps it (``values[slot]``);
- columns (numpy arrays indexed by slot, bucket counts and bounds in two pools), as the C
  wire scanner's path reads and writes a whole message's points at once.

Either path reads the other's form: :meth:`SeriesSlots.point` builds the tuple from the
columns, :meth:`SeriesSlots.to_columns` the columns from the tuple, so a series keeps its
history whichever decoder maps the next message.

The C path finds slots without building keys: a series is also known by a *code*, two
numbers packed in an int64 (its scope, metric name and type; its attribute set), looked up
for a whole message at once in a sorted array.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

# a slot's form (0: a tuple, or free): which columns hold its previous point
SUM_COLUMNS, SUMMARY_COLUMNS, HISTOGRAM_COLUMNS, EXPONENTIAL_COLUMNS = 1, 2, 3, 4
# an exponential histogram's counts run starts with these (then positive, negative counts)
EXP_HEADER = 5  # zero count, scale, positive offset, negative offset, positive buckets
_NEVER = np.iinfo(np.int64).max  # the tick of a free slot
_QUEUE = 1024  # oldest slots found per scan of the ticks
_COMPACT_FLOOR = 4096  # pools this small are never compacted
_GARBAGE = 4  # a pool is compacted when it holds this many times the values in use


SLOT = np.dtype([("time", "=u8"), ("start", "=u8"), ("count", "=u8"), ("value", "=f8"),
                 ("counts_at", "=i8"), ("ncounts", "=i8"), ("bounds_at", "=i8"),
                 ("nbounds", "=i8"), ("tick", "=i8"), ("code", "=i8"), ("form", "=i1"),
                 ("has_total", "=i1"), ("pad", "V6")])  # the C extension's slot_t


def _column(name: str) -> property:
    """A field of every slot (a view: writes go to the slots)."""
    return property(lambda self: self.columns[name], doc=f"each slot's {name}")


class _Pool:
    """A growing array that slots keep runs of values in (bucket counts or bounds)."""

    def __init__(self, dtype: type) -> None:
        self.data = np.zeros(1024, dtype)
        self.used = 0

    def reserve(self, n: int) -> None:
        """Room for ``n`` more values."""
        if self.used + n > len(self.data):
            grown = np.zeros(max(2 * len(self.data), self.used + n), self.data.dtype)
            grown[:self.used] = self.data[:self.used]
            self.data = grown

    def append(self, values: np.ndarray) -> int:
        """Store ``values`` at the end; returns where they start."""
        at, n = self.used, len(values)
        self.reserve(n)
        self.data[at:at + n] = values
        self.used = at + n
        return at


def runs(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of every element of the runs ``[starts[k], starts[k] + lengths[k])`` one after
    another, the run each belongs to)."""
    lengths = lengths.astype(np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    first = np.zeros(len(lengths), np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1], out=first[1:])
    return starts.astype(np.int64)[owner] + np.arange(len(owner)) - first[owner], owner


class SeriesSlots:
    """Series keys, their slots and previous points (see the module's docstring)."""

    def __init__(self) -> None:
        self.slot_of: dict[Hashable, int] = {}
        self.keys: list[Hashable | None] = []
        self.values: list[tuple | None] = []  # the tuple form, None: columns (or free)
        self._free: list[int] = []
        self.clock = 0
        self._queue: list[tuple[int, int]] = []  # (tick, slot), oldest first, maybe stale
        self._queued = 0
        self.capacity = 0
        self.state = np.zeros(0, SLOT)  # the columns form, and each slot's tick and code
        self.columns = {name: self.state[name] for name in SLOT.names}  # views of its fields
        self.counts = _Pool(np.uint64)
        self.bounds = _Pool(np.float64)
        self.compact_at = 1 << 16  # pool values in use past which compact() runs
        # codes: a sorted int64 array, the slot of each (-1: none now)
        self.codes = np.zeros(0, np.int64)
        self.code_slot = np.zeros(0, np.int64)
        self.metric_ids: dict[Hashable, int] = {}
        self.attribute_ids: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self.slot_of)

    # ------------------------------------------------------------ slots

    tick = _column("tick")
    form = _column("form")
    start = _column("start")
    time = _column("time")
    value = _column("value")
    count = _column("count")
    has_total = _column("has_total")
    counts_at = _column("counts_at")
    ncounts = _column("ncounts")
    bounds_at = _column("bounds_at")
    nbounds = _column("nbounds")
    code_of = _column("code")

    def _grow(self, need: int) -> None:
        size = max(1024, 2 * self.capacity, need)
        state = np.zeros(size, SLOT)
        state[:self.capacity] = self.state
        state["tick"][self.capacity:] = _NEVER
        state["code"][self.capacity:] = -1
        self.state = state
        self.columns = {name: state[name] for name in SLOT.names}
        self.keys.extend([None] * (size - self.capacity))
        self.values.extend([None] * (size - self.capacity))
        self._free.extend(range(size - 1, self.capacity - 1, -1))
        self.capacity = size

    def add(self, key: Hashable, point: tuple | None) -> int:
        """A new slot for ``key`` (seen now), holding ``point`` (None: columns follow)."""
        if not self._free:
            self._grow(self.capacity + 1)
        slot = self._free.pop()
        self.slot_of[key] = slot
        self.keys[slot] = key
        self.values[slot] = point
        self.tick[slot] = self.clock
        self.clock += 1
        return slot

    def touch(self, slot: int) -> None:
        """The series in ``slot`` was seen now."""
        self.tick[slot] = self.clock
        self.clock += 1

    def remove(self, slot: int) -> None:
        """Forget the series in ``slot``."""
        del self.slot_of[self.keys[slot]]
        self.keys[slot] = self.values[slot] = None
        self.form[slot] = 0
        self.tick[slot] = _NEVER
        code = int(self.code_of[slot])
        if code >= 0:
            self.code_slot[np.searchsorted(self.codes, code)] = -1
            self.code_of[slot] = -1
        self._free.append(slot)

    def oldest(self) -> int:
        """The slot seen least recently (there is one)."""
        while True:
            while self._queued < len(self._queue):
                tick, slot = self._queue[self._queued]
                self._queued += 1
                if self.tick[slot] == tick:  # not seen since it was queued
                    return slot
            # the oldest ticks now: later ones only grow, so the first still valid entry
            # of this queue is always the oldest of all
            k = min(_QUEUE, len(self.slot_of))
            found = np.argpartition(self.tick, k - 1)[:k] if k < self.capacity \
                else np.arange(self.capacity)
            found = found[np.argsort(self.tick[found])]
            self._queue = [(t, s) for t, s in zip(self.tick[found].tolist(), found.tolist(),
                                                  strict=True) if t != _NEVER]
            self._queued = 0

    # ------------------------------------------------------------ the two forms

    def point(self, slot: int) -> tuple:
        """The previous point of ``slot`` as the protobuf library path keeps it."""
        value = self.values[slot]
        if value is not None:
            return value
        start, time, form = int(self.start[slot]), int(self.time[slot]), self.form[slot]
        if form == SUM_COLUMNS:
            return start, time, float(self.value[slot])
        if form == SUMMARY_COLUMNS:
            return start, time, int(self.count[slot]), float(self.value[slot])
        c, nc = int(self.counts_at[slot]), int(self.ncounts[slot])
        b, nb = int(self.bounds_at[slot]), int(self.nbounds[slot])
        total = float(self.value[slot]) if self.has_total[slot] else None
        run = self.counts.data[c:c + nc]
        if form == EXPONENTIAL_COLUMNS:
            zero = int(run[0])
            scale, positive_offset, negative_offset, n_positive = \
                run[1:EXP_HEADER].view(np.int64).tolist()
            counts = run[EXP_HEADER:].tolist()
            return (start, time, int(self.count[slot]), total, scale, zero,
                    (positive_offset, counts[:n_positive]),
                    (negative_offset, counts[n_positive:]))
        return (start, time, int(self.count[slot]), total, run.tolist(),
                self.bounds.data[b:b + nb].tolist())

    def set_point(self, slot: int, point: tuple) -> None:
        """Keep ``point`` (the tuple form) as the previous point of ``slot``."""
        self.values[slot] = point
        self.form[slot] = 0

    def to_columns(self, slot: int, form: int) -> None:
        """Move the tuple of ``slot`` (a cumulative sum's, summary's or histogram's) into
        columns (``form``)."""
        point = self.values[slot]
        self.values[slot] = None
        self.form[slot] = form
        self.start[slot], self.time[slot] = point[0], point[1]
        if form == SUM_COLUMNS:
            self.value[slot] = point[2]
            return
        self.count[slot] = point[2]
        if form == SUMMARY_COLUMNS:
            self.value[slot] = point[3]
            return
        total = point[3]
        self.has_total[slot] = total is not None
        self.value[slot] = 0.0 if total is None else total
        if form == EXPONENTIAL_COLUMNS:
            _, _, _, _, scale, zero, (p_offset, p_counts), (n_offset, n_counts) = point
            mask = (1 << 64) - 1  # signed numbers as their two's complement
            run = np.asarray([zero, scale & mask, p_offset & mask, n_offset & mask,
                              len(p_counts), *p_counts, *n_counts], np.uint64)
            self.counts_at[slot] = self.counts.append(run)
            self.ncounts[slot] = len(run)
            self.bounds_at[slot] = self.nbounds[slot] = 0
            return
        counts, bounds = point[4], point[5]
        self.counts_at[slot] = self.counts.append(np.asarray(counts, np.uint64))
        self.ncounts[slot] = len(counts)
        self.bounds_at[slot] = self.bounds.append(np.asarray(bounds, np.float64))
        self.nbounds[slot] = len(bounds)

    def compact(self) -> None:
        """Drop pool values no slot holds any more (when most are garbage)."""
        live = np.flatnonzero((self.form == HISTOGRAM_COLUMNS)
                              | (self.form == EXPONENTIAL_COLUMNS))
        for pool, at, n in ((self.counts, self.counts_at, self.ncounts),
                            (self.bounds, self.bounds_at, self.nbounds)):
            if pool.used <= _COMPACT_FLOOR or pool.used < _GARBAGE * int(n[live].sum()):
                continue
            kept = self.gather(pool, at[live], n[live])
            first = np.zeros(len(live), np.int64)
            if len(live):
                np.cumsum(n[live][:-1], out=first[1:])
            at[live] = first
            pool.data[:len(kept)] = kept
            pool.used = len(kept)
        self.compact_at = max(1 << 16, 4 * (self.counts.used + self.bounds.used))

    # ------------------------------------------------------------ codes

    def metric_id(self, metric: Hashable) -> int:
        """The number of a series' metric (its scope key, name and type)."""
        m = self.metric_ids.get(metric)
        if m is None:
            m = self.metric_ids[metric] = len(self.metric_ids)
        return m

    def attribute_id(self, attributes: Hashable) -> int:
        """The number of a series' attribute set."""
        a = self.attribute_ids.get(attributes)
        if a is None:
            a = self.attribute_ids[attributes] = len(self.attribute_ids)
        return a

    def forget_codes(self, limit: int) -> None:
        """Start the codes again when more than ``limit`` were handed out (series come and
        go: a code is never reused, so they would grow without end)."""
        if len(self.codes) > limit or len(self.metric_ids) > limit \
                or len(self.attribute_ids) > limit:
            self._reset_codes()

    def _reset_codes(self) -> None:
        self.metric_ids.clear()
        self.attribute_ids.clear()
        self.codes = np.zeros(0, np.int64)
        self.code_slot = np.zeros(0, np.int64)
        self.code_of[:] = -1

    def find(self, codes: np.ndarray) -> np.ndarray:
        """The slot of each code (-1: not known by that code)."""
        if not len(self.codes):
            return np.full(len(codes), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        return np.where(self.codes[pos] == codes, self.code_slot[pos], -1)

    def register(self, codes: np.ndarray, slots: np.ndarray) -> None:
        """Know ``slots`` by ``codes`` from now on (distinct codes)."""
        if not len(codes):
            return
        self.code_of[slots] = codes
        pos = np.searchsorted(self.codes, codes)
        there = pos < len(self.codes)
        there[there] = self.codes[pos[there]] == codes[there]
        self.code_slot[pos[there]] = slots[there]  # a code seen before, its slot gone
        new = ~there
        if new.any():
            order = np.argsort(codes[new])
            fresh, fresh_slots = codes[new][order], slots[new][order]
            at = np.searchsorted(self.codes, fresh)
            self.codes = np.insert(self.codes, at, fresh)
            self.code_slot = np.insert(self.code_slot, at, fresh_slots)

    # ------------------------------------------------------------ pools

    def gather(self, pool: _Pool, at: np.ndarray, n: np.ndarray) -> np.ndarray:
        """The runs ``pool[at[k]:at[k] + n[k]]`` one after another."""
        index, _ = runs(at, n)
        return pool.data[index]
