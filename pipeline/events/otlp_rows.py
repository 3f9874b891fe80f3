"""Rows decoded from OTLP messages, checked column by column into a :class:`DecodedBatch`.

The OTLP mappers append one row per stored record (a metric data point may give several
rows: a rate and quantiles) together with where it came from: the message, the record's
position in the message and the record itself. :meth:`OtlpRows.finish` then applies the
same limits the JSON codec applies (times between 2000-01-01 and ``max_future_ms`` ahead
of ingest time, finite values, string lengths) over whole columns, and turns every bad
row into a :class:`Rejection` whose payload is that record alone, re-encoded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from pipeline.events.codec import DecodedBatch, DecodeLimits
from pipeline.events.columns import keep_rows
from pipeline.events.schema import SPECS, FieldType, RawMessage, RecordKind, Rejection
from pipeline.events.times import MIN_TIME_MS, format_ms

try:
    from pipeline.events import _otlpwire
except ImportError:  # built without a C compiler: Arrow's take
    _otlpwire = None

TIME_FIELD = {RecordKind.METRIC: ("time", "time_unix_nano"),
              RecordKind.LOG: ("time", "time_unix_nano"),
              RecordKind.SPAN: ("start", "start_time_unix_nano")}
_NUMBERS = {"time", "start", "value", "duration_ms", "severity_number"}
_NOT_EMPTY = {"service", "name"}  # an OTLP log body may be empty
_OTLP_NAMES = {"service": "resource attribute 'service.name'", "host": "the host name",
               "name": "name", "unit": "unit", "body": "body"}


# a chunk's optional entry: {string column: a set holding every value it has}, so that
# checking the batch needs not collect each column's distinct values row by row
VOCABULARY = "vocabulary"
BUCKET_COLUMNS = ("event_id", "time", "service", "host", "name", "unit", "interval_s",
                  "lower", "upper", "counts", "attributes")


@dataclass
class OtlpBatch(DecodedBatch):
    """A decoded batch plus the buckets of its histogram points (``metric_buckets`` rows)."""

    buckets: pa.Table | None = None


class OtlpRows:
    """Columns of one record kind, filled row by row, with each row's origin."""

    def __init__(self, kind: RecordKind) -> None:
        self.kind = kind
        names = [f.column for f in SPECS[kind].fields]
        if kind is RecordKind.LOG:
            names.append("severity_number")
        self.columns: dict[str, list[Any]] = {name: [] for name in names}
        self.event_ids: list[int] = []
        self.message: list[int] = []  # index of the row's message in the batch
        self.ordinal: list[int] = []  # the record's position in its message
        self.origin: list[Any] = []  # the record itself (for a rejection's payload)
        self.early: list[tuple[int, int, Any, str]] = []  # rejected while mapping
        self.buckets: dict[str, list[Any]] = {name: [] for name in BUCKET_COLUMNS}
        self.bucket_rows: list[int] = []  # the first metric row of each bucket row's point
        # rows added whole (add_chunk) and the row-by-row ones before them, in order
        self._chunks: list[dict[str, Any]] = []
        self._chunk_rows = 0
        self._bucket_tables: list[pa.Table | BucketPart] = []

    def row_count(self) -> int:
        """Rows so far (the next row's index)."""
        return self._chunk_rows + len(self.event_ids)

    def _seal(self) -> None:
        """Move the row-by-row rows (and buckets) into a chunk, keeping their order."""
        if self.event_ids:
            self._chunks.append({**self.columns, "event_id": self.event_ids,
                                 "message": self.message, "ordinal": self.ordinal,
                                 "origin": self.origin})
            self._chunk_rows += len(self.event_ids)
            self.columns = {name: [] for name in self.columns}
            self.event_ids, self.message, self.ordinal, self.origin = [], [], [], []
        if self.buckets["event_id"]:
            self._bucket_tables.append(bucket_table(self.buckets))
            self.buckets = {name: [] for name in BUCKET_COLUMNS}

    def add_chunk(self, columns: dict[str, Any], buckets: pa.Table | BucketPart | None = None,
                  bucket_rows: Sequence[int] = ()) -> None:
        """Many rows at once, after those added so far.

        ``columns`` as :attr:`columns` plus ``event_id``, ``message``, ``ordinal`` and
        ``origin`` (arrays or lists of one length; ``attributes`` a list of dicts or a map
        array), optionally :data:`VOCABULARY`; ``buckets`` their bucket rows (a table as
        :func:`bucket_table` makes), each
        kept only if its row in ``bucket_rows`` (an index from :meth:`row_count`) is."""
        self._seal()
        self._chunks.append(columns)
        self._chunk_rows += len(columns["event_id"])
        if buckets is not None and len(buckets):
            self._bucket_tables.append(buckets)
            self.bucket_rows.extend(bucket_rows)

    def add_buckets(self, first_row: int, time_ms: int, service: str, host: str, name: str,
                    unit: str, interval_s: float,
                    buckets: tuple[list[float], list[float], list[float]],
                    attributes: dict[str, str], event_id: int) -> None:
        """One histogram point's buckets; kept only if its row ``first_row`` is."""
        b = self.buckets
        lower, upper, counts = buckets
        for column, value in (("event_id", event_id), ("time", time_ms), ("service", service),
                              ("host", host), ("name", name), ("unit", unit),
                              ("interval_s", interval_s), ("lower", lower), ("upper", upper),
                              ("counts", [float(c) for c in counts]),
                              ("attributes", attributes)):
            b[column].append(value)
        self.bucket_rows.append(first_row)

    def extend_buckets(self, first_rows: list[int], columns: dict[str, list[Any]]) -> None:
        """Many points' buckets at once (``columns`` as :data:`BUCKET_COLUMNS`, counts as
        floats); each kept only if its row in ``first_rows`` is."""
        for name, values in columns.items():
            self.buckets[name].extend(values)
        self.bucket_rows.extend(first_rows)

    def reject(self, message: int, ordinal: int, origin: Any, reason: str) -> None:
        """A record that cannot become a row at all (bad ids, missing fields ...)."""
        self.early.append((message, ordinal, origin, reason))

    def finish(self, messages: Sequence[RawMessage], limits: DecodeLimits,
               payload: Callable[[int, Any], bytes],
               rejections: list[Rejection]) -> DecodedBatch:
        """Check every row; the good ones as a batch, the bad ones added to ``rejections``.

        ``payload(message_index, record)`` encodes a rejected record for the dead letter.
        """
        self._seal()
        chunks = self._chunks
        n = self._chunk_rows
        cols: dict[str, Any] = {}
        distinct: dict[str, list[Any]] = {}
        for name in self.columns:
            parts = [chunk[name] for chunk in chunks]
            if name in _NUMBERS:
                dtype = np.uint8 if name == "severity_number" else (
                    np.int64 if name in ("time", "start") else np.float64)
                cols[name] = _concat(parts, dtype)
            elif name == "attributes":  # dicts, or already maps (a chunk's)
                cols[name] = _map_column(parts)
            else:  # lists, or object arrays (a chunk's): tolist is their fast way out
                cols[name] = list(chain.from_iterable(
                    part.tolist() if isinstance(part, np.ndarray) else part for part in parts))
                # where its distinct values are: a chunk's vocabulary, else its values
                distinct[name] = [chunk.get(VOCABULARY, {}).get(name, chunk[name])
                                  for chunk in chunks]
        ids = _concat([chunk["event_id"] for chunk in chunks], np.uint64)
        msg = _concat([chunk["message"] for chunk in chunks], np.int64)
        ordinal = _concat([chunk["ordinal"] for chunk in chunks], np.int64)
        starts = list(accumulate((len(chunk["event_id"]) for chunk in chunks), initial=0))

        def origin(row: int) -> Any:  # the record of a row, found in its chunk
            k = bisect_right(starts, row) - 1
            return chunk_origins[k][row - starts[k]]

        chunk_origins = [chunk["origin"] for chunk in chunks]
        bad: dict[int, str] = {}
        self._check(cols, limits, bad, distinct)
        for m, index, record, reason in self.early:
            rejections.append(Rejection(messages[m], index, reason, payload(m, record)))
        seen: set[tuple[int, int]] = set()
        for row in sorted(bad):
            where = (int(msg[row]), int(ordinal[row]))
            if where not in seen:  # a data point's rows share one rejection
                seen.add(where)
                rejections.append(Rejection(messages[where[0]], where[1], bad[row],
                                            payload(where[0], origin(row))))
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            keep_rows(cols, keep)
            ids, msg, ordinal = ids[keep], msg[keep], ordinal[keep]
        cols["event_id"] = ids
        partitions = np.asarray([m.partition for m in messages], dtype=np.int32)
        return OtlpBatch(self.kind, cols, rejections, partitions[msg], source_messages=msg,
                         source_indexes=ordinal, buckets=self._bucket_table(bad))

    def _bucket_table(self, bad: dict[int, str]) -> pa.Table | None:
        if not self.bucket_rows:
            return None
        tables = _bucket_tables(self._bucket_tables)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        if bad:
            dropped = np.isin(np.asarray(self.bucket_rows, dtype=np.int64),
                              np.fromiter(bad, dtype=np.int64, count=len(bad)))
            table = table.filter(pa.array(~dropped))
        return table

    def _check(self, cols: dict[str, Any], limits: DecodeLimits, bad: dict[int, str],
               distinct: dict[str, list[Any]]) -> None:
        """Mark the bad rows of ``cols``; ``distinct``: per string column, collections
        holding all its values (supersets will do: rows are read only when one of them is
        too long or empty)."""
        column, otlp_name = TIME_FIELD[self.kind]
        times = cols[column]
        latest = limits.now_ms + limits.max_future_ms
        for row in np.flatnonzero((times < MIN_TIME_MS) | (times > latest)).tolist():
            ms = int(times[row])
            if ms < MIN_TIME_MS:
                _mark(bad, row, f"field '{otlp_name}': {format_ms(ms)} is before 2000-01-01"
                      if ms > 0 else f"field '{otlp_name}' is not set")
            else:
                _mark(bad, row, f"field '{otlp_name}': {format_ms(ms)} is more than "
                      f"{limits.max_future_ms // 1000}s ahead of ingest time "
                      f"{format_ms(limits.now_ms)}")
        if self.kind is RecordKind.METRIC:
            for row in np.flatnonzero(~np.isfinite(cols["value"])).tolist():
                _mark(bad, row, f"value: expected a finite number, got {cols['value'][row]}")
        if self.kind is RecordKind.SPAN:
            for row in np.flatnonzero(~(cols["duration_ms"] >= 0)).tolist():
                _mark(bad, row, "field 'end_time_unix_nano' is before 'start_time_unix_nano'")
        for f in SPECS[self.kind].fields:
            if f.type is not FieldType.STRING or not (f.max_length or f.required):
                continue
            values = cols[f.column]
            if not values or f.choices:
                continue
            lengths = {len(v) for v in set().union(*distinct[f.column])} \
                if f.column != "body" \
                else set(map(len, values))
            required = f.column in _NOT_EMPTY
            too_long = f.max_length and max(lengths) > f.max_length
            if not too_long and not (required and 0 in lengths):
                continue
            what = _OTLP_NAMES.get(f.column, f.column)
            for row, value in enumerate(values):
                if f.max_length and len(value) > f.max_length:
                    _mark(bad, row, f"{what}: longer than {f.max_length} characters "
                          f"({len(value)})")
                elif required and not value:
                    _mark(bad, row, f"{what}: must not be empty")


