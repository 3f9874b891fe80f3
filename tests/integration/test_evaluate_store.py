"""`tocsin evaluate` reads problems and detections back from ClickHouse and scores them."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pytest

from pipeline.cli import main
from pipeline.evaluate import evaluate, result_to_dict
from pipeline.kafka import find_free_port
from pipeline.simulate import save_labels
from pipeline.store import EmbeddedStore
from tests.unit.evaluate.test_evaluate import DETECTIONS, LABELS, PROBLEMS, SLACK

pytestmark = pytest.mark.integration

TS = pa.timestamp("ms", tz="UTC")


def problem_rows(problems: list[dict], version: int) -> pa.Table:
    return pa.table({
        "id": [p["id"] for p in problems],
        "version": pa.array([version] * len(problems), pa.uint32()),
        "status": ["resolved" if p["resolved_at"] else "open" for p in problems],
        "opened_at": pa.array([p["opened_at"] for p in problems], TS),
        "updated_at": pa.array([p["opened_at"] for p in problems], TS),
        "resolved_at": pa.array([p["resolved_at"] for p in problems], TS),
        "affected": [p["affected"] for p in problems],
        "root_causes": [orjson.dumps([c if isinstance(c, dict) else {"service": c, "score": 1.0}
                                      for c in p["root_causes"]]).decode() for p in problems],
        "detection_ids": [p["detections"] for p in problems],
    })


def test_evaluate_command_scores_what_the_store_holds(tmp_path, monkeypatch, capsys):
    store = EmbeddedStore(tmp_path / "store", ttl_days=0)
    store.ensure_schema()
    # an older version of every problem, with nothing resolved and no root causes: the
    # evaluation must use the latest version only
    stale = [{**p, "resolved_at": None, "root_causes": ["nobody"]} for p in PROBLEMS]
    store.insert_arrow("problems", problem_rows(stale, version=1))
    store.insert_arrow("problems", problem_rows(PROBLEMS, version=2))
    store.insert_arrow("detections", pa.table({
        "id": [d["id"] for d in DETECTIONS],
        "time": pa.array([d["time"] for d in DETECTIONS], TS),
        "service": [d["service"] for d in DETECTIONS],
        "state": ["firing"] * len(DETECTIONS),
    }))
    store.close()
    labels_path = tmp_path / "labels.json"
    save_labels(LABELS, labels_path)
    monkeypatch.setenv("TOCSIN_STORE_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("TOCSIN_WORKER_WEB_PORT", str(find_free_port()))
    out = tmp_path / "evaluation.json"

    assert main(["evaluate", "--labels", str(labels_path), "--slack", "60s",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AC@1 0.25" in printed and "AC@3 0.50" in printed
    from_store = json.loads(out.read_text())
    expected = result_to_dict(evaluate(LABELS, PROBLEMS, DETECTIONS, match_slack_ms=SLACK))
    assert from_store == json.loads(json.dumps(expected))
    assert (from_store["summary"]["detected"], from_store["summary"]["false_alarms"]) == (3, 3)
    assert from_store["grouping"]["correct_pairs"] == 5


def test_evaluate_command_scores_real_fault_cases(tmp_path, monkeypatch, capsys):
    """Case labels (a JSON list, as labels.json of a real fault set) are recognised and
    scored; --json - prints the JSON alone."""
    from tests.unit.evaluate.test_cases import LABELS as CASES

    minute = 60_000
    problems = [
        {"id": "bg", "opened_at": 2 * minute, "resolved_at": None, "affected": ["cart"],
         "root_causes": ["cart"], "detections": ["d0"]},  # open long before c1: not c1's
        {"id": "p1", "opened_at": 10 * minute + 30_000, "resolved_at": 14 * minute,
         "affected": ["cart"], "root_causes": ["cart", "frontend"], "detections": ["d1"]},
        {"id": "p2", "opened_at": 21 * minute, "resolved_at": 25 * minute,
         "affected": ["checkout"], "root_causes": ["frontend", "checkout"], "detections": ["d2"]},
    ]
    def stored(path, until_ms: int) -> None:
        """A store with the problems and telemetry from 0 to ``until_ms``."""
        store = EmbeddedStore(path, ttl_days=0)
        store.ensure_schema()
        store.insert_arrow("problems", problem_rows(problems, version=1))
        store.insert_arrow("metrics", pa.table({
            "time": pa.array([0, until_ms], TS), "service": ["cart", "cart"],
            "name": ["up", "up"], "value": [1.0, 1.0]}))
        store.close()

    stored(tmp_path / "store", 64 * minute)
    labels_path = tmp_path / "labels.json"
    labels_path.write_text(json.dumps(CASES))
    monkeypatch.setenv("TOCSIN_STORE_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("TOCSIN_WORKER_WEB_PORT", str(find_free_port()))

    assert main(["evaluate", "--labels", str(labels_path), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "cases"
    assert data["summary"]["detected"] == 2 and data["summary"]["ac_at_1"] == 0.25
    assert data["summary"]["ac_at_3"] == 0.5 and data["summary"]["false_problems"] == 0
    assert [c["problems"] for c in data["cases"]] == [["p1"], ["p2"], [], []]
    assert data["by_fault_type"]["network_delay"]["ac_at_1"] == 0.5

    # telemetry of the first half hour only (one case file, or one day of two, replayed):
    # the cases it does not cover are not scored, not counted as misses
    stored(tmp_path / "half", 30 * minute)
    monkeypatch.setenv("TOCSIN_STORE_PATH", str(tmp_path / "half"))
    assert main(["evaluate", "--labels", str(labels_path), "--json", "-"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [c["id"] for c in data["cases"]] == ["c1", "c2", "c3"]
    assert data["summary"]["ac_at_3"] == round(2 / 3, 4) or \
        abs(data["summary"]["ac_at_3"] - 2 / 3) < 1e-3
    assert "scoring the 3 of 4 cases" in captured.err
