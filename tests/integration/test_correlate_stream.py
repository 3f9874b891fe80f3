"""The correlator in a running worker: simulated incidents become problems with the
right root cause, and a real consumer of the alerts topic sees each problem's lifecycle
in order."""

from __future__ import annotations

import asyncio
import json
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

SLACK_MS = 10 * 60_000


async def read_alerts(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[dict]:
    """The alerts topic from the beginning: until messages came and then 3 s of quiet."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    alerts: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch and alerts:
                break
            for records in batch.values():
                alerts += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return alerts


def test_incidents_become_problems_and_alerts(kafka_broker, names, tmp_path, monkeypatch):
    graph = tmp_path / "graph.yaml"
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_CORRELATE_DEPENDENCIES=str(graph), TOCSIN_DETECT_MODELS="false")
    # the leak starts first and is still growing through the outage: two unrelated
    # incidents at once; the callers' failures must fold into the database's problem
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "120m",
                      "memory_leak:auth@10m+70m,db_outage@30m+10m", graph=graph,
                      allow_overlap=True)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        problems = worker.query(
            "SELECT id, status, toUnixTimestamp64Milli(opened_at), affected, root_causes "
            "FROM tocsin.problems WHERE merged_into = '' ORDER BY opened_at")
    finally:
        worker.stop()
    leak, outage = sorted(labels["incidents"], key=lambda i: i["start_ms"])
    assert (leak["scenario"], outage["scenario"]) == ("memory_leak", "db_outage")

    def within(problem: list, incident: dict) -> bool:
        return incident["start_ms"] - SLACK_MS <= problem[2] <= incident["end_ms"] + SLACK_MS

    # exactly one problem per incident, each blaming its root cause first; the leak ends
    # with auth's pods OOM-killed, and its callers' errors confirmed after the leak's
    # problem recovered are its aftermath (they reopen it), not a problem of their own
    assert len(problems) == 2, problems
    top = {p[0]: json.loads(p[4])[0]["service"] for p in problems}
    assert sorted(top.values()) == ["auth", "postgres"], problems
    db_problem, leak_problem = sorted(problems, key=lambda p: top[p[0]] == "auth")
    assert within(db_problem, outage) and within(leak_problem, leak), problems
    # the callers' errors are folded into the database's problem, the leak kept apart
    assert {"orders", "inventory", "agent-worker"} <= set(db_problem[3]), db_problem
    assert "auth" not in db_problem[3] and "auth" in leak_problem[3], problems
    assert all(p[1] == "resolved" for p in problems), problems

    alerts = asyncio.run(read_alerts(kafka_broker.bootstrap, env["TOCSIN_TOPICS_ALERTS"]))
    assert alerts
    by_problem: dict[str, list[dict]] = {}
    for alert in alerts:
        assert alert["specversion"] == "1.0" and alert["subject"] == alert["data"]["id"]
        by_problem.setdefault(alert["subject"], []).append(alert)
    for problem_id, stream in by_problem.items():
        kinds = [a["type"].rsplit(".", 1)[-1] for a in stream]
        versions = [a["problemversion"] for a in stream]
        assert versions == sorted(versions), (problem_id, versions)  # in order, per key
        assert kinds[0] in ("opened", "reopened"), (problem_id, kinds)
    # a consumer sees each problem's whole lifecycle, opened ... resolved, in order
    survivors = {db_problem[0], leak_problem[0]}
    assert survivors <= set(by_problem), sorted(by_problem)
    for problem_id, stream in by_problem.items():
        kinds = [a["type"].rsplit(".", 1)[-1] for a in stream]
        assert kinds[0] == "opened" and kinds[-1] == "resolved", kinds
        if problem_id not in survivors:  # alerted, then folded into one of them
            assert stream[-1]["data"]["merged_into"] in survivors, stream[-1]["data"]
