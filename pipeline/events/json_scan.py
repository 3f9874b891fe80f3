"""Tocsin's JSON through the C scanner: the codec's decoder for the common case.

``pipeline.events._jsonscan`` reads messages of plain records straight into columns (no
Python object per record, the GIL released while it reads). It flags every message it
does not take whole (anything malformed, unusual or rare); the records it takes are then
checked here column by column against what the Python path checks (times in range,
numbers not negative where they must not be, names present and short enough, ids hex of
their length, choices), each distinct string once, and a message with a record that
fails is flagged too. Flagged messages are decoded by the Python path
(:func:`pipeline.events.codec.decode_chunk`), the one source of rejection reasons, and
the parts are joined in message order: the batch is the one the Python path gives,
rows, event ids and rejections alike (tested over fuzzed input of every kind).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.events.codec import (
    DecodedBatch,
    DecodeLimits,
    decode_chunk,
    decode_messages,
    identified_table,
    join_parts,
)
from pipeline.events.columns import keep_rows
from pipeline.events.decoders import choose_decoder, describe_decoder_choice
from pipeline.events.schema import (
    SPECS,
    FieldSpec,
    FieldType,
    RawMessage,
    RecordKind,
)
from pipeline.events.times import MIN_TIME_MS, numbers_to_ms
from pipeline.events.validate import _check_one

try:
    from pipeline.events import _jsonscan
except ImportError:  # built without a C compiler: the Python path decodes everything
    _jsonscan = None

log = logging.getLogger("tocsin.codec")

SCAN_CHUNK_BYTES = 16 << 20
"""Message bytes the scanner reads at once at most: its columns take about the bytes it
read (the Python path keeps its own smaller chunks, ``codec.DECODE_CHUNK_BYTES``)."""
_CODES = {FieldType.TIME: 0, FieldType.NUMBER: 1, FieldType.NON_NEGATIVE: 1,
          FieldType.STRING: 2, FieldType.HEX_ID: 2, FieldType.ATTRIBUTES: 3}
_FIELDS = {kind: tuple((f.json_name.encode(), _CODES[f.type], f.required)
                       for f in spec.fields) for kind, spec in SPECS.items()}


def json_decoder(requested: str | None = None) -> str:
    """The JSON decoder to use, ``c`` or ``python``, for ``requested`` (setting
    ``ingest.json_decoder``): ``auto`` (or None) takes the C scanner when it was built,
    ``c`` insists on it, ``python`` decodes every record with orjson and Python."""
    return choose_decoder("ingest.json_decoder", requested, _jsonscan,
                          "pipeline.events._jsonscan")


def describe_json_decoder(decoder: str) -> str:
    """One line for the start-up log: which JSON decoder runs, and why."""
    return describe_decoder_choice(decoder, _jsonscan, "JSON decoder",
                                   "C scanner (pipeline.events._jsonscan)",
                                   "orjson and Python")


@dataclass
class _Scanned:
    """The scanner's rows (of the messages it took, in message order) as columns."""

    kind: RecordKind
    flagged: np.ndarray  # bool per message
    msg: np.ndarray
    elem: np.ndarray
    columns: dict[str, Any]  # the fields' columns, by table column

    def part(self, messages: Sequence[RawMessage], start: int, stop: int) -> DecodedBatch:
        """The decoded batch of messages ``start`` to ``stop`` (all taken)."""
        lo, hi = np.searchsorted(self.msg, [start, stop])
        columns = {name: values[lo:hi] for name, values in self.columns.items()}
        table = identified_table(self.kind, columns)
        partitions = np.fromiter((m.partition for m in messages[start:stop]), np.int32,
                                 count=stop - start)
        msg = self.msg[lo:hi].astype(np.int64) - start
        return DecodedBatch(self.kind, columns, [], partitions[msg], source_messages=msg,
                            source_indexes=self.elem[lo:hi].astype(np.int64), _arrow=table)


