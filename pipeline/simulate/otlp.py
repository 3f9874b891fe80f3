"""The simulation as the OpenTelemetry Collector's Kafka exporter writes it: OTLP export
messages (``otlp_proto`` or ``otlp_json``), one per batch of records, grouped by resource.

Each (service, host) is one resource (``service.name``, ``host.name``); metric points are
gauges (the simulator's series are already rates, ratios and percentiles), so Tocsin
stores exactly the rows the JSON format gives, under the same names.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from pipeline.events.schema import SEVERITY_NUMBER, RecordKind
from pipeline.simulate.generator import SimStep
from pipeline.simulate.output import tick_wire

FORMATS = ("json", "otlp-proto", "otlp-json")
_KIND_NUMBER = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_CODE = {"unset": 0, "ok": 1, "error": 2}
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=str(v))) for k, v in attrs.items()]


def _resource(container: Any, service: str, host: str) -> Any:
    attrs = {"service.name": service, **({"host.name": host} if host else {})}
    container.resource.attributes.extend(_key_values(attrs))
    return container


def _group(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["service.name"], record.get("host.name", "")),
                          []).append(record)
    return groups


def metrics_message(records: list[dict]) -> MetricsData:
    """Metric wire dicts as one ``MetricsData`` of gauges."""
    data = MetricsData()
    for (service, host), points in _group(records).items():
        scope = _resource(data.resource_metrics.add(), service, host).scope_metrics.add()
        by_name: dict[str, Any] = {}
        for p in points:
            metric = by_name.get(p["name"])
            if metric is None:
                metric = by_name[p["name"]] = scope.metrics.add(name=p["name"],
                                                                unit=p.get("unit", ""))
            dp = metric.gauge.data_points.add(time_unix_nano=p["time"] * 1_000_000,
                                              as_double=p["value"])
            dp.attributes.extend(_key_values(p.get("attributes") or {}))
    return data


def logs_message(records: list[dict]) -> LogsData:
    """Log wire dicts as one ``LogsData``."""
    data = LogsData()
    for (service, host), logs in _group(records).items():
        scope = _resource(data.resource_logs.add(), service, host).scope_logs.add()
        for r in logs:
            record = scope.log_records.add(
                time_unix_nano=r["time"] * 1_000_000, severity_text=r["severity"],
                severity_number=SEVERITY_NUMBER[r["severity"]],
                trace_id=bytes.fromhex(r.get("trace_id", "")),
                span_id=bytes.fromhex(r.get("span_id", "")))
            record.body.string_value = r["body"]
            record.attributes.extend(_key_values(r.get("attributes") or {}))
    return data


def traces_message(records: list[dict]) -> TracesData:
    """Span wire dicts as one ``TracesData``."""
    data = TracesData()
    for (service, host), spans in _group(records).items():
        scope = _resource(data.resource_spans.add(), service, host).scope_spans.add()
        for s in spans:
            start_ns = s["start"] * 1_000_000
            span = scope.spans.add(
                trace_id=bytes.fromhex(s["trace_id"]), span_id=bytes.fromhex(s["span_id"]),
                parent_span_id=bytes.fromhex(s.get("parent_span_id", "")), name=s["name"],
                kind=_KIND_NUMBER[s.get("kind", "internal")], start_time_unix_nano=start_ns,
                end_time_unix_nano=start_ns + round(s["duration_ms"] * 1_000_000),
                status=Status(code=_STATUS_CODE[s.get("status", "unset")]))
            span.attributes.extend(_key_values(s.get("attributes") or {}))
    return data


BUILDERS = {RecordKind.METRIC: metrics_message, RecordKind.LOG: logs_message,
            RecordKind.SPAN: traces_message}


def encode(message: Any, fmt: str) -> bytes:
    """An export message as ``otlp-proto`` bytes or ``otlp-json`` text (ids in hex)."""
    if fmt == "otlp-proto":
        return message.SerializeToString()
    data = json_format.MessageToDict(message)
    for resource in data.get("resourceSpans", []) + data.get("resourceLogs", []):
        for scope in resource.get("scopeSpans", []) + resource.get("scopeLogs", []):
            for record in scope.get("spans", []) + scope.get("logRecords", []):
                for key in _ID_KEYS:
                    if record.get(key):
                        record[key] = base64.b64decode(record[key]).hex()
    return orjson.dumps(data)


def otlp_messages(ticks: Iterable[SimStep], fmt: str, records_per_message: int = 100
                  ) -> Iterator[tuple[RecordKind, int, bytes, int]]:
    """(kind, tick time, encoded message, records in it) for every tick, in tick order."""
    if fmt not in ("otlp-proto", "otlp-json"):
        raise ValueError(f"OTLP format {fmt!r} is not otlp-proto or otlp-json")
    for tick in ticks:
        yield from tick_messages(tick, fmt, records_per_message)


def tick_messages(tick: SimStep, fmt: str, records_per_message: int = 100
                  ) -> Iterator[tuple[RecordKind, int, bytes, int]]:
    """The OTLP messages of one tick."""
    for kind, records in tick_wire(tick).items():
        for i in range(0, len(records), records_per_message):
            chunk = records[i:i + records_per_message]
            yield kind, tick.time_ms, encode(BUILDERS[kind](chunk), fmt), len(chunk)
