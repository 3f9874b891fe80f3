"""A detect step's messages as operations, each service's slices merged where exact.

The detectors' cost is mostly per call (per service and series), not per record: a detect
batch holds several ingest batches' slices of the same service, with ticks between them,
and processing them one by one calls every engine once per slice. A later slice is merged
into the service's earlier one (its records appended, in order) when no tick between
them can close a window those records belong to: every tick between them is at most
``latest tick time - allowed lateness`` (a partition's watermark never passes the
latest time of its ticks), so when each record of the later slice is after that bound,
taking the slice before the ticks changes nothing the ticks do, and the engines see the
same records in the same order, in fewer, larger calls. Otherwise (a record the ticks
would make late) the slice stays in its place.

>>> import numpy as np
>>> from pipeline.events.slices import ServiceSlice
>>> a = ServiceSlice("metrics", "api", {"time": np.array([10, 20]), "name": ["x", "y"]})
>>> b = ServiceSlice("metrics", "api", {"time": np.array([30]), "name": ["z"]})
>>> merged = merge_slices(a, b)
>>> merged.columns["time"].tolist(), merged.columns["name"]
([10, 20, 30], ['x', 'y', 'z'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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


def operations(messages: Iterable[Any], latest_tick_ms: Callable[[int], int],
               allowed_lateness_ms: int) -> list[Operation]:
    """The step's operations in order (see the module doc); ``latest_tick_ms(p)`` is the
    latest tick time already known for partition ``p`` (-1: none)."""
    ops: list[Operation] = []
    latest: dict[int, int] = {}  # partition -> latest tick time so far
    ticks_seen: dict[int, int] = {}  # partition -> ticks so far in this step
    # (partition, signal, service) -> (index of its open operation, ticks seen then)
    open_ops: dict[tuple[int, str, str], tuple[int, int]] = {}
    for message in messages:
        p = message.partition
        if message.key == TICK_KEY:
            ticks = decode_ticks(message.value)
            if p not in latest:
                latest[p] = latest_tick_ms(p)
            for tick in ticks:
                latest[p] = max(latest[p], tick.time_ms)
            ticks_seen[p] = ticks_seen.get(p, 0) + 1
            ops.append(Operation(p, ticks=ticks))
            continue
        piece = read_slice(message.key, message.value)
        key = (p, piece.signal, piece.service)
        opened = open_ops.get(key)
        if opened is not None:
            index, seen = opened
            earlier = ops[index].piece
            assert earlier is not None
            if seen == ticks_seen.get(p, 0):
                passable = True  # no tick between them
            else:
                first = _min_time(piece)
                bound = latest.get(p, -1) - allowed_lateness_ms
                passable = first is not None and first > bound
            if passable and _same_shape(earlier, piece):
                ops[index].piece = merge_slices(earlier, piece)
                ops[index].messages += 1
                continue
        open_ops[key] = (len(ops), ticks_seen.get(p, 0))
        ops.append(Operation(p, piece=piece))
    return ops
