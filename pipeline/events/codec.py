"""Decode Kafka messages of telemetry into validated column batches.

One message holds one JSON object or a JSON array of objects. Validation runs column by
column over the whole batch: a vectorised fast path for the common case, and a per-value
check (the one source of every error message) only for the values that fail it. Bad
records come back as :class:`~pipeline.events.schema.Rejection` s; good records of the same
message go on.

Decoding never raises on input: every record of a message is either decoded or rejected
with a reason (a message that is not a JSON object or array is one rejected record), and
should a bug raise anyway, the batch is decoded again message by message and a message
that still raises is rejected whole ("internal decode error: ..."), so a bug loses no
batch. A message holding an empty array has no record and is counted in
``DecodedBatch.empty_messages``.

Each stored row gets an ``event_id`` derived from its content (:mod:`pipeline.events.eventid`),
so a record replayed after a crash, or re-sent in another message, is one row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from pipeline.events.columns import keep_rows
from pipeline.events.eventid import content_ids
from pipeline.events.printable import printable
from pipeline.events.schema import (
    SEVERITY_NUMBER,
    SPECS,
    RawMessage,
    RecordKind,
    RecordSpec,
    Rejection,
)
from pipeline.events.validate import (
    MISSING,
    DecodeLimits,
    describe_value,
    quote,
    string_map,
    validate_column,
)

__all__ = ["DecodeLimits", "DecodedBatch", "Decoder", "decode_chunk", "decode_messages",
           "decode_values", "identified_table", "join_parts"]

log = logging.getLogger("tocsin.codec")

_SHOWN_FIELDS = 5  # unknown field names in a reason


@dataclass
class DecodedBatch:
    """Valid records as columns (by table column name), plus the rejected ones."""

    kind: RecordKind
    columns: dict[str, Any]
    rejections: list[Rejection]
    source_partitions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    # per row: the position of its message in the batch, and its index in that message
    source_messages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    empty_messages: int = 0  # messages holding an empty JSON array: no record, no rejection
    _arrow: pa.Table | None = field(default=None, repr=False)
    # how many rejections, at the head of ``rejections``, came from parsing the messages
    # (the rest from validating records): how chunks join in a whole batch's order
    _parse_rejections: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def to_arrow(self) -> pa.Table:
        """The valid records as an Arrow table shaped like the kind's ClickHouse table."""
        if self._arrow is None:
            self._arrow = self._build_arrow()
        return self._arrow

    def _build_arrow(self) -> pa.Table:
        return arrow_table(self.columns)


def arrow_table(columns: dict[str, Any]) -> pa.Table:
    """A column batch's columns (numpy, lists, Arrow) as an Arrow table of the stored types."""
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if isinstance(values, pa.Array):
            arrays[name] = values
        elif name == "attributes":
            arrays[name] = string_map(values)
        else:
            arrays[name] = pa.array(values, type=_ARROW_TYPES[name])
    return pa.table(arrays)


_ARROW_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.uint64(),
    "time": pa.timestamp("ms", tz="UTC"),
    "start": pa.timestamp("ms", tz="UTC"),
    "value": pa.float64(),
    "duration_ms": pa.float64(),
    "severity_number": pa.uint8(),
    "attributes": pa.map_(pa.string(), pa.string()),
}
for _spec in SPECS.values():
    for _f in _spec.fields:
        _ARROW_TYPES.setdefault(_f.column, pa.string())


@dataclass
class _Records:
    """The records of a batch's messages, flattened, with where each came from."""

    records: list[dict] = field(default_factory=list)
    msg_index: list[int] = field(default_factory=list)
    elem_index: list[int] = field(default_factory=list)
    single: set[int] = field(default_factory=set)  # messages that are one JSON object
    empty_messages: int = 0


