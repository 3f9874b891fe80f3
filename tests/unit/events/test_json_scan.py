"""The C scanner of Tocsin's JSON gives the batch the Python path gives, for every kind,
and takes the common case itself."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import SettingsError
from pipeline.events import json_scan
from pipeline.events.codec import DecodedBatch, decode_chunk, decode_messages
from pipeline.events.json_scan import json_decoder, scan_decode
from pipeline.events.schema import RawMessage, RecordKind
from tests.unit.events.test_codec_fuzz import FUZZ, KINDS, LIMITS, NOW, VALID, messages_of

pytestmark = pytest.mark.skipif(json_scan._jsonscan is None,
                                reason="the C extension pipeline.events._jsonscan is not built")

POINT = {"time": NOW - 1000, "service.name": "orders", "host.name": "node-1",
         "name": "cpu.utilization", "value": 0.5, "unit": "1",
         "attributes": {"region": "eu", "az": "eu-1a"}}


def raw(values: list[bytes]) -> list[RawMessage]:
    return [RawMessage("t", i % 3, 100 + i, v) for i, v in enumerate(values)]


def both(values: list[bytes], kind: RecordKind = RecordKind.METRIC
         ) -> tuple[DecodedBatch, DecodedBatch]:
    """The batch through the scanner and through the Python path, asserted equal."""
    messages = raw(values)
    scanned = decode_messages(kind, messages, LIMITS, decoder=scan_decode)
    python = decode_messages(kind, messages, LIMITS, decoder=decode_chunk)
    assert scanned.to_arrow().equals(python.to_arrow())
    assert scanned.columns.keys() == python.columns.keys()
    assert scanned.columns["event_id"].tolist() == python.columns["event_id"].tolist()
    for name, column in python.columns.items():  # bit for bit: Arrow's equality has -0.0 == 0.0
        if getattr(column, "dtype", None) == "float64":
            assert scanned.columns[name].view("u8").tolist() == column.view("u8").tolist()
    assert [(r.source, r.index, r.reason, r.payload) for r in scanned.rejections] == [
        (r.source, r.index, r.reason, r.payload) for r in python.rejections]
    for name in ("source_partitions", "source_messages", "source_indexes"):
        assert getattr(scanned, name).tolist() == getattr(python, name).tolist(), name
    assert scanned.empty_messages == python.empty_messages
    return scanned, python


def taken(values: list[bytes], kind: RecordKind = RecordKind.METRIC) -> list[bool]:
    """Which messages the scanner took itself (not flagged to the Python path)."""
    return (~json_scan._scan(kind, raw(values), LIMITS).flagged).tolist()


def test_plain_records_are_taken_by_the_scanner_with_the_python_paths_rows():
    values = [orjson.dumps([POINT, {**POINT, "value": 7, "host.name": "n2"}]),
              orjson.dumps({k: v for k, v in POINT.items() if k not in ("host.name", "unit",
                                                                         "attributes")}),
              orjson.dumps([{**POINT, "type": "metric", "attributes": {}}]),
              b' [ {"time" : %d ,\n "service.name":"s", "name":"n", "value":-1.5e-3} ] '
              % (NOW - 5)]
    assert taken(values) == [True, True, True, True]
    batch, _ = both(values)
    assert batch.columns["value"].tolist() == [0.5, 7.0, 0.5, 0.5, -0.0015]
    assert batch.to_arrow().column("host").to_pylist() == ["node-1", "n2", "", "node-1", ""]


def test_numbers_are_read_as_orjson_reads_them():
    """An integer is a Python int to orjson: ``-0`` is 0.0, not -0.0 (Arrow's equality
    would not tell them apart); a float keeps its sign and rounding."""
    values = [b'[%s]' % b",".join(
        b'{"time":%d,"service.name":"s","name":"n","value":%s}' % (NOW - 5, v)
        for v in (b"-0", b"-0.0", b"0.1", b"1e-400", b"5e-324", b"123456789012345",
                  b"-2.5E+3"))]
    assert taken(values) == [True]
    scanned, python = both(values)
    assert scanned.columns["value"].view("u8").tolist() == \
        python.columns["value"].view("u8").tolist()
    assert scanned.columns["value"].tolist() == [0.0, -0.0, 0.1, 0.0, 5e-324,
                                                 123456789012345.0, -2500.0]


@pytest.mark.parametrize("value", [
    b'{"time":%d.5,"service.name":"a","name":"n","value":1}' % NOW,  # a fractional time
    b'{"time":"2025-11-24T16:00:00Z","service.name":"a","name":"n","value":1}',
    b'{"time":%d,"service.name":"a","name":"n","value":1,"time":%d}' % (NOW, NOW),
    b'{"time":%d,"service.name":"a","name":"n","value":1,"host.name":null}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":1,"attributes":{"k":1}}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":1,"attributes":{"k":"1","k":"2"}}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":1e400}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":12345678901234567}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":1,"type":"log"}' % NOW,
    b'{"time":%d,"service.name":"a","name":"n","value":1,"extra":1}' % NOW,
    b'{"time":%d,"service.name":"","name":"n","value":1}' % NOW,  # empty: rejected
    b'{"time":%d,"service.name":"a","name":"%s","value":1}' % (NOW, b"x" * 300),
    b'{"time":5,"service.name":"a","name":"n","value":1}',  # before 2000
    b'{"time":%d,"service.name":"a","name":"n","value":1}' % (NOW + 10**9),  # future
    b'{"time":%d,"service.name":"\xff","name":"n","value":1}' % NOW,  # not UTF-8
    b'{"time":%d,"service.name":"a","name":"n","value":1}x' % NOW,  # trailing bytes
    b'{"time":%d,"service.name":"a","name":"n"' % NOW,  # cut short
    b"[]", b"", b"null", b"[1]",
])
def test_unusual_messages_go_to_the_python_path_and_come_out_the_same(value):
    plain = orjson.dumps([POINT, POINT])
    assert taken([plain, value, plain]) == [True, False, True]
    both([plain, value, plain])


def test_a_bad_record_sends_only_its_message_to_the_python_path():
    good, bad = orjson.dumps([POINT] * 3), orjson.dumps([POINT, {**POINT, "name": ""}])
    batch, _ = both([good, bad, good, bad, bad, good])
    assert len(batch) == 3 * 3 + 3 and len(batch.rejections) == 3
    assert batch.source_messages.tolist() == [0, 0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 5]


def test_the_json_decoder_setting():
    assert json_decoder("auto") == "c" and json_decoder(None) == "c"
    assert json_decoder("python") == "python"
    with pytest.raises(SettingsError, match="ingest.json_decoder: 'fast' is not one of"):
        json_decoder("fast")


SPAN = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": "ef" * 8,
        "service.name": "api", "host.name": "n1", "name": "GET /orders", "start": NOW - 500,
        "duration_ms": 12.5, "status": "error", "kind": "server",
        "attributes": {"http.route": "/orders", "peer.service": "db"}}
LOG = {"time": NOW - 500, "service.name": "api", "host.name": "n1", "severity": "WARN",
       "body": "ok", "trace_id": "ab" * 16,
       "span_id": "cd" * 8, "attributes": {"logger": "main"}}


def test_spans_and_logs_are_taken_and_come_out_as_the_python_path_gives_them():
    spans = [orjson.dumps([SPAN, {**SPAN, "status": "OK", "kind": "Client",
                                  "trace_id": "AB" * 16}]),
             orjson.dumps({k: v for k, v in SPAN.items()
                           if k not in ("parent_span_id", "status", "kind", "host.name")})]
    assert taken(spans, RecordKind.SPAN) == [True, True]
    batch, _ = both(spans, RecordKind.SPAN)
    table = batch.to_arrow()
    assert table.column("status").to_pylist() == ["error", "ok", "unset"]
    assert table.column("kind").to_pylist() == ["server", "client", "internal"]
    assert table.column("trace_id").to_pylist() == ["ab" * 16] * 3
    # a body written with every kind of escape, read as orjson reads it
    escaped = rb'said \"hi\"\n\tthen \u00e9\ud83d\ude00 \\ \/ \u0000'
    logs = [orjson.dumps([LOG]).replace(b'"ok"', b'"' + escaped + b'"'),
            orjson.dumps({**LOG, "severity": "warning", "trace_id": ""})]
    assert taken(logs, RecordKind.LOG) == [True, True]
    batch, _ = both(logs, RecordKind.LOG)
    assert batch.columns["body"][0].as_py() == 'said "hi"\n\tthen \u00e9\U0001f600 \\ / \x00'
    assert batch.columns["severity_number"].tolist() == [13, 13]


@pytest.mark.parametrize("kind, value", [
    (RecordKind.SPAN, orjson.dumps({**SPAN, "trace_id": "ab" * 15})),  # too short
    (RecordKind.SPAN, orjson.dumps({**SPAN, "trace_id": "xy" * 16})),  # not hex
    (RecordKind.SPAN, orjson.dumps({**SPAN, "duration_ms": -1})),
    (RecordKind.SPAN, orjson.dumps({**SPAN, "status": "fine"})),
    (RecordKind.SPAN, orjson.dumps({**SPAN, "span_id": ""})),  # required
    (RecordKind.LOG, orjson.dumps({**LOG, "severity": "loud"})),
    (RecordKind.LOG, orjson.dumps({k: v for k, v in LOG.items() if k != "body"})),
    (RecordKind.LOG, b'{"time":%d,"service.name":"a","severity":"INFO","body":"\\ud800"}'
     % NOW),  # a lone surrogate, which orjson refuses
    (RecordKind.LOG, b'{"time":%d,"service.name":"a","severity":"INFO","body":"\\x"}' % NOW),
])
def test_unusual_spans_and_logs_go_to_the_python_path(kind, value):
    plain = orjson.dumps([SPAN if kind is RecordKind.SPAN else LOG])
    assert taken([plain, value], kind) == [True, False]
    both([plain, value, plain], kind)


texts = st.text(max_size=4) | st.sampled_from(["", "\"", "\\", "\n", "\u00e9", "\U0001f600",
                                               "\x00", "AB" * 16, "ab" * 8, "OK", "Error"])


@FUZZ
@given(data=st.data(), kind=KINDS, chunk_bytes=st.integers(1, 4000))
def test_the_scanner_decodes_any_input_as_the_python_path_does(data, kind, chunk_bytes):
    odd = {"host.name", "unit", "body", "name", "trace_id", "span_id", "parent_span_id",
           "status", "kind", "severity", "service.name"}
    fields = {f.json_name for f in json_scan.SPECS[kind].fields}
    plain = st.fixed_dictionaries(
        {k: st.just(v) | texts if k in odd else st.just(v) for k, v in VALID[kind].items()},
        optional={k: texts for k in odd & fields if k not in VALID[kind]}
        | {"attributes": st.dictionaries(texts, texts, max_size=3)})
    values = data.draw(st.lists(st.one_of(messages_of["mixed"](kind),
                                          st.lists(plain, min_size=1, max_size=4).map(
                                              orjson.dumps)), min_size=1, max_size=8))
    messages = raw(values)
    scanned = decode_messages(kind, messages, LIMITS, decoder=scan_decode,
                              chunk_bytes=chunk_bytes)
    python = decode_messages(kind, messages, LIMITS, decoder=decode_chunk)
    assert scanned.to_arrow().equals(python.to_arrow())
    for name, column in python.columns.items():  # bit for bit: Arrow's equality has -0.0 == 0.0
        if getattr(column, "dtype", None) == "float64":
            assert scanned.columns[name].view("u8").tolist() == column.view("u8").tolist()
    assert [(r.index, r.reason, r.payload) for r in scanned.rejections] == [
        (r.index, r.reason, r.payload) for r in python.rejections]
    assert scanned.source_messages.tolist() == python.source_messages.tolist()
    assert scanned.empty_messages == python.empty_messages
