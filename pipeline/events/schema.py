"""Telemetry event types, aligned with OpenTelemetry's semantic conventions.

Each record kind is a dataclass (for code that builds or reads single records) and a
:class:`RecordSpec` (for the codec, which validates and stores whole batches column by
column). The JSON field names are the wire format producers send; see the README.

Times are integers in epoch milliseconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import orjson


class RecordKind(str, Enum):
    """The kinds of telemetry Tocsin ingests; each has its own topic and table."""

    METRIC = "metric"
    LOG = "log"
    SPAN = "span"


class FieldType(str, Enum):
    """How a JSON field is validated and stored."""

    TIME = "time"  # epoch ms/us/ns number or RFC 3339 string -> epoch ms
    STRING = "string"
    NUMBER = "number"  # finite float
    NON_NEGATIVE = "non_negative"  # finite float >= 0
    ATTRIBUTES = "attributes"  # object of scalar values -> Map(String, String)
    HEX_ID = "hex_id"  # lower-case hex of a fixed length (trace/span ids)


@dataclass(frozen=True)
class FieldSpec:
    """One JSON field of a record: its wire name, column name, type and default."""

    json_name: str
    column: str
    type: FieldType
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    hex_length: int = 0
    max_length: int = 0
    normalize: str = ""  # "upper" or "lower": case-fold before checking ``choices``


@dataclass(frozen=True)
class RecordSpec:
    """The wire format of one record kind and the table it is stored in."""

    kind: RecordKind
    table: str
    fields: tuple[FieldSpec, ...]

    @cached_property
    def field_names(self) -> frozenset[str]:
        """The JSON names of the record's fields."""
        return frozenset(f.json_name for f in self.fields)

    @cached_property
    def json_names(self) -> frozenset[str]:
        """Field names a record may carry: its fields plus ``type``, the kind's name."""
        return self.field_names | {"type"}


SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
"""OpenTelemetry severity texts; ``severity_number`` is the range start (1, 5, 9, ...)."""

SEVERITY_NUMBER = {name: 1 + 4 * i for i, name in enumerate(SEVERITIES)}
SEVERITY_ALIASES = {"WARNING": "WARN", "ERR": "ERROR", "CRITICAL": "FATAL", "NOTICE": "INFO"}
SPAN_STATUSES = ("ok", "error", "unset")
SPAN_KINDS = ("server", "client", "internal", "producer", "consumer")

_SERVICE = FieldSpec("service.name", "service", FieldType.STRING, max_length=256)
_HOST = FieldSpec("host.name", "host", FieldType.STRING, required=False, default="",
                  max_length=256)
_ATTRS = FieldSpec("attributes", "attributes", FieldType.ATTRIBUTES, required=False,
                   default=None)

METRIC_SPEC = RecordSpec(
    RecordKind.METRIC,
    "metrics",
    (
        FieldSpec("time", "time", FieldType.TIME),
        _SERVICE,
        _HOST,
        FieldSpec("name", "name", FieldType.STRING, max_length=256),
        FieldSpec("value", "value", FieldType.NUMBER),
        FieldSpec("unit", "unit", FieldType.STRING, required=False, default="", max_length=64),
        _ATTRS,
    ),
)

LOG_SPEC = RecordSpec(
    RecordKind.LOG,
    "logs",
    (
        FieldSpec("time", "time", FieldType.TIME),
        _SERVICE,
        _HOST,
        FieldSpec("severity", "severity_text", FieldType.STRING, choices=SEVERITIES,
                  normalize="upper"),
        FieldSpec("body", "body", FieldType.STRING, max_length=65_536),
        FieldSpec("trace_id", "trace_id", FieldType.HEX_ID, required=False, default="",
                  hex_length=32),
        FieldSpec("span_id", "span_id", FieldType.HEX_ID, required=False, default="",
                  hex_length=16),
        _ATTRS,
    ),
)

SPAN_SPEC = RecordSpec(
    RecordKind.SPAN,
    "spans",
    (
        FieldSpec("trace_id", "trace_id", FieldType.HEX_ID, hex_length=32),
        FieldSpec("span_id", "span_id", FieldType.HEX_ID, hex_length=16),
        FieldSpec("parent_span_id", "parent_span_id", FieldType.HEX_ID, required=False,
                  default="", hex_length=16),
        _SERVICE,
        _HOST,
        FieldSpec("name", "name", FieldType.STRING, max_length=256),
        FieldSpec("start", "start", FieldType.TIME),
        FieldSpec("duration_ms", "duration_ms", FieldType.NON_NEGATIVE),
        FieldSpec("status", "status", FieldType.STRING, required=False, default="unset",
                  choices=SPAN_STATUSES, normalize="lower"),
        FieldSpec("kind", "kind", FieldType.STRING, required=False, default="internal",
                  choices=SPAN_KINDS, normalize="lower"),
        _ATTRS,
    ),
)

SPECS: dict[RecordKind, RecordSpec] = {
    RecordKind.METRIC: METRIC_SPEC,
    RecordKind.LOG: LOG_SPEC,
    RecordKind.SPAN: SPAN_SPEC,
}


class _Wire:
    """Mixin: the dataclass as the JSON object producers send."""

    _spec: RecordSpec

    def to_wire(self) -> dict[str, Any]:
        """The record as a wire-format dict (JSON field names, ``type`` included)."""
        out: dict[str, Any] = {"type": self._spec.kind.value}
        for f in self._spec.fields:
            value = getattr(self, f.column)
            if f.required or value not in (f.default, "", None, {}):
                out[f.json_name] = value
        return out

    def to_json(self) -> bytes:
        """The record encoded as one JSON message."""
        return orjson.dumps(self.to_wire())


@dataclass(frozen=True)
class MetricPoint(_Wire):
    """One sample of a metric series (``service``/``host``/``name`` + attributes)."""

    time: int
    service: str
    name: str
    value: float
    host: str = ""
    unit: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    _spec = METRIC_SPEC


@dataclass(frozen=True)
class LogRecord(_Wire):
    """One log line with its OpenTelemetry severity and optional trace context."""

    time: int
    service: str
    severity_text: str
    body: str
    host: str = ""
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    _spec = LOG_SPEC

    @property
    def severity_number(self) -> int:
        """OpenTelemetry severity number (INFO=9, WARN=13, ERROR=17 ...)."""
        return SEVERITY_NUMBER[self.severity_text]


@dataclass(frozen=True)
class Span(_Wire):
    """One span of a trace: an operation of a service, with duration and status."""

    trace_id: str
    span_id: str
    service: str
    name: str
    start: int
    duration_ms: float
    parent_span_id: str = ""
    host: str = ""
    status: str = "unset"
    kind: str = "internal"
    attributes: dict[str, str] = field(default_factory=dict)

    _spec = SPAN_SPEC


RECORD_CLASSES: dict[RecordKind, type] = {
    RecordKind.METRIC: MetricPoint,
    RecordKind.LOG: LogRecord,
    RecordKind.SPAN: Span,
}


@dataclass(frozen=True)
class RawMessage:
    """A Kafka message as consumed: where it came from and its undecoded bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Rejection:
    """A record that failed decoding or validation, and why."""

    source: RawMessage
    index: int  # position in a JSON-array message; -1 when the whole message failed
    reason: str
    payload: bytes  # the record's bytes (or the whole message's when index == -1)
