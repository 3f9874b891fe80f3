"""Feedback through a running worker: ``tocsin feedback`` publishes a verdict on the
control topic, the worker stores it with who and when, the problem shows it and
``tocsin evaluate --feedback`` scores it; an unknown problem is refused. The same run
shows the automated diagnostics attached to each problem and its alerts."""

from __future__ import annotations

import asyncio
import json

import pytest

from detectors import builtin_rule_paths
from pipeline.api.operate import list_problems, problem_detail
from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env, settings_from
from tests.integration.test_correlate_stream import read_alerts
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def test_feedback_round_trip(kafka_broker, names, tmp_path, monkeypatch, capsys):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_MODELS="false")
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "50m", "db_outage@15m+10m")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        rows = worker.query("SELECT id, JSONExtractString(root_causes, 1, 'service') FROM "
                            "tocsin.problems FINAL WHERE merged_into = '' ORDER BY opened_at")
        assert rows, worker.log()
        ids, top = [r[0] for r in rows], rows[0][1]
        capsys.readouterr()
        assert main(["feedback", "p-does-not-exist", "--verdict", "true"]) == 2
        assert "no problem with id 'p-does-not-exist'" in capsys.readouterr().err
        assert main(["feedback", ids[0], "--verdict", "true", "--root-cause", top,
                     "--comment", "pool exhausted", "--user", "alice"]) == 0
        worker.wait_until(lambda w: w.query("SELECT count() FROM tocsin.feedback")[0][0] >= 1,
                          timeout_s=60, what="the feedback row")
        # one snapshot of problems and their checks: a problem opened and merged within one
        # correlator batch is stored already merged, yet had its checks run when it opened
        snapshot: dict = {}

        def checked(w: WorkerProcess) -> bool:
            snapshot["problems"] = dict(w.query("SELECT id, merged_into FROM tocsin.problems "
                                                "FINAL"))
            snapshot["runs"] = {r[0] for r in w.query(
                "SELECT DISTINCT problem_id FROM tocsin.problem_diagnostics")}
            unmerged = {p for p, into in snapshot["problems"].items() if not into}
            return unmerged <= snapshot["runs"]
        worker.wait_until(checked, timeout_s=60, what="every problem's diagnostics")
        diagnosed = worker.status()["correlate"]["diagnostics"]
        settings = settings_from(env)
        detail = problem_detail(settings, ids[0])
        listed = list_problems(settings)
        capsys.readouterr()
        assert main(["evaluate", "--feedback", "--from", str(labels["start_ms"]),
                     "--to", str(labels["end_ms"] + 3_600_000), "--json",
                     str(tmp_path / "fb.json")]) == 0
    finally:
        worker.stop()
    assert worker.log().count("Traceback") == 0, worker.log()
    [given] = detail["feedback"]
    assert (given["author"], given["verdict"], given["root_cause"], given["comment"]) == \
        ("alice", "true", top, "pool exhausted")
    assert given["time"].startswith("20")
    row = dict(zip(listed.columns, next(r for r in listed.rows if r[0] == ids[0]),
                   strict=True))
    assert row["feedback"] == "true"
    # every problem had its checks run, read-only and without error, and shows them
    problems, runs = snapshot["problems"], snapshot["runs"]
    assert set(ids) == {p for p, into in problems.items() if not into}
    assert runs <= set(problems) and set(ids) <= runs and diagnosed >= len(ids)
    results = detail["diagnostic_plan"]["results"]
    assert [r["check"] for r in results] == ["error_rate_by_operation", "slowest_callees",
                                             "new_log_templates", "deploys_and_versions"]
    assert all(r["error"] == "" and r["service"] == top for r in results), results
    alerts = asyncio.run(read_alerts(kafka_broker.bootstrap, env["TOCSIN_TOPICS_ALERTS"]))
    assert alerts and all(a["data"]["diagnostic_plan"]["results"] for a in alerts)
    # the verdict is a label for a backtest: the judged incident, found on both sides
    assert main(["backtest", "--rules", *map(str, builtin_rule_paths()), "--from",
                 str(labels["start_ms"]), "--to", str(labels["end_ms"] + 3_600_000),
                 "--warmup", "0", "--feedback", "--quiet", "--json",
                 str(tmp_path / "bt.json")]) == 0
    quality = json.loads((tmp_path / "bt.json").read_text())["quality"]
    assert quality["current"]["incidents"] == quality["candidate"]["incidents"] == 1
    assert quality["current"]["detected"] == quality["candidate"]["detected"] == 1
    figures = json.loads((tmp_path / "fb.json").read_text())
    assert figures["problems"] == len(ids) and figures["judged"] == 1
    assert figures["precision"] == 1.0 and figures["root_cause_ac1"] == 1.0