def bucket_table(columns: dict[str, Any]) -> pa.Table:
    """``metric_buckets`` rows (columns as :data:`BUCKET_COLUMNS`, lists) as a table."""
    return pa.table({
        "event_id": pa.array(columns["event_id"], pa.uint64()),
        "time": pa.array(columns["time"], pa.timestamp("ms", tz="UTC")),
        **{name: pa.array(columns[name], pa.string())
           for name in ("service", "host", "name", "unit")},
        "interval_s": pa.array(columns["interval_s"], pa.float64()),
        **{name: columns[name] if isinstance(columns[name], pa.Array)
           else pa.array(columns[name], pa.list_(pa.float64()))
           for name in ("lower", "upper", "counts")},
        "attributes": shared_string_maps(columns["attributes"]),
    })


class StringRows(NamedTuple):
    """A string column whose rows repeat a few strings: ``values`` (an object array of
    str) taken at ``index`` (int64)."""

    values: np.ndarray
    index: np.ndarray


class BucketPart(NamedTuple):
    """One message's ``metric_buckets`` rows as arrays, made an Arrow table with the other
    parts of the batch at once (per message, Arrow's fixed costs outweigh the copying).

    ``offsets`` (int32, one more than rows) delimit each row's ``lower``, ``upper`` and
    ``counts``; ``time`` is in epoch ms."""

    event_id: np.ndarray
    time: np.ndarray
    service: StringRows
    host: StringRows
    name: StringRows
    unit: StringRows
    interval_s: np.ndarray
    offsets: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    attributes: MapRows


