"""Events fetched before a rebalance reach a batch runner now and then: they are neither
processed nor made committable."""

from __future__ import annotations

import asyncio

from faust.types.tuples import ConsumerMessage

from pipeline.agents.app import create_pipeline
from pipeline.agents.batches import Backoff, BatchRunner
from pipeline.agents.health import AgentHealth
from pipeline.settings import load_settings
from tests.unit.agents.fake_stream import FakeStream


def _event(app, offset: int, generation: int):
    message = ConsumerMessage("t.metrics", 0, offset, 0.0, 0, None, b"k", b"[]", None,
                              generation_id=generation)
    message.incref()  # the reference Faust's conductor takes for the agent's channel
    return app.conf.Event(app, b"k", b"[]", None, message)


def test_an_event_from_before_a_rebalance_is_neither_processed_nor_acknowledged(tmp_path):
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data")})
    pipeline = create_pipeline(settings)
    app = pipeline.app
    handled = []

    async def handle(stream, events, steps) -> None:
        handled.extend(e.message.offset for e in events)

    try:
        app.consumer_generation_id = 2
        stale, current = _event(app, 5, generation=1), _event(app, 6, generation=2)
        runner = BatchRunner(app, AgentHealth("tocsin.ingest.metric"), handle, batch_size=10,
                             within_s=0.1, backoff=Backoff())

        async def run_until_handled() -> None:
            task = asyncio.get_running_loop().create_task(runner.run(FakeStream([stale,
                                                                              current])))
            while not handled and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                task.result()  # raises what ended it
            task.cancel()  # the runner takes batches until the worker stops

        asyncio.run(run_until_handled())
        assert handled == [6]
        assert runner.health.stale == 1
        assert current.message.acked  # done: the consumer may commit it
        assert not stale.message.acked  # delivered again from the committed offset
    finally:
        pipeline.store.close()
