"""Automated diagnostics on a known incident, in real chdb: a bad deploy of ``orders``
stored as the worker stores it; the checks, run as the correlate agent runs them,
find the failing operations, the callees, the new error template and the version
change before onset."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from pipeline.cli import main
from pipeline.detect.replay import decode_wire, read_ndjson
from pipeline.events.codec import arrow_table
from pipeline.events.schema import SPECS
from pipeline.knowledge.diagnostics import diagnostic_queries, evidence
from pipeline.store import EmbeddedStore
from tests.simulated_day import pinned_run_args

pytestmark = pytest.mark.integration

MIN = 60_000


def test_checks_of_a_bad_deploy(tmp_path):
    ndjson, labels_path = tmp_path / "run.ndjson", tmp_path / "labels.json"
    assert main(["simulate", "--duration", "50m", "--seed", "5", "--incidents",
                 "bad_deploy:orders@30m+15m", "--out", str(ndjson), "--labels",
                 str(labels_path), "--no-progress", *pinned_run_args(tmp_path, "50m")]) == 0
    [incident] = json.loads(labels_path.read_text())["incidents"]
    version = incident["params"]["new_version"]
    store = EmbeddedStore(tmp_path / "store", "tocsin", ttl_days=0)
    try:
        store.ensure_schema()
        by_kind, bad = read_ndjson(ndjson)
        assert bad == []
        for kind, records in by_kind.items():
            columns, rejected = decode_wire(kind, records)
            assert rejected == []
            store.insert_arrow(SPECS[kind].table, arrow_table(columns))
        onset, now = incident["start_ms"], incident["start_ms"] + 10 * MIN
        results = {}
        for query in diagnostic_queries("tocsin", "orders", onset, now):
            answer = store.read_arrow(query.sql)
            results[query.name] = evidence(query, "orders", now, answer.column_names,
                                           [tuple(r.values()) for r in answer.to_pylist()])
    finally:
        store.close()
    ops = results["error_rate_by_operation"]
    assert ops["columns"][:4] == ["operation", "spans", "errors", "error_rate"]
    assert ops["rows"] and ops["rows"][0][3] > 0.05, ops  # the deploy's errors, by operation
    callees = {row[0] for row in results["slowest_callees"]["rows"]}
    assert callees and callees <= {"postgres", "cache", "inventory", "payments"}, callees
    templates = [row[0] for row in results["new_log_templates"]["rows"]]
    assert any("unhandled exception" in t and "<n>" in t for t in templates), templates
    assert any(t.startswith("deploy started: orders") for t in templates), templates
    changes = results["deploys_and_versions"]["rows"]
    versions = [row[1] for row in changes if row[0] == "version"]
    assert version in versions and len(versions) == 2, changes  # the old one, then the new
    new_seen = next(row[2] for row in changes if row[0] == "version" and row[1] == version)
    new_ms = int(datetime.fromisoformat(new_seen).timestamp() * 1000)
    assert onset <= new_ms < onset + MIN  # the change is dated at the onset
    assert any(row[0] == "deploy log" for row in changes), changes
