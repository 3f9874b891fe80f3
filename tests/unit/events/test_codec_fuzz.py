"""Property-based tests: whatever messages hold, decoding accounts for every record.

For every kind and any input (arbitrary bytes, arbitrary JSON, records with weird values
in each field), ``decode_messages``:

* never raises, and never needs its last line of defence ("internal decode error");
* accounts for every record: ``len(batch) + len(batch.rejections)`` equals the records
  sent, where a message that is not a JSON object or array (bad bytes, bad JSON, a
  scalar, an empty or oversized message) is one record, an object is one record, an
  array of N elements is N records and an empty array is none (it is counted in
  ``batch.empty_messages``);
* stores only valid values (times in range, finite numbers) in an Arrow table of the
  kind's usual schema, and gives every rejection a printable reason;
* decides each record alone: decoding the messages one by one gives the same rows and
  the same rejections as decoding them as one batch.

``TOCSIN_FUZZ_EXAMPLES`` sets the examples per test (default 100, a few seconds in all).
"""

from __future__ import annotations

import math
import os
from functools import cache

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.events.codec import DecodedBatch, DecodeLimits, decode_messages, decode_values
from pipeline.events.schema import SPECS, FieldType, RawMessage, RecordKind
from pipeline.events.times import MIN_TIME_MS

NOW = 1_764_000_000_000
LIMITS = DecodeLimits(now_ms=NOW, max_message_bytes=64_000)
EXAMPLES = int(os.environ.get("TOCSIN_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = st.sampled_from(list(RecordKind))
VALID = {
    RecordKind.METRIC: {"time": NOW - 1000, "service.name": "orders", "name": "cpu",
                        "value": 1.5},
    RecordKind.LOG: {"time": NOW - 1000, "service.name": "orders", "severity": "info",
                     "body": "ok"},
    RecordKind.SPAN: {"trace_id": "1" * 32, "span_id": "2" * 16, "service.name": "api",
                      "name": "GET /", "start": NOW - 1000, "duration_ms": 1.0},
}

# -- values ---------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ["", "\x00", "a\nb", "\u202e", "x" * 300, "INFO", "warning", "ok", "SERVER", "1" * 32,
     "2" * 16, "ABCDEF0123456789" * 2, "2025-11-24T16:00:00Z", "2025-11-24T16:00:00",
     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z"])
integers = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(
    [0, -1, NOW, NOW // 1000, NOW * 1000, NOW * 1_000_000, 2**63 - 1, -(2**63), 2**64 - 1,
     10**11, 10**14, 10**17])
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e300, -1e300, 5e-324, -0.0, NOW / 1000, NOW * 1e6, 1.7976931348623157e308])
scalars = st.none() | st.booleans() | integers | floats | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(texts, inner, max_size=4), max_leaves=12)

# JSON text that Python values cannot express: deep nesting, numbers past 64 bits
deep = st.integers(1, 1100).flatmap(lambda depth: st.sampled_from([
    b'{"a":' * depth + b"1" + b"}" * depth, b"[" * depth + b"]" * depth]))
raw_numbers = st.sampled_from([b"1180591620717411303424", b"-1e300", b"1e400", b"NaN",
                               b"-0", b"1E-400", b"18446744073709551616", b"1" + b"0" * 400])
raw_values = st.one_of(json_values.map(orjson.dumps), deep, raw_numbers)


@st.composite
def raw_records(draw: st.DrawFn, kind: RecordKind) -> bytes:
    """A record of ``kind`` as JSON text: each field valid, absent or odd; maybe extras."""
    fields = [f.json_name for f in SPECS[kind].fields] + ["type"]
    parts = []
    for name in fields:
        choice = draw(st.sampled_from(["valid", "valid", "absent", "odd"]))
        if choice == "absent" or (choice == "valid" and name not in VALID[kind]):
            continue
        value = orjson.dumps(VALID[kind][name]) if choice == "valid" else draw(raw_values)
        parts.append(orjson.dumps(name) + b":" + value)
    for name in draw(st.lists(texts, max_size=2)):
        parts.append(orjson.dumps(name) + b":" + draw(raw_values))
    return b"{" + b",".join(parts) + b"}"


@st.composite
def record_messages(draw: st.DrawFn, kind: RecordKind) -> bytes:
    """One record, or an array of records and the odd non-record."""
    if draw(st.booleans()):
        return draw(raw_records(kind))
    items = draw(st.lists(raw_records(kind) | raw_values, max_size=5))
    return b"[" + b",".join(items) + b"]"


messages_of = {
    "bytes": lambda kind: st.binary(max_size=200),
    "json": lambda kind: json_values.map(orjson.dumps),
    "records": record_messages,
    "mixed": lambda kind: st.one_of(st.binary(max_size=50), raw_values,
                                    record_messages(kind)),
}

