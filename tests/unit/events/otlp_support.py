"""Builders of OTLP export messages with the generated protobuf classes, for the tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

NOW_MS = 1_780_000_000_000
T0_NS = (NOW_MS - 60_000) * 1_000_000
SECOND_NS = 1_000_000_000


def any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    return AnyValue(string_value=value)


def key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    """A dict as repeated KeyValue."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def resource_attrs(service: str = "api", **extra: Any) -> dict[str, Any]:
    """Resource attributes with ``service.name`` and the given extras (dots for '__')."""
    attrs = {"service.name": service} if service else {}
    attrs.update({k.replace("__", "."): v for k, v in extra.items()})
    return attrs


def traces(spans: list[dict], resource: dict | None = None, scope: tuple[str, str] = ("", "")
           ) -> TracesData:
    """One resource, one scope, the given spans (keyword dicts of Span fields + attrs)."""
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.extend(key_values(resource or resource_attrs()))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope
    for fields in spans:
        fields = dict(fields)
        attrs = fields.pop("attributes", {})
        events = fields.pop("events", [])
        status = fields.pop("status", None)
        span = ss.spans.add(**fields)
        span.attributes.extend(key_values(attrs))
        for name, event_attrs in events:
            event = span.events.add(name=name, time_unix_nano=fields["start_time_unix_nano"])
            event.attributes.extend(key_values(event_attrs))
        if status is not None:
            span.status.code, span.status.message = status
    return data


def span(i: int = 1, **fields: Any) -> dict:
    """Span fields: a valid server span of 2.5 ms unless overridden."""
    out = {"trace_id": bytes([i]) * 16, "span_id": bytes([i]) * 8, "name": "GET /orders",
           "kind": 2, "start_time_unix_nano": T0_NS + i * 1_000_000,
           "end_time_unix_nano": T0_NS + i * 1_000_000 + 2_500_000}
    out.update(fields)
    return out


def logs(records: list[dict], resource: dict | None = None) -> LogsData:
    """One resource, one scope, the given log records (Body as a Python value)."""
    data = LogsData()
    rl = data.resource_logs.add()
    rl.resource.attributes.extend(key_values(resource or resource_attrs()))
    sl = rl.scope_logs.add()
    for fields in records:
        fields = dict(fields)
        attrs = fields.pop("attributes", {})
        body = fields.pop("body", None)
        record = sl.log_records.add(**fields)
        record.attributes.extend(key_values(attrs))
        if body is not None:
            record.body.CopyFrom(any_value(body))
    return data


def metrics(metric_list: list[Any], resource: dict | None = None) -> MetricsData:
    """One resource, one scope, the given ``Metric`` messages."""
    data = MetricsData()
    rm = data.resource_metrics.add()
    rm.resource.attributes.extend(key_values(resource or resource_attrs()))
    rm.scope_metrics.add().metrics.extend(metric_list)
    return data
