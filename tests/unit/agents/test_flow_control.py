"""The worker's flow control keeps the agents' queues on resume (Faust's cleared them,
and with them records delivered while the consumer sought its committed offsets)."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.agents.app import create_pipeline
from pipeline.agents.transport import FlowControl
from pipeline.settings import load_settings


def _queue_after_resume(flow: FlowControlEvent) -> list[str]:
    async def run() -> list[str]:
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()
        queue.put_nowait("delivered during the seek")
        flow.resume()  # the resume that ends a rebalance
        return [queue.get_nowait() for _ in range(queue.qsize())]

    return asyncio.run(run())


def test_fausts_resume_clears_the_queues_the_workers_keeps_them():
    assert _queue_after_resume(FlowControlEvent()) == []
    assert _queue_after_resume(FlowControl()) == ["delivered during the seek"]


def test_clear_still_empties_the_queues():
    async def run() -> int:
        flow = FlowControl()
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("from the revoked generation")
        flow.suspend()
        flow.clear()  # what Faust does when partitions are revoked
        return queue.qsize()

    assert asyncio.run(run()) == 0


def test_the_worker_app_keeps_agent_queues_and_clears_the_changelog_queue(tmp_path):
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data")})
    pipeline = create_pipeline(settings)
    app = pipeline.app

    async def run() -> tuple[int, int]:
        flow = app.flow_control
        agents = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # a channel's queue
        changelog = app.tables.changelog_queue  # table recovery reads this one
        flow.resume()
        agents.put_nowait("a record of the current generation")
        changelog.put_nowait("a changelog record")
        flow.resume()
        return agents.qsize(), changelog.qsize()

    try:
        assert isinstance(app.flow_control, FlowControl)
        assert asyncio.run(run()) == (1, 0)
    finally:
        pipeline.store.close()
