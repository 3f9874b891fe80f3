"""Rows decoded from OTLP messages, checked column by column into a :class:`DecodedBatch`.

The OTLP mappers append one row per stored record (a metric data point may give several
rows: a rate and quantiles) together with where it came from: the message, the record's
position in the message and the record itself. :meth:`OtlpRows.finish` then applies the
same limits the JSON codec applies (times between 2000-01-01 and ``max_future_ms`` ahead
of ingest time, finite values, string lengths) over whole columns, and turns every bad
row into a :class:`Rejection` whose payload is that record alone, re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.events.codec import DecodedBatch, DecodeLimits
from pipeline.events.columns import keep_rows
from pipeline.events.schema import SPECS, FieldType, RawMessage, RecordKind, Rejection
from pipeline.events.times import MIN_TIME_MS, format_ms

TIME_FIELD = {RecordKind.METRIC: ("time", "time_unix_nano"),
              RecordKind.LOG: ("time", "time_unix_nano"),
              RecordKind.SPAN: ("start", "start_time_unix_nano")}
_NUMBERS = {"time", "start", "value", "duration_ms", "severity_number"}
_NOT_EMPTY = {"service", "name"}  # an OTLP log body may be empty
_OTLP_NAMES = {"service": "resource attribute 'service.name'", "host": "the host name",
               "name": "name", "unit": "unit", "body": "body"}


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
        n = len(self.event_ids)
        cols: dict[str, Any] = {}
        for name, values in self.columns.items():
            if name in _NUMBERS:
                dtype = np.uint8 if name == "severity_number" else (
                    np.int64 if name in ("time", "start") else np.float64)
                cols[name] = np.asarray(values, dtype=dtype) if n else np.zeros(0, dtype)
            else:
                cols[name] = values
        bad: dict[int, str] = {}
        self._check(cols, limits, bad)
        for m, ordinal, origin, reason in self.early:
            rejections.append(Rejection(messages[m], ordinal, reason, payload(m, origin)))
        seen: set[tuple[int, int]] = set()
        for row in sorted(bad):
            where = (self.message[row], self.ordinal[row])
            if where not in seen:  # a data point's rows share one rejection
                seen.add(where)
                rejections.append(Rejection(messages[where[0]], where[1], bad[row],
                                            payload(where[0], self.origin[row])))
        cols["attributes"] = shared_string_maps(cols["attributes"])
        ids = np.asarray(self.event_ids, dtype=np.uint64) if n else np.zeros(0, np.uint64)
        msg = np.asarray(self.message, dtype=np.int64) if n else np.zeros(0, np.int64)
        ordinal = np.asarray(self.ordinal, dtype=np.int64) if n else np.zeros(0, np.int64)
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
        keep = [i for i, row in enumerate(self.bucket_rows) if row not in bad]
        b = {name: [values[i] for i in keep] for name, values in self.buckets.items()}
        return pa.table({
            "event_id": pa.array(b["event_id"], pa.uint64()),
            "time": pa.array(b["time"], pa.timestamp("ms", tz="UTC")),
            **{name: pa.array(b[name], pa.string())
               for name in ("service", "host", "name", "unit")},
            "interval_s": pa.array(b["interval_s"], pa.float64()),
            **{name: pa.array(b[name], pa.list_(pa.float64()))
               for name in ("lower", "upper", "counts")},
            "attributes": shared_string_maps(b["attributes"]),
        })

    def _check(self, cols: dict[str, Any], limits: DecodeLimits, bad: dict[int, str]) -> None:
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
            lengths = {len(v) for v in set(values)} if f.column != "body" \
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


def shared_string_maps(dicts: list[dict[str, str]]) -> pa.MapArray:
    """Dicts of strings as an Arrow map array; a dict object shared by many rows (the
    mappers share one per attribute set) is converted once and then taken by index.

    >>> shared = {"a": "1"}
    >>> shared_string_maps([shared, {}, shared]).to_pylist()
    [[('a', '1')], [], [('a', '1')]]
    """
    ids = np.fromiter(map(id, dicts), dtype=np.uint64, count=len(dicts))
    _, first, index = np.unique(ids, return_index=True, return_inverse=True)
    unique = [dicts[i] for i in first.tolist()]
    offsets = np.zeros(len(unique) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, unique), dtype=np.int32, count=len(unique)),
              out=offsets[1:])
    keys = pa.array(list(chain.from_iterable(unique)), type=pa.string())
    values = pa.array(list(chain.from_iterable(map(dict.values, unique))), type=pa.string())
    maps = pa.MapArray.from_arrays(pa.array(offsets), keys, values)
    if len(unique) == len(dicts):
        return maps
    return maps.take(pa.array(index.astype(np.int32).reshape(-1)))


def _mark(bad: dict[int, str], row: int, reason: str) -> None:
    bad[row] = f"{bad[row]}; {reason}" if row in bad else reason