def _payload(item: Any, message: RawMessage, whole: bool) -> tuple[bytes, str]:
    """A rejected record's bytes for the dead letter: the message as it arrived when it
    is the record (``whole``), else the record re-encoded; plus a note for the reason
    when it cannot be re-encoded (too deep) and the whole message stands in."""
    if not whole:
        try:
            return orjson.dumps(item), ""
        except orjson.JSONEncodeError:
            pass
    note = "" if whole else " (the payload is the whole message: the record is too deep " \
        "to encode alone)"
    return message.value or b"", note


def _split_messages(
    messages: Sequence[RawMessage], limits: DecodeLimits, rejections: list[Rejection]
) -> _Records:
    """Parse messages into records; whole-message failures become rejections."""
    out = _Records()
    for m, msg in enumerate(messages):
        value = msg.value or b""
        problem = message_problem(value, limits)
        if problem:
            rejections.append(Rejection(msg, -1, problem, value))
            continue
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            rejections.append(Rejection(msg, -1, f"malformed JSON: {printable(exc)}", value))
            continue
        if type(parsed) is dict:
            out.single.add(m)
            items = [parsed]
        elif type(parsed) is list:
            items = parsed
            if not items:
                out.empty_messages += 1
                continue
        else:
            rejections.append(Rejection(
                msg, -1, f"expected a JSON object or an array of objects, got "
                f"{describe_value(parsed)}", value))
            continue
        if set(map(type, items)) - {dict}:
            for j, item in enumerate(items):
                if type(item) is not dict:
                    payload, note = _payload(item, msg, whole=False)
                    rejections.append(Rejection(
                        msg, j, f"expected an object, got {describe_value(item)}{note}", payload))
            kept = [j for j, item in enumerate(items) if type(item) is dict]
            items = [items[j] for j in kept]
        else:
            kept = range(len(items))
        out.records.extend(items)
        out.msg_index.extend([m] * len(items))
        out.elem_index.extend(kept)
    return out


def _check_keys(spec: RecordSpec, records: list[dict], bad: dict[int, str]) -> None:
    """Flag unknown fields and a ``type`` that names another kind of record."""
    allowed = spec.json_names
    fits, fits_with_type = spec.field_names.issuperset, allowed.issuperset
    kind = spec.kind.value
    for i in [i for i, record in enumerate(records) if not fits(record)]:
        record = records[i]
        if not fits_with_type(record):
            unknown = sorted(set(record) - allowed)
            shown = ", ".join(quote(k) for k in unknown[:_SHOWN_FIELDS])
            if len(unknown) > _SHOWN_FIELDS:
                shown += f" and {len(unknown) - _SHOWN_FIELDS} more"
            bad[i] = (f"unknown field{'s' if len(unknown) > 1 else ''} {shown} "
                      "(extra data belongs in 'attributes')")
        elif record["type"] != kind:
            bad[i] = (f"field 'type': this topic carries {kind} records, "
                      f"got {describe_value(record['type'])}")


def _column(records: list[dict], name: str) -> list[Any]:
    """The values of one field across records, ``MISSING`` where it is absent."""
    try:
        return list(map(itemgetter(name), records))
    except KeyError:
        return [r.get(name, MISSING) for r in records]


def decode_chunk(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits
                 ) -> DecodedBatch:
    """The Python decoder: decode, validate and assemble a batch (the Arrow table
    included); may raise only on a bug, which :func:`decode_messages` contains."""
    spec = SPECS[kind]
    rejections: list[Rejection] = []
    parsed = _split_messages(messages, limits, rejections)
    parse_rejections = len(rejections)
    records, msg_index = parsed.records, parsed.msg_index
    bad: dict[int, str] = {}
    _check_keys(spec, records, bad)
    columns: dict[str, Any] = {}
    for f in spec.fields:
        columns[f.column] = validate_column(f, _column(records, f.json_name), limits, bad)

    keep = np.ones(len(records), dtype=bool)
    if bad:
        keep[list(bad)] = False
        for i in sorted(bad):
            msg = messages[msg_index[i]]
            payload, note = _payload(records[i], msg, whole=msg_index[i] in parsed.single)
            rejections.append(Rejection(msg, parsed.elem_index[i], bad[i] + note, payload))
        keep_rows(columns, keep)
    table = identified_table(kind, columns)
    partitions = np.asarray([m.partition for m in messages], dtype=np.int32)
    kept_messages = np.asarray(msg_index, dtype=np.int64)[keep]
    return DecodedBatch(kind, columns, rejections, partitions[kept_messages],
                        source_messages=kept_messages,
                        source_indexes=np.asarray(parsed.elem_index, dtype=np.int64)[keep],
                        empty_messages=parsed.empty_messages, _arrow=table,
                        _parse_rejections=parse_rejections)


