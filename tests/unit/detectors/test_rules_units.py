"""Unit-aware thresholds: a threshold carries its unit, each series is converted to it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from detectors import RuleEngine, RuleFileError, parse_rules
from detectors.rules import Condition

T0 = 1_699_999_200_000
S, M = 1_000, 60_000

SLOW = {"name": "slow", "signal": "metrics", "select": {"metric": "=~ .*duration.*"},
        "group_by": ["service", "host"], "window": {"type": "tumbling", "size": "1m"},
        "aggregation": "mean", "condition": "> 1000ms", "severity": "medium",
        "category": "performance", "title": "{host}: {value:.0f} {unit}"}


def engine(*rules: dict) -> RuleEngine:
    return RuleEngine(parse_rules(yaml.safe_dump({"rules": list(rules)})),
                      allowed_lateness_ms=0)


def metric_cols(points: list[tuple[str, float, str]], minutes: int = 3) -> dict:
    """Every (host, value, unit) once per 10 s for ``minutes``, then one point later."""
    rows = [(t, host, value, unit) for t in range(0, minutes * M, 10 * S)
            for host, value, unit in points]
    rows.append((minutes * M + 5 * M, points[0][0], points[0][1], points[0][2]))
    return {"time": np.array([T0 + r[0] for r in rows], np.int64),
            "value": np.array([r[2] for r in rows]), "service": ["svc"] * len(rows),
            "host": [r[1] for r in rows], "name": ["http.server.request.duration.p95"]
            * len(rows), "unit": [r[3] for r in rows], "attributes": [{}] * len(rows)}


def firing(found) -> dict[str, float]:
    return {d.host: d.observed for d in found if d.state == "firing"}


def test_series_are_converted_to_the_thresholds_unit_before_comparing():
    points = [("s-slow", 1.5, "s"), ("s-fast", 0.5, "s"), ("ms-slow", 1500.0, "ms"),
              ("us-fast", 900_000.0, "us"), ("bare-small", 1.5, ""),
              ("bare-big", 1500.0, ""), ("bytes", 5000.0, "By"),
              ("annotated", 1500.0, "{request}")]
    _, found, _ = engine(SLOW).process("metrics", metric_cols(points), engine(SLOW).new_state())
    fired = firing(found)
    # seconds and microseconds converted; no unit or an unknown one: as is; another
    # dimension (bytes): not comparable, left out
    assert set(fired) == {"s-slow", "ms-slow", "bare-big", "annotated"}
    assert fired["s-slow"] == pytest.approx(1500.0)  # the value is reported in ms
    title = next(d.title for d in found if d.host == "s-slow")
    assert title == "s-slow: 1500 ms"
    assert next(d.evidence["unit"] for d in found if d.host == "s-slow") == "ms"


def test_one_threshold_in_percent_for_ratios_and_percentages():
    hot = dict(SLOW, name="hot", select={"metric": "=~ .*"}, condition="> 80%")
    points = [("ratio-hot", 0.9, "1"), ("ratio-ok", 0.5, "1"), ("pct-hot", 90.0, "%"),
              ("pct-ok", 50.0, "%")]
    e = engine(hot)
    _, found, _ = e.process("metrics", metric_cols(points), e.new_state())
    assert firing(found) == pytest.approx({"ratio-hot": 90.0, "pct-hot": 90.0})


def test_a_threshold_in_seconds_reads_span_durations_in_milliseconds():
    rule = {"name": "slow-op", "signal": "traces", "select": {"kind": "server"},
            "group_by": ["service", "name"], "window": {"type": "tumbling", "size": "1m"},
            "aggregation": "p95", "condition": "> 1s", "severity": "medium",
            "category": "performance", "title": "{name}: {value:.2f}s"}
    n = 40
    times = np.array([T0 + i * S for i in range(n)] + [T0 + 5 * M], np.int64)
    durations = np.array([1500.0 if i % 2 else 200.0 for i in range(n)] + [10.0])
    names = ["GET /a" if i % 2 else "GET /b" for i in range(n)] + ["GET /a"]
    cols = {"start": times, "duration_ms": durations, "service": ["svc"] * (n + 1),
            "host": ["h"] * (n + 1), "name": names, "status": ["ok"] * (n + 1),
            "kind": ["server"] * (n + 1), "attributes": [{}] * (n + 1)}
    e = engine(rule)
    _, found, _ = e.process("traces", cols, e.new_state())
    assert [(d.entity, round(d.observed, 3)) for d in found if d.state == "firing"] == [
        ("GET /a", 1.5)]


@pytest.mark.parametrize(("text", "op", "threshold", "unit", "shown"), [
    ("> 0.05", ">", 0.05, "", "> 0.05"),
    ("> 1000ms", ">", 1000.0, "ms", "> 1000ms"),
    (">= 1 s", ">=", 1.0, "s", ">= 1s"),
    ("< 80 %", "<", 80.0, "%", "< 80%"),
    ("< 100/s", "<", 100.0, "/s", "< 100/s"),
    ("> 512MiBy", ">", 512.0, "MiBy", "> 512MiBy"),
])
def test_conditions_parse_with_units(text, op, threshold, unit, shown):
    c = Condition.parse(text)
    assert (c.op, c.threshold, c.unit, c.text) == (op, threshold, unit, shown)


def test_clear_and_baseline_are_taken_in_the_conditions_unit():
    rule = dict(SLOW, condition="> 1s", clear="< 800ms",
                baseline={"halflife": "1h", "level": ">= 100ms", "ratio": "> 200%"})
    (r,) = parse_rules(yaml.safe_dump({"rules": [rule]})).rules
    assert r.unit == "s" and r.clear_condition == Condition("<", 0.8, "s")
    assert r.baseline.level == Condition(">=", 0.1, "s")
    assert r.baseline.ratio == Condition(">", 2.0, "1")
    bare = dict(SLOW, condition="> 1s", clear="< 0.8")  # a bare number: the same unit
    (r,) = parse_rules(yaml.safe_dump({"rules": [bare]})).rules
    assert r.clear_condition == Condition("<", 0.8, "s")


def test_ratio_and_trend_thresholds_in_percent_are_fractions():
    ratio = {"name": "errs", "kind": "ratio", "signal": "traces", "select": {},
             "numerator": {"status": "error"}, "denominator": {}, "group_by": ["service"],
             "window": {"type": "tumbling", "size": "1m"}, "condition": "> 5%",
             "clear": "< 3%", "severity": "high", "category": "availability", "title": "x"}
    (r,) = parse_rules(yaml.safe_dump({"rules": [ratio]})).rules
    assert r.condition.threshold == pytest.approx(0.05)
    assert r.clear_condition.threshold == pytest.approx(0.03)
    assert not r.converts


@pytest.mark.parametrize(("change", "problem"), [
    ({"condition": "> 5 parsecs"}, "unknown unit 'parsecs'"),
    ({"clear": "< 800By"}, "which does not convert to ms"),
    ({"signal": "traces", "select": {}, "condition": "> 80%"},
     "span values are durations; use a time unit"),
    ({"aggregation": "count", "condition": "> 5ms"}, "counts have no unit"),
    ({"aggregation": "rate", "condition": "> 5ms"}, "a rate aggregation is per second"),
    ({"kind": "trend", "aggregation": None, "condition": "> 5ms"},
     "a trend rule compares a fraction"),
    ({"min_events": 3}, "only ratio rules take min_events"),
])
def test_units_that_do_not_fit_the_rule_are_refused(change, problem):
    rule = {k: v for k, v in {**SLOW, **change}.items() if v is not None}
    with pytest.raises(RuleFileError) as info:
        parse_rules(yaml.safe_dump({"rules": [rule]}))
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_min_events_needs_enough_failures_before_a_ratio_fires():
    base = {"name": "errs", "kind": "ratio", "signal": "traces", "select": {},
            "numerator": {"status": "error"}, "denominator": {}, "group_by": ["service"],
            "window": {"type": "tumbling", "size": "1m"}, "condition": "> 5%",
            "severity": "high", "category": "availability", "title": "x"}

    def fires(errors: int, total: int, min_events: int) -> bool:
        times = np.array([T0 + i * 100 for i in range(total)] + [T0 + 5 * M], np.int64)
        status = ["error"] * errors + ["ok"] * (total - errors) + ["ok"]
        n = total + 1
        cols = {"start": times, "duration_ms": np.ones(n), "service": ["svc"] * n,
                "host": ["h"] * n, "name": ["op"] * n, "status": status,
                "kind": ["server"] * n, "attributes": [{}] * n}
        e = engine(dict(base, min_events=min_events))
        _, found, _ = e.process("traces", cols, e.new_state())
        return any(d.state == "firing" for d in found)

    assert fires(2, 20, 0)  # 10 %: two unlucky requests are enough without min_events
    assert not fires(2, 20, 5)
    assert fires(5, 50, 5)
