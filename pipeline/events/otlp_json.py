"""OTLP/JSON (the Collector's ``otlp_json`` encoding) read into the protobuf classes.

OTLP/JSON is protobuf's JSON mapping with three differences: trace and span ids are hex
strings (not base64), enums may be numbers, and 64-bit integers may be strings. The
protobuf parser already takes the last two; ids are turned from hex into base64 before
parsing (an id that is not hex of the right length is left for the parser, so base64
ids from a strict protobuf JSON producer work too).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id",
                      "parent_span_id"})
_HEX = frozenset("0123456789abcdefABCDEF")


def _hex_ids_to_base64(node: Any) -> None:
    """Rewrite hex trace/span ids in place, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                if len(value) in (16, 32) and _HEX.issuperset(value):
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item)


def parse_otlp_json(parsed: dict, message: Any) -> Any:
    """Fill ``message`` (a ``TracesData``, ``MetricsData`` or ``LogsData``) from a parsed
    OTLP/JSON object; raises ``json_format.ParseError`` on a shape that does not fit."""
    _hex_ids_to_base64(parsed)
    return json_format.ParseDict(parsed, message, ignore_unknown_fields=True)


def record_json(record: Any) -> bytes:
    """One OTLP record (span, log record, data point) as OTLP/JSON text, ids in hex."""
    data = json_format.MessageToDict(record)
    for key in _ID_KEYS & data.keys():
        data[key] = base64.b64decode(data[key]).hex()
    return orjson.dumps(data)
