"""Send a simulation to Kafka, as fast as possible or paced on event time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pipeline.produce import ProduceReport, TelemetryProducer
from pipeline.settings import Settings
from pipeline.simulate.generator import Simulation
from pipeline.simulate.output import wire_batches


async def publish_simulation(
    settings: Settings,
    simulation: Simulation,
    *,
    speed: float | None = None,
    records_per_message: int = 100,
    on_progress: Callable[[int, int], None] | None = None,
) -> ProduceReport:
    """Produce every record of ``simulation``; returns what was sent.

    ``speed`` is simulated seconds per wall-clock second (1 is real time, 360 six hours a
    minute); ``None`` sends as fast as the broker takes it. ``on_progress(done, total)`` is
    called with simulated milliseconds covered so far.
    """
    start_ms, total_ms = simulation.start_ms, simulation.end_ms - simulation.start_ms
    began = time.monotonic()
    async with TelemetryProducer(settings, records_per_message) as producer:
        for batch in wire_batches(simulation, records_per_message,
                                  flush_each_tick=speed is not None):
            if speed is not None:
                due = began + (batch.time_ms - start_ms) / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send_value(producer.topics[batch.kind], batch.encode())
            records = producer.report.records
            records[batch.kind.value] = records.get(batch.kind.value, 0) + len(batch.records)
            if on_progress is not None:
                on_progress(batch.time_ms - start_ms, total_ms)
        if on_progress is not None:
            on_progress(total_ms, total_ms)
        return producer.report
