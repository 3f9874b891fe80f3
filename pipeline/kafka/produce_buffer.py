"""Records waiting to be produced, per (kind, service), and when they must go.

A producer batches records into JSON-array messages keyed by service (one service, one
partition, in order). A buffer is sent when any of these holds:

- it has ``records_per_message`` records;
- one more record would make its message over ``max_value_bytes``;
- event time has moved on: the newest record seen (any kind, any service) is more than
  ``max_event_lag_ms`` after the buffer's oldest record. Without this, a quiet service's
  records wait for its 100th record while its partition's event time runs ahead, and
  reach the detectors late. The default, 10 s, is a sixth of the detectors' default
  allowed lateness (60 s), leaving room for disorder in the input itself; a tighter bound
  costs many more messages on input that is sorted only roughly (a simulated run: 3.4 k
  messages unbounded, 29 k at 10 s, 119 k at 1 s; the Online Boutique replay: 9.1 k,
  11.7 k, 21.4 k);
- it has waited ``max_wait_ms`` of wall time (:meth:`MessageBuffers.due`), so records of
  a live stream are not held back either.

Plain logic: the caller passes the wall clock (``now_ms``) in.

>>> buffers = MessageBuffers(BufferLimits(records_per_message=2, max_value_bytes=1000))
>>> buffers.add(RecordKind.METRIC, "a", b'{"time":1}', 1, now_ms=0)
[]
>>> [m.value for m in buffers.add(RecordKind.METRIC, "b", b'{"time":20000}', 20000, 0)]
[b'[{"time":1}]']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.errors import TocsinError
from pipeline.events.schema import RecordKind
from pipeline.events.sizes import MessageTooLarge
from pipeline.events.times import parse_rfc3339_ms

TIME_FIELD = {RecordKind.METRIC: "time", RecordKind.LOG: "time", RecordKind.SPAN: "start"}
"""The wire field holding each kind's event time."""


@dataclass(frozen=True)
class BufferLimits:
    """When a (kind, service) buffer is sent; see the module docstring."""

    records_per_message: int = 100
    max_value_bytes: int = 1_047_000
    max_event_lag_ms: int = 10_000
    max_wait_ms: int = 500

    def __post_init__(self) -> None:
        for name, minimum in (("records_per_message", 1), ("max_value_bytes", 3),
                              ("max_event_lag_ms", 0), ("max_wait_ms", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TocsinError(f"{name.replace('_', ' ')} must be an integer >= "
                                  f"{minimum}, got {value!r}")


@dataclass(frozen=True)
class Outgoing:
    """One message to send: a JSON array of one service's records of one kind."""

    kind: RecordKind
    service: str
    value: bytes
    records: int


@dataclass
class _Buffer:
    created_ms: int
    oldest_ms: float = math.inf  # earliest event time in it (inf: none known)
    parts: list[bytes] = field(default_factory=list)
    size: int = 2  # bytes of the JSON array so far: brackets and commas included


class MessageBuffers:
    """Encoded records per (kind, service), handed out as :class:`Outgoing` messages."""

    def __init__(self, limits: BufferLimits) -> None:
        self.limits = limits
        self.newest_ms = -math.inf  # the latest event time seen
        self._buffers: dict[tuple[RecordKind, str], _Buffer] = {}
        self._earliest = math.inf  # at most the oldest event time of any buffer

    @property
    def pending(self) -> int:
        """Records held right now."""
        return sum(len(b.parts) for b in self._buffers.values())

    def add(self, kind: RecordKind, service: str, record: bytes, event_ms: int | None,
            now_ms: int) -> list[Outgoing]:
        """Hold one encoded record; returns the messages that must go now, in order.

        Raises :class:`~pipeline.events.sizes.MessageTooLarge` if the record alone is over the
        limit (it is not held).
        """
        limits = self.limits
        if len(record) + 2 > limits.max_value_bytes:
            raise MessageTooLarge(f"record is {len(record)} bytes, over the "
                                  f"{limits.max_value_bytes} bytes a message may carry "
                                  "(kafka.max_message_bytes)")
        out = []
        key = (kind, service)
        buffer = self._buffers.get(key)
        if buffer is not None and buffer.size + 1 + len(record) > limits.max_value_bytes:
            out.append(self._take(key))
            buffer = None
        if buffer is None:
            buffer = self._buffers[key] = _Buffer(now_ms)
        buffer.size += len(record) + (1 if buffer.parts else 0)
        buffer.parts.append(record)
        if event_ms is not None:
            if event_ms < buffer.oldest_ms:
                buffer.oldest_ms = event_ms
                self._earliest = min(self._earliest, event_ms)
            self.newest_ms = max(self.newest_ms, event_ms)
        if len(buffer.parts) >= limits.records_per_message:
            out.append(self._take(key))
        if self.newest_ms - self._earliest > limits.max_event_lag_ms:
            out.extend(self._lagging())
        return out

    def due(self, now_ms: int) -> list[Outgoing]:
        """The messages of buffers that have waited ``max_wait_ms`` or more."""
        wait = self.limits.max_wait_ms
        return [self._take(key) for key, b in list(self._buffers.items())
                if now_ms - b.created_ms >= wait]

    def drain(self) -> list[Outgoing]:
        """Every buffer's message, now."""
        return [self._take(key) for key in list(self._buffers)]

    def _lagging(self) -> list[Outgoing]:
        horizon = self.newest_ms - self.limits.max_event_lag_ms
        out = [self._take(key) for key, b in list(self._buffers.items())
               if b.oldest_ms < horizon]
        self._earliest = min((b.oldest_ms for b in self._buffers.values()), default=math.inf)
        return out

    def _take(self, key: tuple[RecordKind, str]) -> Outgoing:
        buffer = self._buffers.pop(key)
        kind, service = key
        return Outgoing(kind, service, b"[" + b",".join(buffer.parts) + b"]",
                        len(buffer.parts))


_SECONDS_BELOW, _MILLIS_BELOW, _MICROS_BELOW = 1e11, 1e14, 1e17


def event_time_ms(value: object) -> int | None:
    """A wire time (epoch s/ms/µs/ns by magnitude, or RFC 3339) as epoch ms; None when it
    is not one (the worker will say why)."""
    if type(value) is int and 1e11 <= value < 1e14:  # epoch ms: the common case, first
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        magnitude = abs(value)
        ms = value * 1000 if magnitude < _SECONDS_BELOW else value if magnitude < _MILLIS_BELOW \
            else value // 1000 if magnitude < _MICROS_BELOW else value // 1_000_000
        return ms if abs(ms) < 2 ** 62 else None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        magnitude = abs(value)
        scale = 1000 if magnitude < _SECONDS_BELOW else 1 if magnitude < _MILLIS_BELOW \
            else 1e-3 if magnitude < _MICROS_BELOW else 1e-6
        return math.floor(value * scale) if abs(value * scale) < 2 ** 62 else None
    if isinstance(value, str):
        try:
            return parse_rfc3339_ms(value)
        except (ValueError, OverflowError):
            return None
    return None
