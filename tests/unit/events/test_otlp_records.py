"""OTLP spans and logs into rows; malformed messages into dead letters, never exceptions."""

from __future__ import annotations

import random

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.events.codec import DecodeLimits
from pipeline.events.otlp import decode_otlp, decode_otlp_values
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.schema import RawMessage, RecordKind
from tests.unit.events.otlp_support import (
    NOW_MS,
    T0_NS,
    logs,
    metrics,
    resource_attrs,
    span,
    traces,
)


def rows(batch) -> list[dict]:
    """The batch's rows as dicts (attributes as a dict)."""
    table = batch.to_arrow().to_pylist()
    for row in table:
        row["attributes"] = dict(row["attributes"])
    return table


def all_metric_types() -> list[Metric]:
    """One metric of every type, cumulative ones with two points (so rates are computed)."""
    out = []
    for t in (1, 2):
        ns = T0_NS + t * 10**10
        out += [
            Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=ns,
                                                                      as_double=1.0)])),
            Metric(name="c", sum=Sum(aggregation_temporality=2, is_monotonic=True,
                                     data_points=[NumberDataPoint(time_unix_nano=ns,
                                                                  as_int=5 * t)])),
            Metric(name="h", histogram=Histogram(aggregation_temporality=2, data_points=[
                HistogramDataPoint(time_unix_nano=ns, count=3 * t, sum=9.0 * t,
                                   explicit_bounds=[1.0, 5.0], bucket_counts=[t, t, t])])),
            Metric(name="e", exponential_histogram=ExponentialHistogram(
                aggregation_temporality=1, data_points=[ExponentialHistogramDataPoint(
                    time_unix_nano=ns, start_time_unix_nano=T0_NS, count=4, scale=1,
                    zero_count=1, positive=ExponentialHistogramDataPoint.Buckets(
                        offset=-1, bucket_counts=[1, 2]))])),
            Metric(name="s", summary=Summary(data_points=[SummaryDataPoint(
                time_unix_nano=ns, count=2 * t, sum=4.0 * t,
                quantile_values=[SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0)])]))]
    return out


def decode(kind: RecordKind, *messages, encoding: str = "auto"):
    values = [m if isinstance(m, bytes) else m.SerializeToString() for m in messages]
    return decode_otlp_values(kind, values, NOW_MS, encoding=encoding)


