"""Per-field validation of a batch's records, column by column.

A vectorised fast path accepts a whole column when every value is of the common shape;
otherwise, and for the values the fast path flags, :func:`_check_one` checks value by
value and is the one place that words a reason. Reasons show input values escaped and
cut short (:func:`describe_value`), whatever the input holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from pipeline.events.printable import printable
from pipeline.events.schema import SEVERITY_ALIASES, FieldSpec, FieldType
from pipeline.events.times import (
    MIN_TIME_MS,
    format_ms,
    is_datetime_ms,
    number_to_ms,
    numbers_to_ms,
    parse_rfc3339_ms,
)

MISSING = object()
"""The value of a field a record does not have."""
_MissingType = type(MISSING)
_SHOWN_CHARS = 40  # of a bad value in a reason
_HEX = frozenset("0123456789abcdef")
_NUMBER_TYPES = {int, float}


@dataclass(frozen=True)
class DecodeLimits:
    """Input limits; ``now_ms`` is the ingest time, taken once per batch by the caller."""

    now_ms: int
    max_message_bytes: int = 1_048_576
    max_future_ms: int = 3_600_000


def _json_preview(value: Any, limit: int) -> str:
    """The start of ``value``'s JSON text, about ``limit`` characters; safe at any depth
    and cheap for huge values (it stops once ``limit`` characters are written)."""
    parts: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size <= limit:
        item = stack.pop()
        if type(item) is tuple:  # a literal piece of JSON syntax
            text = item[0]
        elif type(item) is dict:
            text = "{"
            stack.append(("}",))
            entries = list(islice(item.items(), limit))[::-1]
            for i, (k, v) in enumerate(entries):
                stack += [v, (orjson.dumps(k[:limit]).decode() + ":",)]
                if i < len(entries) - 1:
                    stack.append((",",))
        elif type(item) is list:
            text = "["
            stack.append(("]",))
            entries = item[:limit][::-1]
            for i, v in enumerate(entries):
                stack.append(v)
                if i < len(entries) - 1:
                    stack.append((",",))
        elif type(item) is str:
            text = orjson.dumps(item[:limit + 1]).decode()
        else:
            text = orjson.dumps(item).decode()
        parts.append(text)
        size += len(text)
    return "".join(parts)


def describe_value(value: Any) -> str:
    """A bad value in a reason: its JSON type and the start of its text, escaped."""
    if value is None:
        return "null"
    text = _json_preview(value, _SHOWN_CHARS)
    shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."
    kind = {bool: "boolean", int: "number", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)
    return f"{kind} {printable(shown)}"


def quote(text: str) -> str:
    """A short, escaped ``repr`` of a string from the input (a field name, a choice)."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS - 3]) + "..."
    return repr(text)


def _check_time(where: str, value: Any, limits: DecodeLimits) -> tuple[Any, str | None]:
    t = type(value)
    if t in _NUMBER_TYPES:
        if not math.isfinite(value):
            return None, f"{where}: expected a time, got {describe_value(value)}"
        ms = number_to_ms(value)
    elif t is str:
        try:
            ms = parse_rfc3339_ms(value)
        except ValueError as exc:
            return None, f"{where}: {exc}"
    else:
        return None, (f"{where}: expected epoch ms/ns or an RFC 3339 string, "
                      f"got {describe_value(value)}")
    if not is_datetime_ms(ms):
        return None, f"{where}: {describe_value(value)} is out of range (beyond years 1 to 9999)"
    if ms < MIN_TIME_MS:
        return None, f"{where}: {format_ms(ms)} is before 2000-01-01"
    if ms > limits.now_ms + limits.max_future_ms:
        return None, (f"{where}: {format_ms(ms)} is more than "
                      f"{limits.max_future_ms // 1000}s ahead of ingest time "
                      f"{format_ms(limits.now_ms)}")
    return ms, None


