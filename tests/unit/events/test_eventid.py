"""Event ids come from record content: one id per distinct record, however it is batched."""

from __future__ import annotations

import orjson
import pytest

from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind

NOW = 1_764_000_000_000
POINT = {"time": NOW - 1000, "service.name": "orders", "host.name": "h1", "name": "cpu",
         "value": 12.5, "unit": "%", "attributes": {"region": "eu", "shard": "3"}}
LOG = {"time": NOW - 1000, "service.name": "orders", "severity": "ERROR", "body": "boom",
       "trace_id": "a" * 32, "span_id": "b" * 16, "attributes": {"k": "v"}}
SPAN = {"trace_id": "1" * 32, "span_id": "2" * 16, "parent_span_id": "3" * 16,
        "service.name": "api", "host.name": "h", "name": "GET /", "start": NOW - 1000,
        "duration_ms": 1.5, "status": "error", "kind": "server", "attributes": {"a": "b"}}
RECORDS = {RecordKind.METRIC: POINT, RecordKind.LOG: LOG, RecordKind.SPAN: SPAN}


def ids(kind: RecordKind, *messages: bytes) -> list[int]:
    batch = decode_values(kind, list(messages), NOW)
    assert batch.rejections == []
    assert batch.to_arrow().column("event_id").to_pylist() == batch.columns["event_id"].tolist()
    return batch.columns["event_id"].tolist()


@pytest.mark.parametrize("kind", list(RecordKind))
def test_a_record_has_one_id_however_it_is_batched(kind):
    record = RECORDS[kind]
    others = [{**record, "service.name": f"other-{i}"} for i in range(3)]
    alone = ids(kind, orjson.dumps(record))
    in_array = ids(kind, orjson.dumps([others[0], record, others[1]]))
    later_batch = ids(kind, orjson.dumps(others[2]), orjson.dumps([record]))
    assert alone[0] == in_array[1] == later_batch[1]
    assert len(set(in_array)) == 3


@pytest.mark.parametrize("kind", list(RecordKind))
def test_every_stored_field_changes_the_id(kind):
    record = RECORDS[kind]
    changes = {"service.name": "payments", "host.name": "h2", "attributes": {"k": "w"},
               "time": NOW - 2000, "start": NOW - 2000, "value": 12.25, "name": "mem",
               "unit": "ms", "body": "bang", "severity": "WARN", "trace_id": "c" * 32,
               "span_id": "d" * 16, "parent_span_id": "e" * 16, "duration_ms": 2.0,
               "status": "ok", "kind": "client"}
    variants = [record] + [{**record, name: value} for name, value in changes.items()
                           if name in record]
    assert len(variants) == len(record) + 1
    found = ids(kind, orjson.dumps(variants))
    assert len(set(found)) == len(variants)


def test_the_same_values_written_differently_are_the_same_record():
    """The id covers what is stored: time in any unit, attributes in any order, numbers
    in attributes as their text, severity in any case."""
    base = ids(RecordKind.METRIC, orjson.dumps(POINT))[0]
    same = [
        {**POINT, "time": (NOW - 1000) / 1000},  # seconds
        {**POINT, "time": (NOW - 1000) * 1_000_000},  # nanoseconds
        {**POINT, "time": "2025-11-24T15:59:59Z"},
        {**POINT, "attributes": {"shard": 3, "region": "eu"}},
        {**POINT, "type": "metric"},
    ]
    assert ids(RecordKind.METRIC, orjson.dumps(same)) == [base] * len(same)
    log = ids(RecordKind.LOG, orjson.dumps([LOG, {**LOG, "severity": "error"}]))
    assert log[0] == log[1]


def test_ids_tell_apart_near_misses():
    near = [
        {**POINT, "attributes": {"region": "eu3", "shard": ""}},  # text moved across fields
        {**POINT, "attributes": {"region": "e", "shard": "u3"}},
        {**POINT, "attributes": {"regio": "neu", "shard": "3"}},
        {**POINT, "attributes": {"shard": "eu", "region": "3"}},  # values swapped
        {**POINT, "attributes": {"region": "eu"}},
        {**POINT, "attributes": {}},
        {**POINT, "service.name": "orders", "host.name": "h1cpu", "name": "x"},
        {**POINT, "value": -12.5},
        {**POINT, "value": 0.0},
        {**POINT, "value": -0.0, "unit": "x"},
        POINT,
    ]
    found = ids(RecordKind.METRIC, orjson.dumps(near))
    assert len(set(found)) == len(near)


def test_metric_and_log_with_the_same_text_differ():
    metric = ids(RecordKind.METRIC, orjson.dumps({"time": NOW, "service.name": "a",
                                                  "name": "b", "value": 0}))
    log = ids(RecordKind.LOG, orjson.dumps({"time": NOW, "service.name": "a",
                                            "severity": "INFO", "body": "b"}))
    assert metric != log


def test_ids_of_many_distinct_records_do_not_collide():
    records = [{**POINT, "value": float(i), "attributes": {"i": str(i % 97)}}
               for i in range(50_000)]
    found = ids(RecordKind.METRIC, *(orjson.dumps(records[i:i + 1000])
                                      for i in range(0, len(records), 1000)))
    assert len(set(found)) == len(records)


def test_ids_are_pinned():
    """A stored id must not change between versions, or a replay after an upgrade
    would store its records twice."""
    pinned = {RecordKind.METRIC: 342540145307289188, RecordKind.LOG: 12223393018725479388,
              RecordKind.SPAN: 14778199369666126218}
    assert {kind: ids(kind, orjson.dumps(RECORDS[kind]))[0] for kind in RecordKind} == pinned


def test_blake64_of_many_values_is_blake64_of_each(monkeypatch):
    """The C path (an Arrow array's buffers, slices included) and the fallback agree with
    :func:`blake64` value by value."""
    import pyarrow as pa

    from pipeline.events import eventid

    values = pa.array(["", "abc", "\u00e9\U0001f600", "x" * 300, "", "q"])
    expected = [eventid.blake64(v.encode()) for v in values.to_pylist()]
    assert eventid.blake64_values(values).tolist() == expected
    assert eventid.blake64_values(values.slice(2, 3)).tolist() == expected[2:5]
    assert eventid.blake64_values(pa.array(["", ""])).tolist() == [eventid.blake64(b"")] * 2
    assert eventid.blake64_values(pa.array([], pa.string())).tolist() == []
    monkeypatch.setattr(eventid, "_otlpwire", None)
    assert eventid.blake64_values(values.slice(1)).tolist() == expected[1:]
