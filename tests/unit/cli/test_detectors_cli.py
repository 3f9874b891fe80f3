"""``tocsin rules validate`` / ``tocsin rules test`` command functions."""

from __future__ import annotations

import io
import re
from pathlib import Path

import orjson
import pytest

from detectors import builtin_rule_paths
from pipeline.cli.rules import test_command as rules_test_command
from pipeline.cli.rules import validate_command
from pipeline.events.detection import Detection
from pipeline.simulate import load_system, parse_schedule, simulate, write_ndjson

START = 1_718_000_000_000
BUILTIN = [str(p) for p in builtin_rule_paths()]


@pytest.fixture(scope="module")
def outage_ndjson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 simulated minutes with a database outage from minute 4 to 12, as NDJSON."""
    path = tmp_path_factory.mktemp("replay") / "outage.ndjson"
    sim = simulate(load_system(), START, 15 * 60_000, seed=3,
                   incidents=parse_schedule("db_outage:postgres@4m+8m", START))
    write_ndjson(sim, path)
    with open(path, "ab") as fh:
        fh.write(b'{"type": "metric", "service.name": "x", "name": "m", "value": "high"}\n')
        fh.write(b"not json\n")
    return path


def test_validate_accepts_the_builtin_rules() -> None:
    out = io.StringIO()
    assert validate_command(BUILTIN, out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == len(BUILTIN)
    assert all(" OK (" in line and re.search(r"version [12]\+", line) for line in lines)


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n"
                   "  - name: a\n    signal: metrics\n    window: {size: 5x}\n"
                   "    aggregation: mean\n    condition: '> 1'\n    severity: high\n"
                   "    category: resource\n    title: '{nope}'\n"
                   "  - name: b\n    kind: absence\n    signal: metrics\n    severity: low\n"
                   "    category: data\n    title: t\n")
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("rules:\n  - name: c\n    condition: > 0.5\n")
    out = io.StringIO()
    assert validate_command([str(bad), str(syntax)], out) == 1
    text = out.getvalue()
    assert f"{bad}: rule 'a': field 'window.size': expected a duration" in text
    assert f"{bad}: rule 'a': field 'title': unknown placeholder {{nope}}" in text
    assert f"{bad}: rule 'b': field 'for': missing" in text
    assert f"{syntax}: line 3" in text and "quote conditions" in text
    assert text.rstrip().endswith("4 problems found")


def test_validate_finds_duplicates_across_files(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(Path(BUILTIN[0]).read_text())
    out = io.StringIO()
    assert validate_command([BUILTIN[0], str(copy)], out) == 1
    assert f"{copy}: rule 'high-error-rate': field 'name': duplicate: already defined in " \
           f"{BUILTIN[0]}" in out.getvalue()
    assert validate_command([], io.StringIO()) == 1


def test_rules_test_replays_ndjson_as_a_table(outage_ndjson: Path) -> None:
    out = io.StringIO()
    assert rules_test_command(BUILTIN, str(outage_ndjson), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["time", "state", "severity", "rule"]
    rows = [line.split() for line in lines[1:] if line.startswith("2024-")]
    seen = {(r[1], r[3], r[4]) for r in rows}
    assert ("firing", "heartbeat-missing", "postgres") in seen
    assert ("firing", "database-connection-errors", "orders") in seen
    assert ("resolved", "heartbeat-missing", "postgres") in seen
    assert "field 'value': expected a finite number" in out.getvalue()
    assert "malformed JSON" in out.getvalue()
    summary = lines[-1]
    assert "records from 10 services through 18 rules" in summary
    assert "0 late records, 2 input problems" in summary


def test_rules_test_json_lines(outage_ndjson: Path, capsys: pytest.CaptureFixture) -> None:
    out = io.StringIO()
    assert rules_test_command(BUILTIN, str(outage_ndjson), out, json_lines=True,
                              chunk_ms=300_000) == 0
    detections = [Detection.from_wire(orjson.loads(line))
                  for line in out.getvalue().splitlines()]
    assert detections and all(d.detector_version.startswith("2,1+") for d in detections)
    assert [d.time for d in detections] == sorted(d.time for d in detections)
    assert "detections (" in capsys.readouterr().err  # the summary stays off stdout


def test_rules_test_errors(tmp_path: Path, outage_ndjson: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: 3\n")
    out = io.StringIO()
    assert rules_test_command([str(bad)], str(outage_ndjson), out) == 1
    assert "field 'rules': expected a list" in out.getvalue()
    out = io.StringIO()
    assert rules_test_command(BUILTIN, str(tmp_path / "none.ndjson"), out) == 1
    assert "cannot read" in out.getvalue()
