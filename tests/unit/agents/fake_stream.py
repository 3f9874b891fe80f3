"""A stand-in for the parts of Faust's stream that a batch runner's buffer uses."""

from __future__ import annotations

import asyncio


class FakeChannel:
    """The agent's channel: only handed to the stream's reader."""

    def __aiter__(self) -> FakeChannel:
        return self

    async def __anext__(self) -> None:
        raise StopAsyncIteration


class FakeStream:
    """Faust's stream as a runner's buffer uses it: a background reader hands each event
    to the processors with ``current_event`` set; ``ack`` drops one reference."""

    enable_acks = True

    def __init__(self, events: list) -> None:
        self.channel = FakeChannel()
        self.events = events
        self.processors: list = []
        self.current_event = None
        self.queue: asyncio.Queue | None = None

    def add_processor(self, processor) -> None:
        self.processors.append(processor)

    def feed(self, events: list) -> None:
        """More events for the reader (after the first ones)."""
        assert self.queue is not None
        for event in events:
            self.queue.put_nowait(event)

    def _enable_passive(self, channel) -> None:
        self.queue = asyncio.Queue()
        self.feed(self.events)

        async def read() -> None:
            while True:
                event = self.current_event = await self.queue.get()
                for processor in self.processors:
                    await processor(event.value)
                self.queue.task_done()
        self.reader = asyncio.get_running_loop().create_task(read())

    async def ack(self, event) -> bool:
        return event.ack()
