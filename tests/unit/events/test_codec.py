"""Decoding and validation of telemetry messages: good input, batches, each kind of bad."""

from __future__ import annotations

import orjson
import pytest

from pipeline.events.codec import DecodeLimits, decode_messages, decode_values
from pipeline.events.schema import LogRecord, MetricPoint, RawMessage, RecordKind, Span

NOW = 1_764_000_000_000  # 2025-11-24T16:00:00Z
POINT = {"time": NOW - 1000, "service.name": "orders", "host.name": "h1",
         "name": "cpu", "value": 12.5}


def metrics(*values: bytes, max_bytes: int = 1_048_576):
    messages = [RawMessage("tocsin.metrics", 2, 100 + i, v) for i, v in enumerate(values)]
    return decode_messages(RecordKind.METRIC, messages,
                           DecodeLimits(now_ms=NOW, max_message_bytes=max_bytes))


def reasons(batch) -> list[str]:
    return [r.reason for r in batch.rejections]


def test_single_object_decodes_to_columns():
    batch = metrics(orjson.dumps({**POINT, "attributes": {"region": "eu", "shard": 3}}))
    assert len(batch) == 1 and batch.rejections == []
    assert batch.columns["service"] == ["orders"]
    assert batch.columns["value"].tolist() == [12.5]
    assert batch.columns["time"].tolist() == [NOW - 1000]
    table = batch.to_arrow()
    assert table.column("attributes").to_pylist() == [[("region", "eu"), ("shard", "3")]]
    assert table.column("unit").to_pylist() == [""]


def test_array_message_is_a_batch():
    batch = metrics(orjson.dumps([{**POINT, "value": i} for i in range(250)]))
    assert len(batch) == 250
    assert batch.columns["value"].tolist() == [float(i) for i in range(250)]


@pytest.mark.parametrize("time_value, expected_ms", [
    (NOW // 1000, NOW),  # epoch seconds
    (NOW, NOW),  # epoch ms
    (NOW * 1000 + 999, NOW),  # epoch us
    (NOW * 1_000_000 + 999_999, NOW),  # epoch ns
    ((NOW + 250) / 1000, NOW + 250),  # float seconds
    ("2025-11-24T16:00:00Z", NOW),
    ("2025-11-24T17:00:00.123+01:00", NOW + 123),
])
def test_time_formats(time_value, expected_ms):
    batch = metrics(orjson.dumps({**POINT, "time": time_value}))
    assert batch.rejections == []
    assert batch.columns["time"].tolist() == [expected_ms]


@pytest.mark.parametrize("change, reason", [
    ({"value": "12a"}, "field 'value': expected a finite number, got string \"12a\""),
    ({"value": True}, "field 'value': expected a finite number, got boolean true"),
    ({"value": None}, "missing required field 'value'"),
    ({"service.name": 7}, "field 'service.name': expected a string, got number 7"),
    ({"service.name": ""}, "field 'service.name': must not be empty"),
    ({"time": 5}, "field 'time': 1970-01-01T00:00:05.000Z is before 2000-01-01"),
    ({"time": NOW + 7_200_000}, "is more than 3600s ahead of ingest time"),
    ({"time": "yesterday"}, "field 'time': 'yesterday' is not an RFC 3339 timestamp"),
    ({"time": "2025-11-24T16:00:00"}, "has no UTC offset"),
    ({"time": [1]}, "field 'time': expected epoch ms/ns or an RFC 3339 string, got array [1]"),
    ({"attributes": ["a"]}, "field 'attributes': expected an object, got array"),
    ({"colour": "red"}, "unknown field 'colour' (extra data belongs in 'attributes')"),
    ({"type": "log"}, "field 'type': this topic carries metric records, got string \"log\""),
    ({"name": "x" * 300}, "field 'name': longer than 256 characters (300)"),
])
def test_each_bad_field_is_rejected_with_a_reason(change, reason):
    record = {**POINT, **change}
    batch = metrics(orjson.dumps([POINT, record, POINT]))
    assert len(batch) == 2  # the good records of the same message go on
    assert len(batch.rejections) == 1
    rejection = batch.rejections[0]
    assert reason in rejection.reason
    assert (rejection.source.partition, rejection.source.offset, rejection.index) == (2, 100, 1)
    assert orjson.loads(rejection.payload) == record


def test_missing_required_field_is_named():
    record = {k: v for k, v in POINT.items() if k != "name"}
    batch = metrics(orjson.dumps(record))
    assert reasons(batch) == ["missing required field 'name'"]


def test_every_reason_of_a_record_is_kept():
    batch = metrics(orjson.dumps({"time": "bad", "service.name": "a", "value": "x"}))
    (reason,) = reasons(batch)
    assert "field 'time'" in reason and "missing required field 'name'" in reason
    assert "field 'value'" in reason


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "malformed JSON"),
    (b"", "empty message"),
    (b'"just a string"', 'expected a JSON object or an array of objects, got string'),
    (b'{"time": NaN}', "malformed JSON"),
])
def test_whole_message_rejections_keep_the_original_bytes(value, reason):
    batch = metrics(value, orjson.dumps(POINT))
    assert len(batch) == 1
    (rejection,) = batch.rejections
    assert reason in rejection.reason
    assert rejection.index == -1 and rejection.payload == value
    assert rejection.source.offset == 100


