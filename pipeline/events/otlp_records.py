"""OTLP ``TracesData`` and ``LogsData`` as span and log rows.

Spans: ids as lower-case hex, kind by name (unspecified: ``internal``), status code
``ERROR`` -> ``error`` (``OK`` -> ``ok``, else ``unset``), duration from start and end, the
status message as ``otel.status_description``, the number of span events as
``span.event_count`` (absent: none) and an ``exception`` event's ``exception.type`` /
``exception.message`` copied onto the span; ``service.peer.name`` (the newer name) is
copied to ``peer.service``, which the service graph reads.

Logs: the severity text is the OpenTelemetry range of ``severity_number`` (TRACE 1-4 ...
FATAL 21-24); without a number it comes from ``severity_text`` (``WARNING`` -> ``WARN``
...; an unknown text is stored as INFO and kept as ``log.severity_text``); the time is
``time_unix_nano``, else ``observed_time_unix_nano``; a string body as is, any other body
as JSON.

Event ids come from the records' content (a span's trace and span id; a log record's
bytes with its resource), so the same record sent twice is stored once.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from pipeline.events.otlp_rows import OtlpRows
from pipeline.events.otlp_values import (
    attributes_dict,
    resource_fields,
    scope_attributes,
    text_value,
)
from pipeline.events.schema import SEVERITIES, SEVERITY_ALIASES, SEVERITY_NUMBER

SPAN_KIND_NAMES = ("internal", "internal", "server", "client", "producer", "consumer")
STATUS_NAMES = ("unset", "ok", "error")
_ZERO_TRACE = bytes(16)
_EXCEPTION_KEYS = ("exception.type", "exception.message")
_PEER, _NEW_PEER = "peer.service", "service.peer.name"


def _hash(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def _bad_id(value: bytes, name: str, size: int, required: bool) -> str | None:
    if not value:
        return f"field '{name}' is not set" if required else None
    if len(value) != size:
        return f"field '{name}': expected {size} bytes, got {len(value)}"
    return None


def map_spans(data: Any, message: int, rows: OtlpRows) -> int:
    """Append the rows of one ``TracesData``; returns how many spans it held."""
    c = rows.columns
    trace_ids, span_ids, parents = c["trace_id"], c["span_id"], c["parent_span_id"]
    services, hosts, names, starts = c["service"], c["host"], c["name"], c["start"]
    durations, statuses, kinds, attributes = c["duration_ms"], c["status"], c["kind"], \
        c["attributes"]
    ids, msgs, ordinals, origins = rows.event_ids, rows.message, rows.ordinal, rows.origin
    ordinal = -1
    for rs in data.resource_spans:
        service, host, kept = resource_fields(attributes_dict(rs.resource.attributes))
        for ss in rs.scope_spans:
            base = scope_attributes(ss.scope, kept)
            for span in ss.spans:
                ordinal += 1
                tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
                reason = (_bad_id(tid, "trace_id", 16, True) or _bad_id(sid, "span_id", 8, True)
                          or _bad_id(pid, "parent_span_id", 8, False))
                if reason is None and tid == _ZERO_TRACE:
                    reason = "field 'trace_id' is all zeros (an invalid trace id)"
                if reason is not None:
                    rows.reject(message, ordinal, span, reason)
                    continue
                attrs = {**base, **attributes_dict(span.attributes)}
                if _NEW_PEER in attrs and _PEER not in attrs:
                    attrs[_PEER] = attrs[_NEW_PEER]
                status = span.status
                if status.message:
                    attrs["otel.status_description"] = status.message
                if span.events:
                    attrs["span.event_count"] = str(len(span.events))
                    for event in span.events:
                        if event.name == "exception":
                            for key, value in attributes_dict(event.attributes).items():
                                if key in _EXCEPTION_KEYS:
                                    attrs.setdefault(key, value)
                start = span.start_time_unix_nano
                trace_ids.append(tid.hex())
                span_ids.append(sid.hex())
                parents.append(pid.hex())
                services.append(service)
                hosts.append(host)
                names.append(span.name)
                starts.append(start // 1_000_000)
                durations.append((span.end_time_unix_nano - start) / 1e6)
                code, kind = status.code, span.kind
                statuses.append(STATUS_NAMES[code] if 0 <= code < 3 else "unset")
                kinds.append(SPAN_KIND_NAMES[kind] if 0 <= kind < 6 else "internal")
                attributes.append(attrs)
                ids.append(_hash(tid + sid))
                msgs.append(message)
                ordinals.append(ordinal)
                origins.append(span)
    return ordinal + 1


def severity(number: int, text: str) -> tuple[str, int]:
    """(severity text, severity number) of an OTLP log record.

    >>> severity(10, ""), severity(0, "warning"), severity(0, "")
    (('INFO', 10), ('WARN', 13), ('INFO', 9))
    """
    if 1 <= number <= 24:
        return SEVERITIES[(number - 1) // 4], number
    name = text.upper()
    name = SEVERITY_ALIASES.get(name, name)
    if name not in SEVERITY_NUMBER:
        name = "INFO"
    return name, SEVERITY_NUMBER[name]


def map_logs(data: Any, message: int, rows: OtlpRows) -> int:
    """Append the rows of one ``LogsData``; returns how many log records it held."""
    c = rows.columns
    times, services, hosts, texts, numbers = c["time"], c["service"], c["host"], \
        c["severity_text"], c["severity_number"]
    bodies, trace_ids, span_ids, attributes = c["body"], c["trace_id"], c["span_id"], \
        c["attributes"]
    ids, msgs, ordinals, origins = rows.event_ids, rows.message, rows.ordinal, rows.origin
    ordinal = -1
    for rl in data.resource_logs:
        resource = rl.resource
        service, host, kept = resource_fields(attributes_dict(resource.attributes))
        prefix = resource.SerializeToString(deterministic=True)
        for sl in rl.scope_logs:
            base = scope_attributes(sl.scope, kept)
            for record in sl.log_records:
                ordinal += 1
                tid, sid = record.trace_id, record.span_id
                reason = _bad_id(tid, "trace_id", 16, False) or _bad_id(sid, "span_id", 8, False)
                if reason is not None:
                    rows.reject(message, ordinal, record, reason)
                    continue
                own = attributes_dict(record.attributes)
                attrs = {**base, **own} if own else base
                text, number = severity(record.severity_number, record.severity_text)
                if record.severity_number == 0 and record.severity_text \
                        and record.severity_text.upper() not in SEVERITY_NUMBER:
                    attrs = {**attrs, "log.severity_text": record.severity_text}
                event_name = getattr(record, "event_name", "")
                if event_name:
                    attrs = {**attrs, "event.name": event_name}
                times.append((record.time_unix_nano or record.observed_time_unix_nano)
                             // 1_000_000)
                services.append(service)
                hosts.append(host)
                texts.append(text)
                numbers.append(number)
                bodies.append(text_value(record.body))
                trace_ids.append(tid.hex())
                span_ids.append(sid.hex())
                attributes.append(attrs)
                ids.append(_hash(prefix + record.SerializeToString()))
                msgs.append(message)
                ordinals.append(ordinal)
                origins.append(record)
    return ordinal + 1
