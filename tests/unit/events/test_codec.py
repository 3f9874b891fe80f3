"""Decoding and validation of telemetry messages: good input, batches, each kind of bad."""

from __future__ import annotations

import orjson
import pyarrow as pa
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
    assert first == again  # a replay writes the same ids
    # equal records are one event, stored as one row: re-sending is not a new event
    assert first[0] == first[1] and first[2] != first[0]


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


# Poison records: each of these once raised out of the codec and lost the whole batch.

LOG = {"time": NOW - 1000, "service.name": "orders", "severity": "INFO", "body": "ok"}
SPAN = {"trace_id": "1" * 32, "span_id": "2" * 16, "service.name": "api", "name": "GET /",
        "start": NOW - 1000, "duration_ms": 1.5}
GOOD = {RecordKind.METRIC: POINT, RecordKind.LOG: LOG, RecordKind.SPAN: SPAN}
TIME_FIELD = {RecordKind.METRIC: "time", RecordKind.LOG: "time", RecordKind.SPAN: "start"}


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """JSON text of objects nested ``depth`` levels deep (orjson encodes at most 254)."""
    return b'{"a":' * depth + leaf + b"}" * depth


def with_raw(record: dict, name: str, raw_json: bytes) -> bytes:
    """``record`` as JSON with field ``name`` set to the raw JSON text ``raw_json``."""
    record = {k: v for k, v in record.items() if k != name}
    return orjson.dumps(record)[:-1] + b',"' + name.encode() + b'":' + raw_json + b"}"


def decode_between_good(kind: RecordKind, bad: bytes):
    """Decode [good, bad, good] messages, plus, when the bad message is one object, an
    array message holding it between two good records; returns the batch and how many
    good and bad records were sent."""
    good = orjson.dumps(GOOD[kind])
    values = [good, bad, good]
    if bad.startswith(b"{"):
        values.append(b"[" + good + b"," + bad + b"," + good + b"]")
    batch = decode_messages(kind, [RawMessage("t", 0, i, v) for i, v in enumerate(values)],
                            DecodeLimits(now_ms=NOW))
    batch.to_arrow()
    return batch, 2 * (len(values) - 2), len(values) - 2


@pytest.mark.parametrize("kind, bad, reason", [
    pytest.param(RecordKind.METRIC, orjson.dumps({**POINT, "time": 1e300}),
                 "field 'time': number 1e+300 is out of range", id="metric-time-1e300"),
    pytest.param(RecordKind.METRIC, orjson.dumps({**POINT, "time": -1e300}),
                 "field 'time': number -1e+300 is out of range", id="metric-time-minus-1e300"),
    pytest.param(RecordKind.METRIC, with_raw(POINT, "time", str(2**70).encode()),
                 "field 'time': number 1.1805916207174113e+21 is out of range",
                 id="metric-time-2**70"),
    pytest.param(RecordKind.METRIC, with_raw(POINT, "time", str(2**64 - 1).encode()),
                 "field 'time': 2554-07-21T23:34:33.709Z is more than 3600s ahead",
                 id="metric-time-uint64-max"),
    pytest.param(RecordKind.METRIC, orjson.dumps({**POINT, "time": "9999-12-31T23:59:59-14:00"}),
                 "field 'time': string \"9999-12-31T23:59:59-14:00\" is out of range",
                 id="metric-time-year-10000"),
    pytest.param(RecordKind.SPAN, orjson.dumps({**SPAN, "start": "0001-01-01T00:00:00+14:00"}),
                 "field 'start': string \"0001-01-01T00:00:00+14:00\" is out of range",
                 id="span-start-year-0"),
    pytest.param(RecordKind.LOG, with_raw(LOG, "attributes", nested(300)),
                 "field 'attributes': the value of 'a' is nested too deeply",
                 id="log-attributes-nested-300"),
    pytest.param(RecordKind.METRIC, with_raw(POINT, "zz", nested(300)),
                 "unknown field 'zz'", id="metric-unknown-field-nested-300"),
    pytest.param(RecordKind.METRIC, with_raw(POINT, "value", nested(300)),
                 "field 'value': expected a finite number, got object {\"a\":{\"a\":",
                 id="metric-value-nested-300"),
    pytest.param(RecordKind.METRIC, with_raw(POINT, "value", b"[" * 1000 + b"]" * 1000),
                 "field 'value': expected a finite number, got array [[[[",
                 id="metric-value-array-nested-1000"),
    pytest.param(RecordKind.LOG, b"[" * 300 + b"]" * 300, "expected an object, got array [[[",
                 id="log-message-array-nested-300"),
    pytest.param(RecordKind.LOG, b"[" * 2000 + b"]" * 2000, "malformed JSON",
                 id="log-message-nested-past-the-parser-limit"),
])
def test_poison_record_is_rejected_and_the_good_records_go_on(kind, bad, reason):
    batch, n_good, n_bad = decode_between_good(kind, bad)
    assert len(batch) == n_good and batch.to_arrow().num_rows == n_good
    assert len(batch.rejections) == n_bad
    for rejection in batch.rejections:
        assert reason in rejection.reason
        assert rejection.source.offset in (1, 3)
        assert rejection.payload  # dead-lettered with bytes to inspect


def test_deep_record_in_an_array_is_dead_lettered_with_the_whole_message():
    bad = with_raw(POINT, "zz", nested(300))
    value = b"[" + orjson.dumps(POINT) + b"," + bad + b"]"
    batch = metrics(value)
    assert len(batch) == 1
    (rejection,) = batch.rejections
    assert rejection.index == 1
    assert "the payload is the whole message" in rejection.reason
    assert rejection.payload == value


