"""Trace volume at default settings: big span batches and a real day of replay go through
a worker whole, with no message over kafka.max_message_bytes on the way.

The replay test reads ``../shared/data/nezha-ob/replay-2022-08-22.ndjson.gz`` beside the
repository (``TOCSIN_TEST_SHARED_DIR`` points elsewhere) and is skipped without it.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.events.deadletter import TRUNCATED_HEADER
from pipeline.events.sizes import value_budget
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from pipeline.settings import DetectSettings
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TOCSIN_TEST_SHARED_DIR", REPO.parent / "shared"))
REPLAY = SHARED / "data" / "nezha-ob" / "replay-2022-08-22.ndjson.gz"
LATENESS_MS = DetectSettings().allowed_lateness_ms

SERVICES = {  # service -> (pod, operations it serves, the peers it calls)
    "frontend": ("frontend-579b9bff58-t2dbm", ["hipstershop.Frontend/Recv."],
                 ["productcatalogservice", "currencyservice", "cartservice", "adservice"]),
    "productcatalogservice": ("productcatalogservice-668d5f85fb-wckp8",
                              ["hipstershop.ProductCatalogService/GetProduct",
                               "hipstershop.ProductCatalogService/ListProducts"], []),
    "currencyservice": ("currencyservice-cf787dd48-vpjrd",
                        ["hipstershop.CurrencyService/Convert",
                         "hipstershop.CurrencyService/GetSupportedCurrencies"], []),
    "cartservice": ("cartservice-7b5c4f8d6-x2k9q", ["hipstershop.CartService/GetCart"], []),
    "adservice": ("adservice-5f6585d649-fnmft", ["hipstershop.AdService/GetAds"], []),
}


def defaults_env(kafka_broker, names: str, root: Path, **extra: str) -> dict[str, str]:
    """An isolated worker at the default settings (4 partitions, batches of 1,000)."""
    return pipeline_env(kafka_broker.bootstrap, names, root, find_free_port(),
                        TOCSIN_TOPICS_PARTITIONS="4", **extra)


def realistic_spans(rng: random.Random, service: str, start_ms: int, n: int) -> list[dict]:
    """``n`` spans of ``service`` from ``start_ms`` on, shaped like OpenTelemetry gRPC/HTTP
    spans of the Online Boutique (rpc, http, net and k8s attributes)."""
    pod, operations, peers = SERVICES[service]
    spans = []
    for i in range(n):
        operation = operations[i % len(operations)]
        rpc_service, _, method = operation.partition("/")
        client = bool(peers) and i % 3 == 0
        attributes = {
            "rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": method,
            "rpc.grpc.status_code": 0, "net.peer.name": rng.choice(peers) if client else pod,
            "net.peer.port": 3550, "http.method": "POST", "http.scheme": "http",
            "http.target": f"/{operation}", "http.status_code": 200,
            "http.user_agent": "grpc-go/1.46.0", "k8s.pod.name": pod,
            "k8s.namespace.name": "hipster", "k8s.node.name": f"node-{rng.randrange(4)}",
            "service.version": "v0.3.8", "session": f"{rng.getrandbits(128):032x}",
        }
        span = {"trace_id": f"{rng.getrandbits(128):032x}",
                "span_id": f"{rng.getrandbits(64):016x}", "service.name": service,
                "host.name": pod, "name": operation, "start": start_ms + i * 3,
                "duration_ms": round(rng.lognormvariate(1.0, 0.8), 3),
                "status": "error" if rng.random() < 0.01 else "ok",
                "kind": "client" if client else "server", "attributes": attributes}
        if i % 4:
            span["parent_span_id"] = f"{rng.getrandbits(64):016x}"
        spans.append(span)
    return spans


def test_a_batch_of_1000_messages_of_200_spans_is_stored_and_detected(kafka_broker, names,
                                                                       tmp_path):
    env = defaults_env(kafka_broker, names, tmp_path)
    settings = settings_from(env)
    rng = random.Random(19)
    start_ms = int(time.time() * 1000) - 3_600_000
    messages: list[tuple[str, bytes]] = []
    services = list(SERVICES)
    for m in range(1000):  # in event-time order, services interleaved
        service = services[m % len(services)]
        spans = realistic_spans(rng, service, start_ms + m * 600, 200)
        messages.append((service, orjson.dumps(spans)))
    last_ms = start_ms + 999 * 600 + 199 * 3

    async def produce() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings) as producer:
            for service, value in messages:
                await producer.send_value(settings.topics.traces, value, key=service.encode())

    asyncio.run(produce())  # all of it waits: the worker's first batch is 1,000 messages
    assert max(len(v) for _, v in messages) < settings.ingest.max_message_bytes
    assert sum(len(v) for _, v in messages) > 100 * settings.kafka.max_message_bytes
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["stored"].get("span", 0) >= 200_000,
                          timeout_s=240, what="200,000 spans stored")
        worker.wait_until(lambda w: w.status()["detect"]["watermark_ms"] >= last_ms
                          - LATENESS_MS, timeout_s=240, what="detection at the last span")
        status = worker.status()
        assert status["stored"] == {"span": 200_000}
        assert sum(status["rejected"].values()) == 0 and status["not_forwarded"] == {}
        assert status["detect"]["watermark_ms"] == last_ms - LATENESS_MS
        assert status["detect"]["errors"] == 0 and status["detect"]["late_records"] == 0
        assert worker.query("SELECT count(), uniqExact(span_id), max(start) = "
                            f"fromUnixTimestamp64Milli({last_ms}) FROM tocsin.spans") \
            == [[200_000, 200_000, 1]]
        assert worker.query("SELECT count() FROM tocsin.dead_letters") == [[0]]
    finally:
        worker.stop()


def replay_counts(path: Path) -> tuple[dict[str, int], int]:
    """Records per kind in the replay, and its latest event time."""
    counts: dict[str, int] = {}
    last = 0
    with gzip.open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            kind = record["type"]
            counts[kind] = counts.get(kind, 0) + 1
            last = max(last, record["start"] if kind == "span" else record["time"])
    return counts, last


@pytest.mark.timeout(1200)
@pytest.mark.skipif(not REPLAY.is_file(), reason=f"shared replay data not found at {REPLAY} "
                    "(a checkout with shared/ beside it, or TOCSIN_TEST_SHARED_DIR)")
def test_a_day_of_real_traces_through_tocsin_produce_is_stored_whole(kafka_broker, names,
                                                                     tmp_path):
    counts, last_ms = replay_counts(REPLAY)
    env = defaults_env(kafka_broker, names, tmp_path)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        began = time.monotonic()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        produced = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "produce", str(REPLAY), "--quiet"],
            env={**child_env, **env}, capture_output=True, text=True, timeout=900)
        assert produced.returncode == 0, produced.stderr
        assert produced.stdout.startswith(
            f"sent {counts['log']} logs, {counts['metric']} metrics, {counts['span']} spans")
        worker.wait_until(lambda w: w.status()["stored"] == counts, timeout_s=900,
                          what="every record of the replay stored")
        worker.wait_until(lambda w: w.status()["detect"]["watermark_ms"] >= last_ms
                          - LATENESS_MS, timeout_s=300, what="detection at the last event")
        print(f"replay of {sum(counts.values())} records: produce to detected in "
              f"{time.monotonic() - began:.0f} s")
        status = worker.status()
        assert sum(status["rejected"].values()) == 0 and status["not_forwarded"] == {}
        assert status["detect"]["watermark_ms"] == last_ms - LATENESS_MS
        assert status["detect"]["errors"] == 0
        # the file is in event-time order and tocsin produce holds no record more than
        # 10 s of event time: none reaches the detectors later than the allowed lateness
        assert status["detect"]["late_records"] == 0
        for table, kind in (("metrics", "metric"), ("logs", "log"), ("spans", "span")):
            assert worker.query(f"SELECT count() FROM tocsin.{table}") == [[counts[kind]]]
    finally:
        worker.stop()


def test_a_record_too_large_to_forward_is_stored_dead_lettered_and_passed_over(
        kafka_broker, names, tmp_path):
    env = defaults_env(kafka_broker, names, tmp_path)
    settings = settings_from(env)
    limit = settings.kafka.max_message_bytes
    rng = random.Random(4)
    start_ms = int(time.time() * 1000) - 600_000
    before = realistic_spans(rng, "adservice", start_ms, 20)
    big = realistic_spans(rng, "adservice", start_ms + 100, 1)[0]
    after = realistic_spans(rng, "adservice", start_ms + 200, 20)
    # as large as the traces topic takes: its Arrow form (schema included) is not
    big["attributes"]["blob"] = ""
    room = value_budget(limit, b"adservice") - len(orjson.dumps(big)) - 50
    # random hex: forwarded slices are LZ4-compressed, and a repeated letter would shrink
    big["attributes"]["blob"] = rng.randbytes((room + 1) // 2).hex()[:room]
    values = [orjson.dumps(before), orjson.dumps(big), orjson.dumps(after)]

    async def produce() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings) as producer:
            for value in values:
                await producer.send_value(settings.topics.traces, value, key=b"adservice")

    asyncio.run(produce())
    last_ms = max(s["start"] for s in after)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["not_forwarded"] == {"span": 1}
                          and w.status()["detect"]["watermark_ms"] >= last_ms - LATENESS_MS,
                          what="the big span dead-lettered and the rest detected")
        status = worker.status()
        assert status["stored"] == {"span": 41} and status["detect"]["errors"] == 0
        rows = worker.query("SELECT reason, length(payload), record_index "
                            "FROM tocsin.dead_letters")
        assert len(rows) == 1
        reason, size, index = rows[0]
        assert reason.startswith("stored, but not forwarded to the detectors: this traces "
                                 "record alone is") and index == 0
        assert size > room  # the table keeps the whole row
    finally:
        worker.stop()

    async def dead_letters() -> list:
        consumer = AIOKafkaConsumer(settings.topics.deadletter,
                                    bootstrap_servers=kafka_broker.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            found: list = []
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(records)
            return found
        finally:
            await consumer.stop()

    (dead,) = asyncio.run(dead_letters())
    headers = dict(dead.headers)
    assert int(headers[TRUNCATED_HEADER]) == size  # cut to fit, its full size said
    assert len(dead.value) < limit and dead.value.startswith(b"{")
