"""``tocsin produce`` through the real CLI and a real broker: gzip on standard input, lines
that cannot go dead-lettered within the message size limit, each service in order."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.events.deadletter import TRUNCATED_HEADER
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env, settings_from

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


async def consume(bootstrap: str, topic: str, enough, timeout_s: float = 60.0) -> list:
    """Records of ``topic`` from the start until ``enough(records)``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    found: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while not enough(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


def test_gzip_from_standard_input_with_bad_and_oversized_lines(kafka_broker, names, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    settings = settings_from(env)
    services = ("cart", "api", "email")
    spans = [{"type": "span", "trace_id": f"{i:032x}", "span_id": f"{i + 1:016x}",
              "service.name": services[i % 3], "name": "GET /", "start": T0 + i * 7,
              "duration_ms": 1.5} for i in range(3000)]
    metrics = [{"type": "metric", "time": T0 + i * 7000, "service.name": "api",
                "name": "cpu", "value": 0.5} for i in range(3)]
    huge = {"type": "log", "time": T0 + 1, "service.name": "api", "severity": "INFO",
            "body": "b" * (2 << 20)}
    lines = [orjson.dumps(r) for r in spans[:1500]] + [b"{not json", orjson.dumps(huge)] \
        + [orjson.dumps(r) for r in spans[1500:] + metrics]
    child = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "produce", "-", "--quiet"],
                          input=gzip.compress(b"\n".join(lines)), env={**child, **env},
                          capture_output=True, timeout=300)
    assert done.returncode == 1, done.stderr  # lines it could not send
    assert done.stdout.decode().startswith("sent 3 metrics, 3000 spans in ")
    stderr = done.stderr.decode()
    assert "line 1501: malformed JSON" in stderr
    assert f"line 1502: record is {len(lines[1501])} bytes, over the" in stderr

    bootstrap = kafka_broker.bootstrap
    dead = asyncio.run(consume(bootstrap, settings.topics.deadletter, lambda f: len(f) >= 2))
    by_line = {r.key: r for r in dead}
    assert set(by_line) == {b"file:stdin/1501", b"file:stdin/1502"}
    assert by_line[b"file:stdin/1501"].value == b"{not json"
    cut = by_line[b"file:stdin/1502"]
    headers = dict(cut.headers)
    assert headers[TRUNCATED_HEADER] == str(len(lines[1501])).encode()
    assert lines[1501].startswith(cut.value)
    assert settings.kafka.max_message_bytes - 2000 < len(cut.value) \
        < settings.kafka.max_message_bytes

    messages = asyncio.run(consume(bootstrap, settings.topics.traces, lambda found: sum(
        len(orjson.loads(m.value)) for m in found) >= 3000))
    starts: dict[bytes, list[int]] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        records = orjson.loads(message.value)
        assert {r["service.name"] for r in records} == {message.key.decode()}
        starts.setdefault(message.key, []).extend(r["start"] for r in records)
    for service in services:  # every span once, in file order, on its service's key
        assert starts[service.encode()] == [s["start"] for s in spans
                                            if s["service.name"] == service]


def test_an_existing_topic_that_takes_smaller_messages_stops_produce(kafka_broker, names,
                                                                     tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    settings = settings_from(env)

    async def create_small_topic() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topics.logs, 1, 1, topic_configs={
                "max.message.bytes": "100000"})])
        finally:
            await admin.close()

    asyncio.run(create_small_topic())
    child = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "produce", "-", "--quiet"],
                          input=b"", env={**child, **env}, capture_output=True, timeout=120)
    assert done.returncode == 2
    assert (f"tocsin produce: error: topic {settings.topics.logs} takes messages of at most "
            "100000 bytes (max.message.bytes), less than kafka.max_message_bytes (1048576): "
            "raise the topics' max.message.bytes or lower kafka.max_message_bytes"
            ) in done.stderr.decode()