def _strings(f: FieldSpec, names: list[str], limits: DecodeLimits
             ) -> tuple[list[str], np.ndarray]:
    """Each distinct value of a text field as stored (normalised), and whether the
    Python path refuses it."""
    lengths = np.fromiter(map(len, names), np.int64, count=len(names))
    if f.type is FieldType.STRING and not f.choices:
        wrong = lengths > f.max_length if f.max_length else np.zeros(len(names), bool)
        if f.required:
            wrong |= lengths == 0
        return names, wrong
    if f.type is FieldType.HEX_ID:  # the usual: lower-case hex of the length already
        usual = pc.match_substring_regex(pa.array(names, pa.string()),
                                         f"^[0-9a-f]{{{f.hex_length}}}$")
        fine = usual.to_numpy(zero_copy_only=False) | ((lengths == 0) & (not f.required))
    else:
        fine = np.zeros(len(names), bool)
    stored, wrong = list(names), np.zeros(len(names), bool)
    for i in np.flatnonzero(~fine).tolist():
        converted, reason = _check_one(f, names[i], limits)
        stored[i] = converted
        wrong[i] = reason is not None
    return stored, wrong


def _scan(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits) -> _Scanned:
    spec = SPECS[kind]
    flagged, msg, elem, raw, (offsets, keys, values, key_names, value_names) = _jsonscan.scan(
        [m.value or b"" for m in messages], limits.max_message_bytes, kind.value.encode(),
        _FIELDS[kind])
    flagged = np.frombuffer(flagged, np.uint8).astype(bool)
    msg, elem = np.frombuffer(msg, np.int32), np.frombuffer(elem, np.int32)
    bad = np.zeros(len(msg), bool)
    columns: dict[str, Any] = {}
    for f, data in zip(spec.fields, raw, strict=True):
        if f.type is FieldType.TIME:
            ms = numbers_to_ms(np.frombuffer(data, np.int64))
            bad |= (ms < MIN_TIME_MS) | (ms > limits.now_ms + limits.max_future_ms)
            columns[f.column] = ms
        elif f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
            numbers = np.frombuffer(data, np.float64)
            if f.type is FieldType.NON_NEGATIVE:
                bad |= numbers < 0
            columns[f.column] = numbers
        elif f.type is FieldType.ATTRIBUTES:
            columns[f.column] = pa.MapArray.from_arrays(
                pa.array(np.frombuffer(offsets, np.int32)),
                pa.array(key_names, pa.string()).take(pa.array(np.frombuffer(keys, np.int32))),
                pa.array(value_names, pa.string()).take(
                    pa.array(np.frombuffer(values, np.int32))))
        else:
            indexes, names = data
            indexes = np.frombuffer(indexes, np.int32)
            stored, wrong = _strings(f, names, limits)
            absent = indexes < 0
            if absent.any():  # an optional field left out: its default, valid as it is
                stored.append(f.default)
                wrong = np.append(wrong, False)
                indexes = np.where(absent, len(stored) - 1, indexes)
            bad |= wrong[indexes]
            columns[f.column] = pa.array(stored, pa.string()).take(pa.array(indexes))
    if bad.any():  # the Python path words why: their messages go there
        flagged[np.unique(msg[bad])] = True
        keep = ~flagged[msg]
        msg, elem = msg[keep], elem[keep]
        keep_rows(columns, keep)
    return _Scanned(kind, flagged, msg, elem, columns)


def scan_decode(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits
                ) -> DecodedBatch:
    """Decode a batch as :func:`pipeline.events.codec.decode_messages` does, the records
    through the C scanner (without the extension, the Python path); a decoder for
    ``decode_messages(..., decoder=scan_decode)``."""
    if _jsonscan is None or not messages:
        return decode_chunk(kind, messages, limits)
    try:
        scanned = _scan(kind, messages, limits)
    except Exception:  # a bug here must cost speed, not records
        log.exception("the JSON scanner failed on a batch of %d %s messages; decoding them "
                      "with the Python path", len(messages), kind.value)
        return decode_chunk(kind, messages, limits)
    flagged = scanned.flagged
    if not flagged.any():
        return scanned.part(messages, 0, len(messages))
    edges = np.flatnonzero(np.diff(flagged.astype(np.int8))) + 1
    starts, stops = np.r_[0, edges].tolist(), np.r_[edges, len(messages)].tolist()
    # the Python path's runs in its own chunks: its objects take several times the bytes
    parts = [decode_messages(kind, messages[a:b], limits) if flagged[a]
             else scanned.part(messages, a, b) for a, b in zip(starts, stops, strict=True)]
    return join_parts(kind, parts, starts)
