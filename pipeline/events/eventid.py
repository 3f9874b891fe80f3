"""Content-derived event ids: one id per distinct record, however producers batch it.

A stored row's ``event_id`` is a 64-bit hash of exactly the values the row stores, so a
record re-sent in another message, replayed after a crash, or written with its time in
another unit or its attributes in another order is the same row in the
``ReplacingMergeTree`` tables, and two rows with the same id are the same row (up to a
2^-64 chance per pair of rows that share the rest of the table's sort key).

The hash, per record, over the kind's fields in :mod:`pipeline.events.schema` order:

* text: BLAKE2b (8 bytes, little-endian) of the UTF-8 bytes;
* times: the epoch milliseconds as a signed 64-bit integer;
* numbers: the bits of the float64 value (``-0.0`` taken as ``0.0``);
* attributes: each key/value pair hashed from its two text hashes, the pairs summed
  (order does not matter) and mixed with their count;

each field's hash is folded into the record's with the splitmix64 finaliser, starting
from the BLAKE2b of the kind's name. Vectorised over a batch: text is hashed once per
distinct value.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.events.schema import FieldType, RecordSpec

try:
    from pipeline.events import _otlpwire
except ImportError:  # built without a C compiler: hashed one value at a time
    _otlpwire = None

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_FOLD = np.uint64(0x9E3779B97F4A7C15)  # odd: a bijection mod 2^64
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise (uint64 arithmetic wraps)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def blake64(data: bytes) -> int:
    """The first 8 bytes of BLAKE2b of ``data`` as an unsigned little-endian integer."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def blake64_values(values: pa.Array) -> np.ndarray:
    """:func:`blake64` of each value of a string or binary array without nulls (in C,
    from the array's buffers, when the OTLP extension is built)."""
    values = values.cast(pa.binary())
    if _otlpwire is None:
        return np.fromiter(map(blake64, values.to_pylist()), dtype=np.uint64,
                           count=len(values))
    _, offsets, data = values.buffers()
    if offsets is None:  # an empty array
        return np.zeros(0, np.uint64)
    return np.frombuffer(_otlpwire.blake2b64_many(offsets, data if data is not None else b"",
                                                  len(values), values.offset), np.uint64)


def _text_hashes(array: pa.Array) -> np.ndarray:
    encoded = pc.dictionary_encode(array)
    per_value = blake64_values(encoded.dictionary)
    return per_value[encoded.indices.to_numpy(zero_copy_only=False)]


def _map_hashes(array: pa.MapArray) -> np.ndarray:
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    pairs = _mix(_text_hashes(array.keys) * _FOLD + _text_hashes(array.items))
    sums = np.zeros(len(pairs) + 1, dtype=np.uint64)
    np.cumsum(pairs, out=sums[1:])
    # sum of the pairs of each row: differences of the running sum (wrapping is fine)
    total = sums[offsets[1:]] - sums[offsets[:-1]]
    return _mix(total + np.diff(offsets).astype(np.uint64))


def _field_hashes(field_type: FieldType, column: pa.Array) -> np.ndarray:
    if field_type is FieldType.TIME:
        return column.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)
    if field_type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64) + 0.0
        return values.view(np.uint64)
    if field_type is FieldType.ATTRIBUTES:
        return _map_hashes(column)
    return _text_hashes(column)


def content_ids(spec: RecordSpec, table: pa.Table) -> np.ndarray:
    """The event id (uint64) of each row of ``table``, a batch of ``spec``'s records with
    one column per field (as the codec builds it)."""
    ids = np.full(table.num_rows, blake64(spec.kind.value.encode()), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for f in spec.fields:
            column = table.column(f.column).combine_chunks()
            ids = _mix(ids * _FOLD + _field_hashes(f.type, column))
    return ids