def identified_table(kind: RecordKind, columns: dict[str, Any]) -> pa.Table:
    """The Arrow table of a batch's valid records, with the columns derived from them
    added (to ``columns`` too): ``event_id`` from their content and, for logs,
    ``severity_number`` from the severity text."""
    table = arrow_table(columns)
    columns["event_id"] = content_ids(SPECS[kind], table)
    table = table.append_column("event_id", pa.array(columns["event_id"], pa.uint64()))
    if kind is RecordKind.LOG:
        texts = columns["severity_text"]
        if isinstance(texts, pa.Array):  # the scanner's: each distinct text once
            encoded = texts.dictionary_encode()
            numbers = np.fromiter((SEVERITY_NUMBER[s] for s in encoded.dictionary.to_pylist()),
                                  dtype=np.uint8, count=len(encoded.dictionary))
            columns["severity_number"] = numbers[encoded.indices.to_numpy(zero_copy_only=False)]
        else:
            columns["severity_number"] = np.fromiter((SEVERITY_NUMBER[s] for s in texts),
                                                     dtype=np.uint8, count=len(texts))
        table = table.append_column("severity_number",
                                    pa.array(columns["severity_number"], pa.uint8()))
    return table


def message_problem(value: bytes, limits: DecodeLimits) -> str:
    """Why a whole message cannot be decoded before reading it (empty, too large), or ""."""
    if not value:
        return "empty message"
    if len(value) > limits.max_message_bytes:
        return (f"message is {len(value)} bytes, over the limit of "
                f"{limits.max_message_bytes} (ingest.max_message_bytes)")
    return ""


Decoder = Callable[[RecordKind, Sequence[RawMessage], DecodeLimits], DecodedBatch]


DECODE_CHUNK_BYTES = 2 << 20
"""Message bytes decoded at once at most (a larger batch is decoded in chunks of whole
messages and joined): parsed JSON takes several times its bytes as Python objects, and
only one chunk's are alive at a time."""


def decode_messages(
    kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits,
    decoder: Decoder = decode_chunk, chunk_bytes: int = DECODE_CHUNK_BYTES,
) -> DecodedBatch:
    """Decode and validate a batch of messages of one record kind.

    Never raises on input: each record is decoded or rejected with a reason. Should
    ``decoder`` (the codec's own unless a test injects one) raise anyway, the error is
    logged, the chunk is decoded again message by message, and each message that still
    raises is rejected whole with reason ``internal decode error: <type>: <message>``.

    Messages are decoded in chunks of about ``chunk_bytes`` (see
    :data:`DECODE_CHUNK_BYTES`); the batch is the same as one decoded at once: rows in
    message order, the rejections of parsing (whole messages, elements that are not
    objects) first, then those of validating records.
    """
    chunks = _chunks(messages, chunk_bytes)
    if len(chunks) == 1:
        return _decode_chunk(kind, messages, limits, decoder)
    parts = [_decode_chunk(kind, messages[a:b], limits, decoder) for a, b in chunks]
    return join_parts(kind, parts, [a for a, _ in chunks])


