"""Rule files: parsing, defaults, versions, and every validation problem named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import detectors
from detectors import (
    Condition,
    RuleFileError,
    builtin_rule_paths,
    format_duration,
    load_rules,
    parse_duration,
    parse_rules,
)

GOOD = {
    "name": "errors", "signal": "metrics", "select": {"metric": "http.server.error.ratio"},
    "window": {"type": "hopping", "size": "5m", "step": "1m"}, "aggregation": "mean",
    "condition": "> 0.05", "clear": "< 0.04", "for": "2m", "severity": "high",
    "category": "availability", "title": "{service}: {value:.1%}",
}


def write(tmp_path: Path, name: str, *rules: dict, version: str | None = None) -> Path:
    doc: dict = {"rules": list(rules)}
    if version is not None:
        doc["version"] = version
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def problems_of(tmp_path: Path, *rules: dict) -> list[str]:
    path = write(tmp_path, "bad.yaml", *rules)
    with pytest.raises(RuleFileError) as info:
        load_rules([path])
    return info.value.problems


def test_public_api_is_pinned() -> None:
    assert set(detectors.__all__) == {
        "AGGREGATIONS", "KINDS", "WINDOW_TYPES", "Baseline", "Condition", "LabelMatcher",
        "ProcessStats", "Rule", "RuleEngine", "RuleFileError", "RuleSet", "Selector",
        "ServiceState", "RuleStateError", "Window", "builtin_rule_paths", "format_duration",
        "load_rules", "parse_duration", "parse_rule_text", "parse_rules"}
    for name in detectors.__all__:
        assert getattr(detectors, name) is not None


@pytest.mark.parametrize(("text", "ms"), [("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000),
                                          ("500ms", 500), ("1h30m", 5_400_000), (0, 0),
                                          ("2d", 172_800_000)])
def test_durations(text: object, ms: int) -> None:
    assert parse_duration(text) == ms
    if ms:
        assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["5", "5 minutes", "-1m", "", "1.5h", 30, True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_conditions() -> None:
    c = Condition.parse(">= 1e3")
    assert (c.op, c.threshold, c.text) == (">=", 1000.0, ">= 1000")
    assert c.holds([999.0, 1000.0, float("nan")]).tolist() == [False, True, False]
    assert Condition.parse("!= 0").holds([float("nan")]).tolist() == [False]
    assert c.negated() == Condition("<", 1000.0)
    assert Condition("<", 1.0).overlaps(Condition(">", 0.5))
    assert not Condition("<", 0.5).overlaps(Condition(">", 0.5))
    for bad in ("0.05", "> ", "=> 1", "> five", 5):
        with pytest.raises(ValueError, match="quoted"):
            Condition.parse(bad)


def test_a_good_file_loads_with_defaults_and_version(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", GOOD, version="7")
    rs = load_rules([path])
    rule = rs.rules[0]
    assert rs.version.startswith("7+") and len(rs.version) == 10
    assert (rule.kind, rule.group_by, rule.for_ms, rule.confidence) == (
        "threshold", ("service",), 120_000, 1.0)
    assert (rule.window.type, rule.window.size_ms, rule.window.step_ms) == (
        "hopping", 300_000, 60_000)
    assert rule.clear_condition == Condition("<", 0.04)
    assert rule.entity == "http.server.error.ratio"
    assert rs.sources == (str(path),)
    # any edit changes the version; an edit of the text only keeps the digest
    edited = write(tmp_path, "r.yaml", {**GOOD, "title": "other {value}"}, version="7")
    again = load_rules([edited])
    assert again.version != rs.version and again.rules[0].digest == rule.digest
    retuned = load_rules([write(tmp_path, "r.yaml", {**GOOD, "condition": "> 0.06"})])
    assert retuned.rules[0].digest != rule.digest


def test_hysteresis_gives_a_clear_condition(tmp_path: Path) -> None:
    rule = dict(GOOD, hysteresis=0.2)
    del rule["clear"]
    rs = parse_rules(yaml.safe_dump({"rules": [rule]}))
    assert rs.rules[0].clear_condition.op == "<"
    assert rs.rules[0].clear_condition.threshold == pytest.approx(0.04)
    low = dict(rule, condition="< 100")
    assert parse_rules(yaml.safe_dump({"rules": [low]})).rules[0].clear_condition == \
        Condition(">", 120.0)


def test_every_problem_names_file_rule_and_field(tmp_path: Path) -> None:
    bad = {
        "name": "broken", "signal": "metrics", "select": {"metric": "=~ (", "pod": "x"},
        "window": {"type": "hopping", "size": "5m", "step": "2m"}, "aggregation": "median",
        "condition": "> 1", "clear": "< 2", "for": "soon", "severity": "urgent",
        "category": "misc", "title": "{service} {valu}", "description": "{value:d} {}",
        "confidence": 1.5, "symptoms": "one", "grup_by": ["host"],
    }
    problems = problems_of(tmp_path, bad)
    path = str(tmp_path / "bad.yaml")
    assert all(p.startswith(f"{path}: rule 'broken': field '") for p in problems), problems
    fields = {p.split("field '")[1].split("'")[0] for p in problems}
    assert fields == {"grup_by", "select.metric", "select.pod", "window.step", "aggregation",
                      "clear", "for", "severity", "category", "title", "description",
                      "confidence", "symptoms"}
    text = "\n".join(problems)
    for expected in ("bad regex", "did you mean", "not a multiple of step", "'median'",
                     "overlaps the condition", "expected a duration", "'urgent'",
                     "unknown placeholder {valu}", "positional placeholder",
                     "bad format for a number", "from 0 to 1"):
        assert expected in text, expected


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"window": {"type": "tumbling", "size": "5m", "step": "1m"}}, "window.step", "tumbling"),
    ({"window": {"type": "hopping", "size": "1m", "step": "5m"}}, "window.step", "<= size"),
    ({"window": {"type": "sliding", "size": "1m", "step": "10s"}}, "window.step", "no step"),
    ({"window": {"type": "rolling", "size": "1m"}}, "window.type", "tumbling, hopping"),
    ({"window": {"type": "hopping", "size": "5m"}}, "window.step", "needs a step"),
    ({"window": "5m"}, "window", "expected a mapping"),
    ({"signal": "events"}, "signal", "metrics, logs, traces"),
    ({"kind": "spike"}, "kind", "threshold, ratio"),
    ({"group_by": ["service", "pod"]}, "group_by", "unknown label 'pod'"),
    ({"group_by": ["host", "host"]}, "group_by", "listed twice"),
    ({"condition": "> -1", "aggregation": "count"}, "condition", "empty window"),
    ({"min_samples": 0}, "min_samples", "integer >= 1"),
    ({"min_fit": 0.5}, "min_fit", "only trend and exhaustion rules"),
    ({"capacity": "100%"}, "capacity", "only exhaustion rules"),
    ({"hysteresis": 0.1}, "hysteresis", "not both"),
    ({"numerator": {}}, "numerator", "only ratio rules"),
    ({"baseline": {"halflife": "1h"}}, "baseline", "level"),
    ({"baseline": {"halflife": "1h", "ratio": "> 2", "clear_ratio": "< 3"}},
     "baseline.clear_ratio", "overlaps"),
    ({"name": "has space"}, "name", "letters, digits"),
    ({"title": ""}, "title", "missing"),
])
def test_single_problems(tmp_path: Path, change: dict, field: str, message: str) -> None:
    problems = problems_of(tmp_path, {**GOOD, **change})
    assert any(f"field '{field}'" in p and message in p for p in problems), problems


def test_kind_specific_rules(tmp_path: Path) -> None:
    absence = {"name": "gone", "kind": "absence", "signal": "metrics", "severity": "high",
               "category": "availability", "title": "{service} silent", "window": GOOD["window"],
               "condition": "> 1"}
    problems = problems_of(tmp_path, absence)
    assert {p.split("field '")[1].split("'")[0] for p in problems} == {"window", "condition",
                                                                       "for"}
    trend = {**GOOD, "kind": "trend", "signal": "logs"}
    problems = problems_of(tmp_path, trend)
    assert any("field 'signal'" in p and "trend needs numeric" in p for p in problems)
    assert any("field 'aggregation'" in p for p in problems)
    ratio = {**GOOD, "kind": "ratio", "aggregation": "mean"}
    problems = problems_of(tmp_path, ratio)
    assert any("field 'numerator'" in p and "missing" in p for p in problems)
    assert any("field 'aggregation'" in p and "count or sum" in p for p in problems)
    logs = {**GOOD, "signal": "logs", "select": {"severity": "LOUD", "contains": [],
                                                  "metric": "x", "regex": "(["}}
    problems = problems_of(tmp_path, logs)
    fields = {p.split("field '")[1].split("'")[0] for p in problems}
    assert {"select.severity", "select.contains", "select.metric", "select.regex",
            "aggregation"} <= fields


def test_file_level_problems(tmp_path: Path) -> None:
    broken = tmp_path / "syntax.yaml"
    broken.write_text("rules:\n  - name: x\n   bad: [\n")
    listless = tmp_path / "listless.yaml"
    listless.write_text("version: 1\nrule: []\n")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RuleFileError) as info:
        load_rules([broken, listless, missing])
    text = "\n".join(info.value.problems)
    assert f"{broken}: line " in text and "YAML syntax error" in text
    assert f"{listless}: field 'rule': unknown key; did you mean 'rules'?" in text
    assert f"{listless}: field 'rules': expected a list" in text
    assert f"{missing}: cannot read" in text
    with pytest.raises(RuleFileError, match="no rule files"):
        load_rules([])


def test_duplicate_names_within_and_across_files(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, GOOD, GOOD)
    assert any("rule 'errors': field 'name': duplicate: rule #1" in p for p in problems)
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(RuleFileError) as info:
        load_rules([a, b])
    assert info.value.problems == [
        f"{b}: rule 'errors': field 'name': duplicate: already defined in {a}"]


def test_builtin_rules_load_and_cover_the_classics() -> None:
    paths = builtin_rule_paths()
    assert paths and all(p.suffix == ".yaml" for p in paths)
    rs = load_rules(paths)
    names = {r.name for r in rs.rules}
    assert {"high-error-rate", "elevated-error-rate", "memory-growth", "coordination-failures",
            "database-connection-errors", "slow-responses", "low-throughput",
            "cpu-saturation", "memory-high", "heartbeat-missing"} <= names
    assert {r.kind for r in rs.rules} >= {"threshold", "trend", "log_count", "absence",
                                          "ratio"}
    assert {r.signal for r in rs.rules} == {"metrics", "logs", "traces"}
    assert rs.version.startswith("2,1+")  # the files' versions, then the content hash
