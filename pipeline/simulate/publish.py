"""Send a simulation to Kafka, as fast as possible or paced on event time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pipeline.kafka.producer import ProduceReport, TelemetryProducer
from pipeline.settings import Settings
from pipeline.simulate.generator import Simulation
from pipeline.simulate.output import tick_wire


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

    Each tick's records leave before the next tick's (a message holds at most
    ``records_per_message`` records of one service and one tick): every source partition
    is then in event order across its services, which the detectors' watermark relies
    on. Holding a quiet service's records until a message is full would put them behind
    newer records of busier services on the same partition, and they would arrive late.
    """
    start_ms, total_ms = simulation.start_ms, simulation.end_ms - simulation.start_ms
    began = time.monotonic()
    async with TelemetryProducer(settings, records_per_message) as producer:
        for tick in simulation:
            if speed is not None:
                delay = began + (tick.time_ms - start_ms) / 1000 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            for kind, records in tick_wire(tick).items():
                await producer.send(kind, records)
            await producer.send_partial()  # no record waits for a later tick
            if on_progress is not None:
                on_progress(tick.time_ms + tick.interval_ms - start_ms, total_ms)
        return producer.report
