"""Detector state larger than one message: written to the changelog in chunks within
kafka.max_message_bytes, read back whole by a worker that restarts."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.detect.engines import build_engines
from pipeline.events.chunks import is_chunk_key, read_value
from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import engine_table, ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

LIMIT = 65_536
MIN = 60_000


def points(start_ms: int, minutes: int, seed: int) -> list[dict]:
    """One busy service: 600 hosts x 4 metrics the built-in rules and models watch, a
    point a minute each, values noisy enough not to compress away."""
    rng = random.Random(seed)
    return [{"time": start_ms + m * MIN + h, "service.name": "inventory",
             "host.name": f"inventory-{h:03d}", "name": name, "value": rng.uniform(0.1, 0.6),
             "attributes": {"zone": f"z{h % 3}"}}
            for m in range(minutes) for h in range(600)
            for name in ("system.cpu.utilization", "system.memory.utilization",
                         "http.server.duration.p95", "http.server.request.rate")]


async def changelog(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    """The latest value of every key of a changelog topic, as a compacted read would see."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = list(consumer.assignment())
        end = await consumer.end_offsets(tps)
        latest: dict[bytes, bytes | None] = {}
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "changelog not read in time"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    assert len(record.key) + len(record.value or b"") < LIMIT
                    latest[record.key] = record.value
        return latest
    finally:
        await consumer.stop()


def test_state_over_the_message_limit_survives_a_restart(kafka_broker, names, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_KAFKA_MAX_MESSAGE_BYTES=str(LIMIT),
                       TOCSIN_CORRELATE_ENABLED="false")
    settings = settings_from(env)
    start_ms = int(time.time() * 1000) - 3 * 3_600_000

    async def produce(records: list[dict]) -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings) as producer:
            await producer.send(RecordKind.METRIC, records)

    first, second = points(start_ms, 20, 1), points(start_ms + 20 * MIN, 10, 2)
    asyncio.run(produce(first))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["detect"]["watermark_ms"]
                          >= first[-1]["time"] - settings.detect.allowed_lateness_ms,
                          what="detection through the first part")
        # table writes reach their changelogs through Faust's producer, a moment after
        # the step: wait until every engine's state of the service is there
        topics = [f"{settings.worker.app_id}-{engine_table(name)}-changelog"
                  for name in build_engines(settings)]
        worker.wait_until(lambda _: all(
            read_value(asyncio.run(changelog(kafka_broker.bootstrap, t)).get, b"inventory")
            is not None for t in topics), what="every engine's state in its changelog")
    finally:
        worker.kill()  # SIGKILL: the next worker has only the changelog
    chunked = []
    for name, engine in build_engines(settings).items():
        topic = f"{settings.worker.app_id}-{engine_table(name)}-changelog"
        latest = asyncio.run(changelog(kafka_broker.bootstrap, topic))
        state = read_value(latest.get, b"inventory")
        assert state is not None, name
        engine.state_from_bytes(state)  # whole and readable
        if any(is_chunk_key(k) for k in latest):
            assert len(state) > LIMIT
            chunked.append(name)
    assert chunked, "no state was large enough to need chunks"

    asyncio.run(produce(second))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["detect"]["watermark_ms"]
                          >= second[-1]["time"] - settings.detect.allowed_lateness_ms,
                          what="detection through the second part after the restart")
        assert worker.status()["detect"]["errors"] == 0
        # partitions of the first part the killed worker never committed are read again, and
        # the detect watermark does not wait for a partition it has not seen yet
        worker.wait_until(lambda w: w.query("SELECT count() FROM tocsin.metrics")
                          >= [[len(first) + len(second)]], what="every point stored")
        assert worker.query("SELECT count() FROM tocsin.metrics") == [[len(first) + len(second)]]
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "incomplete" not in log and "MessageSizeTooLarge" not in log