def _bucket_tables(parts: list[pa.Table | BucketPart]) -> list[pa.Table]:
    """The parts as tables, in order: each run of :class:`BucketPart` as one table."""
    tables: list[pa.Table] = []
    run: list[BucketPart] = []
    for part in [*parts, None]:
        if isinstance(part, BucketPart):
            run.append(part)
            continue
        if run:
            tables.append(_parts_table(run))
            run = []
        if part is not None:
            tables.append(part)
    return tables


def _parts_table(parts: list[BucketPart]) -> pa.Table:
    def numbers(field: str) -> np.ndarray:
        return np.concatenate([getattr(part, field) for part in parts])

    offsets = np.zeros(sum(len(part.event_id) for part in parts) + 1, np.int32)
    at, total = 1, 0
    for part in parts:  # each part's offsets start at 0: shift them by the values before
        offsets[at:at + len(part.event_id)] = part.offsets[1:] + total
        at += len(part.event_id)
        total += int(part.offsets[-1])
    arrow_offsets = pa.array(offsets)
    return pa.table({
        "event_id": pa.array(numbers("event_id"), pa.uint64()),
        "time": pa.array(numbers("time"), pa.timestamp("ms", tz="UTC")),
        **{field: _string_column([getattr(part, field) for part in parts])
           for field in ("service", "host", "name", "unit")},
        "interval_s": pa.array(numbers("interval_s"), pa.float64()),
        **{field: pa.ListArray.from_arrays(arrow_offsets, pa.array(numbers(field),
                                                                   pa.float64()))
           for field in ("lower", "upper", "counts")},
        "attributes": _map_column([part.attributes for part in parts]),
    })


