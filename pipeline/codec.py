"""Decode Kafka messages of telemetry into validated column batches.

One message holds one JSON object or a JSON array of objects. Validation runs column by
column over the whole batch: a vectorised fast path for the common case, and a per-value
check (the one source of every error message) only for the values that fail it. Bad
records come back as :class:`~pipeline.schema.Rejection` s; good records of the same
message go on.

Each stored row gets a deterministic ``event_id`` from the message bytes and the record's
position in it, so a replay after a crash writes the same ids and the store deduplicates.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from pipeline.schema import (
    SEVERITY_ALIASES,
    SEVERITY_NUMBER,
    SPECS,
    FieldSpec,
    FieldType,
    RawMessage,
    RecordKind,
    RecordSpec,
    Rejection,
)
from pipeline.timestamps import MIN_TIME_MS, format_ms, numbers_to_ms, parse_rfc3339_ms

_MISSING = object()
_MissingType = type(_MISSING)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEX = frozenset("0123456789abcdef")
_NUMBER_TYPES = {int, float}


@dataclass(frozen=True)
class DecodeLimits:
    """Input limits; ``now_ms`` is the ingest time, taken once per batch by the caller."""

    now_ms: int
    max_message_bytes: int = 1_048_576
    max_future_ms: int = 3_600_000


@dataclass
class DecodedBatch:
    """Valid records as columns (by table column name), plus the rejected ones."""

    kind: RecordKind
    columns: dict[str, Any]
    rejections: list[Rejection]
    source_partitions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    # per row: the position of its message in the batch, and its index in that message
    source_messages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _arrow: pa.Table | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def to_arrow(self) -> pa.Table:
        """The valid records as an Arrow table shaped like the kind's ClickHouse table."""
        if self._arrow is None:
            self._arrow = self._build_arrow()
        return self._arrow

    def _build_arrow(self) -> pa.Table:
        arrays: dict[str, pa.Array] = {}
        for name, values in self.columns.items():
            if isinstance(values, pa.Array):
                arrays[name] = values
            elif name == "attributes":
                arrays[name] = _string_map(values)
            else:
                arrays[name] = pa.array(values, type=_ARROW_TYPES[name])
        return pa.table(arrays)


_ARROW_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.uint64(),
    "time": pa.timestamp("ms", tz="UTC"),
    "start": pa.timestamp("ms", tz="UTC"),
    "value": pa.float64(),
    "duration_ms": pa.float64(),
    "severity_number": pa.uint8(),
    "attributes": pa.map_(pa.string(), pa.string()),
}
for _spec in SPECS.values():
    for _f in _spec.fields:
        _ARROW_TYPES.setdefault(_f.column, pa.string())


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = orjson.dumps(value).decode()
    shown = text if len(text) <= 40 else text[:37] + "..."
    kind = {bool: "boolean", int: "number", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)
    return f"{kind} {shown}"


def _check_one(f: FieldSpec, value: Any, limits: DecodeLimits) -> tuple[Any, str | None]:
    """Validate and convert one value; returns (converted, None) or (None, reason)."""
    where = f"field '{f.json_name}'"
    if value is _MISSING or value is None:
        if f.required:
            return None, f"missing required field '{f.json_name}'"
        return f.default, None
    t = type(value)
    if f.type is FieldType.TIME:
        if t in _NUMBER_TYPES:
            if not math.isfinite(value):
                return None, f"{where}: expected a time, got {_describe(value)}"
            ms = int(numbers_to_ms(np.asarray([value]))[0])
        elif t is str:
            try:
                ms = parse_rfc3339_ms(value)
            except ValueError as exc:
                return None, f"{where}: {exc}"
        else:
            return None, (f"{where}: expected epoch ms/ns or an RFC 3339 string, "
                          f"got {_describe(value)}")
        if ms < MIN_TIME_MS:
            return None, f"{where}: {format_ms(ms)} is before 2000-01-01"
        if ms > limits.now_ms + limits.max_future_ms:
            return None, (f"{where}: {format_ms(ms)} is more than "
                          f"{limits.max_future_ms // 1000}s ahead of ingest time "
                          f"{format_ms(limits.now_ms)}")
        return ms, None
    if f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
        if t not in _NUMBER_TYPES or not math.isfinite(value):
            return None, f"{where}: expected a finite number, got {_describe(value)}"
        if f.type is FieldType.NON_NEGATIVE and value < 0:
            return None, f"{where}: expected a number >= 0, got {value}"
        return float(value), None
    if f.type is FieldType.ATTRIBUTES:
        if t is not dict:
            return None, f"{where}: expected an object, got {_describe(value)}"
        return {k: v if type(v) is str else orjson.dumps(v).decode()
                for k, v in value.items()}, None
    if t is not str:
        return None, f"{where}: expected a string, got {_describe(value)}"
    if f.type is FieldType.HEX_ID:
        value = value.lower()
        if value and (len(value) != f.hex_length or not _HEX.issuperset(value)):
            return None, (f"{where}: expected {f.hex_length} hex digits, "
                          f"got {_describe(value)}")
        if not value and f.required:
            return None, f"missing required field '{f.json_name}'"
        return value, None
    if f.max_length and len(value) > f.max_length:
        return None, f"{where}: longer than {f.max_length} characters ({len(value)})"
    if f.required and not value:
        return None, f"{where}: must not be empty"
    if f.choices:
        value = _normalize(f, value)
        if value not in f.choices:
            return None, f"{where}: {value!r} is not one of {', '.join(f.choices)}"
    return value, None