def test_non_object_elements_are_rejected_one_by_one():
    batch = metrics(orjson.dumps([POINT, 42, None, POINT]))
    assert len(batch) == 2
    assert [(r.index, r.reason) for r in batch.rejections] == [
        (1, "expected an object, got number 42"), (2, "expected an object, got null")]


def test_oversized_message_is_rejected_whole():
    big = orjson.dumps([POINT] * 100)
    batch = metrics(big, max_bytes=len(big) - 1)
    assert len(batch) == 0
    assert reasons(batch) == [f"message is {len(big)} bytes, over the limit of "
                              f"{len(big) - 1} (ingest.max_message_bytes)"]


def test_event_ids_are_stable_and_distinct():
    value = orjson.dumps([POINT, POINT, {**POINT, "value": 1}])
    first = metrics(value).columns["event_id"].tolist()
    again = metrics(value).columns["event_id"].tolist()
    other = metrics(orjson.dumps([POINT])).columns["event_id"].tolist()
    assert first == again  # a replay writes the same ids
    assert len(set(first)) == 3  # equal records in one message are distinct events
    assert other[0] not in first


def test_logs_normalise_severity_and_ids():
    record = {"time": "2025-11-24T15:59:00Z", "service.name": "db", "severity": "warning",
              "body": "connection refused", "trace_id": "0AF7651916CD43DD8448EB211C80319C",
              "span_id": "b7ad6b7169203331"}
    batch = decode_values(RecordKind.LOG, [orjson.dumps(record)], NOW)
    assert batch.rejections == []
    assert batch.columns["severity_text"] == ["WARN"]
    assert batch.columns["severity_number"].tolist() == [13]
    assert batch.columns["trace_id"] == ["0af7651916cd43dd8448eb211c80319c"]


def test_log_with_bad_severity_and_span_with_bad_ids():
    log = {"time": NOW, "service.name": "db", "severity": "LOUD", "body": "x"}
    span = {"trace_id": "abc", "span_id": "b7ad6b7169203331", "service.name": "api",
            "name": "GET /", "start": NOW, "duration_ms": -2}
    log_batch = decode_values(RecordKind.LOG, [orjson.dumps(log)], NOW)
    span_batch = decode_values(RecordKind.SPAN, [orjson.dumps(span)], NOW)
    assert "field 'severity': 'LOUD' is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL" \
        in log_batch.rejections[0].reason
    (reason,) = reasons(span_batch)
    assert "field 'trace_id': expected 32 hex digits" in reason
    assert "field 'duration_ms': expected a number >= 0, got -2" in reason


def test_dataclasses_round_trip_through_the_codec():
    point = MetricPoint(time=NOW, service="api", name="cpu", value=0.5, host="h",
                        attributes={"a": "b"})
    log = LogRecord(time=NOW, service="api", severity_text="ERROR", body="boom")
    span = Span(trace_id="1" * 32, span_id="2" * 16, service="api", name="op", start=NOW,
                duration_ms=1.0, status="error", kind="server")
    for kind, record in ((RecordKind.METRIC, point), (RecordKind.LOG, log),
                         (RecordKind.SPAN, span)):
        batch = decode_values(kind, [record.to_json()], NOW)
        assert batch.rejections == [], kind
        assert len(batch) == 1
    assert decode_values(RecordKind.SPAN, [span.to_json()], NOW).columns["status"] == ["error"]
