"""A detect step's messages as operations, each service's slices merged where exact.

The detectors' cost is mostly per call (per service and series), not per record: a detect
batch holds several ingest batches' slices of the same service, with ticks between them,
and processing them one by one calls every engine once per slice. A later slice is merged
into the service's earlier one (its records appended, in order) when no tick between
them can close a window those records belong to: the ticks are replayed on a copy of the
step's watermarks, and when each record of the later slice is after every watermark
those ticks reach (progress minus the allowed lateness), taking the slice before the
ticks changes nothing the ticks do, and the engines see the same records in the same
order, in fewer, larger calls. Otherwise (a record the ticks would make late) the slice
stays in its place.

>>> import numpy as np
>>> from pipeline.events.slices import ServiceSlice
>>> a = ServiceSlice("metrics", "api", {"time": np.array([10, 20]), "name": ["x", "y"]})
>>> b = ServiceSlice("metrics", "api", {"time": np.array([30]), "name": ["z"]})
>>> merged = merge_slices(a, b)
>>> merged.columns["time"].tolist(), merged.columns["name"]
([10, 20, 30], ['x', 'y', 'z'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from pipeline.events.columns import TIME_COLUMN
from pipeline.events.slices import TICK_KEY, ServiceSlice, Tick, decode_ticks, read_slice


@dataclass
class Operation:
    """One thing to do in a step: apply ``ticks`` to a partition, or process ``piece``."""

    partition: int
    ticks: list[Tick] | None = None
    piece: ServiceSlice | None = None
    messages: int = 1  # by-service messages it stands for


def _min_time(piece: ServiceSlice) -> int | None:
    times = piece.columns.get(TIME_COLUMN.get(piece.signal, "time"))
    if times is None or not len(times):
        return None
    return int(np.min(times))


def _same_shape(a: ServiceSlice, b: ServiceSlice) -> bool:
    if a.columns.keys() != b.columns.keys():
        return False
    for name, column in a.columns.items():
        other = b.columns[name]
        if isinstance(column, pa.Array) != isinstance(other, pa.Array):
            return False
        if isinstance(column, pa.Array) and column.type != other.type:
            return False
        if isinstance(column, np.ndarray) != isinstance(other, np.ndarray):
            return False
    return True


def merge_slices(a: ServiceSlice, b: ServiceSlice) -> ServiceSlice:
    """``b``'s records appended to ``a``'s (same signal, service and columns)."""
    columns: dict[str, Any] = {}
    for name, column in a.columns.items():
        other = b.columns[name]
        if isinstance(column, pa.Array):
            columns[name] = pa.concat_arrays([column, other])
        elif isinstance(column, np.ndarray):
            columns[name] = np.concatenate([column, other])
        else:
            columns[name] = [*column, *other]
    return ServiceSlice(a.signal, a.service, columns)


class Progress(Protocol):
    """What the coalescing needs of the step's watermarks: a tick's effect on a copy."""

    def observe(self, partition: int, tick: Tick) -> int: ...


def operations(messages: Iterable[Any], watermarks: Progress,
               allowed_lateness_ms: int) -> list[Operation]:
    """The step's operations in order (see the module doc); ``watermarks`` is a copy of
    the step's (the ticks are replayed on it)."""
    ops: list[Operation] = []
    # partition -> the watermark each tick so far in this step can close up to
    closes: dict[int, list[int]] = {}
    # (partition, signal, service) -> (index of its open operation, ticks seen then)
    open_ops: dict[tuple[int, str, str], tuple[int, int]] = {}
    for message in messages:
        p = message.partition
        if message.key == TICK_KEY:
            ticks = decode_ticks(message.value)
            progress = None
            for tick in ticks:
                progress = watermarks.observe(p, tick)
            if progress is not None:
                closes.setdefault(p, []).append(progress - allowed_lateness_ms)
            ops.append(Operation(p, ticks=ticks))
            continue
        piece = read_slice(message.key, message.value)
        key = (p, piece.signal, piece.service)
        seen_now = len(closes.get(p, ()))
        opened = open_ops.get(key)
        if opened is not None:
            index, seen = opened
            earlier = ops[index].piece
            assert earlier is not None
            between = closes.get(p, [])[seen:]
            first = _min_time(piece)
            passable = not between or (first is not None and first > max(between))
            if passable and _same_shape(earlier, piece):
                ops[index].piece = merge_slices(earlier, piece)
                ops[index].messages += 1
                continue
        open_ops[key] = (len(ops), seen_now)
        ops.append(Operation(p, piece=piece))
    return ops
