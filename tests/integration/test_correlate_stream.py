"""The correlator in a running worker: simulated incidents become problems with the
right root cause, and a real consumer of the alerts topic sees each problem's lifecycle
in order."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

SLACK_MS = 10 * 60_000


async def read_alerts(bootstrap: str, topic: str) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    alerts: list[dict] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                return alerts
            for records in batch.values():
                alerts += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()


def test_incidents_become_problems_and_alerts(kafka_broker, names, tmp_path, monkeypatch):
    graph = tmp_path / "graph.yaml"
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_CORRELATE_DEPENDENCIES=str(graph))
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "150m",
                      "db_outage@30m+10m,memory_leak:auth@70m+60m", graph=graph)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        problems = worker.query(
            "SELECT id, status, toUnixTimestamp64Milli(opened_at), affected, root_causes "
            "FROM tocsin.problems ORDER BY opened_at")
    finally:
        worker.stop()
    outage, leak = labels["incidents"]

    def matching(incident: dict) -> list:
        return [p for p in problems
                if incident["start_ms"] - SLACK_MS <= p[2] <= incident["end_ms"] + SLACK_MS
                and set(p[3]) & set(incident["affected_services"])]

    db_problems = matching(outage)
    assert len(db_problems) == 1, db_problems
    assert json.loads(db_problems[0][4])[0]["service"] == "postgres"
    leak_problems = matching(leak)
    assert len(leak_problems) == 1, leak_problems
    assert json.loads(leak_problems[0][4])[0]["service"] == "auth"

    alerts = asyncio.run(read_alerts(kafka_broker.bootstrap, env["TOCSIN_TOPICS_ALERTS"]))
    db_alerts = [a for a in alerts if a["subject"] == db_problems[0][0]]
    kinds = [a["type"].rsplit(".", 1)[-1] for a in db_alerts]
    assert kinds[0] == "opened" and kinds[-1] == "resolved", kinds
    versions = [a["data"]["version"] for a in db_alerts]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
