"""The worker's own health against a real worker: ``/metrics`` counts what was produced,
``/readyz`` says when the worker cannot do its job, ``tocsin status`` reads the same."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli.main import main
from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
TOKEN = "m3trics-" + uuid.uuid4().hex


def get(port: int, path: str, token: str = "") -> tuple[int, bytes]:
    """HTTP status and body of a GET, errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int, token: str = TOKEN) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    status, body = get(port, "/metrics", token)
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def produce(env: dict[str, str], metrics: int, logs: int, bad_metrics: int) -> int:
    """Good metric points and logs plus ``bad_metrics`` unreadable metric messages (one
    bad record each); returns the number of messages sent."""
    settings = settings_from(env)
    start = int(time.time() * 1000) - HOUR_MS
    points = [{"time": start + i, "service.name": f"svc-{i % 7}", "name": "queue.depth",
               "value": float(i)} for i in range(metrics)]
    records = [{"time": start + i, "service.name": f"svc-{i % 5}", "severity": "INFO",
                "body": f"request {i} handled"} for i in range(logs)]
    bad = [orjson.dumps({"time": start, "service.name": "x", "name": "m", "value": "12a"}),
           b"{not json"] * (bad_metrics // 2) + [b"[42]"] * (bad_metrics % 2)

    async def send() -> int:
        await ensure_topics(settings)
        async with TelemetryProducer(settings, records_per_message=100) as producer:
            await producer.send(RecordKind.METRIC, points)
            await producer.send(RecordKind.LOG, records)
            for value in bad:
                await producer.send_value(settings.topics.metrics, value)
        return producer.report.messages

    return asyncio.run(send())


def test_metrics_count_what_was_produced(kafka_broker, names, tmp_path, capsys):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_INGEST_BATCH_SIZE="20", TOCSIN_INGEST_BATCH_WITHIN_MS="50",
                       TOCSIN_DETECT_ENABLED="false", TOCSIN_CORRELATE_ENABLED="false",
                       TOCSIN_WORKER_API_TOKEN=TOKEN)
    n_metrics, n_logs, n_bad = 3_000, 1_000, 7
    messages = produce(env, n_metrics, n_logs, n_bad)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    port = worker.port
    try:
        worker.wait_until(lambda w: total(scrape(port), "tocsin_ingest_messages_consumed_total")
                          >= messages, what=f"{messages} messages consumed")
        # everything is committed: no lag left on any partition
        worker.wait_until(lambda w: total(scrape(port), "tocsin_consumer_lag_records") == 0
                          and any(n == "tocsin_consumer_lag_records" for n, _ in scrape(port)),
                          what="the consumer lag to reach 0")
        samples = scrape(port)
        ready = get(port, "/readyz")
        healthz = get(port, "/healthz")
        unauthorized = get(port, "/metrics")
    finally:
        worker.stop()
    assert total(samples, "tocsin_ingest_messages_consumed_total") == messages
    assert total(samples, "tocsin_ingest_records_stored_total", kind="metric") == n_metrics
    assert total(samples, "tocsin_ingest_records_stored_total", kind="log") == n_logs
    assert total(samples, "tocsin_ingest_records_dead_lettered_total", kind="metric") == n_bad
    assert total(samples, "tocsin_ingest_records_dead_lettered_total", kind="log") == 0
    # the histograms agree with the agents' own counts
    agent = "tocsin.ingest.metric"
    batches = total(samples, "tocsin_agent_batches_total", agent=agent)
    assert batches > 1
    assert total(samples, "tocsin_agent_batch_size_records_count", agent=agent) == batches
    assert total(samples, "tocsin_agent_batch_size_records_sum", agent=agent) == total(
        samples, "tocsin_ingest_messages_consumed_total", kind="metric")
    assert total(samples, "tocsin_agent_batch_duration_seconds_count", agent=agent) == batches
    # one insert per batch into metrics (a batch of bad messages alone inserts no row)
    inserts = total(samples, "tocsin_store_insert_duration_seconds_count", table="metrics")
    assert 1 <= inserts <= batches
    assert total(samples, "tocsin_store_insert_duration_seconds_count",
                 table="dead_letters") >= 1
    assert total(samples, "tocsin_agent_batch_failures_total") == 0
    assert total(samples, "tocsin_agent_stuck") == 0
    assert total(samples, "tocsin_queries_total") >= 0
    # the probes answer without the token; /metrics does not
    assert ready[0] == 200 and orjson.loads(ready[1])["status"] == "ready"
    assert healthz == (200, b'{"status":"up"}')
    assert unauthorized[0] == 401