def _normalize(f: FieldSpec, value: str) -> str:
    if f.normalize == "upper":
        value = value.upper()
        return SEVERITY_ALIASES.get(value, value) if f.column == "severity_text" else value
    if f.normalize == "lower":
        return value.lower()
    return value


def _mark(bad: dict[int, str], row: int, reason: str) -> None:
    """Record why a row is bad, keeping every reason (a record may have several)."""
    bad[row] = f"{bad[row]}; {reason}" if row in bad else reason


def _slow_column(
    f: FieldSpec, col: list[Any], limits: DecodeLimits, bad: dict[int, str]
) -> Any:
    out = []
    for i, value in enumerate(col):
        converted, reason = _check_one(f, value, limits)
        if reason is not None:
            _mark(bad, i, reason)
        out.append(converted)
    if f.type is FieldType.TIME:
        return np.asarray([v or 0 for v in out], dtype=np.int64)
    if f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
        return np.asarray([v or 0.0 for v in out], dtype=np.float64)
    return out


def _flag(
    f: FieldSpec, col: list[Any], rows: np.ndarray, limits: DecodeLimits, bad: dict[int, str]
) -> None:
    for i in rows.tolist():
        reason = _check_one(f, col[i], limits)[1]
        if reason is not None:
            _mark(bad, i, reason)


def _fast_column(
    f: FieldSpec, col: list[Any], limits: DecodeLimits, bad: dict[int, str]
) -> Any:
    """Vectorised validation; falls back to :func:`_slow_column` on unusual input."""
    types = set(map(type, col))
    if not f.required and f.default is not None and _MissingType in types:
        col = [f.default if v is _MISSING else v for v in col]
        types.discard(_MissingType)
        types.add(type(f.default))
    if f.type is FieldType.TIME and types <= _NUMBER_TYPES:
        try:
            raw = np.asarray(col, dtype=np.int64 if types == {int} else np.float64)
        except OverflowError:
            return _slow_column(f, col, limits, bad)
        finite = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(len(raw), bool)
        ms = numbers_to_ms(np.where(finite, raw, 0))
        wrong = ~finite | (ms < MIN_TIME_MS) | (ms > limits.now_ms + limits.max_future_ms)
        _flag(f, col, np.flatnonzero(wrong), limits, bad)
        return ms
    if f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE) and types <= _NUMBER_TYPES:
        values = np.asarray(col, dtype=np.float64)
        wrong = ~np.isfinite(values)
        if f.type is FieldType.NON_NEGATIVE:
            wrong |= values < 0
        _flag(f, col, np.flatnonzero(wrong), limits, bad)
        return values
    if f.type is FieldType.STRING and types == {str}:
        if f.choices:
            if not set(col) <= set(f.choices):
                return _slow_column(f, col, limits, bad)
        elif max(map(len, col)) > f.max_length > 0 or (f.required and "" in set(col)):
            return _slow_column(f, col, limits, bad)
        return col
    if f.type is FieldType.HEX_ID and types == {str}:
        lengths = set(map(len, col))
        if lengths <= {0, f.hex_length} and (f.required is False or 0 not in lengths) \
                and _HEX.issuperset("".join(col)):
            return col
    if f.type is FieldType.ATTRIBUTES and types <= {dict, _MissingType}:
        if _MissingType in types:
            col = [{} if d is _MISSING else d for d in col]
        try:
            return _string_map(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # a value that is not a string: convert value by value
    return _slow_column(f, col, limits, bad)


def _string_map(col: list[dict]) -> pa.MapArray:
    """Dicts of strings as an Arrow map array, built from flat key and value arrays."""
    offsets = np.zeros(len(col) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, col), dtype=np.int32, count=len(col)), out=offsets[1:])
    keys = pa.array(list(chain.from_iterable(col)), type=pa.string())
    values = pa.array(list(chain.from_iterable(map(dict.values, col))), type=pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values)


