"""How much of a Kafka message the value may take, and cutting a value down to that.

Kafka compares a message with the topic's ``max.message.bytes`` (and the producer with its
``max_request_size``) as a whole record batch: a 61-byte batch header, the record's framing
(varints: at most 21 bytes), the key, the value and the headers. Every message Tocsin
writes is sized against ``kafka.max_message_bytes`` with :func:`value_budget`, an upper
bound of that framing (the one aiokafka checks before sending), so a value within the
budget is never refused by the producer or the broker.

>>> value_budget(1_048_576, key=b"orders")
1048473
>>> truncate(b"0123456789", 4)
b'0123'
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import TocsinError

BATCH_HEADER_BYTES = 61
"""Kafka's record batch header (v2, the only format aiokafka writes)."""

RECORD_OVERHEAD_BYTES = 21
"""A record's own framing at most: length, attributes, timestamp and offset deltas."""

_VARINT_BYTES = 5  # a length of up to 2**31 as a zig-zag varint


class MessageTooLarge(TocsinError):
    """A value that cannot fit in one Kafka message even after splitting or trimming."""


def framing_bytes(key: bytes | None = None,
                  headers: Sequence[tuple[str, bytes]] = ()) -> int:
    """Bytes a one-record batch takes besides its value (an upper bound)."""
    size = BATCH_HEADER_BYTES + RECORD_OVERHEAD_BYTES + 3 * _VARINT_BYTES
    size += len(key or b"")
    for name, value in headers:
        size += 2 * _VARINT_BYTES + len(name.encode()) + len(value or b"")
    return size


def value_budget(max_message_bytes: int, key: bytes | None = None,
                 headers: Sequence[tuple[str, bytes]] = ()) -> int:
    """The largest value a message with ``key`` and ``headers`` may carry.

    Raises :class:`MessageTooLarge` when the key and headers alone leave no room.
    """
    budget = max_message_bytes - framing_bytes(key, headers)
    if budget <= 0:
        raise MessageTooLarge(f"key and headers take {framing_bytes(key, headers)} bytes, "
                              f"over kafka.max_message_bytes ({max_message_bytes})")
    return budget


def truncate(value: bytes, budget: int) -> bytes:
    """The first ``budget`` bytes of ``value`` (all of it when it fits)."""
    return value if len(value) <= budget else value[:max(budget, 0)]