def _check_attributes(where: str, value: Any) -> tuple[Any, str | None]:
    if type(value) is not dict:
        return None, f"{where}: expected an object, got {describe_value(value)}"
    try:
        return {k: v if type(v) is str else orjson.dumps(v).decode()
                for k, v in value.items()}, None
    except orjson.JSONEncodeError:  # a value nested deeper than JSON encoders go
        deep = next(k for k, v in value.items() if type(v) is not str and _too_deep(v))
        return None, (f"{where}: the value of {quote(deep)} is nested too deeply "
                      "(more than 254 levels)")


def _too_deep(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def _check_one(f: FieldSpec, value: Any, limits: DecodeLimits) -> tuple[Any, str | None]:
    """Validate and convert one value; returns (converted, None) or (None, reason)."""
    where = f"field '{f.json_name}'"
    if value is MISSING or value is None:
        if f.required:
            return None, f"missing required field '{f.json_name}'"
        if f.type is FieldType.ATTRIBUTES:
            return {}, None  # absent or null attributes are an empty map
        return f.default, None
    t = type(value)
    if f.type is FieldType.TIME:
        return _check_time(where, value, limits)
    if f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
        if t not in _NUMBER_TYPES or not math.isfinite(value):
            return None, f"{where}: expected a finite number, got {describe_value(value)}"
        if f.type is FieldType.NON_NEGATIVE and value < 0:
            return None, f"{where}: expected a number >= 0, got {value}"
        return float(value), None
    if f.type is FieldType.ATTRIBUTES:
        return _check_attributes(where, value)
    if t is not str:
        return None, f"{where}: expected a string, got {describe_value(value)}"
    if f.type is FieldType.HEX_ID:
        value = value.lower()
        if value and (len(value) != f.hex_length or not _HEX.issuperset(value)):
            return None, (f"{where}: expected {f.hex_length} hex digits, "
                          f"got {describe_value(value)}")
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
            return None, f"{where}: {quote(value)} is not one of {', '.join(f.choices)}"
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
    # a rejected row's value is dropped later; attributes need a map even there
    placeholder = {} if f.type is FieldType.ATTRIBUTES else None
    for i, value in enumerate(col):
        converted, reason = _check_one(f, value, limits)
        if reason is not None:
            _mark(bad, i, reason)
            converted = placeholder
        out.append(converted)
    if f.type is FieldType.TIME:
        return np.asarray([v or 0 for v in out], dtype=np.int64)
    if f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
        return np.asarray([v or 0.0 for v in out], dtype=np.float64)
    if f.type is FieldType.ATTRIBUTES:  # an Arrow map, as the fast path gives it
        return string_map(out)
    return out


def _flag(
    f: FieldSpec, col: list[Any], rows: np.ndarray, limits: DecodeLimits, bad: dict[int, str]
) -> None:
    for i in rows.tolist():
        reason = _check_one(f, col[i], limits)[1]
        if reason is not None:
            _mark(bad, i, reason)


def validate_column(
    f: FieldSpec, col: list[Any], limits: DecodeLimits, bad: dict[int, str]
) -> Any:
    """Vectorised validation; falls back to :func:`_slow_column` on unusual input."""
    types = set(map(type, col))
    if not f.required and f.default is not None and _MissingType in types:
        col = [f.default if v is MISSING else v for v in col]
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
            col = [{} if d is MISSING else d for d in col]
        try:
            return string_map(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # a value that is not a string: convert value by value
    return _slow_column(f, col, limits, bad)


def string_map(col: list[dict]) -> pa.MapArray:
    """Dicts of strings as an Arrow map array, built from flat key and value arrays."""
    offsets = np.zeros(len(col) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, col), dtype=np.int32, count=len(col)), out=offsets[1:])
    keys = pa.array(list(chain.from_iterable(col)), type=pa.string())
    values = pa.array(list(chain.from_iterable(map(dict.values, col))), type=pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values)
