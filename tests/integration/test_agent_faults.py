"""Faults injected into a running worker (``TOCSIN_TEST_FAULT``): no record is lost or
stored twice, failures are counted and visible, a stuck worker still stops in time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.integration.test_detect_stream import FIRING, simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
PER_MESSAGE = 100


def ingest_only_env(kafka_broker, names: str, root: Path, **extra: str) -> dict[str, str]:
    """A worker that runs the ingest agents alone, in small batches."""
    return pipeline_env(kafka_broker.bootstrap, names, root, find_free_port(),
                        TOCSIN_INGEST_BATCH_SIZE="20", TOCSIN_INGEST_BATCH_WITHIN_MS="50",
                        TOCSIN_DETECT_ENABLED="false", TOCSIN_CORRELATE_ENABLED="false",
                        **extra)


def produce(env: dict[str, str], metrics: int, logs: int = 0) -> int:
    """Send ``metrics`` metric points and ``logs`` log records; returns the value sum."""
    settings = settings_from(env)
    start = int(time.time() * 1000) - HOUR_MS
    points = [{"time": start + i, "service.name": f"svc-{i % 7}", "name": "queue.depth",
               "value": float(i)} for i in range(metrics)]
    records = [{"time": start + i, "service.name": f"svc-{i % 5}", "severity": "INFO",
                "body": f"request {i} handled"} for i in range(logs)]

    async def send() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings, records_per_message=PER_MESSAGE) as producer:
            await producer.send(RecordKind.METRIC, points)
            await producer.send(RecordKind.LOG, records)

    asyncio.run(send())
    return sum(range(metrics))


def assert_stored_once(worker: WorkerProcess, table: str, n: int) -> None:
    """``n`` distinct rows (the store's reads are deduplicated: FINAL)."""
    worker.wait_until(lambda w: w.query(f"SELECT count() FROM tocsin.{table}")[0][0] >= n,
                      timeout_s=180, what=f"{n} rows in {table}")
    assert worker.query(f"SELECT count(), uniqExact(event_id) FROM tocsin.{table}") == [[n, n]]


def test_failing_batches_are_retried_in_place_and_stored_once(kafka_broker, names, tmp_path):
    # the 4th metric batch fails 4 times after its rows are stored, the 3rd log batch
    # twice before anything is stored; neither may be skipped or stored twice
    env = ingest_only_env(kafka_broker, names, tmp_path, TOCSIN_TEST_FAULT=(
        "ingest.metric.after:raise:after=3:times=4,ingest.log.before:raise:after=2:times=2"))
    value_sum = produce(env, metrics=20_000, logs=5_000)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        assert_stored_once(worker, "metrics", 20_000)
        assert_stored_once(worker, "logs", 5_000)
        assert worker.query("SELECT sum(value) FROM tocsin.metrics") == [[float(value_sum)]]
        status = worker.status()
        # rows are counted once per batch, however many attempts it took
        assert status["stored"] == {"metric": 20_000, "log": 5_000}
        agents = status["agents"]
        metric, log = agents["tocsin.ingest.metric"], agents["tocsin.ingest.log"]
        assert (metric["failures"], log["failures"]) == (4, 2)
        assert metric["consecutive_failures"] == log["consecutive_failures"] == 0
        assert not metric["stuck"] and not log["stuck"]
        assert "injected fault at ingest.metric.after" in metric["last_error"]
        assert worker.health() == (200, {"status": "ok"})
    finally:
        worker.stop()
    output = worker.log_path.read_text()
    # each failed attempt is logged with the agent, the topic, partition and offsets
    assert output.count("agent tocsin.ingest.metric: attempt ") == 4
    assert f"agent tocsin.ingest.metric: attempt 1 at t{names}.metrics[" in output
    assert "agent tocsin.ingest.metric is stuck" in output
    assert "done after 4 failed attempts" in output


@pytest.mark.parametrize("batches_before", [0, 3])
def test_batch_of_a_cancelled_agent_stays_uncommitted_until_a_restart(kafka_broker, names,
                                                                       tmp_path,
                                                                       batches_before):
    # the agent task is cancelled holding a batch, before storing it: Faust restarts the
    # agent, and the batch must come back (not be committed as done). The first batch of
    # a new consumer group is the hard case: no committed offset to show the gap yet.
    # the restarted agent starts 3 s late: records keep reaching the agent's stream
    # meanwhile, on partitions the cancelled batch did not hold too
    env = ingest_only_env(kafka_broker, names, tmp_path, TOCSIN_TEST_FAULT=(
        f"ingest.metric.before:cancel:after={batches_before},"
        "tocsin.ingest.metric.start:delay:after=1:seconds=3"))
    total = 20_000
    value_sum = produce(env, metrics=total)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["agents"].get("tocsin.ingest.metric", {})
                          .get("crashes") == 1, what="the injected cancel")
        # the batch left behind: its partitions commit nothing more until it comes back
        held = worker.status()["agents"]["tocsin.ingest.metric"]["held"]
        assert held and all(r["topic"] == f"t{names}.metrics" for r in held)
        # the restarted agent goes on with the next batches
        worker.wait_until(lambda w: w.status()["agents"]["tocsin.ingest.metric"]["batches"]
                          > batches_before, what="batches after the cancelled one")
        assert worker.status()["agents"]["tocsin.ingest.metric"]["crashes"] == 1
    finally:
        worker.stop()
    assert "agent tocsin.ingest.metric: ended while holding" in worker.log_path.read_text()
    env.pop("TOCSIN_TEST_FAULT")
    worker = WorkerProcess(env, tmp_path / "worker2.log").start()
    try:
        assert_stored_once(worker, "metrics", total)
        assert worker.query("SELECT sum(value) FROM tocsin.metrics") == [[float(value_sum)]]
    finally:
        worker.stop()


