"""``tocsin notify`` against a real Alertmanager (v0.35.0, built by
scripts/build-alertmanager.sh): a database outage simulated through a real worker opens a
problem that shows in Alertmanager's API with its labels, stays there through re-posts,
shows its acknowledgement, and ends when the problem resolves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.events.times import format_ms, parse_rfc3339_ms
from pipeline.kafka import find_free_port
from tests.alertmanager_process import AlertmanagerProcess, alertmanager_binary
from tests.conftest import pipeline_env
from tests.integration.test_detect_stream import wait_for_all
from tests.simulated_day import pinned_system
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


class NotifyProcess:
    """``python -m pipeline.cli notify`` with ``env``; stopped by its PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        self.env.update(env, TOCSIN_WORKER_LOG_LEVEL="info")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "notify"], env=self.env,
            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return -9


def wait_for(predicate, what: str, timeout_s: float, *logs) -> object:
    """Poll ``predicate()`` until it returns something truthy; fail with the logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n" +
                         "\n----\n".join(log() for log in logs))


def simulate(labels_path: Path, start_ms: int, duration: str, seed: int,
             *extra: str) -> dict:
    """``tocsin simulate`` from ``start_ms`` (the test's environment is set); its labels."""
    args = ["simulate", "--start", format_ms(start_ms), "--duration", duration, "--seed",
            str(seed), "--labels", str(labels_path), "--no-progress", *extra]
    assert main(args) == 0
    return json.loads(labels_path.read_text())


@pytest.mark.timeout(900)
def test_problem_opens_updates_and_resolves_in_alertmanager(kafka_broker, names, tmp_path,
                                                            monkeypatch):
    alertmanager_binary()  # fails naming the build script when it was not built
    graph = tmp_path / "graph.yaml"
    am = AlertmanagerProcess(tmp_path / "alertmanager").start()
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_CORRELATE_DEPENDENCIES=str(graph), TOCSIN_DETECT_MODELS="false",
                       TOCSIN_CORRELATE_RESOLVE_HOLD_MS="1m",
                       TOCSIN_NOTIFY_ALERTMANAGER_URLS=am.url,
                       TOCSIN_NOTIFY_RESEND_INTERVAL_MS="2s", TOCSIN_NOTIFY_LABELS="env=test",
                       TOCSIN_NOTIFY_CONSOLE_URL="http://tocsin.test:6066")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the outage is still going on when this first stretch of telemetry ends (20 min ago)
    start_ms = (int(time.time()) // 60 - 70) * 60_000
    # both stretches see the load of a run ending at the shop's daily peak, whatever the hour
    system = str(pinned_system(tmp_path / "system.yaml", start_ms + 70 * 60_000))
    first = simulate(tmp_path / "labels.json", start_ms, "50m", 11,
                     "--incidents", "db_outage@30m+20m", "--graph", str(graph),
                     "--system", system)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    notify = NotifyProcess(env, tmp_path / "notify.log")
    logs = (worker.log, lambda: notify.log(), am.log)
    try:
        wait_for_all(worker, first)
        # opened: the database's problem is in Alertmanager with Tocsin's labels
        def postgres_alert() -> dict | None:
            found = [a for a in am.alerts(alertname="TocsinProblem")
                     if a["labels"].get("service") == "postgres"]
            return found[0] if found else None

        alert = wait_for(postgres_alert, "the outage's alert in Alertmanager", 120, *logs)
        labels = alert["labels"]
        problem_id = labels["problem_id"]
        [[status, category, severity]] = worker.query(
            f"SELECT status, category, severity FROM tocsin.problems FINAL "
            f"WHERE id = '{problem_id}'")
        assert status == "open"
        assert labels == {"alertname": "TocsinProblem", "problem_id": problem_id,
                          "severity": severity, "category": category, "service": "postgres",
                          "scope": "default", "env": "test"}
        assert alert["status"]["state"] == "active"
        notes = alert["annotations"]
        assert notes["status"] == "open" and notes["summary"]
        assert notes["root_cause"].startswith("postgres")
        assert "postgres" in notes["services"].split(", ")
        assert alert["generatorURL"] == f"http://tocsin.test:6066/console/problems/{problem_id}"
        assert notes["runbook_url"] == alert["generatorURL"] + "#runbook"
        assert parse_rfc3339_ms(alert["startsAt"]) <= parse_rfc3339_ms(alert["endsAt"])

        # re-posted while open: its endsAt moves on (it is valid for 4 resends only)
        first_end = parse_rfc3339_ms(alert["endsAt"])
        wait_for(lambda: any(parse_rfc3339_ms(a["endsAt"]) > first_end
                             for a in am.alerts(problem_id=problem_id)),
                 "a re-post of the open problem", 60, *logs)

        # updated: an acknowledgement shows in the alert's annotations
        monkeypatch.setenv("USER", "tester")
        assert main(["ack", problem_id, "--by", "tester", "--comment", "on it"]) == 0
        wait_for(lambda: [a for a in am.alerts(problem_id=problem_id)
                          if a["annotations"]["status"] == "acknowledged by tester"],
                 "the acknowledgement in Alertmanager", 120, *logs)

        # a restarted notify learns the open problem from the topic and keeps re-posting it
        assert notify.stop() == 0, notify.log()
        latest_end = max(parse_rfc3339_ms(a["endsAt"]) for a in am.alerts(problem_id=problem_id))
        notify = NotifyProcess(env, tmp_path / "notify.log")
        wait_for(lambda: any(parse_rfc3339_ms(a["endsAt"]) > latest_end
                             for a in am.alerts(problem_id=problem_id)),
                 "a re-post by the restarted notify", 60, *logs)
        assert re.search(r"read [1-9]\d* earlier alerts: [1-9]\d* open problems to re-post",
                         notify.log()), notify.log()

        # resolved: the outage is over; the problem resolves and its alert ends (a resolve
        # Alertmanager received, not an alert left to expire)
        resolves = am.metric("alertmanager_alerts_received_total", status="resolved",
                             version="v2")
        second = simulate(tmp_path / "labels2.json", first["end_ms"], "15m", 12, "--quiet-run",
                          "--system", system)
        wait_for_all(worker, second)
        wait_for(lambda: worker.query(f"SELECT status FROM tocsin.problems FINAL "
                                      f"WHERE id = '{problem_id}'") == [["resolved"]],
                 "the problem to resolve", 120, *logs)
        wait_for(lambda: am.alerts(problem_id=problem_id) == [],
                 "the alert to end in Alertmanager", 60, *logs)
        assert am.metric("alertmanager_alerts_received_total", status="resolved",
                         version="v2") > resolves
        assert am.metric("alertmanager_alerts_invalid_total", version="v2") == 0, am.log()
    finally:
        code = notify.stop()
        worker.stop()
        am.stop()
    assert code == 0, notify.log()
    assert "alerts consumed, 0 dead-lettered" in notify.log(), notify.log()
