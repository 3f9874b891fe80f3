"""The knowledge base: built-in content, diagnosis by category and rule, validation."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.events.detection import CATEGORIES
from pipeline.knowledge import (
    KnowledgeError,
    builtin_paths,
    load_knowledge,
    parse_knowledge,
)


def builtin_docs() -> list[tuple[str, dict]]:
    return [(p.name, yaml.safe_load(p.read_text())) for p in builtin_paths()]


def test_builtin_knowledge_covers_every_category_with_a_runbook():
    kb = load_knowledge()
    assert set(kb.categories) == set(CATEGORIES)
    for name in ("system_outage", "performance_degradation", "database_issues"):
        book = kb.runbooks[name]
        assert book.steps and book.escalation_levels and book.follow_ups
    for cat in kb.categories.values():
        plan = cat.plan
        assert plan.automated_checks and plan.escalation_criteria and plan.required_expertise
        assert plan.estimated_resolution_minutes > 0 and cat.runbook in kb.runbooks
        assert all(c.command and c.expect for c in plan.automated_checks)


def test_diagnosis_merges_rule_knowledge_and_fills_placeholders():
    kb = load_knowledge()
    d = kb.diagnose("connectivity", ["db_connection_errors", "error_rate_above_5pct"],
                    ["database connection errors"], service="postgres", host="pg-primary-1")
    assert d.rules == ("database", "error rate")
    assert d.runbook["id"] == "database_issues" and d.runbook["escalation_levels"][1]["contact"]
    checks = d.diagnostic_plan["automated_checks"]
    assert checks[0]["command"] == "pg_isready -h pg-primary-1 -p 5432"
    assert checks[0]["expect"].startswith("accepting connections")
    assert all("{service}" not in c["command"] and "{host}" not in c["command"] for c in checks)
    assert "database administrator" in d.diagnostic_plan["required_expertise"]
    assert d.symptoms[0].startswith("callers log connection refused")  # rule first
    assert "connection refused / connection timeout errors in callers' logs" in d.symptoms


@pytest.mark.parametrize("category, detectors, titles, runbook, minutes", [
    ("resource", ["memory_growth_trend"], [], "resource_exhaustion", 120),
    ("performance", ["cpu_above_80pct"], [], "performance_degradation", 45),
    ("availability", ["heartbeat_missing"], [], "system_outage", 30),
    ("coordination", ["log_burst"], ["coordination_failed bursts"], "coordination_failure", 45),
    ("availability", ["error_rate_above_5pct", "deploy_detected"], [], "configuration_change",
     20),
])
def test_rule_globs_pick_runbooks_whatever_the_exact_rule_names(category, detectors, titles,
                                                                runbook, minutes):
    d = load_knowledge().diagnose(category, detectors, titles, service="svc")
    assert d.runbook["id"] == runbook
    assert d.diagnostic_plan["estimated_resolution_minutes"] == minutes


def test_unknown_category_gets_rule_knowledge_only():
    d = load_knowledge().diagnose("weather", ["cpu_above_80pct"])
    assert d.rules == ("cpu high",) and d.runbook["id"] == "performance_degradation"
    assert d.diagnostic_plan["estimated_resolution_minutes"] == 0


def test_placeholders_stay_when_unknown():
    d = load_knowledge().diagnose("resource", ["memory_above_85pct"])
    assert any("{service}" in c["command"] for c in d.diagnostic_plan["automated_checks"])


def test_later_files_override_categories_and_take_rule_priority(tmp_path):
    extra = tmp_path / "ours.yaml"
    extra.write_text(yaml.safe_dump({"rules": [{
        "name": "our db", "detectors": ["*postgres*"], "runbook": "system_outage",
        "symptoms": ["our own symptom"]}]}))
    kb = load_knowledge([extra])
    d = kb.diagnose("connectivity", ["postgres_down"])
    assert d.rules[0] == "our db" and d.runbook["id"] == "system_outage"
    assert d.symptoms[0] == "our own symptom"


def test_validation_reports_every_problem_with_its_location():
    docs = copy.deepcopy(builtin_docs())
    cats = next(doc for name, doc in docs if name == "categories.yaml")["categories"]
    del cats["security"]
    cats["performance"]["runbook"] = "no_such_book"
    cats["data"]["symtoms"] = ["typo"]
    del cats["resource"]["diagnostic_plan"]["automated_checks"][0]["command"]
    cats["coordination"]["diagnostic_plan"]["estimated_resolution_minutes"] = "soon"
    rules = next(doc for name, doc in docs if name == "rules.yaml")["rules"]
    rules.append({"name": "empty"})
    rules.append({"name": "cpu high", "detectors": ["x"]})
    with pytest.raises(KnowledgeError) as err:
        parse_knowledge(docs)
    text = str(err.value)
    for expected in (
        "knowledge base: no entry for category 'security'",
        "categories.performance.runbook: unknown runbook 'no_such_book'",
        "categories.yaml: categories.data: unknown key 'symtoms'",
        "categories.resource.diagnostic_plan.automated_checks[0].command: expected a "
        "non-empty string",
        "categories.coordination.diagnostic_plan.estimated_resolution_minutes: expected an "
        "integer >= 1, got 'soon'",
        "rules.yaml: rules[10] (empty): needs detectors or titles globs",
        "rules[cpu high]: rule name used more than once",
    ):
        assert expected in text, expected


def test_bad_runbook_and_unknown_category_are_reported():
    docs = copy.deepcopy(builtin_docs())
    books = next(doc for name, doc in docs if name == "runbooks.yaml")["runbooks"]
    books["system_outage"]["escalation_levels"][1]["level"] = 1
    books["data_quality"]["steps"] = []
    docs.append(("extra.yaml", {"categories": {"weather": {}}, "version": 2, "colour": 1}))
    with pytest.raises(KnowledgeError) as err:
        parse_knowledge(docs)
    text = str(err.value)
    assert "runbooks.system_outage.escalation_levels: levels must be distinct" in text
    assert "runbooks.data_quality.steps: expected a non-empty list" in text
    assert "extra.yaml: categories.weather: unknown category" in text
    assert "extra.yaml: version: expected 1, got 2" in text
    assert "extra.yaml: unknown key 'colour'" in text


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    with pytest.raises(KnowledgeError, match="bad.yaml: not valid YAML"):
        load_knowledge([bad])
    with pytest.raises(KnowledgeError, match="missing.yaml: cannot read"):
        load_knowledge([tmp_path / "missing.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(KnowledgeError, match="list.yaml: expected a mapping"):
        load_knowledge([tmp_path / "list.yaml"])
