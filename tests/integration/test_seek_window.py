"""Records the consumer delivers while it seeks to the committed offsets after a restart
are processed and committed: none is dropped from an agent's queue.

A worker that restores table state on its assignment has its fetch loop running when
Faust ends the recovery: Faust resumes the input partitions, seeks them one by one to
their committed offsets (a round trip each), then resumes flow control, which cleared
every agent's queue. Records of a partition already sought, fetched and delivered during
the remaining round trips waited in the queue behind the batch in progress and were
cleared: never read again (the fetch position had passed them) and never acknowledged,
so the partition's commit stopped below them for good. On a busy machine the state-chunks
test's ingest agent processed 202 of the 240 messages left after a restart, then sat
idle with 189 messages of lag. Here the window is widened on purpose: the seek is slowed down
(``consumer.seek:delay``) and the first batch too (``ingest.metric.before:delay``), so
that later records wait in the queue when the seek ends.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from datetime import datetime

import pytest

from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PER_MESSAGE = 10
MIN = 60_000
HOSTS = 10
SEEK_DELAY_S = 5.0
_FAULT_LINE = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*test fault: (\S+) waits")


def fault_times(log: str, point: str) -> list[float]:
    """When the worker's ``delay`` faults at ``point`` began (seconds since the epoch)."""
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for stamp, where in _FAULT_LINE.findall(log) if where == point]


def points(start_ms: int, minutes: int, seed: int) -> list[dict]:
    """One service, ``HOSTS`` hosts, a CPU point a minute each (the built-in detectors
    keep state for it)."""
    rng = random.Random(seed)
    return [{"time": start_ms + m * MIN + h, "service.name": "inventory",
             "host.name": f"inventory-{h:02d}", "name": "system.cpu.utilization",
             "value": rng.uniform(0.1, 0.6)} for m in range(minutes) for h in range(HOSTS)]


def test_records_delivered_during_the_seek_after_a_restart_are_not_lost(
        kafka_broker, names, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_INGEST_BATCH_SIZE="5", TOCSIN_CORRELATE_ENABLED="false")
    settings = settings_from(env)
    start_ms = int(time.time() * 1000) - 3 * 3_600_000
    first, second = points(start_ms, 10, 1), points(start_ms + 10 * MIN, 60, 2)

    async def produce(records: list[dict]) -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings, records_per_message=PER_MESSAGE) as producer:
            await producer.send(RecordKind.METRIC, records)

    def metrics_partition(w: WorkerProcess) -> list[tuple[int, int]]:
        return [(row["highwater"], row["committed"]) for row in w.status()["consumer_lag"]
                if row["topic"] == settings.topics.metrics and row["highwater"]]

    def stored(w: WorkerProcess) -> int:
        return w.query("SELECT count() FROM tocsin.metrics")[0][0]

    # a first worker leaves committed offsets and detector state in the changelogs: the
    # next one restores state on its assignment (its fetch loop runs during the seek)
    asyncio.run(produce(first))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: stored(w) >= len(first)
                          and w.status()["detect"]["services_with_state"] >= 1
                          and metrics_partition(w) == [(len(first) // PER_MESSAGE,) * 2],
                          what="the first part stored, committed, with detector state")
    finally:
        worker.stop()

    asyncio.run(produce(second))
    messages = (len(first) + len(second)) // PER_MESSAGE
    slowed = {**env, "TOCSIN_TEST_FAULT": f"consumer.seek:delay:seconds={SEEK_DELAY_S}:times=*,"
                                          "ingest.metric.before:delay:seconds=8"}
    worker = WorkerProcess(slowed, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: stored(w) >= len(first) + len(second), timeout_s=90,
                          what="every point stored")
        assert worker.query("SELECT count(), uniqExact(event_id) FROM tocsin.metrics") == [
            [len(first) + len(second)] * 2]
        worker.wait_until(lambda w: metrics_partition(w) == [(messages, messages)],
                          timeout_s=30, what="the metrics partition committed to its end")
    finally:
        worker.stop()
    # the window was really taken: the first batch began before a seek had ended
    log = (tmp_path / "worker.log").read_text(errors="replace")
    seeks, batches = fault_times(log, "consumer.seek"), fault_times(log, "ingest.metric.before")
    assert seeks and batches, log[-4000:]
    assert any(batches[0] < seek + SEEK_DELAY_S for seek in seeks), (seeks, batches)
