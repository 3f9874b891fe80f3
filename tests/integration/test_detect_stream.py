"""Built-in rules in a running worker: simulated incidents through the real broker raise
the detections operators expect, on the right service, inside the labelled windows; a
quiet run raises none, and no late record, even on a machine whose cores are all busy."""

from __future__ import annotations

import json
import os
import time

import pytest

from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.cpu_load import busy_cores
from tests.simulated_day import pinned_run_args
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

SLACK_MS = 10 * 60_000
FIRING = ("SELECT detector, service, toUnixTimestamp64Milli(time) FROM tocsin.detections "
          "WHERE state = 'firing' ORDER BY time, detector, service")


def simulate(env: dict[str, str], monkeypatch, labels_path, duration: str,
             incidents: str | None, graph=None, allow_overlap: bool = False) -> dict:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = ["simulate", "--duration", duration, "--seed", "11", "--labels", str(labels_path),
            "--no-progress", *pinned_run_args(labels_path.parent, duration)]
    args += ["--incidents", incidents] if incidents else ["--quiet-run"]
    args += ["--graph", str(graph)] if graph else []
    args += ["--allow-overlap"] if allow_overlap else []
    assert main(args) == 0
    return json.loads(labels_path.read_text())


def wait_for_all(worker: WorkerProcess, labels: dict) -> None:
    """Until detection has seen event time reach the end of the run, the correlator has
    taken in all of it and has gone quiet."""
    lateness_ms = 60_000
    last = labels["end_ms"] - labels.get("interval_ms", 10_000) - lateness_ms
    worker.wait_until(lambda w: w.status()["detect"]["watermark_ms"] >= last,
                      timeout_s=240, what="detection to reach the end of the run")
    # the correlator's event time follows the service-graph step's ticks, which stop at
    # the last whole minute detection passed
    worker.wait_until(lambda w: w.status()["correlate"]["watermark_ms"] >= last - 60_000,
                      timeout_s=240, what="the correlator to reach the end of the run")
    seen = {"decisions": -1}

    def settled(w: WorkerProcess) -> bool:
        decisions = sum(w.status()["correlate"]["decisions"].values())
        quiet, seen["decisions"] = decisions == seen["decisions"], decisions
        if not quiet:
            time.sleep(3.0)  # the correlate agent flushes a partial batch within 0.5 s
        return quiet
    worker.wait_until(settled, timeout_s=120, what="the correlator to catch up")
    assert worker.status()["detect"]["errors"] == 0, worker.log()


EXPECTED = {  # scenario -> rule that must fire on the root-cause service
    "db_outage": "database-connection-errors",
    "error_spike": "high-error-rate",
    "coordination_failure": "coordination-failures",
    "memory_leak": "memory-growth",
}


def test_incidents_raise_their_detections_and_nothing_else(kafka_broker, names, tmp_path,
                                                           monkeypatch):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "210m",
                      "db_outage@30m+10m,error_spike:orders@70m+10m,"
                      "coordination_failure@110m+10m,memory_leak:auth@140m+60m")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        firing = worker.query(FIRING)
    finally:
        worker.stop()
    incidents = labels["incidents"]
    assert [i["scenario"] for i in incidents] == list(EXPECTED)
    for incident in incidents:
        rule, root = EXPECTED[incident["scenario"]], incident["root_cause_service"]
        if incident["scenario"] == "db_outage":  # the database's callers log the errors
            services = set(incident["affected_services"]) - {root}
        else:
            services = {root}
        hits = [(d, s, t) for d, s, t in firing if d == rule and s in services
                and incident["start_ms"] <= t <= incident["end_ms"] + SLACK_MS]
        assert hits, f"{rule} did not fire on {services} for {incident}: {firing}"
    # every firing detection belongs to some incident's window (no false alarms)
    for detector, service, t in firing:
        assert any(i["start_ms"] <= t <= i["end_ms"] + SLACK_MS for i in incidents), \
            f"{detector} fired on {service} at {t} outside every incident"


def test_quiet_run_raises_no_detection(kafka_broker, names, tmp_path, monkeypatch):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "2h", None)
    assert labels["incidents"] == []
    # the simulation is in event order per partition: however slow the worker, no
    # record may arrive behind the watermark (other processes keep every core busy)
    with busy_cores() as spinners:
        assert len(spinners) == (os.cpu_count() or 2)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            wait_for_all(worker, labels)
            assert worker.query(FIRING) == []
            assert worker.status()["detect"]["late_records"] == 0
        finally:
            worker.stop()
