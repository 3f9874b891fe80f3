"""Hostile rule files: templates that reach into objects or ask for huge strings, regexes
that backtrack catastrophically or need a backtracking engine. Each is refused at load time
with the rule, the field and the reason; a worker's reload keeps the rules it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from detectors import RuleEngine, RuleFileError, builtin_rule_paths, load_rules, parse_rules
from detectors.columns import Batch
from detectors.selectors import parse_selector
from detectors.templates import check_template, render, template_fields
from pipeline.correlate import Matcher, MatcherError
from pipeline.detect.engines import RuleEngineRunner
from pipeline.events.patterns import PatternError, compile_pattern

T0 = 1_699_999_200_000
M = 60_000
GOOD = {
    "name": "errors", "signal": "metrics", "select": {"metric": "http.server.error.ratio"},
    "window": {"type": "hopping", "size": "5m", "step": "1m"}, "aggregation": "mean",
    "condition": "> 0.05", "clear": "< 0.04", "for": "2m", "severity": "high",
    "category": "availability", "title": "{service}: {value:.1%}",
}
LOUD = {"name": "loud", "kind": "log_count", "select": {"regex": "(a+)+$"},
        "window": {"type": "tumbling", "size": "1m"}, "aggregation": "count",
        "condition": "> 0", "severity": "low", "category": "availability",
        "title": "{service}: {value:.0f} logs"}
FIELDS = template_fields(["region"])


def problems(*rules: dict) -> list[str]:
    with pytest.raises(RuleFileError) as info:
        parse_rules(yaml.safe_dump({"rules": list(rules)}), "hostile.yaml")
    return info.value.problems


def one_problem(change: dict) -> str:
    found = problems({**GOOD, **change})
    assert len(found) == 1, found
    return found[0]


# -- templates ----------------------------------------------------------------------------

@pytest.mark.parametrize(("title", "reason"), [
    ("{value.__class__.__mro__}", "attribute and index access are not allowed"),
    ("{service.__class__}", "attribute and index access are not allowed"),
    ("{value[0]}", "attribute and index access are not allowed"),
    ("{value:>300000000}", "width 300000000 is above the limit of 100"),
    ("{service:>101}", "width 101 is above the limit of 100"),
    ("{value:.300000000f}", "precision 300000000 is above the limit of 20"),
    ("{value:{service}}", "nested fields in a format spec are not allowed"),
    ("{value:>{threshold}}", "nested fields in a format spec are not allowed"),
    ("{service!a}", "conversion !a is not allowed"),
    ("{value:not a spec}", "is not a format spec"),
    ("{0}", "positional placeholder"),
    ("{}", "positional placeholder"),
])
def test_hostile_templates_are_refused_naming_rule_field_and_template(title: str,
                                                                      reason: str) -> None:
    problem = one_problem({"title": title})
    assert problem.startswith("hostile.yaml: rule 'errors': field 'title': "), problem
    assert reason in problem
    assert f"(in template {title!r})" in problem


def test_a_hostile_description_is_refused_too() -> None:
    problem = one_problem({"description": "ok {service} then {value:>300000000}"})
    assert "field 'description'" in problem and "width 300000000" in problem
    long = "x" * 200 + "{value.imag}"
    problem = one_problem({"description": long})
    assert "attribute and index access" in problem and f"(in template {long[:77] + '…'!r})" \
        in problem


@pytest.mark.parametrize(("template", "context", "expected"), [
    ("{service}: error rate {value:.1%} > {threshold:.0%}",
     {"service": "orders", "value": 0.123, "threshold": 0.05}, "orders: error rate 12.3% > 5%"),
    ("{value:+.0%} vs {baseline:.2%}", {"value": 0.5, "baseline": 0.25}, "+50% vs 25.00%"),
    ("[{service:>8}] [{host:<4}] [{region:^7}]",
     {"service": "api", "host": "h1", "region": "eu"}, "[     api] [h1  ] [  eu   ]"),
    ("{value:08.3f} {samples:,.0f} {service!r} {host!s}",
     {"value": 3.14159, "samples": 12345.0, "service": "a", "host": "b"},
     "0003.142 12,345 'a' b"),
    ("{{literal}} {value:.0f}", {"value": 2.0}, "{literal} 2"),
    ("{value:>100}", {"value": 1.0}, " " * 97 + "1.0"),
])
def test_ordinary_templates_are_accepted_and_render_as_str_format(
        template: str, context: dict, expected: str) -> None:
    assert check_template(template, FIELDS) == []
    assert render(template, context) == expected == template.format_map(context)


def test_render_never_looks_beyond_plain_names() -> None:
    # Rules built in code skip validation; rendering applies the same limits.
    context = {"value": 0.5, "service": "orders", "threshold": 1}
    for template in ("{value.__class__.__mro__}", "{value:>300000000}", "{value:{service}}",
                     "{service[0]}", "{nope}", "{value:.1%"):
        assert render(template, context) == template
    assert render("{value:.1f}", {"value": None}) == "{value:.1f}"


def test_a_rule_with_a_hostile_template_cannot_render_one() -> None:
    with pytest.raises(RuleFileError):
        parse_rules(yaml.safe_dump({"rules": [{**GOOD, "title": "{value:>300000000}"}]}))


# -- regexes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(\w+) \1", r"a backreference \1 is not supported by RE2"),
    ("(?P<w>x)(?P=w)", "a backreference (?P=name) is not supported by RE2"),
    ("a(?=b)", "lookahead (?=…) is not supported by RE2"),
    ("a(?!b)", "lookahead (?!…) is not supported by RE2"),
    ("(?<=a)b", "lookbehind (?<=…) is not supported by RE2"),
    ("(?<!a)b", "lookbehind (?<!…) is not supported by RE2"),
    ("(?>a+)b", "an atomic group (?>…) is not supported by RE2"),
    (r"end\Z", r"use \z (or $)"),
    ("a{5000}", "invalid repetition size"),
    ("(", "missing )"),
    ("x" * 5000, "5000 characters, at most 4096"),
])
def test_what_re2_cannot_compile_is_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match="bad regex") as info:
        compile_pattern(pattern)
    assert reason in str(info.value)
    for where in ({"select": {"metric": f"=~ {pattern}"}},
                  {"select": {"metric": "cpu", "attributes": {"region": f"!~ {pattern}"}}}):
        problem = one_problem(where)
        assert "rule 'errors': field 'select." in problem and reason in problem, problem
    logs = problems({**LOUD, "select": {"regex": pattern}})
    assert len(logs) == 1 and "field 'select.regex'" in logs[0] and reason in logs[0]


def test_catastrophic_patterns_load_and_answer_on_long_inputs() -> None:
    hostile = "a" * 100_000 + "b"
    assert compile_pattern("(a+)+$").search(hostile) is False
    assert compile_pattern("(a+)+$").search("a" * 100_000) is True
    assert compile_pattern("(a+)+b").fullmatch(hostile) is True
    assert compile_pattern("(a|aa)+c").fullmatch(hostile) is False
    rules = parse_rules(yaml.safe_dump({"rules": [
        {**GOOD, "select": {"metric": "=~ (a+)+b"}}, LOUD]}))
    select = rules.rules[0].select
    names = [hostile, "a" * 99_999, "ab"]
    batch = Batch("metrics", {"time": np.full(3, T0, np.int64), "value": np.ones(3),
                              "service": ["s"] * 3, "host": ["h"] * 3, "name": names,
                              "attributes": [{}] * 3})
    assert select.mask(batch).tolist() == [True, False, True]


def test_a_log_count_rule_with_a_catastrophic_regex_counts_through_the_engine() -> None:
    engine = RuleEngine(parse_rules(yaml.safe_dump({"rules": [LOUD]})),
                        allowed_lateness_ms=0)
    bodies = ["a" * 50_000 + "b", "a" * 50_000, "b" * 10, "aaa"]
    n = len(bodies)
    columns = {"time": np.array([T0 + i for i in range(n)], np.int64),
               "service": ["svc"] * n, "host": ["h"] * n, "severity_text": ["INFO"] * n,
               "severity_number": np.full(n, 9, np.int32), "body": bodies,
               "attributes": [{}] * n}
    state, found, _ = engine.process("logs", columns, engine.new_state())
    state, more = engine.advance(state, T0 + 5 * M)
    fired = [d for d in found + more if d.state == "firing"]
    assert len(fired) == 1 and fired[0].observed == 2.0  # "a…a" and "aaa" end in a+
    assert fired[0].title == "svc: 2 logs"


def test_ordinary_selector_regexes_keep_their_meaning() -> None:
    notes: list[tuple[str, str]] = []
    select = parse_selector("metrics", {"metric": r"=~ http\.server\.duration\.p9[59]",
                                        "service": "!~ test-.*",
                                        "attributes": {"region": "=~ (?i)EU-.*"}},
                            "select", lambda f, m: notes.append((f, m)))
    assert notes == []
    names = ["http.server.duration.p95", "http.server.duration.p95x",
             "http.server.duration.p99", "http.server.duration.p95"]
    batch = Batch("metrics", {"time": np.full(4, T0, np.int64), "value": np.ones(4),
                              "service": ["api", "api", "test-api", "api"],
                              "host": ["h"] * 4, "name": names,
                              "attributes": [{"region": "eu-west"}, {"region": "eu-west"},
                                             {"region": "eu-west"}, {"region": "us"}]})
    # anchored (p95x fails), negated (test-api fails), case-insensitive flag (eu-west passes)
    assert select.mask(batch).tolist() == [True, False, False, False]


def test_body_regex_searches_and_tolerates_any_text() -> None:
    select = parse_selector("logs", {"regex": r"time(d)? ?out|\d{3} from"}, "select",
                            lambda f, m: pytest.fail(m))
    bodies = ["upstream timed out", "got 503 from db", "fine", "\ud800 lone surrogate", "é"]
    n = len(bodies)
    batch = Batch("logs", {"time": np.full(n, T0, np.int64), "service": ["s"] * n,
                           "host": ["h"] * n, "severity_text": ["INFO"] * n,
                           "severity_number": np.full(n, 9, np.int32), "body": bodies,
                           "attributes": [{}] * n})
    assert select.mask(batch).tolist() == [True, True, False, False, False]
    assert parse_selector("logs", {"regex": "^(fine|.)$"}, "s", lambda f, m: None) \
        .mask(batch).tolist() == [False, False, True, False, True]


def test_silence_and_route_matchers_use_re2_too() -> None:
    assert Matcher.parse("service=~(a+)+b").test("a" * 100_000 + "b")
    assert not Matcher.parse("service=~(a+)+$").test("a" * 100_000 + "b")
    assert not Matcher.parse("service=~post").test("postgres")  # still anchored
    with pytest.raises(MatcherError, match=r"lookahead \(\?=…\) is not supported by RE2"):
        Matcher.parse("service=~post(?=gres)")


# -- files, reload, built-ins -------------------------------------------------------------

def test_builtin_rule_files_still_load() -> None:
    ruleset = load_rules(builtin_rule_paths())
    assert len(ruleset.rules) >= 10
    for rule in ruleset.rules:
        for text in (rule.title, rule.description):
            assert check_template(text, template_fields(rule.group_by)) == [], rule.name


def test_reload_refuses_a_hostile_file_and_keeps_the_running_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [GOOD]}))
    runner = RuleEngineRunner([path], allowed_lateness_ms=0)
    version = runner.version
    hostile = [{**GOOD, "title": "{value.__class__.__mro__}"},
               {**LOUD, "select": {"regex": r"(a)\1"}}]
    path.write_text(yaml.safe_dump({"rules": hostile}))
    result = runner.reload()
    assert runner.version == version and [r.name for r in runner.engine.ruleset.rules] == \
        ["errors"]
    text = "\n".join(result.problems)
    assert "rule 'errors': field 'title': placeholder {value.__class__.__mro__}" in text
    assert "rule 'loud': field 'select.regex': bad regex" in text and "backreference" in text

