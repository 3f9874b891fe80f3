"""Decode OTLP messages (the OpenTelemetry Collector's Kafka exporter) into column batches.

One Kafka message is one export batch: a ``TracesData``, ``MetricsData`` or ``LogsData``
(resource -> scope -> records), encoded as protobuf (``otlp_proto``, the Collector's
default) or OTLP/JSON (``otlp_json``). ``auto`` tells them apart per message: a message
whose first non-blank byte is ``{`` (or ``[``) is read as JSON (and, should that fail, as protobuf:
a protobuf message may start with the bytes ``\n{``); any other as protobuf.

The result is the :class:`~pipeline.events.codec.DecodedBatch` the JSON codec produces,
so storage, dead letters and the by-service regrouping treat both alike. Nothing here
raises on input: a message that cannot be read is rejected whole (index -1, its bytes as
they arrived), a record that cannot be stored is rejected alone (its index in the
message, the record re-encoded in the message's encoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from pipeline.events.codec import DecodeLimits, message_problem
from pipeline.events.otlp_json import parse_otlp_json, record_json
from pipeline.events.otlp_metrics import map_metrics
from pipeline.events.otlp_records import map_logs, map_spans
from pipeline.events.otlp_rows import OtlpBatch, OtlpRows
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_wire import WireFallback, map_metrics_wire, metrics_decoder
from pipeline.events.schema import RawMessage, RecordKind, Rejection

ENCODINGS = ("auto", "otlp_proto", "otlp_json")
MESSAGE_CLASSES = {RecordKind.SPAN: TracesData, RecordKind.METRIC: MetricsData,
                   RecordKind.LOG: LogsData}
RECORD_NAMES = {RecordKind.SPAN: "spans", RecordKind.METRIC: "metric data points",
                RecordKind.LOG: "log records"}
_BLANK = b" \t\r\n"


def _candidates(value: bytes, encoding: str) -> tuple[str, ...]:
    if encoding != "auto":
        return (encoding,)
    if value[:64].lstrip(_BLANK)[:1] in (b"{", b"["):
        return ("otlp_json", "otlp_proto")
    return ("otlp_proto",)


def parse_message(kind: RecordKind, value: bytes, encoding: str) -> tuple[Any, str | None]:
    """(the export message, None) or (None, why it cannot be read)."""
    cls = MESSAGE_CLASSES[kind]
    if encoding == "otlp_proto":
        try:
            return cls.FromString(value), None
        except (DecodeError, ValueError, RuntimeError) as exc:
            return None, f"malformed OTLP protobuf ({cls.__name__}): {exc}"
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return None, f"malformed OTLP JSON: {exc}"
    if type(parsed) is not dict:
        return None, f"OTLP JSON: expected an object ({cls.__name__}), got " \
                     f"{type(parsed).__name__}"
    try:
        return parse_otlp_json(parsed, cls()), None
    except Exception as exc:  # json_format raises ParseError and, on odd shapes, others
        return None, f"OTLP JSON does not fit {cls.__name__}: {exc}"


def _mark(rows: OtlpRows) -> tuple[int, ...]:
    return (len(rows.event_ids), len(rows.early), len(rows.bucket_rows),
            len(rows.buckets["event_id"]))


def _rollback(rows: OtlpRows, mark: tuple[int, ...]) -> None:
    n, early, bucket_rows, buckets = mark
    for values in (*rows.columns.values(), rows.event_ids, rows.message, rows.ordinal,
                   rows.origin):
        del values[n:]
    del rows.early[early:]
    del rows.bucket_rows[bucket_rows:]
    for values in rows.buckets.values():
        del values[buckets:]


def decode_otlp(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits,
                memory: SeriesMemory | None = None, encoding: str = "auto",
                decoder: str | None = None) -> OtlpBatch:
    """Decode a batch of OTLP messages of one signal; never raises on bad input.

    Histogram points also give ``metric_buckets`` rows, in the batch's ``buckets``.
    ``memory`` holds the previous point of cumulative metric series across batches (a
    fresh one when None: every cumulative series then only seeds). ``decoder`` picks how
    protobuf metrics are read (see :func:`~pipeline.events.otlp_wire.metrics_decoder`:
    ``auto``, ``c`` or ``python``); both give the same rows.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"OTLP encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    wire = kind is RecordKind.METRIC and metrics_decoder(decoder) == "c"
    memory = memory if memory is not None else SeriesMemory()
    rows = OtlpRows(kind)
    rejections: list[Rejection] = []
    encodings: list[str] = []
    for m, msg in enumerate(messages):
        value = msg.value or b""
        encodings.append(encoding)
        problem = message_problem(value, limits)
        if problem:
            rejections.append(Rejection(msg, -1, problem, value))
            continue
        candidates = _candidates(value, encoding)
        if wire and candidates[0] == "otlp_proto":
            mark = _mark(rows)
            try:  # the C scanner; it changes nothing when it gives the message back
                count = map_metrics_wire(value, m, rows, memory)
            except WireFallback:
                count = None
            except Exception as exc:  # as the library path: the message goes
                _rollback(rows, mark)
                rejections.append(Rejection(msg, -1, f"cannot map this OTLP message: "
                                            f"{type(exc).__name__}: {exc}", value))
                continue
            if count:  # none: the protobuf library says why
                encodings[m] = "otlp_proto"
                continue
        data, reason = None, ""
        for candidate in candidates:
            data, why = parse_message(kind, value, candidate)
            if data is not None:
                encodings[m] = candidate
                break
            reason = reason or why  # the first reading's: JSON's for text that looks JSON
        if data is None:
            rejections.append(Rejection(msg, -1, reason, value))
            continue
        mark = _mark(rows)
        try:
            if kind is RecordKind.METRIC:
                count = map_metrics(data, m, rows, memory)
            elif kind is RecordKind.SPAN:
                count = map_spans(data, m, rows)
            else:
                count = map_logs(data, m, rows)
        except Exception as exc:  # a record our mapping cannot take: the message goes
            _rollback(rows, mark)
            rejections.append(Rejection(msg, -1, f"cannot map this OTLP message: "
                                        f"{type(exc).__name__}: {exc}", value))
            continue
        if count == 0:
            rejections.append(Rejection(
                msg, -1, f"no {RECORD_NAMES[kind]} in the message (not an OTLP "
                f"{MESSAGE_CLASSES[kind].__name__} in {encodings[m]}?)", value))

    def payload(m: int, record: Any) -> bytes:
        if encodings[m] == "otlp_json":
            return record_json(record)
        if isinstance(record, (int, np.integer)):  # the C scanner's: where it lies
            at = int(record)
            return bytes(messages[m].value[at >> 32:at & 0xFFFFFFFF])
        return record.SerializeToString()

    return rows.finish(messages, limits, payload, rejections)


def decode_otlp_values(kind: RecordKind, values: Sequence[bytes], now_ms: int,
                       memory: SeriesMemory | None = None, encoding: str = "auto",
                       topic: str = "-", decoder: str | None = None) -> OtlpBatch:
    """Decode bare message values (no Kafka position): for tests, benchmarks, notebooks."""
    messages = [RawMessage(topic, 0, i, v) for i, v in enumerate(values)]
    return decode_otlp(kind, messages, DecodeLimits(now_ms=now_ms), memory, encoding,
                       decoder)
