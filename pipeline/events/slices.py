"""Regroup stored records by service for the detectors.

Detector state is per series, and a series belongs to one service, so the ingest agents
forward every stored batch to the ``by-service`` topic keyed by service: Kafka then puts
all of a service's records, from any source partition, on one partition and so in one
worker, next to that service's detector state. Each message is one service's slice of
a batch as an Arrow IPC stream (the signal in its schema metadata).

Ingest also sends a *tick* to every partition with the batch's latest event time and its
source (the signal), so detectors can close windows and notice absent series on services
that went silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.events.columns import TIME_COLUMN

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


def split_by_service(signal: str, table: pa.Table) -> list[tuple[bytes, bytes]]:
    """(key, value) messages: one Arrow IPC stream per service in ``table``."""
    if table.num_rows == 0:
        return []
    table = table.drop_columns([c for c in ("event_id",) if c in table.column_names])
    table = table.sort_by("service")
    services = table.column("service")
    boundaries = np.flatnonzero(
        pc.not_equal(services.slice(1), services.slice(0, len(services) - 1))
        .to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [table.num_rows]])
    table = table.replace_schema_metadata({_SIGNAL_KEY: signal.encode()})
    messages = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        part = table.slice(start, end - start)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        messages.append((services[start].as_py().encode(), sink.getvalue().to_pybytes()))
    return messages


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
    """A forwarded message back as columns: numbers as numpy arrays, text as lists."""
    table = pa.ipc.open_stream(value).read_all()
    signal = (table.schema.metadata or {}).get(_SIGNAL_KEY, b"metrics").decode()
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name == "attributes":
            columns[name] = column
        elif pa.types.is_timestamp(column.type):
            columns[name] = column.cast(pa.int64()).to_numpy()
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            columns[name] = column.to_numpy()
        else:
            columns[name] = column.to_pylist()
    return ServiceSlice(signal, key.decode(), columns)
