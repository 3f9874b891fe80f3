"""Table values larger than one Kafka message, kept as several entries of the same table.

A Faust table sends every write to its changelog topic as one message, so a state over
``kafka.max_message_bytes`` (the rules of a service with many series, a scope with a big
problem) could not be written. Such a value is cut into chunks, each under its own key,
and the value's own key holds a small *head* naming them:

- head: :data:`HEAD_MAGIC`, then the generation, the number of chunks and the total size;
- chunk ``i`` of generation ``g`` of ``key``: ``b"\\x00chunk\\x00<g>\\x00<i>\\x00" + key``.

A write puts the new generation's chunks first and the head last, then deletes the
previous generation's chunks: a crash half-way leaves the previous head pointing at its
own complete chunks. Values that fit are stored as they are. The changelog partition is
the one of the event being processed (Faust's rule for tables), so a value's chunks and
its head share a partition. Keys starting with :data:`CHUNK_PREFIX` are chunk keys:
whoever lists a table's keys skips them (:func:`is_chunk_key`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from pipeline.events.sizes import value_budget

log = logging.getLogger("tocsin.chunks")

HEAD_MAGIC = b"\x00tocsin-chunked\x00"
CHUNK_PREFIX = b"\x00chunk\x00"
_HEAD = struct.Struct("<QIQ")  # generation, chunks, total bytes
_KEY_ROOM = 64  # the chunk key's prefix, generation and index


def is_chunk_key(key: bytes) -> bool:
    """True for the key of a chunk (not a value's own key)."""
    return key.startswith(CHUNK_PREFIX)


def chunk_key(key: bytes, generation: int, index: int) -> bytes:
    """The key of chunk ``index`` of ``generation`` of ``key``'s value."""
    return CHUNK_PREFIX + f"{generation}\x00{index}\x00".encode() + key


def _head(data: bytes | None) -> tuple[int, int, int] | None:
    if data is None or not data.startswith(HEAD_MAGIC) \
            or len(data) != len(HEAD_MAGIC) + _HEAD.size:
        return None
    return _HEAD.unpack_from(data, len(HEAD_MAGIC))


def read_value(get: Callable[[bytes], bytes | None], key: bytes) -> bytes | None:
    """The value of ``key`` (joined from its chunks if it has them), None if absent.

    A chunked value with a chunk missing is reported in the log and read as absent.
    """
    data = get(key)
    head = _head(data)
    if head is None:
        return data
    generation, count, total = head
    parts = [get(chunk_key(key, generation, i)) for i in range(count)]
    value = b"".join(p for p in parts if p is not None)
    if None in parts or len(value) != total:
        log.error("table value of %r: chunks of generation %d incomplete (%d of %d bytes); "
                  "read as absent", key[:80], generation, len(value), total)
        return None
    return value


def plan_write(key: bytes, value: bytes, previous: bytes | None,
               max_message_bytes: int) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """(writes in order, keys to delete after them) that store ``value`` under ``key``
    in messages within ``max_message_bytes``; ``previous`` is what ``key`` holds now."""
    old = _head(previous)
    stale = [] if old is None else [chunk_key(key, old[0], i) for i in range(old[1])]
    if len(value) <= value_budget(max_message_bytes, key) and not value.startswith(HEAD_MAGIC):
        return [(key, value)], stale
    generation = 0 if old is None else old[0] + 1
    size = value_budget(max_message_bytes, b"k" * (len(key) + _KEY_ROOM))
    pieces = [value[i:i + size] for i in range(0, len(value), size)] or [b""]
    writes = [(chunk_key(key, generation, i), piece) for i, piece in enumerate(pieces)]
    writes.append((key, HEAD_MAGIC + _HEAD.pack(generation, len(pieces), len(value))))
    return writes, stale
