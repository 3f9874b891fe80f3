"""A stream's batch buffer that outlives the agent task taking from it.

Faust's ``Stream.take_events`` buffers events through a processor it adds to the stream
when its generator starts and removes when the generator closes. The stream outlives the
agent task: when Faust restarts a crashed or cancelled agent, the new task iterates the
same stream, whose background reader (Faust's passive drainer) keeps taking records from
the agent's channel meanwhile. With no processor to hand them to, they went nowhere (as did
the one record waiting to enter the closed buffer): never acknowledged, but never seen by
the restarted task either, which sat idle with lag left, and a later acknowledged batch of
the same partition let Faust commit past them when the partition had nothing committed
yet (the cancelled-agent test lost points so on a busy machine).

A :class:`StreamBuffer` is attached to a stream once and keeps what the reader hands it
until a task takes it, whichever task that is. It acknowledges nothing (the batch runner
releases a batch once it is done) and holds at most ``size`` events: the reader waits for
room, as in ``take_events``, so the channel's queue and Faust's flow control still apply.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class StreamBuffer:
    """Batches of at most ``size`` events from ``stream``, buffered across agent restarts."""

    def __init__(self, stream: Any, size: int) -> None:
        self.stream = stream
        self.size = size
        self._events: deque[Any] = deque()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        stream.enable_acks = False  # only the runner's release acknowledges an event
        stream.add_processor(self._add)
        # Faust's own reader of a stream whose values an agent does not iterate itself:
        # the processors above see every event (what ``take_events`` enables too)
        stream._enable_passive(aiter(stream.channel))

    def __len__(self) -> int:
        return len(self._events)

    async def _add(self, value: Any) -> Any:
        event = self.stream.current_event
        if event is None:
            raise RuntimeError(f"{self.stream}: a value reached the batch buffer without its "
                               "event")
        while len(self._events) >= self.size:
            self._room.clear()
            await self._room.wait()
        self._events.append(event)
        if len(self._events) >= self.size:
            self._full.set()
        return value

    async def take(self, within_s: float) -> list[Any]:
        """The next batch: ``size`` events as soon as there are, else what arrived within
        ``within_s`` (possibly nothing)."""
        if len(self._events) < self.size:
            try:
                await asyncio.wait_for(self._full.wait(), within_s)
            except asyncio.TimeoutError:
                pass
        batch = [self._events.popleft() for _ in range(min(self.size, len(self._events)))]
        if len(self._events) < self.size:
            self._full.clear()
        self._room.set()
        return batch
