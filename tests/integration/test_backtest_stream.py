"""Backtest equivalence: replaying what a running worker stored, through the same rules,
gives the detections (and problems) the stream gave; the replay writes nothing."""

from __future__ import annotations

import json

import pytest

from detectors import builtin_rule_paths
from pipeline.cli import main
from pipeline.kafka import find_free_port
from pipeline.store import open_store
from tests.conftest import pipeline_env, settings_from
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

COUNTS = ("SELECT (SELECT count() FROM tocsin.detections), (SELECT count() FROM "
          "tocsin.problems), (SELECT count() FROM tocsin.metrics)")


def test_backtest_of_the_current_rules_gives_the_stream_s_detections(
        kafka_broker, names, tmp_path, monkeypatch, capsys):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_MODELS="false")
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "90m",
                      "db_outage@20m+10m,error_spike:orders@55m+10m")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for_all(worker, labels)
        before = worker.query(COUNTS)
        firing = worker.query("SELECT count() FROM tocsin.detections WHERE state = 'firing'")
    finally:
        worker.stop()
    assert firing[0][0] > 0, worker.log()
    out = tmp_path / "backtest.json"
    capsys.readouterr()
    assert main(["backtest", "--rules", *map(str, builtin_rule_paths()), "--from",
                 str(labels["start_ms"]), "--to", str(labels["end_ms"] + 3_600_000),
                 "--warmup", "0", "--chunk", "7m", "--labels", str(tmp_path / "labels.json"),
                 "--json", str(out)]) == 0
    shown = capsys.readouterr()
    report = json.loads(out.read_text())
    detections = report["detections"]
    assert detections["current"] == before[0][0] > 0
    assert (detections["added"], detections["removed"], detections["changed"]) == (0, 0, 0), \
        json.dumps(detections["by_detector"], indent=1)
    assert detections["same"] == detections["current"] == detections["candidate"]
    # the correlator, fed the same detections in the same event-time order, agrees too
    problems = report["problems"]
    assert (problems["added"], problems["removed"], problems["changed"]) == (0, 0, 0), problems
    assert problems["same"] == problems["current"] > 0
    assert report["quality"]["candidate"] == report["quality"]["current"]
    assert report["replay"]["records"] > 0 and report["replay"]["late_records"] == 0
    assert report["quality"]["candidate"]["detected"] == 2
    assert "records/s" in shown.out and "records/s" in shown.err
    # the replay wrote nothing: the store holds what the worker left
    store = open_store(settings_from(env).store)
    try:
        after = store.query(COUNTS).rows
    finally:
        store.close()
    assert [list(r) for r in after] == before
