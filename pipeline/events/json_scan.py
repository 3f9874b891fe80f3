"""Metric JSON through the C scanner: the codec's decoder for the common case.

``pipeline.events._jsonscan`` reads messages of plain metric records straight into
columns (no Python object per record, the GIL released while it reads). It flags every
message it does not take whole (anything malformed, unusual or rare); the records it
takes are then checked here column by column against the same limits the Python path
applies (times in range, names present and short enough), and a message with a record
that fails is flagged too. Flagged messages are decoded by the Python path
(:func:`pipeline.events.codec.decode_chunk`), the one source of rejection reasons, and
the parts are joined in message order: the batch is the one the Python path gives,
rows, event ids and rejections alike (tested over fuzzed input).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.errors import SettingsError
from pipeline.events.codec import DecodedBatch, DecodeLimits, decode_chunk, join_parts
from pipeline.events.eventid import content_ids
from pipeline.events.schema import SPECS, FieldType, RawMessage, RecordKind
from pipeline.events.times import MIN_TIME_MS, numbers_to_ms

try:
    from pipeline.events import _jsonscan
except ImportError:  # built without a C compiler: the Python path decodes everything
    _jsonscan = None

log = logging.getLogger("tocsin.codec")

DECODERS = ("auto", "c", "python")
_SPEC = SPECS[RecordKind.METRIC]
_FIELDS = {f.column: f for f in _SPEC.fields}
_TEXT = ("service", "host", "name", "unit")  # the scanner's string columns, in its order


def json_decoder(requested: str | None = None) -> str:
    """The JSON decoder to use, ``c`` or ``python``, for ``requested`` (setting
    ``ingest.json_decoder``): ``auto`` (or None) takes the C scanner when it was built,
    ``c`` insists on it, ``python`` decodes every record with orjson and Python."""
    choice = requested or "auto"
    if choice not in DECODERS:
        raise SettingsError(f"ingest.json_decoder: {choice!r} is not one of "
                            f"{', '.join(DECODERS)}")
    if choice == "c" and _jsonscan is None:
        raise SettingsError("ingest.json_decoder: 'c' asked for, but the C extension "
                            "pipeline.events._jsonscan is not built (pip install -e . with a "
                            "C compiler and the Python headers)")
    if choice == "auto":
        return "c" if _jsonscan is not None else "python"
    return choice


@dataclass
class _Scanned:
    """The scanner's rows (of the messages it took, in message order) as columns."""

    flagged: np.ndarray  # bool per message
    msg: np.ndarray
    elem: np.ndarray
    columns: dict  # by table column, without event_id

    def part(self, kind: RecordKind, messages: Sequence[RawMessage], start: int,
             stop: int) -> DecodedBatch:
        """The decoded batch of messages ``start`` to ``stop`` (all taken)."""
        lo, hi = np.searchsorted(self.msg, [start, stop])
        columns = {name: values[lo:hi] for name, values in self.columns.items()}
        table = pa.table({name: _arrow(name, values) for name, values in columns.items()})
        columns["event_id"] = content_ids(_SPEC, table)
        table = table.append_column("event_id", pa.array(columns["event_id"], pa.uint64()))
        partitions = np.fromiter((m.partition for m in messages[start:stop]), np.int32,
                                 count=stop - start)
        msg = self.msg[lo:hi].astype(np.int64) - start
        return DecodedBatch(kind, columns, [], partitions[msg], source_messages=msg,
                            source_indexes=self.elem[lo:hi].astype(np.int64), _arrow=table)


def _arrow(name: str, values) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    if name == "time":
        return pa.array(values, type=pa.timestamp("ms", tz="UTC"))
    return pa.array(values, type=pa.float64())


def _scan(messages: Sequence[RawMessage], limits: DecodeLimits) -> _Scanned:
    (flagged, msg, elem, time, value, *text, offsets, keys, values, strings) = \
        _jsonscan.scan_metrics([m.value or b"" for m in messages], limits.max_message_bytes)
    flagged = np.frombuffer(flagged, np.uint8).astype(bool)
    msg = np.frombuffer(msg, np.int32)
    ms = numbers_to_ms(np.frombuffer(time, np.int64))
    bad = (ms < MIN_TIME_MS) | (ms > limits.now_ms + limits.max_future_ms)
    columns: dict = {"time": ms}
    for name, indexes, names in zip(_TEXT, text, strings, strict=False):
        indexes = np.frombuffer(indexes, np.int32)
        f = _FIELDS[name]
        lengths = np.fromiter(map(len, names), np.int64, count=len(names))
        wrong = lengths > f.max_length if f.max_length else np.zeros(len(names), bool)
        if f.required:
            wrong |= lengths == 0
        if wrong.any():
            bad |= wrong[indexes]
        column = pa.array(names, pa.string()).take(pa.array(indexes))
        columns[name] = column
    columns["value"] = np.frombuffer(value, np.float64)
    key_names, value_names = pa.array(strings[4], pa.string()), pa.array(strings[5], pa.string())
    columns["attributes"] = pa.MapArray.from_arrays(
        pa.array(np.frombuffer(offsets, np.int32)),
        key_names.take(pa.array(np.frombuffer(keys, np.int32))),
        value_names.take(pa.array(np.frombuffer(values, np.int32))))
    columns = {f.column: columns[f.column] for f in _SPEC.fields}  # the codec's order
    elem = np.frombuffer(elem, np.int32)
    if bad.any():  # the Python path words why: its messages go there
        flagged[np.unique(msg[bad])] = True
        keep = ~flagged[msg]
        msg, elem = msg[keep], elem[keep]
        mask = pa.array(keep)
        columns = {name: c.filter(mask) if isinstance(c, pa.Array) else c[keep]
                   for name, c in columns.items()}
    return _Scanned(flagged, msg, elem, columns)


def scan_decode(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits
                ) -> DecodedBatch:
    """Decode a batch as :func:`pipeline.events.codec.decode_messages` does, metric
    records through the C scanner (other kinds, or without the extension, the Python
    path); a decoder for ``decode_messages(..., decoder=scan_decode)``."""
    if kind is not RecordKind.METRIC or _jsonscan is None or not messages:
        return decode_chunk(kind, messages, limits)
    try:
        scanned = _scan(messages, limits)
    except Exception:  # a bug here must cost speed, not records
        log.exception("the JSON scanner failed on a batch of %d messages; decoding them "
                      "with the Python path", len(messages))
        return decode_chunk(kind, messages, limits)
    if not scanned.flagged.any():
        return scanned.part(kind, messages, 0, len(messages))
    parts, firsts = [], []
    flagged = scanned.flagged
    edges = np.flatnonzero(np.diff(flagged.astype(np.int8))) + 1
    for start, stop in zip(np.r_[0, edges].tolist(), np.r_[edges, len(messages)].tolist(),
                           strict=True):
        firsts.append(start)
        parts.append(decode_chunk(kind, messages[start:stop], limits) if flagged[start]
                     else scanned.part(kind, messages, start, stop))
    return join_parts(kind, parts, firsts)


def describe_json_decoder(decoder: str) -> str:
    """One line for the start-up log: which JSON metric decoder runs, and why."""
    if decoder == "c":
        return "JSON metric decoder: C scanner (pipeline.events._jsonscan)"
    why = "asked for" if _jsonscan is not None else "the C extension is not built"
    return f"JSON metric decoder: orjson and Python ({why})"


assert all(_FIELDS[name].type is FieldType.STRING and not _FIELDS[name].choices
           and (_FIELDS[name].required or _FIELDS[name].default == "") for name in _TEXT), \
    "the scanner reads these as plain strings, an absent optional one as ''"