def test_worker_stops_in_time_while_the_store_refuses_inserts(kafka_broker, names, tmp_path):
    shutdown_s = 20
    env = ingest_only_env(kafka_broker, names, tmp_path,
                          TOCSIN_TEST_FAULT="store.insert:raise:times=*",
                          TOCSIN_WORKER_SHUTDOWN_TIMEOUT_S=str(shutdown_s),
                          TOCSIN_INGEST_STORE_RETRY_MAX_S="2")
    total = 3_000
    produce(env, metrics=total)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.health()[0] == 503, what="the worker to report stuck")
        code, body = worker.health()
        stuck = body["stuck"]["tocsin.ingest.metric"]
        assert stuck["consecutive_failures"] >= 3
        assert "injected fault at store.insert" in stuck["last_error"]
        assert f"t{names}.metrics[" in stuck["offsets"]
        agent = worker.status()["agents"]["tocsin.ingest.metric"]
        assert agent["stuck"] and agent["offsets"][0]["topic"] == f"t{names}.metrics"
        assert worker.status()["stored"].get("metric", 0) == 0
    finally:
        # bounded wait for the exit: the deadline itself plus time to start Python's exit
        exit_code = worker.terminate(wait_s=shutdown_s + 30)
    output = worker.log_path.read_text()
    assert exit_code is not None, f"the worker did not stop after SIGTERM:\n{worker.log()}"
    assert "gave up" in output and "stays uncommitted" in output
    # nothing was committed: a worker whose store takes inserts again stores everything
    env.pop("TOCSIN_TEST_FAULT")
    worker = WorkerProcess(env, tmp_path / "worker2.log").start()
    try:
        assert_stored_once(worker, "metrics", total)
    finally:
        worker.stop()


def test_detect_and_correlate_retry_a_batch_without_applying_it_twice(kafka_broker, names,
                                                                      tmp_path, monkeypatch):
    # both fail after every side effect of a batch (state written, detections sent and
    # stored): a retry that ran the batch's records through the engines again would count
    # them late (they are behind the watermark they moved) and alert twice
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_TEST_FAULT="detect.after:raise:after=2:times=2,"
                                         "correlate.after:raise:after=1:times=2")
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "50m",
                      "error_spike:orders@20m+10m")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        status = worker.status()
        firing = worker.query(FIRING)
    finally:
        worker.stop()
    detect, correlate = status["agents"]["tocsin.detect"], status["agents"]["tocsin.correlate"]
    assert (detect["failures"], correlate["failures"]) == (2, 2)
    assert not detect["stuck"] and not correlate["stuck"]
    assert status["detect"]["late_records"] == 0
    assert any(d == "high-error-rate" and s == "orders" for d, s, _ in firing), firing
