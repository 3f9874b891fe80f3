"""A problem's severity follows the evidence: rules say how bad, models how unusual; and
a model's deviation is told as a value against its expected band, not its score's limit."""

from __future__ import annotations

from models.calibration import severity_of
from pipeline.correlate import CorrelationState, Problem
from tests.unit.correlate.support import SEC, T0, Run, det


def model_det(service: str, t: int, *, severity: str = "high", **kw):
    """A robust-seasonal detection: value 23.5, score 0.93 over the 0.6 score threshold."""
    return det("model:robust-seasonal", service, t, severity=severity, observed=23.5,
               threshold=0.6, score=0.93, category="resource", **kw)


def test_a_rule_decides_the_severity_over_a_saturated_model_score():
    run = Run()
    run.feed([det("cpu-saturation", "gateway", T0, severity="medium", category="resource",
                  observed=97.4, threshold=80.0),
              model_det("gateway", T0 + SEC, severity="critical")])
    [problem] = run.open()
    assert problem.severity == "medium"


def test_a_problem_only_models_detected_takes_their_severity():
    run = Run()
    run.feed([model_det("gateway", T0, severity="high")])
    assert [p.severity for p in run.open()] == ["high"]


def test_rules_still_raise_the_severity_and_spread_still_escalates():
    run = Run()
    run.feed([det("error_rate_above_1pct", "orders", T0, severity="medium"),
              det("error_rate_above_5pct", "orders", T0 + SEC, severity="critical"),
              model_det("orders", T0 + 2 * SEC, severity="high")])
    assert [p.severity for p in run.open()] == ["critical"]


def test_a_model_score_alone_is_never_critical():
    assert severity_of(1.0, 0.6) == "high"
    assert severity_of(0.99, 0.9) == "high"
    assert severity_of(0.62, 0.6) == "medium"
    assert severity_of(0.3, 0.6) == "low"


def weak(service: str, t: int):
    """A barely-firing rule detection elsewhere (root-cause evidence compares services)."""
    return det("high-error-rate", service, t, observed=0.055, threshold=0.05)


def _deviations(problem: Problem) -> list[str]:
    return [e for c in problem.root_causes for e in c.evidence
            if e.startswith("strongest deviation")]


def test_a_model_deviation_is_the_value_against_its_expected_band():
    run = Run()
    run.feed([model_det("gateway", T0, evidence={"expected": 12.0, "band_low": 9.5,
                                                  "band_high": 14.25}),
              weak("api", T0 + SEC)])
    [text] = _deviations(run.open()[0])
    assert "value 23.5, expected 9.5 to 14.25; anomaly score 0.93" in text
    assert "threshold 0.6" not in text and "vs" not in text


def test_a_model_deviation_without_a_band_shows_the_score_as_a_score():
    run = Run()
    run.feed([model_det("gateway", T0), weak("api", T0 + SEC)])
    [text] = _deviations(run.open()[0])
    assert "value 23.5, anomaly score 0.93 over 0.60" in text


def test_a_rule_deviation_keeps_observed_against_threshold():
    run = Run()
    run.feed([det("high-error-rate", "orders", T0, observed=0.1346766, threshold=0.05),
              weak("api", T0 + SEC)])
    [text] = _deviations(run.open()[0])
    assert "(observed 0.1347 vs threshold 0.05)" in text


def test_members_with_a_score_and_band_survive_the_state_round_trip():
    run = Run()
    run.feed([model_det("gateway", T0, evidence={"band_low": 1.0, "band_high": 2.0})])
    again = CorrelationState.from_bytes(run.state.to_bytes())
    [member] = again.open_problems()[0].members
    assert (member.score, member.band_low, member.band_high) == (0.93, 1.0, 2.0)


def test_a_model_keep_alive_does_not_redescribe_the_change():
    """A worker's CPU drops to 1 % (expected 63 %): the model's keep-alive five minutes on
    carries the episode's peak score (0.97) beside the value now (2.4 %) and an expected
    value that has followed the drop (1.3 %), against the band fixed when it armed. The
    member stays a drop of 63 % -> 1 % with that deviation - not a rise, and not a value
    billions of half-widths out - while the keep-alive still counts as firing."""
    from dataclasses import replace

    from pipeline.events.detection import detection_id

    drop = det("model:seasonal-ensemble", "agent-worker", T0, category="resource",
               observed=0.0105, threshold=0.6, score=0.81,
               labels={"metric": "system.cpu.utilization"},
               evidence={"expected": 0.63, "band_low": 0.188, "band_high": 1.09})
    t = T0 + 300 * SEC
    keepalive = replace(drop, id=detection_id(drop.detector, drop.labels, t, "firing"),
                        time=t, observed=0.0244, score=0.97,
                        evidence={"expected": 0.0128, "band_low": 0.188, "band_high": 1.09,
                                  "keepalive": True})
    run = Run()
    run.feed([drop])
    [first] = run.open()[0].members
    run.feed([keepalive])
    [m] = run.open()[0].members
    assert m.drop and m.observed == 0.0105 and m.deviation == first.deviation
    assert m.last_ms == t and m.strength == 0.97
    # a keep-alive of a rule states its condition now: it may still tell a stronger value
    rule = det("high-error-rate", "orders", T0, observed=0.06, threshold=0.05)
    run = Run()
    run.feed([rule, replace(rule, id=detection_id(rule.detector, rule.labels, t, "firing"),
                            time=t, observed=0.2, evidence={"keepalive": True})])
    [m] = run.open()[0].members
    assert m.observed == 0.2