def join_parts(kind: RecordKind, parts: Sequence[DecodedBatch], firsts: Sequence[int]
               ) -> DecodedBatch:
    """Batches decoded from consecutive runs of messages (part ``k`` from position
    ``firsts[k]`` on) as the one batch decoding all the messages at once gives."""
    joined = _concat(kind, parts, firsts)
    # as one decode orders them: those of parsing (in message order), then of validation
    joined.rejections = ([r for p in parts for r in p.rejections[:p._parse_rejections]]
                         + [r for p in parts for r in p.rejections[p._parse_rejections:]])
    joined._parse_rejections = sum(p._parse_rejections for p in parts)
    return joined


def _chunks(messages: Sequence[RawMessage], chunk_bytes: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive runs of messages of about ``chunk_bytes`` each
    (at least one message each; one run for an empty batch)."""
    bounds: list[tuple[int, int]] = []
    start = size = 0
    for i, message in enumerate(messages):
        size += len(message.value or b"")
        if size >= chunk_bytes:
            bounds.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(messages) or not bounds:
        bounds.append((start, len(messages)))
    return bounds


def _decode_chunk(kind: RecordKind, messages: Sequence[RawMessage], limits: DecodeLimits,
                  decoder: Decoder) -> DecodedBatch:
    """``decoder`` on ``messages``, or message by message if it raises (see
    :func:`decode_messages`)."""
    try:
        return decoder(kind, messages, limits)
    except Exception:
        log.exception("decoding a batch of %d %s messages failed; decoding them one by one",
                      len(messages), kind.value)
    parts = []  # one part per message, in order: part k holds message k
    for message in messages:
        try:
            parts.append(decoder(kind, [message], limits))
        except Exception as exc:
            log.exception("internal decode error: %s[%d]@%d is rejected whole",
                          printable(message.topic), message.partition, message.offset)
            reason = f"internal decode error: {type(exc).__name__}: {printable(exc)}"
            parts.append(_rejected_whole(kind, message, reason))
    joined = _concat(kind, parts, list(range(len(parts))))
    joined._parse_rejections = len(joined.rejections)  # in message order, as they came
    return joined


def _rejected_whole(kind: RecordKind, message: RawMessage, reason: str) -> DecodedBatch:
    empty = decode_chunk(kind, [], DecodeLimits(now_ms=0))
    empty.rejections.append(Rejection(message, -1, reason, message.value or b""))
    return empty


def _concat(kind: RecordKind, parts: Sequence[DecodedBatch], firsts: Sequence[int]
            ) -> DecodedBatch:
    """Batches of the same kind as one, in order; part ``k`` decoded the messages from
    position ``firsts[k]`` of the whole batch on."""
    if not parts:
        return decode_chunk(kind, [], DecodeLimits(now_ms=0))
    table = pa.concat_tables([p.to_arrow() for p in parts]).combine_chunks()
    columns: dict[str, Any] = {}
    for name in parts[0].columns:
        values = [p.columns[name] for p in parts]
        if all(isinstance(v, np.ndarray) for v in values):
            columns[name] = np.concatenate(values)
        elif any(isinstance(v, pa.Array) for v in values):
            columns[name] = table.column(name).combine_chunks()
        else:
            columns[name] = list(chain.from_iterable(values))
    return DecodedBatch(
        kind, columns, [r for p in parts for r in p.rejections],
        np.concatenate([p.source_partitions for p in parts]),
        source_messages=np.concatenate([p.source_messages + first
                                        for first, p in zip(firsts, parts, strict=True)]),
        source_indexes=np.concatenate([p.source_indexes for p in parts]),
        empty_messages=sum(p.empty_messages for p in parts), _arrow=table)


def decode_values(
    kind: RecordKind, values: Sequence[bytes], now_ms: int, topic: str = "-"
) -> DecodedBatch:
    """Decode bare message values (no Kafka position): for tests, replay and notebooks."""
    messages = [RawMessage(topic, 0, i, v) for i, v in enumerate(values)]
    return decode_messages(kind, messages, DecodeLimits(now_ms=now_ms))
