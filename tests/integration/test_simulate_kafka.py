"""`tocsin simulate` through a real broker and worker: the incident lands where labelled."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.simulated_day import pinned_run_args
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def test_simulated_db_outage_is_stored_inside_its_labelled_window(kafka_broker, names,
                                                                  tmp_path, monkeypatch,
                                                                  capsys):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    labels_path = tmp_path / "labels.json"
    graph_path = tmp_path / "graph.yaml"
    assert main(["simulate", "--duration", "40m", "--seed", "3", "--incidents",
                 "db_outage@15m+10m", "--labels", str(labels_path), "--no-progress",
                 "--graph", str(graph_path), *pinned_run_args(tmp_path, "40m")]) == 0
    wrote = re.search(r"wrote ([\d,]+) logs, ([\d,]+) metrics, ([\d,]+) spans",
                      capsys.readouterr().out)
    assert wrote is not None
    sent = dict(zip(("log", "metric", "span"),
                    (int(n.replace(",", "")) for n in wrote.groups()), strict=True))
    labels = json.loads(labels_path.read_text())
    (incident,) = labels["incidents"]
    assert incident["scenario"] == "db_outage"

    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        # every record the simulation wrote (partitions are read at different paces: the
        # latest event time stored says nothing of the others)
        worker.wait_until(lambda w: w.status()["stored"] == sent,
                          what="the whole simulation stored")
        assert sum(worker.status()["rejected"].values()) == 0
        start, end = incident["start_ms"], incident["end_ms"]
        rows = worker.query(
            "SELECT min(toUnixTimestamp64Milli(time)), max(toUnixTimestamp64Milli(time)), "
            "groupUniqArray(service) FROM tocsin.logs WHERE body LIKE '%database unavailable%' "
            "OR body LIKE '%connection refused%'")
        first, last, services = rows[0]
        assert start <= first and last < end + 60_000
        root = incident["root_cause_service"]
        assert root not in services and set(services) <= set(incident["affected_services"])
        # the database's heartbeat is missing during the outage and present around it
        during = f"toUnixTimestamp64Milli(time) BETWEEN {start + 10_000} AND {end - 20_000}"
        beats = worker.query(f"SELECT countIf({during}), count() FROM tocsin.metrics "
                             f"WHERE service = '{root}' AND name = 'heartbeat'")
        inside, total = beats[0]
        assert inside == 0 and total > 0
        # the call graph the models learn from traces lands in ClickHouse, matching the
        # simulated system's (edges are caller -> callee)
        graph = yaml.safe_load(graph_path.read_text())
        expected = {(caller, callee) for caller, callees in graph.items() for callee in callees}

        def learned(w: WorkerProcess) -> set:
            return {tuple(r) for r in w.query("SELECT caller, callee FROM tocsin.service_edges")}
        worker.wait_until(lambda w: {("orders", "postgres"), ("gateway", "api")} <= learned(w),
                          timeout_s=60, what="the learned call graph")
        assert learned(worker) <= expected
    finally:
        worker.stop()


def test_simulation_as_otlp_is_stored_like_the_collector_would_send_it(kafka_broker, names,
                                                                        tmp_path, monkeypatch,
                                                                        capsys):
    """--format otlp-proto: unkeyed export messages on the otlp_* topics, every record
    stored, and the call graph learned from the OTLP spans."""
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["simulate", "--duration", "10m", "--seed", "5", "--quiet-run",
                 "--format", "otlp-proto", "--labels", str(tmp_path / "labels.json"),
                 "--no-progress", *pinned_run_args(tmp_path, "10m")]) == 0
    wrote = capsys.readouterr().out.split("wrote ", 1)[1].split(" to ")[0]
    sent = {kind.rstrip("s"): int(n.replace(",", "")) for n, kind in
            (part.split() for part in wrote.split(", "))}
    assert set(sent) == {"metric", "log", "span"} and min(sent.values()) > 0

    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["stored"] == sent, what=f"{sent} stored")
        assert sum(worker.status()["rejected"].values()) == 0
        assert worker.query("SELECT count() FROM tocsin.metrics") == [[sent["metric"]]]
        worker.wait_until(lambda w: w.query("SELECT count() FROM tocsin.service_edges")[0][0]
                          > 0, timeout_s=60, what="a call graph learned from OTLP spans")
    finally:
        worker.stop()
