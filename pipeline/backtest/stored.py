"""Stored telemetry read back in bounded, event-time-ordered chunks.

A chunk is ``chunk_ms`` of event time of one signal (metrics, logs, spans), read with one
query ordered by time and cut at ``max_rows`` (the next query continues after the last
row read), so memory stays bounded whatever the range. Rows come back shaped like the
tables the ingest agents store and forward (``event_id`` and ``ingested_at`` left out),
so the by-service slices built from them are the stream's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

ReadArrow = Callable[[str], pa.Table]

TABLE_OF_SIGNAL = {"metrics": "metrics", "logs": "logs", "traces": "spans"}
TIME_OF_TABLE = {"metrics": "time", "logs": "time", "spans": "start"}
_SKIP = ("event_id", "ingested_at")
_TYPES: dict[str, pa.DataType] = {
    "time": pa.timestamp("ms", tz="UTC"), "start": pa.timestamp("ms", tz="UTC"),
    "value": pa.float64(), "duration_ms": pa.float64(), "severity_number": pa.uint8(),
    "attributes": pa.map_(pa.string(), pa.string()),
}


@dataclass(frozen=True)
class Chunk:
    """One signal's stored rows of ``[start_ms, end_ms)`` (or a part, when capped)."""

    signal: str
    start_ms: int
    end_ms: int
    table: pa.Table


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def normalise(table: pa.Table) -> pa.Table:
    """Columns typed as the codec types them (text as plain strings, times in ms UTC)."""
    arrays, names = [], []
    for name in table.column_names:
        if name in _SKIP:
            continue
        column = table.column(name)
        target = _TYPES.get(name, pa.string())
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not column.type.equals(target):
            column = column.cast(target)
        arrays.append(column)
        names.append(name)
    return pa.table(arrays, names=names)


class StoredTelemetry:
    """Reads a store's raw tables back for a replay (see the module docstring)."""

    def __init__(self, read_arrow: ReadArrow, database: str,
                 services: Sequence[str] = (), max_rows: int = 200_000) -> None:
        self.read_arrow = read_arrow
        self.database = database
        self.services = tuple(services)
        self.max_rows = max_rows

    def _where(self, table: str, lo: int, hi: int) -> str:
        column = TIME_OF_TABLE[table]
        where = (f"{column} >= fromUnixTimestamp64Milli({int(lo)}, 'UTC') AND "
                 f"{column} < fromUnixTimestamp64Milli({int(hi)}, 'UTC')")
        if self.services:
            where += f" AND service IN ({', '.join(quote(s) for s in self.services)})"
        return where

    def count(self, from_ms: int, to_ms: int) -> int:
        """Stored records of every signal in ``[from_ms, to_ms)`` (for progress)."""
        total = 0
        for table in TABLE_OF_SIGNAL.values():
            answer = self.read_arrow(f"SELECT count() AS n FROM {self.database}.{table} "
                                     f"WHERE {self._where(table, from_ms, to_ms)}")
            total += int(answer.column(0)[0].as_py()) if answer.num_rows else 0
        return total

    def read(self, signal: str, lo: int, hi: int) -> Iterator[pa.Table]:
        """``signal``'s rows of ``[lo, hi)`` in time order, at most ``max_rows`` a table."""
        table = TABLE_OF_SIGNAL[signal]
        column = TIME_OF_TABLE[table]
        offset = 0
        while True:
            answer = self.read_arrow(
                f"SELECT * FROM {self.database}.{table} WHERE {self._where(table, lo, hi)} "
                f"ORDER BY {column}, service, event_id LIMIT {self.max_rows} OFFSET {offset}")
            if answer.num_rows:
                yield normalise(answer)
            if answer.num_rows < self.max_rows:
                return
            offset += answer.num_rows

    def chunks(self, from_ms: int, to_ms: int, chunk_ms: int) -> Iterator[Chunk]:
        """Every signal's rows, ``chunk_ms`` of event time at a time, signals in turn."""
        lo = from_ms
        while lo < to_ms:
            hi = min(lo + chunk_ms, to_ms)
            for signal in TABLE_OF_SIGNAL:
                for table in self.read(signal, lo, hi):
                    yield Chunk(signal, lo, hi, table)
            lo = hi


def max_time_ms(chunk: Chunk) -> int:
    """The latest event time in a chunk (-1 when empty)."""
    column = chunk.table.column(TIME_OF_TABLE[TABLE_OF_SIGNAL[chunk.signal]])
    if not len(column):
        return -1
    return int(pc.max(column.cast(pa.int64())).as_py())
