"""A changelog record whose put was about to start when partitions were revoked does not
reach the next table recovery: Faust's recovery would apply it, skip the records the
revocation cleared from the queue as already applied, and miss them for good."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pipeline.agents.app import create_pipeline
from pipeline.settings import load_settings

TOPIC = "tocsin-correlation-state-changelog"


def _event(offset: int, generation: int) -> SimpleNamespace:
    message = SimpleNamespace(topic=TOPIC, partition=1, offset=offset,
                              generation_id=generation)
    return SimpleNamespace(message=message)


@pytest.fixture
def app(tmp_path):
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data")})
    pipeline = create_pipeline(settings)
    try:
        yield pipeline.app
    finally:
        pipeline.store.close()


def test_a_put_begun_before_a_revocation_is_not_applied_by_the_next_recovery(app):
    async def scenario() -> list[int]:
        flow, queue = app.flow_control, app.tables.changelog_queue
        app.consumer_generation_id = 1
        flow.resume()
        for offset in range(queue.maxsize):  # recovery reads behind the fetch loop
            queue.put_nowait(_event(offset, 1))
        # the fetch loop hands the next record to the full queue: Faust's conductor
        # starts a separate put task and waits for it
        late = asyncio.ensure_future(queue.put(_event(queue.maxsize, 1)))
        # the partitions are revoked before that task's first step (Faust's
        # on_partitions_revoked: the flow stops, flow control is suspended, queues cleared;
        # the fetch loop stops waiting for the put, the task lives on)
        flow.suspend()
        flow.clear()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not late.done()  # waiting for flow control
        # the next assignment; recovery seeks every changelog partition to the offset it
        # applied last, then resumes flow control (clearing the changelog queue)
        app.consumer_generation_id = 2
        flow.resume()
        await asyncio.wait_for(late, timeout=5)
        return [event.message.offset for event in list(queue._queue)]

    # with Faust's queue the record of offset 4096 arrives here; recovery would apply it
    # and then skip offsets 0..4095, fetched again after its seek, as already applied
    assert asyncio.run(scenario()) == []
    assert app.tables.changelog_queue.refused == 1


def test_records_of_the_current_generation_enter_by_both_paths(app):
    async def scenario() -> list[int]:
        flow, queue = app.flow_control, app.tables.changelog_queue
        app.consumer_generation_id = 4
        flow.resume()
        await queue.put(_event(10, 4))
        queue.force_put_nowait(_event(11, 4))
        queue.put_nowait_enhanced(_event(12, 4), on_pressure_high=lambda: None,
                                  on_pressure_drop=lambda: None)
        queue.force_put_nowait(_event(13, 3))  # fetched before the rebalance
        return [event.message.offset for event in list(queue._queue)]

    assert asyncio.run(scenario()) == [10, 11, 12]
    assert app.tables.changelog_queue.refused == 1
