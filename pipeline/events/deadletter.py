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
=====================  ====================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.events.printable import printable
from pipeline.events.schema import Rejection

HEADER_PREFIX = "tocsin."


def deadletter_headers(rejection: Rejection) -> list[tuple[str, bytes]]:
    """Kafka headers that say why and where a record was rejected."""
    src = rejection.source
    return [
        (f"{HEADER_PREFIX}reason", rejection.reason.encode()),
        (f"{HEADER_PREFIX}topic", src.topic.encode()),
        (f"{HEADER_PREFIX}partition", str(src.partition).encode()),
        (f"{HEADER_PREFIX}offset", str(src.offset).encode()),
        (f"{HEADER_PREFIX}index", str(rejection.index).encode()),
    ]


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