def _string_column(parts: list[StringRows]) -> pa.Array:
    """One string array of the parts: their few strings converted once, then taken."""
    values = pa.array(np.concatenate([part.values for part in parts]), pa.string())
    return values.take(_joined_index([len(part.values) for part in parts],
                                     [part.index for part in parts]))


def _joined_index(sizes: list[int], indexes: list[np.ndarray]) -> np.ndarray:
    """Indexes into each of several tables (of ``sizes``) as one index into the tables
    put end to end."""
    first = np.zeros(len(sizes), np.int64)
    np.cumsum(sizes[:-1], out=first[1:])
    return np.concatenate([index + at for index, at in
                           zip(indexes, first.tolist(), strict=True)])


class MapRows(NamedTuple):
    """A map column whose rows repeat a few maps: ``maps`` (an Arrow map array) taken at
    ``index`` (int64), built when the batch is finished (one copy for all its chunks)."""

    maps: pa.MapArray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def take_maps(maps: pa.MapArray, index: np.ndarray) -> pa.MapArray:
    """``maps.take(index)`` for maps of strings: by the C extension when it was built
    (Arrow's take of a map array costs about ten times the copy it makes), else Arrow's."""
    index = np.ascontiguousarray(index, np.int64)
    keys, items = maps.keys, maps.items
    if _otlpwire is None or not hasattr(_otlpwire, "map_take") or maps.offset \
            or maps.null_count or keys.null_count or items.null_count \
            or keys.offset or items.offset or keys.type != pa.string() \
            or items.type != pa.string():
        return maps.take(pa.array(index))
    try:
        buffers = _otlpwire.map_take(
            maps.buffers()[1], keys.buffers()[1], keys.buffers()[2] or b"",
            items.buffers()[1], items.buffers()[2] or b"", index)
    except OverflowError:  # more than int32 offsets hold
        return maps.take(pa.array(index))
    return _from_buffers(*buffers)


