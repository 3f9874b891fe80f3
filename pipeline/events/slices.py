"""Regroup stored records by service for the detectors.

Detector state is per series, and a series belongs to one service, so the ingest agents
forward every stored batch to the ``by-service`` topic keyed by service: Kafka then puts
all of a service's records, from any source partition, on one partition and so in one
worker, next to that service's detector state. Each message is one service's slice of
a batch as an Arrow IPC stream (the signal in its schema metadata), split into several
messages when it would be over ``kafka.max_message_bytes``.

Ingest also sends a *tick* to every partition with the batch's latest event time and its
source (the signal), so detectors can close windows and notice absent series on services
that went silent.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.events.columns import TIME_COLUMN
from pipeline.events.labels import labels_of
from pipeline.events.schema import RawMessage, Rejection

TICK_KEY = b"\x00tick"
_SIGNAL_KEY = b"tocsin.signal"


@dataclass(frozen=True)
class ServiceSlice:
    """One service's records of one signal, as columns the detectors take."""

    signal: str
    service: str
    columns: dict[str, Any]

    @property
    def max_time_ms(self) -> int:
        """The latest event time in the slice."""
        times = self.columns[TIME_COLUMN[self.signal]]
        return int(times.max()) if len(times) else 0


@dataclass(frozen=True)
class TooLarge:
    """A row that alone makes a message over the limit: it is not forwarded."""

    row: int  # position in the table given to :func:`split_by_service`
    service: str
    size: int  # bytes of its Arrow IPC stream


@dataclass(frozen=True)
class Forwarded:
    """What :func:`split_by_service` made of a table: messages, and rows too large."""

    messages: list[tuple[bytes, bytes]]
    too_large: list[TooLarge]


def split_by_service(signal: str, table: pa.Table, max_value_bytes: int) -> Forwarded:
    """(key, value) messages: Arrow IPC streams of each service's rows in ``table``.

    A service's rows stay in their order, split over as many messages as it takes for
    every value to be at most ``max_value_bytes``; the messages of one service follow
    each other (same key, so same partition, in order). A row whose stream alone is over
    the limit is left out and listed in ``too_large``.
    """
    if table.num_rows == 0:
        return Forwarded([], [])
    table = table.drop_columns([c for c in ("event_id",) if c in table.column_names])
    order = pc.sort_indices(table, [("service", "ascending")])  # stable: rows keep order
    table = table.take(order).replace_schema_metadata({_SIGNAL_KEY: signal.encode()})
    services = table.column("service")
    boundaries = np.flatnonzero(
        pc.not_equal(services.slice(1), services.slice(0, len(services) - 1))
        .to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [table.num_rows]])
    rows = order.to_numpy()
    messages: list[tuple[bytes, bytes]] = []
    too_large: list[TooLarge] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        service = services[start].as_py()
        key = service.encode()
        for offset, value in _fitting(table.slice(start, end - start), max_value_bytes):
            if isinstance(value, int):
                too_large.append(TooLarge(int(rows[start + offset]), service, value))
            else:
                messages.append((key, value))
    return Forwarded(messages, too_large)


def too_large_rejections(signal: str, table: pa.Table, too_large: list[TooLarge],
                         sources: list[RawMessage], source_messages: np.ndarray,
                         source_indexes: np.ndarray, limit: int) -> list[Rejection]:
    """Dead letters for rows stored but too large to forward: each with where it came
    from (``sources[source_messages[row]]``, ``source_indexes[row]``), the reason, and
    the stored row as JSON."""
    rejections = []
    for item in too_large:
        row = table.slice(item.row, 1).to_pylist()[0]
        if isinstance(row.get("attributes"), list):
            row["attributes"] = dict(row["attributes"])
        reason = (f"stored, but not forwarded to the detectors: this {signal} record alone "
                  f"is {item.size} bytes as a by-service message, over kafka.max_message_bytes "
                  f"({limit})")
        rejections.append(Rejection(sources[int(source_messages[item.row])],
                                    int(source_indexes[item.row]), reason,
                                    orjson.dumps(row, default=str)))
    return rejections


_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
"""Slices' buffers are LZ4-compressed: half the bytes (repeated names, units and
attributes) for a few per cent more CPU, so a detect batch holds half the memory and the
broker moves half the bytes. Readers decompress on their own (the stream says how)."""


def _ipc(part: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, part.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(part)
    return sink.getvalue().to_pybytes()


def _fitting(part: pa.Table, max_value_bytes: int,
             offset: int = 0) -> Iterator[tuple[int, bytes | int]]:
    """(row offset, IPC bytes) of consecutive pieces of ``part`` within the limit, in
    order; a single row over the limit comes as (its offset, its size)."""
    rows = part.num_rows
    if rows > 1 and part.nbytes > max_value_bytes:
        # even pieces by the buffers' size (a slice's nbytes is what it refers to), with
        # room for the schema each stream repeats; an uneven piece is split again
        step = math.ceil(rows / max(2, math.ceil(part.nbytes / (0.9 * max_value_bytes))))
    else:
        value = _ipc(part)
        if len(value) <= max_value_bytes:
            yield offset, value
            return
        if rows == 1:
            yield offset, len(value)
            return
        step = math.ceil(rows / 2)
    for start in range(0, rows, step):
        yield from _fitting(part.slice(start, step), max_value_bytes, offset + start)


@dataclass(frozen=True)
class Tick:
    """How far one source (an ingest topic partition) got, and whether it has more."""

    source: str
    time_ms: int  # -1: nothing forwarded yet
    backlog: bool  # records are waiting in the source partition

    def to_wire(self) -> dict:
        """The tick as a JSON-ready dict."""
        return {"tick": self.time_ms, "source": self.source, "backlog": self.backlog}

    @classmethod
    def from_wire(cls, data: dict) -> Tick:
        """A tick from :meth:`to_wire` output."""
        return cls(data.get("source", ""), int(data["tick"]), bool(data.get("backlog", True)))


def encode_ticks(ticks: list[Tick]) -> bytes:
    """One by-service message carrying the ticks of every source."""
    return orjson.dumps([t.to_wire() for t in ticks])


def decode_ticks(value: bytes) -> list[Tick]:
    """The ticks of a tick message."""
    data = orjson.loads(value)
    return [Tick.from_wire(d) for d in (data if isinstance(data, list) else [data])]


def read_slice(key: bytes, value: bytes) -> ServiceSlice:
    """A forwarded message back as columns: numbers as numpy arrays, text as lists of
    strings (:class:`~pipeline.events.labels.Labels` where no value is null)."""
    table = pa.ipc.open_stream(value).read_all()
    signal = (table.schema.metadata or {}).get(_SIGNAL_KEY, b"metrics").decode()
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name == "attributes":
            columns[name] = column
        elif pa.types.is_timestamp(column.type):
            columns[name] = column.view(pa.int64()).to_numpy()  # epoch units, no copy
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            columns[name] = column.to_numpy()
        else:  # text: strings, factorised on the way (the detectors group by them)
            columns[name] = labels_of(column)
    return ServiceSlice(signal, key.decode(), columns)