class TestSpans:
    def test_a_span_keeps_ids_kind_status_duration_and_flattened_attributes(self):
        resource = resource_attrs("checkout", host__name="node-1",
                                  service__namespace="shop", k8s__namespace__name="prod",
                                  process__pid=4242, deployment__environment="staging")
        attrs = {"http.response.status_code": 503, "server.address": "db.local",
                 "peer.service": "payments", "rpc.system": "grpc", "db.system": "postgresql",
                 "retry": True, "ratio": 0.5, "tags": ["a", 1], "extra": {"k": "v"}}
        data = traces([span(7, parent_span_id=b"\x0a" * 8, kind=3, attributes=attrs,
                            status=(2, "upstream timeout"),
                            events=[("retry", {}), ("exception", {
                                "exception.type": "TimeoutError",
                                "exception.message": "read timed out", "other": "x"})])],
                      resource, scope=("io.opentelemetry.http", "1.2.0"))
        batch = decode(RecordKind.SPAN, data)
        assert batch.rejections == []
        [row] = rows(batch)
        assert row["trace_id"] == "07" * 16 and row["span_id"] == "07" * 8
        assert row["parent_span_id"] == "0a" * 8
        assert (row["service"], row["host"], row["name"]) == ("checkout", "node-1",
                                                            "GET /orders")
        assert (row["kind"], row["status"], row["duration_ms"]) == ("client", "error", 2.5)
        assert row["start"].timestamp() * 1000 == pytest.approx(T0_NS / 1e6 + 7)
        assert row["attributes"] == {
            "service.namespace": "shop", "k8s.namespace.name": "prod",
            "deployment.environment.name": "staging",
            "otel.scope.name": "io.opentelemetry.http", "otel.scope.version": "1.2.0",
            "http.response.status_code": "503", "server.address": "db.local",
            "peer.service": "payments", "rpc.system": "grpc", "db.system": "postgresql",
            "retry": "true", "ratio": "0.5", "tags": '["a",1]', "extra": '{"k":"v"}',
            "otel.status_description": "upstream timeout", "span.event_count": "2",
            "exception.type": "TimeoutError", "exception.message": "read timed out"}

    def test_the_newer_peer_attribute_feeds_the_service_graph(self):
        data = traces([span(attributes={"service.peer.name": "db"}), span(2, attributes={
            "service.peer.name": "db", "peer.service": "payments"})])
        assert [r["attributes"]["peer.service"] for r in rows(decode(RecordKind.SPAN, data))] \
            == ["db", "payments"]

    @pytest.mark.parametrize(("kind", "name"), [(0, "internal"), (1, "internal"),
                                                (2, "server"), (3, "client"),
                                                (4, "producer"), (5, "consumer"),
                                                (9, "internal")])
    def test_every_span_kind(self, kind, name):
        assert rows(decode(RecordKind.SPAN, traces([span(kind=kind)])))[0]["kind"] == name

    @pytest.mark.parametrize(("code", "name"), [(0, "unset"), (1, "ok"), (2, "error"),
                                                (7, "unset")])
    def test_every_status_code(self, code, name):
        batch = decode(RecordKind.SPAN, traces([span(status=(code, ""))]))
        assert rows(batch)[0]["status"] == name

    @pytest.mark.parametrize(("resource", "host"), [
        ({"host.name": "h", "k8s.pod.name": "p", "container.id": "c"}, "h"),
        ({"k8s.pod.name": "p", "container.id": "c"}, "p"),
        ({"container.id": "c"}, "c"),
        ({}, ""),
    ])
    def test_host_falls_back_to_pod_then_container(self, resource, host):
        data = traces([span()], {"service.name": "api", **resource})
        assert rows(decode(RecordKind.SPAN, data))[0]["host"] == host

    def test_a_resource_without_service_name_is_unknown_service(self):
        data = traces([span()], {"host.name": "h"})
        assert rows(decode(RecordKind.SPAN, data))[0]["service"] == "unknown_service"

    def test_bad_spans_are_rejected_alone_with_their_own_bytes(self):
        bad_trace = span(2, trace_id=b"\x01" * 8)
        zero_trace = span(3, trace_id=bytes(16))
        backwards = span(4, end_time_unix_nano=T0_NS)
        old = span(5, start_time_unix_nano=631_152_000_000 * 10**6,
                   end_time_unix_nano=631_152_000_001 * 10**6)
        future = span(6, start_time_unix_nano=(NOW_MS + 7_200_000) * 1_000_000,
                      end_time_unix_nano=(NOW_MS + 7_200_001) * 1_000_000)
        long_name = span(8, name="x" * 300)
        data = traces([span(1), bad_trace, zero_trace, backwards, old, future, long_name,
                       span(9)])
        batch = decode(RecordKind.SPAN, data)
        assert [r["span_id"] for r in rows(batch)] == ["01" * 8, "09" * 8]
        by_index = {r.index: r for r in batch.rejections}
        assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
        assert by_index[1].reason == "field 'trace_id': expected 16 bytes, got 8"
        assert "all zeros" in by_index[2].reason
        assert "'end_time_unix_nano' is before" in by_index[3].reason
        assert "before 2000-01-01" in by_index[4].reason
        assert "ahead of ingest time" in by_index[5].reason
        assert by_index[6].reason == "name: longer than 256 characters (300)"
        assert Span.FromString(by_index[3].payload).span_id == b"\x04" * 8

    def test_event_ids_come_from_trace_and_span_id_not_from_the_message(self):
        alone = decode(RecordKind.SPAN, traces([span(1)]))
        with_others = decode(RecordKind.SPAN, traces([span(3), span(2), span(1)]))
        assert alone.columns["event_id"][0] == with_others.columns["event_id"][2]
        assert len(set(with_others.columns["event_id"].tolist())) == 3