def _map_column(parts: list[Any]) -> pa.MapArray:
    """A map column from its chunks' parts (lists of dicts, map arrays, :class:`MapRows`)."""
    if parts and all(isinstance(part, MapRows) for part in parts):  # one take for all
        return take_maps(pa.concat_arrays([part.maps for part in parts]),
                         _joined_index([len(part.maps) for part in parts],
                                       [part.index for part in parts]))
    maps = [take_maps(*part) if isinstance(part, MapRows) else part
            if isinstance(part, pa.Array) else shared_string_maps(part) for part in parts]
    return maps[0] if len(maps) == 1 else pa.concat_arrays(maps) if maps \
        else shared_string_maps([])


def _concat(parts: list[Any], dtype: Any) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype)
    arrays = [np.asarray(part, dtype=dtype) if len(part) else np.zeros(0, dtype)
              for part in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def shared_string_maps(dicts: list[dict[str, str]]) -> pa.MapArray:
    """Dicts of strings as an Arrow map array; a dict object shared by many rows (the
    mappers share one per attribute set) is converted once and then taken by index.

    >>> shared = {"a": "1"}
    >>> shared_string_maps([shared, {}, shared]).to_pylist()
    [[('a', '1')], [], [('a', '1')]]
    """
    ids = np.fromiter(map(id, dicts), dtype=np.uint64, count=len(dicts))
    _, first, index = np.unique(ids, return_index=True, return_inverse=True)
    unique = list(dicts) if len(first) == len(dicts) else [dicts[i] for i in first.tolist()]
    maps = _built_maps(unique)
    if maps is None:  # no C extension, or values it does not take: Arrow builds them
        offsets = np.zeros(len(unique) + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, unique), dtype=np.int32, count=len(unique)),
                  out=offsets[1:])
        keys = pa.array(list(chain.from_iterable(unique)), type=pa.string())
        values = pa.array(list(chain.from_iterable(map(dict.values, unique))),
                          type=pa.string())
        maps = pa.MapArray.from_arrays(pa.array(offsets), keys, values)
    if len(unique) == len(dicts):
        return maps
    return take_maps(maps, index.reshape(-1))


def _built_maps(dicts: list[dict[str, str]]) -> pa.MapArray | None:
    """Dicts of str as an Arrow map array built by the C extension (one pass, no Python
    lists of every key and value); None when it is not built or refuses them."""
    if _otlpwire is None or not hasattr(_otlpwire, "string_maps"):
        return None
    try:
        offsets, key_offsets, key_data, item_offsets, item_data = \
            _otlpwire.string_maps(dicts)
    except (TypeError, ValueError, OverflowError):  # UnicodeError is a ValueError
        return None
    return _from_buffers(offsets, key_offsets, key_data, item_offsets, item_data)


def _from_buffers(offsets: bytes, key_offsets: bytes, key_data: bytes, item_offsets: bytes,
                  item_data: bytes) -> pa.MapArray:
    """A map<string, string> array of these buffers (int32 offsets, UTF-8 data)."""
    n = len(key_offsets) // 4 - 1

    def strings(offsets: bytes, data: bytes) -> pa.Array:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))

    return pa.MapArray.from_arrays(pa.array(np.frombuffer(offsets, np.int32)),
                                   strings(key_offsets, key_data),
                                   strings(item_offsets, item_data))


def _mark(bad: dict[int, str], row: int, reason: str) -> None:
    bad[row] = f"{bad[row]}; {reason}" if row in bad else reason