# -- the properties ---------------------------------------------------------------------


def records_in(value: bytes) -> tuple[int, int]:
    """(records, empty arrays) a message holds, by the accounting rule of this module."""
    if not value or len(value) > LIMITS.max_message_bytes:
        return 1, 0
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1, 0
    if type(parsed) is list:
        return len(parsed), int(not parsed)
    return 1, 0


@cache
def usual_schema(kind: RecordKind) -> pa.Schema:
    return decode_values(kind, [orjson.dumps(VALID[kind])], NOW).to_arrow().schema


def decode(kind: RecordKind, values: list[bytes]) -> DecodedBatch:
    messages = [RawMessage("t", 0, i, v) for i, v in enumerate(values)]
    return decode_messages(kind, messages, LIMITS)


def check_batch(kind: RecordKind, values: list[bytes]) -> DecodedBatch:
    batch = decode(kind, values)
    counts = [records_in(v) for v in values]
    assert len(batch) + len(batch.rejections) == sum(n for n, _ in counts)
    assert batch.empty_messages == sum(e for _, e in counts)
    for rejection in batch.rejections:
        assert not rejection.reason.startswith("internal decode error"), rejection.reason
        assert rejection.reason and rejection.reason.isprintable(), rejection.reason
        assert -1 <= rejection.index
    assert len({(r.source.offset, r.index) for r in batch.rejections}) == len(batch.rejections)
    table = batch.to_arrow()
    assert table.num_rows == len(batch) == len(batch.source_partitions)
    assert table.schema == usual_schema(kind)
    for f in SPECS[kind].fields:
        column = batch.columns[f.column]
        if f.type is FieldType.TIME:
            assert all(MIN_TIME_MS <= t <= NOW + LIMITS.max_future_ms for t in column.tolist())
        elif f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
            assert all(math.isfinite(v) for v in column.tolist())
    return batch


def check_each_record_alone(kind: RecordKind, values: list[bytes], together: DecodedBatch):
    alone = [decode(kind, [v]) for v in values]
    assert together.columns["event_id"].tolist() == [
        i for b in alone for i in b.columns["event_id"].tolist()]
    assert sorted((r.source.offset, r.index, r.reason) for r in together.rejections) == sorted(
        (offset, r.index, r.reason) for offset, b in enumerate(alone) for r in b.rejections)


@FUZZ
@given(kind=KINDS, values=st.lists(st.binary(max_size=200), min_size=1, max_size=6))
def test_arbitrary_bytes(kind, values):
    check_batch(kind, values)


@FUZZ
@given(kind=KINDS, values=st.lists(json_values.map(orjson.dumps), min_size=1, max_size=6))
def test_arbitrary_json(kind, values):
    check_batch(kind, values)


@FUZZ
@given(data=st.data(), kind=KINDS)
def test_records_with_odd_fields(data, kind):
    values = data.draw(st.lists(record_messages(kind), min_size=1, max_size=6))
    check_batch(kind, values)


@FUZZ
@given(data=st.data(), kind=KINDS)
def test_each_record_is_decided_alone(data, kind):
    values = data.draw(st.lists(messages_of["mixed"](kind), min_size=2, max_size=6))
    check_each_record_alone(kind, values, check_batch(kind, values))


def same_batch(a: DecodedBatch, b: DecodedBatch) -> None:
    """Every part of two decoded batches is equal, order included."""
    assert a.to_arrow().equals(b.to_arrow())
    assert a.columns.keys() == b.columns.keys()
    for name, column in a.columns.items():
        other = b.columns[name]
        if isinstance(column, pa.Array):
            assert column.equals(other), name
        else:
            assert list(column) == list(other), name
    assert [(r.source, r.index, r.reason, r.payload) for r in a.rejections] == [
        (r.source, r.index, r.reason, r.payload) for r in b.rejections]
    for name in ("source_partitions", "source_messages", "source_indexes"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert a.empty_messages == b.empty_messages


@FUZZ
@given(data=st.data(), kind=KINDS, chunk_bytes=st.integers(1, 400))
def test_a_batch_decoded_in_chunks_is_the_batch_decoded_at_once(data, kind, chunk_bytes):
    """The decode's memory bound (``chunk_bytes`` of messages at a time) changes nothing:
    rows, columns, rejections in order and where each row came from."""
    values = data.draw(st.lists(st.one_of(messages_of["mixed"](kind), st.binary(max_size=40)),
                                min_size=2, max_size=8))
    messages = [RawMessage("t", i % 3, i, v) for i, v in enumerate(values)]
    whole = decode_messages(kind, messages, LIMITS, chunk_bytes=1 << 30)
    chunked = decode_messages(kind, messages, LIMITS, chunk_bytes=chunk_bytes)
    same_batch(whole, chunked)
