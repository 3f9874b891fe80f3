"""Faust tables whose values may be larger than one Kafka message (see pipeline.events.chunks)."""

from __future__ import annotations

from typing import Any

from pipeline.events.chunks import is_chunk_key, plan_write, read_value


def get_value(table: Any, key: bytes) -> bytes | None:
    """The value of ``key``, joined from its chunks if it was stored in several."""
    return read_value(table.get, key)


def set_value(table: Any, key: bytes, value: bytes, max_message_bytes: int) -> None:
    """Store ``value`` under ``key``, each changelog message within the limit (call with
    the stream's current event set: its partition is the changelog partition)."""
    writes, stale = plan_write(key, value, table.get(key), max_message_bytes)
    for k, v in writes:
        table[k] = v
    for k in stale:
        if k in table:
            del table[k]


def value_keys(table: Any) -> list[bytes]:
    """The table's keys, without the keys of chunks."""
    return [k for k in table.keys() if not is_chunk_key(k)]
