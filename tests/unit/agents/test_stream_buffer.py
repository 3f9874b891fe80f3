"""The batch buffer outlives the task taking from it: what the stream reads while an
agent restarts reaches the restarted task, and the reader waits while the buffer is full."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from pipeline.agents.stream_buffer import StreamBuffer
from tests.unit.agents.fake_stream import FakeStream


def _events(n: int) -> list:
    return [SimpleNamespace(value=i) for i in range(n)]


def test_events_read_between_two_tasks_reach_the_second():
    async def scenario() -> tuple[list, list, int]:
        stream = FakeStream(_events(10))
        buffer = StreamBuffer(stream, size=10)
        first = await buffer.take(1.0)

        async def crashed_task() -> None:  # cancelled while waiting for its next batch
            await buffer.take(60.0)

        task = asyncio.get_running_loop().create_task(crashed_task())
        await asyncio.sleep(0)
        task.cancel()
        stream.feed([SimpleNamespace(value=i) for i in range(10, 25)])
        while len(buffer) < 10:  # read while no task takes from the buffer
            await asyncio.sleep(0)
        rest = []
        while len(rest) < 15:
            rest += await buffer.take(0.01)
        return first, rest, len(buffer)

    first, rest, left = asyncio.run(scenario())
    assert [e.value for e in first] == list(range(10))
    assert [e.value for e in rest] == list(range(10, 25))  # none lost, in order
    assert left == 0


def test_the_reader_waits_while_the_buffer_is_full():
    async def scenario() -> tuple[int, int, int, bool]:
        stream = FakeStream(_events(7))
        buffer = StreamBuffer(stream, size=3)
        while len(buffer) < 3:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        held = len(buffer)
        batch = await buffer.take(0.01)
        while len(buffer) < 3:
            await asyncio.sleep(0)
        return held, len(batch), stream.queue.qsize(), stream.enable_acks

    held, taken, unread, acks = asyncio.run(scenario())
    assert (held, taken) == (3, 3)
    assert unread == 0  # the 7th event waits in the reader for room
    assert acks is False  # only the runner's release acknowledges