def test_readyz_is_503_with_the_reason_while_stuck(kafka_broker, names, tmp_path, monkeypatch,
                                                   capsys):
    shutdown_s = 20
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_INGEST_BATCH_SIZE="20", TOCSIN_INGEST_BATCH_WITHIN_MS="50",
                       TOCSIN_DETECT_ENABLED="false", TOCSIN_CORRELATE_ENABLED="false",
                       TOCSIN_TEST_FAULT="store.insert:raise:times=*,store.ping:raise:times=*",
                       TOCSIN_WORKER_SHUTDOWN_TIMEOUT_S=str(shutdown_s),
                       TOCSIN_INGEST_STORE_RETRY_MAX_S="2")
    produce(env, 500, 0, 0)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    port = worker.port
    try:
        worker.wait_until(lambda w: get(port, "/readyz")[0] == 503
                          and b"stuck" in get(port, "/readyz")[1], what="/readyz to say stuck")
        status, body = get(port, "/readyz")
        samples = scrape(port, "")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(["status"])
        shown = capsys.readouterr().out
    finally:
        worker.terminate(wait_s=shutdown_s + 30)
    answer = orjson.loads(body)
    assert status == 503 and answer["status"] == "not ready"
    reasons = " | ".join(answer["reasons"])
    assert "agent tocsin.ingest.metric stuck" in reasons
    assert "injected fault at store.insert" in reasons
    assert "store unreachable" in reasons and "store.ping" in reasons
    assert total(samples, "tocsin_agent_stuck", agent="tocsin.ingest.metric") == 1
    assert total(samples, "tocsin_agent_batch_failures_total",
                 agent="tocsin.ingest.metric") >= 3
    assert total(samples, "tocsin_store_insert_failures_total") >= 3
    assert total(samples, "tocsin_ingest_records_stored_total") == 0
    # the terminal view says the same, and exits non-zero
    assert code == 1
    assert "NOT READY" in shown and "tocsin.ingest.metric" in shown and "stuck" in shown


async def read_topic_to_end(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every message of ``topic`` up to its end offsets now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "the alerts topic did not read to its end"
            batches = await consumer.getmany(timeout_ms=1000)
            values += [r.value for records in batches.values() for r in records]
        return values
    finally:
        await consumer.stop()


def test_detect_and_correlate_metrics_match_the_store_and_the_alerts_topic(
        kafka_broker, names, tmp_path, monkeypatch, capsys):
    from tests.integration.test_detect_stream import simulate, wait_for_all

    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "50m",
                      "error_spike:orders@20m+10m")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    port = worker.port
    try:
        wait_for_all(worker, labels)
        worker.wait_until(lambda w: total(scrape(port, ""), "tocsin_consumer_lag_records") == 0,
                          what="every message committed")
        samples = scrape(port, "")
        in_store = worker.query("SELECT detector, state, count() FROM tocsin.detections "
                                "GROUP BY detector, state")
        open_problems = worker.query("SELECT count() FROM tocsin.problems "
                                     "WHERE status != 'resolved'")[0][0]
        capsys.readouterr()
        code = main(["status"])
        shown = capsys.readouterr().out
        ready = get(port, "/readyz")
    finally:
        worker.stop()
    alerts = asyncio.run(read_topic_to_end(kafka_broker.bootstrap, env["TOCSIN_TOPICS_ALERTS"],
                                           settings_from(env).topics.partitions))
    # every detection stored is counted once, by detector and state
    assert in_store
    for detector, state, n in in_store:
        assert total(samples, "tocsin_detections_total", detector=detector, state=state) == n
    assert total(samples, "tocsin_detections_total") == sum(n for *_, n in in_store)
    assert total(samples, "tocsin_detect_late_records_total") == 0
    # the alerts sent are those on the topic, by CloudEvents type
    by_type: dict[str, int] = {}
    for value in alerts:
        kind = orjson.loads(value)["type"]
        by_type[kind] = by_type.get(kind, 0) + 1
    assert by_type and any(k.endswith("opened") for k in by_type)
    for kind, n in by_type.items():
        assert total(samples, "tocsin_alerts_sent_total", type=kind) == n
    assert total(samples, "tocsin_alerts_sent_total") == len(alerts)
    assert total(samples, "tocsin_problems_open") == open_problems
    # caught up: no source ahead of the watermark, no lag
    assert total(samples, "tocsin_detect_watermark_lag_seconds") == 0
    assert total(samples, "tocsin_detect_source_backlog") == 0
    assert ready[0] == 200
    assert code == 0, shown
    assert ": READY" in shown and "caught up" in shown, shown
    assert "consumer lag: none" in shown
