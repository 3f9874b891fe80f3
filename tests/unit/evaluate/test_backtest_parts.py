"""Backtest parts without a store: candidates, the comparison, case labels, stored chunks
typed as the codec types them, and a replay of chunks equal to the stream's steps."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.backtest.candidates import CandidateError, parse_candidate
from pipeline.backtest.compare import compare_detections, compare_problems
from pipeline.backtest.stored import Chunk, StoredTelemetry, normalise
from pipeline.evaluate.cases import case_labels
from pipeline.simulate.labels import LabelsError

T0 = 1_764_000_000_000
MIN = 60_000


def test_candidate_is_rules_or_models_never_both():
    assert parse_candidate(["a.yaml"]).engine == "rules"
    pinned = parse_candidate(models=["robust-seasonal=3", "trace-red=1"])
    assert pinned.models == {"robust-seasonal": 3, "trace-red": 1}
    assert pinned.describe() == "models robust-seasonal=3,trace-red=1"
    with pytest.raises(CandidateError, match="one of the two"):
        parse_candidate(["a.yaml"], ["x=1"])
    with pytest.raises(CandidateError, match="NAME=VERSION"):
        parse_candidate(models=["robust-seasonal"])


def _d(ident, t, detector="r", service="s", severity="high", observed=1.0):
    return {"id": ident, "time": t, "detector": detector, "service": service,
            "state": "firing", "severity": severity, "observed": observed}


def test_detections_compared_by_id_per_detector_and_service():
    current = [_d("a", 1), _d("b", 2), _d("c", 3, observed=2.0), _d("x", 4, "q", "t")]
    candidate = [_d("a", 1), _d("c", 3, observed=2.5), _d("d", 5), _d("x", 4, "q", "t")]
    diff = compare_detections(current, candidate, sample=1)
    assert diff.totals() == {"added": 1, "removed": 1, "changed": 1, "same": 2}
    rows = {(r["detector"], r["service"]): r for r in diff.to_dict(("detector", "service"))}
    assert (rows[("r", "s")]["added"], rows[("q", "t")]["same"]) == (1, 1)
    assert rows[("r", "s")]["samples"]["changed"] == [
        {"id": "c", "time": 3, "state": "firing", "severity": ["high", "high"],
         "observed": [2.0, 2.5]}]
    assert compare_detections(current, current).totals()["same"] == 4


def _p(ident, opened, resolved, affected, causes, severity="high"):
    return {"id": ident, "opened_at": opened, "resolved_at": resolved, "affected": affected,
            "root_causes": causes, "category": "availability", "severity": severity}


def test_problems_matched_by_overlap_and_shared_service():
    current = [_p("p1", T0, T0 + 10 * MIN, ["orders", "postgres"], ["postgres"]),
               _p("p2", T0 + 60 * MIN, None, ["cache"], ["cache"])]
    candidate = [_p("c1", T0 + MIN, T0 + 8 * MIN, ["orders"], ["orders"]),
                 _p("c3", T0 + 30 * MIN, T0 + 35 * MIN, ["auth"], ["auth"])]
    diff = compare_problems(current, candidate, T0 + 120 * MIN)
    assert diff.totals() == {"added": 1, "removed": 1, "changed": 1, "same": 0}
    rows = {r["service"]: r for r in diff.to_dict(("service",))}
    assert rows["postgres"]["changed"] == 1 and rows["auth"]["added"] == 1
    assert rows["cache"]["removed"] == 1


def test_case_labels_of_real_faults():
    labels = case_labels([{"id": "c1", "start": 2_000, "end": 3_000,
                           "root_cause_service": "frontend", "fault_type": "cpu",
                           "category": "resource", "window": {"start": 1_000, "end": 9_000}}])
    assert (labels.start_ms, labels.end_ms) == (1_000, 9_000)
    assert labels.incidents[0].affected_services == ("frontend",)
    with pytest.raises(LabelsError, match=r"cases\[0\]\.end"):
        case_labels([{"id": "c", "start": 1, "root_cause_service": "x"}])


def test_stored_rows_come_back_typed_in_capped_time_ordered_reads():
    ts = pa.timestamp("ms", tz="UTC")
    stored = pa.table({
        "event_id": pa.array([1, 2, 3], pa.uint64()),
        "time": pa.array([T0, T0 + 1, T0 + 2], ts),
        "service": pa.array(["a", "b", "a"]).dictionary_encode(),
        "value": pa.array([1.0, 2.0, 3.0]),
        "attributes": pa.array([[("k", "v")], [], []], pa.map_(pa.string(), pa.string())),
        "ingested_at": pa.array([T0] * 3, ts),
    })
    table = normalise(stored)
    assert table.column_names == ["time", "service", "value", "attributes"]
    assert table.schema.field("service").type == pa.string()
    asked: list[str] = []

    def read(sql: str) -> pa.Table:
        asked.append(sql)
        offset = int(sql.rsplit("OFFSET", 1)[1]) if "OFFSET" in sql else 0
        return stored.slice(offset, 2) if "metrics" in sql else stored.slice(0, 0)

    chunks = list(StoredTelemetry(read, "db", ("a",), max_rows=2).chunks(T0, T0 + 10, 10))
    assert [(c.signal, c.table.num_rows) for c in chunks] == [("metrics", 2), ("metrics", 1)]
    assert all(isinstance(c, Chunk) for c in chunks)
    assert "service IN ('a')" in asked[0] and "ORDER BY time" in asked[0]
