"""The dead-letter path: what a rejected record looks like on the topic and in the table.

On ``tocsin.deadletter`` the message value is the rejected bytes exactly as they arrived
(the record's JSON for one element of an array, the whole message otherwise) and the
reason and origin travel in headers, the convention of Kafka Connect's error topics:

=====================  ====================================================
``tocsin.reason``      readable reason, naming the field and what arrived
``tocsin.topic``       source topic
``tocsin.partition``   source partition
``tocsin.offset``      source offset
``tocsin.index``       position in a JSON-array message, ``-1`` for the whole
``tocsin.truncated``   only on a value cut to fit ``kafka.max_message_bytes``:
                       the payload's original size in bytes
=====================  ====================================================

A message never exceeds ``kafka.max_message_bytes``: a reason is cut at
:data:`MAX_REASON_BYTES`, a payload at what the limit leaves (:func:`fit_payload`); the
``dead_letters`` table keeps the whole payload.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.events.printable import printable
from pipeline.events.schema import Rejection
from pipeline.events.sizes import truncate, value_budget

HEADER_PREFIX = "tocsin."
TRUNCATED_HEADER = f"{HEADER_PREFIX}truncated"
MAX_REASON_BYTES = 4096


def deadletter_headers(rejection: Rejection) -> list[tuple[str, bytes]]:
    """Kafka headers that say why and where a record was rejected."""
    src = rejection.source
    return [
        (f"{HEADER_PREFIX}reason", _reason_bytes(rejection.reason)),
        (f"{HEADER_PREFIX}topic", src.topic.encode()),
        (f"{HEADER_PREFIX}partition", str(src.partition).encode()),
        (f"{HEADER_PREFIX}offset", str(src.offset).encode()),
        (f"{HEADER_PREFIX}index", str(rejection.index).encode()),
    ]


def _reason_bytes(reason: str) -> bytes:
    data = reason.encode(errors="replace")
    if len(data) <= MAX_REASON_BYTES:
        return data
    cut = data[:MAX_REASON_BYTES - 3].decode(errors="ignore").encode()
    return cut + b"..."


def fit_payload(key: bytes, payload: bytes, headers: list[tuple[str, bytes]],
                max_message_bytes: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of a dead-letter message within ``max_message_bytes``: the
    payload as it is, or its first bytes plus a ``tocsin.truncated`` header holding its
    original size."""
    if len(payload) <= value_budget(max_message_bytes, key, headers):
        return payload, headers
    headers = [*headers, (TRUNCATED_HEADER, str(len(payload)).encode())]
    return truncate(payload, value_budget(max_message_bytes, key, headers)), headers


def deadletter_message(rejection: Rejection,
                       max_message_bytes: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead-letter message of ``rejection``."""
    key = deadletter_key(rejection)
    value, headers = fit_payload(key, rejection.payload, deadletter_headers(rejection),
                                 max_message_bytes)
    return key, value, headers


def deadletter_key(rejection: Rejection) -> bytes:
    """A stable key per rejected record (a replay produces the same key)."""
    src = rejection.source
    return f"{src.topic}/{src.partition}/{src.offset}/{rejection.index}".encode()


def describe(rejection: Rejection) -> str:
    """One log line: where the record was and why it was rejected (input escaped and
    bounded by :func:`~pipeline.printable.printable`)."""
    src = rejection.source
    where = f"{printable(src.topic)}[{src.partition}]@{src.offset}"
    if rejection.index >= 0:
        where += f" record {rejection.index}"
    return f"{where}: {printable(rejection.reason, limit=500)}"


def deadletter_table(rejections: Sequence[Rejection], received_ms: int) -> pa.Table:
    """Rejections as rows of the ``dead_letters`` table."""
    return pa.table({
        "received_at": pa.array([received_ms] * len(rejections), pa.timestamp("ms", tz="UTC")),
        "topic": pa.array([r.source.topic for r in rejections], pa.string()),
        "partition": pa.array([r.source.partition for r in rejections], pa.int32()),
        "offset": pa.array([r.source.offset for r in rejections], pa.int64()),
        "record_index": pa.array([r.index for r in rejections], pa.int32()),
        "reason": pa.array([r.reason for r in rejections], pa.string()),
        "payload": pa.array([r.payload for r in rejections], pa.binary()),
    })
