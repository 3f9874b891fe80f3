"""OTLP/JSON as the Collector writes it (hex ids, numeric enums, 64-bit integers as strings),
and records of one series on one by-service partition whatever the Collector's key."""

from __future__ import annotations

import base64

import orjson
from aiokafka.partitioner import DefaultPartitioner
from google.protobuf import json_format
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint

from pipeline.events.codec import DecodeLimits
from pipeline.events.otlp import decode_otlp, decode_otlp_values
from pipeline.events.schema import RawMessage, RecordKind
from pipeline.events.slices import read_slice, split_by_service
from tests.unit.events.otlp_support import (
    NOW_MS,
    SECOND_NS,
    T0_NS,
    logs,
    metrics,
    span,
    traces,
)

SPAN_JSON = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
    "scopeSpans": [{"scope": {"name": "lib"}, "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173", "name": "GET /", "kind": 2,
        "startTimeUnixNano": str(T0_NS), "endTimeUnixNano": str(T0_NS + 4_000_000),
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "404"}}],
        "status": {"code": 2}}]}]}]}


def test_hex_ids_numeric_enums_and_string_integers():
    batch = decode_otlp_values(RecordKind.SPAN, [orjson.dumps(SPAN_JSON)], NOW_MS)
    assert batch.rejections == []
    row = batch.to_arrow().to_pylist()[0]
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (row["kind"], row["status"], row["duration_ms"]) == ("server", "error", 4.0)
    assert dict(row["attributes"])["http.response.status_code"] == "404"


def otlp_json(message) -> bytes:
    """A protobuf message as the Collector's otlp_json: ids in hex."""
    data = json_format.MessageToDict(message)

    def to_hex(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and value:
                    node[key] = base64.b64decode(value).hex()
                else:
                    to_hex(value)
        elif isinstance(node, list):
            for item in node:
                to_hex(item)
    to_hex(data)
    return orjson.dumps(data)


def test_json_and_protobuf_of_the_same_data_give_the_same_rows():
    for kind, message in (
        (RecordKind.SPAN, traces([span(1, parent_span_id=b"\x02" * 8), span(3)])),
        (RecordKind.LOG, logs([{"time_unix_nano": T0_NS, "severity_number": 13,
                                "body": {"k": [1, 2]}, "trace_id": b"\x01" * 16,
                                "span_id": b"\x02" * 8, "attributes": {"n": 2**40}}])),
    ):
        proto = decode_otlp_values(kind, [message.SerializeToString()], NOW_MS,
                                   encoding="otlp_proto")
        text = decode_otlp_values(kind, [otlp_json(message)], NOW_MS, encoding="otlp_json")
        assert text.rejections == proto.rejections == []
        assert text.to_arrow().equals(proto.to_arrow())


def test_auto_reads_each_message_in_its_own_encoding():
    proto = traces([span(1)]).SerializeToString()
    batch = decode_otlp_values(RecordKind.SPAN, [proto, orjson.dumps(SPAN_JSON)], NOW_MS)
    assert len(batch) == 2 and batch.rejections == []


def test_a_rejected_json_record_travels_as_json_with_hex_ids():
    bad = {**SPAN_JSON["resourceSpans"][0]["scopeSpans"][0]["spans"][0], "spanId": "abcd"}
    data = {"resourceSpans": [{"scopeSpans": [{"spans": [bad]}]}]}
    batch = decode_otlp_values(RecordKind.SPAN, [orjson.dumps(data)], NOW_MS)
    [rejection] = batch.rejections
    assert rejection.index == 0 and "span_id" in rejection.reason
    assert orjson.loads(rejection.payload)["traceId"] == "5b8efff798038103d269b633813fc60c"


def gauge_message(service: str, t_s: int) -> bytes:
    dp = NumberDataPoint(time_unix_nano=T0_NS + t_s * SECOND_NS, as_double=float(t_s))
    return metrics([Metric(name="queue.depth", gauge=Gauge(data_points=[dp]))],
                   {"service.name": service}).SerializeToString()


def test_records_of_one_series_land_on_one_partition_whatever_the_message_key():
    """The Collector keys messages by nothing, a trace id or a resource hash, and they
    spread over source partitions; ingest forwards every stored record keyed by service."""
    sources = {0: [("orders", 1), ("search", 1)], 1: [("orders", 2), ("billing", 2)],
               2: [("orders", 3)]}
    partitioner, partitions = DefaultPartitioner(), list(range(12))
    landed: dict[str, set[int]] = {}
    rows: dict[str, list[float]] = {}
    for source, content in sources.items():  # one ingest batch per source partition
        messages = [RawMessage("otlp_metrics", source, i, gauge_message(s, t))
                    for i, (s, t) in enumerate(content)]
        batch = decode_otlp(RecordKind.METRIC, messages, DecodeLimits(NOW_MS))
        for key, value in split_by_service("metrics", batch.to_arrow(), 1 << 20).messages:
            piece = read_slice(key, value)
            assert set(piece.columns["service"]) == {key.decode()}
            landed.setdefault(key.decode(), set()).add(
                partitioner(key, partitions, partitions))
            rows.setdefault(key.decode(), []).extend(piece.columns["value"].tolist())
    assert rows["orders"] == [1.0, 2.0, 3.0]
    assert all(len(parts) == 1 for parts in landed.values())