def _message_hash(value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little")


def _split_messages(
    messages: Sequence[RawMessage], limits: DecodeLimits, rejections: list[Rejection]
) -> tuple[list[dict], list[int], list[int], list[int]]:
    """Parse messages into records with their message index, element index and hash."""
    records: list[dict] = []
    msg_index: list[int] = []
    elem_index: list[int] = []
    hashes: list[int] = []
    for m, msg in enumerate(messages):
        value = msg.value or b""
        if not value:
            rejections.append(Rejection(msg, -1, "empty message", value))
            hashes.append(0)
            continue
        if len(value) > limits.max_message_bytes:
            rejections.append(Rejection(
                msg, -1, f"message is {len(value)} bytes, over the limit of "
                f"{limits.max_message_bytes} (ingest.max_message_bytes)", value))
            hashes.append(0)
            continue
        hashes.append(_message_hash(value))
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            rejections.append(Rejection(msg, -1, f"malformed JSON: {exc}", value))
            continue
        items = [parsed] if type(parsed) is dict else parsed
        if type(items) is not list:
            rejections.append(Rejection(
                msg, -1, f"expected a JSON object or an array of objects, got "
                f"{_describe(parsed)}", value))
            continue
        if set(map(type, items)) - {dict}:
            for j, item in enumerate(items):
                if type(item) is not dict:
                    rejections.append(Rejection(
                        msg, j, f"expected an object, got {_describe(item)}",
                        orjson.dumps(item)))
            kept = [j for j, item in enumerate(items) if type(item) is dict]
            items = [items[j] for j in kept]
        else:
            kept = range(len(items))
        records.extend(items)
        msg_index.extend([m] * len(items))
        elem_index.extend(kept)
    return records, msg_index, elem_index, hashes


def _check_keys(spec: RecordSpec, records: list[dict], bad: dict[int, str]) -> None:
    """Flag unknown fields and a ``type`` that names another kind of record."""
    allowed = spec.json_names
    fits, fits_with_type = spec.field_names.issuperset, allowed.issuperset
    kind = spec.kind.value
    for i in [i for i, record in enumerate(records) if not fits(record)]:
        record = records[i]
        if not fits_with_type(record):
            unknown = sorted(set(record) - allowed)
            bad[i] = (f"unknown field{'s' if len(unknown) > 1 else ''} "
                      f"{', '.join(repr(k) for k in unknown)} "
                      "(extra data belongs in 'attributes')")
        elif record["type"] != kind:
            bad[i] = (f"field 'type': this topic carries {kind} records, "
                      f"got {_describe(record['type'])}")


def _column(records: list[dict], name: str) -> list[Any]:
    """The values of one field across records, ``_MISSING`` where it is absent."""
    try:
        return list(map(itemgetter(name), records))
    except KeyError:
        return [r.get(name, _MISSING) for r in records]


def decode_messages(
    kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits
) -> DecodedBatch:
    """Decode and validate a batch of messages of one record kind."""
    spec = SPECS[kind]
    rejections: list[Rejection] = []
    records, msg_index, elem_index, hashes = _split_messages(messages, limits, rejections)
    bad: dict[int, str] = {}
    _check_keys(spec, records, bad)
    columns: dict[str, Any] = {}
    for f in spec.fields:
        columns[f.column] = _fast_column(f, _column(records, f.json_name), limits, bad)

    keep = np.ones(len(records), dtype=bool)
    if bad:
        keep[list(bad)] = False
        for i in sorted(bad):
            rejections.append(Rejection(
                messages[msg_index[i]], elem_index[i], bad[i], orjson.dumps(records[i])))
        for name, values in columns.items():
            if isinstance(values, np.ndarray):
                columns[name] = values[keep]
            elif isinstance(values, pa.Array):
                columns[name] = values.filter(pa.array(keep))
            else:
                columns[name] = list(compress(values, keep))
    base = np.asarray(hashes, dtype=np.uint64)[np.asarray(msg_index, dtype=np.int64)[keep]]
    position = np.asarray(elem_index, dtype=np.uint64)[keep]
    with np.errstate(over="ignore"):
        columns["event_id"] = base + (position + np.uint64(1)) * _GOLDEN
    if kind is RecordKind.LOG:
        columns["severity_number"] = np.fromiter(
            (SEVERITY_NUMBER[s] for s in columns["severity_text"]), dtype=np.uint8,
            count=len(columns["severity_text"]))
    partitions = np.asarray([m.partition for m in messages], dtype=np.int32)
    kept_messages = np.asarray(msg_index, dtype=np.int64)[keep]
    return DecodedBatch(kind, columns, rejections, partitions[kept_messages], kept_messages,
                        np.asarray(elem_index, dtype=np.int64)[keep])


def decode_values(
    kind: RecordKind, values: Sequence[bytes], now_ms: int, topic: str = "-"
) -> DecodedBatch:
    """Decode bare message values (no Kafka position): for tests, replay and notebooks."""
    messages = [RawMessage(topic, 0, i, v) for i, v in enumerate(values)]
    return decode_messages(kind, messages, DecodeLimits(now_ms=now_ms))

