"""Shadow isolation: a candidate rule set running in shadow beside the current rules in a
real worker stores its detections with shadow = true and publishes them with the shadow
header, and none of them reaches the correlator: on a quiet run where the shadow fires
everywhere, no problem and no alert; ``tocsin shadow report`` shows what it adds."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from detectors import builtin_rule_paths
from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

NOISY = """version: "shadow-1"
rules:
  - name: shadow-any-errors
    signal: metrics
    select: {metric: http.server.error.ratio}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    aggregation: max
    condition: ">= 0"
    for: 1m
    severity: critical
    category: availability
    title: "{service}: any error ratio at all"
"""


async def read_topic(bootstrap: str, topic: str, quiet_s: float = 3.0) -> list:
    """Every message of ``topic`` from the start (until ``quiet_s`` without one)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(quiet_s * 1000))
            if not batch:
                break
            for records in batch.values():
                out += records
    finally:
        await consumer.stop()
    return out


def test_shadow_detections_never_reach_the_correlator(kafka_broker, names, tmp_path,
                                                      monkeypatch, capsys):
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    for path in builtin_rule_paths():  # the current rules, and one that fires everywhere
        shutil.copy(path, candidate / path.name)
    (candidate / "noisy.yaml").write_text(NOISY)
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_MODELS="false",
                       TOCSIN_DETECT_SHADOW_RULES=str(candidate))
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "40m", None)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        shadow = worker.query("SELECT id, detector FROM tocsin.detections WHERE shadow")
        current = worker.query("SELECT count() FROM tocsin.detections WHERE NOT shadow")
        problems = worker.query("SELECT count() FROM tocsin.problems")
        status = worker.status()
        capsys.readouterr()
        assert main(["shadow", "report", "--from", str(labels["start_ms"]), "--to",
                     str(labels["end_ms"] + 3_600_000), "--json",
                     str(tmp_path / "shadow.json")]) == 0
    finally:
        worker.stop()
    noisy = {i for i, detector in shadow if detector == "shadow-any-errors"}
    assert len(noisy) > 10, worker.log()
    assert current == [[0]] and problems == [[0]]
    assert status["detect"]["shadow"].get("firing", 0) >= len(noisy) // 2
    assert status["correlate"]["shadow_dropped"] == len(shadow)
    messages = asyncio.run(read_topic(kafka_broker.bootstrap, env["TOCSIN_TOPICS_DETECTIONS"]))
    marked = [m for m in messages if ("tocsin-shadow", b"true") in list(m.headers or ())]
    assert {orjson.loads(m.value)["id"] for m in marked} == {i for i, _ in shadow}
    unmarked = [orjson.loads(m.value) for m in messages if m not in marked]
    assert all("tick" in v for v in unmarked)  # a quiet run: nothing but watermarks
    alerts = asyncio.run(read_topic(kafka_broker.bootstrap, env["TOCSIN_TOPICS_ALERTS"], 1.0))
    assert alerts == []
    report = json.loads((tmp_path / "shadow.json").read_text())
    assert report["engine"] == "rules"
    assert report["detections"]["added"] == len(shadow) and report["detections"]["removed"] == 0
    assert report["versions"]["shadow"]
    assert "shadow-any-errors" in capsys.readouterr().out