class TestLogs:
    def test_severity_body_ids_and_attributes(self):
        records = [
            {"time_unix_nano": T0_NS, "severity_number": 17, "severity_text": "Error",
             "body": "disk full", "trace_id": b"\xab" * 16, "span_id": b"\xcd" * 8,
             "attributes": {"code": 28}},
            {"observed_time_unix_nano": T0_NS + 1, "severity_text": "warning",
             "body": {"msg": "slow", "ms": 1200}},
            {"time_unix_nano": T0_NS + 2, "severity_text": "LOUD", "body": ["a", 2]},
            {"time_unix_nano": T0_NS + 3, "severity_number": 22, "body": 42},
            {"time_unix_nano": T0_NS + 4, "severity_number": 10},
        ]
        batch = decode(RecordKind.LOG, logs(records))
        assert batch.rejections == []
        got = rows(batch)
        assert [(r["severity_text"], r["severity_number"]) for r in got] == [
            ("ERROR", 17), ("WARN", 13), ("INFO", 9), ("FATAL", 22), ("INFO", 10)]
        assert [r["body"] for r in got] == ["disk full", '{"msg":"slow","ms":1200}',
                                            '["a",2]', "42", ""]
        assert (got[0]["trace_id"], got[0]["span_id"]) == ("ab" * 16, "cd" * 8)
        assert got[1]["trace_id"] == got[1]["span_id"] == ""
        assert got[0]["attributes"] == {"code": "28"}
        assert got[2]["attributes"] == {"log.severity_text": "LOUD"}
        assert got[1]["time"] == got[0]["time"]  # the observed time stands in

    def test_a_record_with_a_bad_span_id_is_rejected_alone(self):
        records = [{"time_unix_nano": T0_NS, "body": "ok"},
                   {"time_unix_nano": T0_NS, "body": "bad", "span_id": b"\x01" * 3},
                   {"body": "no time"}]
        batch = decode(RecordKind.LOG, logs(records))
        assert [r["body"] for r in rows(batch)] == ["ok"]
        reasons = {r.index: r.reason for r in batch.rejections}
        assert reasons == {1: "field 'span_id': expected 8 bytes, got 3",
                           2: "field 'time_unix_nano' is not set"}
        assert LogRecord.FromString(batch.rejections[0].payload).body.string_value == "bad"


class TestMalformedMessages:
    def test_bad_messages_are_rejected_whole_and_good_ones_go_on(self):
        good = traces([span()]).SerializeToString()
        values = [good, b"\xff\xfe\x00garbage", b"", b"\x78\x01", b"{not json", b"[1, 2]",
                  b'{"resourceSpans": 5}', b"x" * 2_000]
        messages = [RawMessage("otlp_spans", 1, i, v) for i, v in enumerate(values)]
        batch = decode_otlp(RecordKind.SPAN, messages,
                            DecodeLimits(NOW_MS, max_message_bytes=1_500))
        assert len(batch) == 1
        reasons = {r.source.offset: r.reason for r in batch.rejections}
        assert reasons[1].startswith("malformed OTLP protobuf (TracesData)")
        assert reasons[2] == "empty message"
        assert reasons[3].startswith("no spans in the message")
        assert reasons[4].startswith("malformed OTLP JSON")
        assert reasons[5] == "OTLP JSON: expected an object (TracesData), got list"
        assert reasons[6].startswith("OTLP JSON does not fit TracesData")
        assert "over the limit of 1500" in reasons[7]
        assert all(r.index == -1 and r.payload == values[r.source.offset]
                   for r in batch.rejections)

    def test_a_metrics_message_on_the_spans_topic_is_dead_lettered_not_raised(self):
        data = metrics([Metric(name="x" * 16)])
        batch = decode(RecordKind.SPAN, data)
        assert len(batch) == 0 and len(batch.rejections) == 1

    @pytest.mark.parametrize("kind", list(RecordKind))
    def test_random_bytes_never_raise_and_every_message_is_accounted_for(self, kind):
        rng = random.Random(12)
        good = {RecordKind.SPAN: traces([span(i) for i in range(1, 4)]),
                RecordKind.LOG: logs([{"time_unix_nano": T0_NS, "body": {"k": [1, "x"]},
                                       "attributes": {"a": 1.5}}] * 3),
                RecordKind.METRIC: metrics(all_metric_types())}[kind].SerializeToString()
        clean = decode_otlp_values(kind, [good], NOW_MS)
        assert len(clean) > 0 and clean.rejections == []
        values = []
        for _ in range(300):
            value = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                value[rng.randrange(len(value))] = rng.randrange(256)
            values.append(bytes(value[:rng.randint(1, len(value))]))
        memory = SeriesMemory()
        batch = decode_otlp_values(kind, values, NOW_MS, memory)
        alone = [decode_otlp_values(kind, [v], NOW_MS) for v in values]
        for one in alone:  # each message gave rows or a reason, nothing vanished
            assert len(one) > 0 or one.rejections
            assert all(r.reason for r in one.rejections)
        if kind is not RecordKind.METRIC:  # (cumulative points depend on earlier ones)
            assert len(batch) == sum(map(len, alone))
            assert len(batch.rejections) == sum(len(one.rejections) for one in alone)
        assert len(batch.to_arrow()) == len(batch)

    def test_an_explicit_encoding_reads_only_that_encoding(self):
        json_text = b'{"resourceSpans": []}'
        batch = decode(RecordKind.SPAN, json_text, encoding="otlp_proto")
        assert batch.rejections[0].reason.startswith("malformed OTLP protobuf")
