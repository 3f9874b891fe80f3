"""Engine states kept decoded between detection steps (the stored bytes stay the truth).

Decoding every touched service's state from its stored bytes at the start of a step and
encoding it again at the end is a fixed cost per step. :class:`LiveStates` keeps each
state a step leaves, with the bytes it was stored as and the partition it lives on. The
next step takes a held state only if the store still holds exactly those bytes: after a
restart, a rebalance, a batch whose writes never happened, or any other writer, the
stored bytes differ and the state is decoded from them as before. States of partitions
no longer assigned are dropped outright (:meth:`LiveStates.keep_partitions`), so a
partition that moves away and back never meets a copy from before it left.

A taken state belongs to the step until it is put back: a step that fails half-way
(whose states may be half changed) leaves nothing behind to be applied twice.

Memory: a decoded state takes many times its stored bytes (about 13x for the model
state of a service with many series, 36x for a million series of one point each), so
the states held are bounded by what they take decoded, ``max_bytes``: a state's own
``held_bytes()`` estimate (its arrays and keys), or its stored bytes when it has none.
Past it the least recently put go (they are decoded again when next needed).
:data:`LIVE_STATE_BYTES` covers every service of some 35,000 series (200 services); with a
million series most states are decoded each step, as without holding.

>>> live = LiveStates(max_bytes=1024)
>>> live.put(("rules", "api"), {"count": 3}, b"3", partition=0)
>>> live.take(("rules", "api"), b"3")  # the store holds what was put: the live state
{'count': 3}
>>> live.take(("rules", "api"), b"3") is None  # taken: the step owns it now
True
>>> live.put(("rules", "api"), {"count": 3}, b"3", partition=0)
>>> live.take(("rules", "api"), b"4") is None  # someone else stored 4: decode that
True
>>> live.put(("rules", "api"), "a", b"x" * 600, partition=0)
>>> live.put(("rules", "web"), "w", b"y" * 600, partition=1)  # over 1024: api goes
>>> len(live), live.held_bytes
(1, 600)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

StateKey = tuple[str, str]  # (engine, service)
LIVE_STATE_BYTES = 32 * 2**20
"""Bytes the states held decoded take at most (by their estimate), by default."""


def held_size(state: Any, data: bytes) -> int:
    """What ``state`` takes decoded, about: its ``held_bytes()`` if it has one, else the
    length of ``data``, its stored form."""
    estimate = getattr(state, "held_bytes", None)
    return int(estimate()) if callable(estimate) else len(data)


class LiveStates:
    """Decoded states by (engine, service), each valid while the store holds its bytes;
    at most ``max_bytes`` held (see :func:`held_size`)."""

    def __init__(self, max_bytes: int = LIVE_STATE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._held: dict[StateKey, tuple[Any, bytes, int, int]] = {}  # + partition, size
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    @property
    def held_bytes(self) -> int:
        """Bytes the states held take (by :func:`held_size`)."""
        return self._bytes

    def take(self, key: StateKey, stored: bytes | None) -> Any | None:
        """The held state of ``key`` if ``stored`` (what the store holds now) is the
        bytes it was put with; None otherwise (decode ``stored``). Either way the entry
        is gone until :meth:`put` gives it back."""
        held = self._held.pop(key, None)
        if held is None:
            return None
        state, data, _, size = held
        self._bytes -= size
        if stored is None:
            return None
        return state if stored is data or stored == data else None

    def put(self, key: StateKey, state: Any, data: bytes, partition: int) -> None:
        """Hold ``state``, whose stored form is ``data``, on ``partition`` (the least
        recently put states go while more than ``max_bytes`` are held)."""
        old = self._held.pop(key, None)
        if old is not None:
            self._bytes -= old[3]
        size = held_size(state, data)
        if size > self.max_bytes:
            return
        self._held[key] = (state, data, partition, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._held))
            self._bytes -= self._held.pop(oldest)[3]

    def keep_partitions(self, partitions: Collection[int]) -> int:
        """Drop the states of partitions not in ``partitions`` (revoked); how many."""
        mine = set(partitions)
        gone = [key for key, (_, _, p, _) in self._held.items() if p not in mine]
        for key in gone:
            self._bytes -= self._held.pop(key)[3]
        return len(gone)

    def clear(self) -> None:
        """Drop every held state."""
        self._held.clear()
        self._bytes = 0