def test_single_object_message_is_dead_lettered_as_it_arrived():
    value = b'{ "time": "yesterday", "service.name": "a", "name": "m", "value": 1 }'
    (rejection,) = metrics(value).rejections
    assert rejection.index == 0 and rejection.payload == value


@pytest.mark.parametrize("bad_attributes", ["a=b", [1], None, 7],
                         ids=["string", "array", "null", "number"])
def test_attributes_of_mixed_shapes_in_one_batch(bad_attributes):
    """One record without attributes and one with a non-object: the first is stored with
    an empty map (null too), the second rejected; the Arrow table builds."""
    records = [LOG, {**LOG, "attributes": bad_attributes}, {**LOG, "attributes": {"k": 1}}]
    batch = decode_values(RecordKind.LOG, [orjson.dumps(records)], NOW)
    table = batch.to_arrow()
    if bad_attributes is None:
        assert table.column("attributes").to_pylist() == [[], [], [("k", "1")]]
    else:
        assert table.column("attributes").to_pylist() == [[], [("k", "1")]]
        assert "field 'attributes': expected an object" in reasons(batch)[0]


def test_missing_attributes_in_separate_messages():
    batch = decode_values(RecordKind.LOG, [orjson.dumps(LOG),
                                           orjson.dumps({**LOG, "attributes": None}),
                                           orjson.dumps({**LOG, "attributes": "a=b"})], NOW)
    assert batch.to_arrow().column("attributes").to_pylist() == [[], []]
    assert len(batch.rejections) == 1


def test_reasons_escape_what_the_input_holds():
    bad = {**POINT, "service.name": 5, "name": "x" * 300,
           "unit": ["\n2026 ERROR forged line \u202e"]}
    bad.update({f"k{i}\nforged": 1 for i in range(20)})
    (reason,) = reasons(metrics(orjson.dumps(bad)))
    assert "\n" not in reason and "\u202e" not in reason
    assert "and 15 more" in reason  # unknown field names: the first five shown
    assert len(reason) < 400


def test_a_choice_field_shows_a_bounded_escaped_value():
    log = {**LOG, "severity": "LOUD\u202e" + "!" * 1000}
    (rejection,) = decode_values(RecordKind.LOG, [orjson.dumps(log)], NOW).rejections
    assert "'LOUD\\u202e!!!" in rejection.reason and len(rejection.reason) < 200


def test_empty_array_messages_are_counted_not_rejected():
    batch = metrics(b"[]", b" [ ] ", orjson.dumps(POINT))
    assert len(batch) == 1 and batch.rejections == [] and batch.empty_messages == 2


def test_a_decoder_bug_rejects_only_the_message_it_fails_on(caplog):
    """If decoding raises (a bug), the batch is decoded message by message and only the
    message that still raises is rejected whole, with the exception named."""
    from pipeline.events.codec import decode_chunk

    def buggy(kind, messages, limits):
        if any(b"boom" in (m.value or b"") for m in messages):
            raise RuntimeError("injected\nfault")
        return decode_chunk(kind, messages, limits)

    values = [orjson.dumps([POINT, POINT]), orjson.dumps({**POINT, "unit": "boom"}),
              b"{bad json", orjson.dumps([]), orjson.dumps({**POINT, "value": 3})]
    messages = [RawMessage("t", 1, 10 + i, v) for i, v in enumerate(values)]
    with caplog.at_level("ERROR", logger="tocsin.codec"):
        batch = decode_messages(RecordKind.METRIC, messages, DecodeLimits(now_ms=NOW), buggy)
    assert len(batch) == 3
    assert batch.columns["value"].tolist() == [12.5, 12.5, 3.0]
    assert batch.to_arrow().num_rows == 3 and batch.source_partitions.tolist() == [1, 1, 1]
    assert batch.empty_messages == 1
    assert [(r.source.offset, r.index, r.reason) for r in batch.rejections] == [
        (11, -1, "internal decode error: RuntimeError: injected\\nfault"),
        (12, -1, batch.rejections[1].reason)]
    assert batch.rejections[0].payload == values[1]
    assert batch.rejections[1].reason.startswith("malformed JSON")
    assert "internal decode error: t[1]@11 is rejected whole" in caplog.text


def test_a_decoder_bug_on_every_message_loses_nothing_silently():
    def broken(kind, messages, limits):
        raise ValueError("always")

    batch = decode_messages(RecordKind.SPAN, [RawMessage("t", 0, 0, orjson.dumps(SPAN))],
                            DecodeLimits(now_ms=NOW), broken)
    assert len(batch) == 0 and batch.to_arrow().num_rows == 0
    assert reasons(batch) == ["internal decode error: ValueError: always"]


def test_attributes_are_an_arrow_map_whichever_path_validated_them():
    """Null attributes take the per-value path; its column is a map like the fast
    path's, so a batch decoded in chunks equals one decoded at once (found by the fuzz
    test: a part with no row, joined to one whose attributes were null)."""
    values = [b"\x00", orjson.dumps({**POINT, "attributes": None})]
    messages = [RawMessage("t", 1, i, v) for i, v in enumerate(values)]
    whole = decode_messages(RecordKind.METRIC, messages, DecodeLimits(now_ms=NOW))
    chunked = decode_messages(RecordKind.METRIC, messages, DecodeLimits(now_ms=NOW),
                              chunk_bytes=1)
    assert isinstance(whole.columns["attributes"], pa.MapArray)
    assert whole.columns["attributes"].equals(chunked.columns["attributes"])
    assert whole.columns["attributes"].to_pylist() == [[]]
