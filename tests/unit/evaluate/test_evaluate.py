"""Evaluation against labels: hand-made problems and detections with hand-computed numbers."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluate import (
    EvaluationError,
    evaluate,
    format_table,
    result_to_dict,
)
from pipeline.simulate import Incident, Labels

DAY = 86_400_000
SLACK = 60_000


def inc(ident, scenario, start, end, root, affected, category="availability"):
    return Incident(ident, scenario, start, end, root, category, tuple(affected))


LABELS = Labels(seed=1, start_ms=0, end_ms=2 * DAY, incidents=(
    inc("A", "db_outage", 100_000, 200_000, "postgres", ["postgres", "orders", "api"]),
    inc("B", "error_spike", 1_000_000, 1_100_000, "orders", ["orders", "api"]),
    inc("C", "cpu_saturation", 2_000_000, 2_100_000, "inventory", ["inventory"]),
    inc("D", "memory_leak", 3_000_000, 3_100_000, "auth", ["auth"]),
))


def problem(ident, opened, resolved, affected, causes, dets):
    return {"id": ident, "opened_at": opened, "resolved_at": resolved, "affected": affected,
            "root_causes": causes, "detections": dets}


PROBLEMS = [
    # A, rank 2: AC@1 miss, AC@3 hit; time to detect 30 s
    problem("P1", 130_000, 400_000, ["orders", "api"], ["orders", "postgres"],
            ["d1", "d2", "d3"]),
    # A again (opened after A's end, inside the slack): A is split into 2 problems
    problem("P2", 230_000, 300_000, ["postgres"], ["postgres"], ["d4"]),
    # B, rank 1; also (wrongly) holds d7, a detection of A
    problem("P3", 1_050_000, 1_200_000, ["orders"], ["orders", "api"], ["d5", "d6", "d7"]),
    # false alarm: overlaps A in time but shares no service with it
    problem("P7", 120_000, 180_000, ["payments"], ["payments"], []),
    # false alarm: opened after C's end + slack, so C stays undetected
    problem("P5", 2_500_000, 2_600_000, ["inventory"], ["inventory"], ["d9"]),
    # false alarm: nothing happening
    problem("P4", 5_000_000, 5_100_000, ["payments"], ["payments"], ["d8"]),
    # D: already open before D starts (time to detect floored at 0); root cause rank 4
    problem("P6", 2_950_000, None, ["auth", "cache"],
            [{"service": "cache"}, {"service": "api"}, {"service": "postgres"},
             {"service": "auth"}], ["d10", "d11"]),
]


def det(ident, time, service):
    return {"id": ident, "time": time, "service": service}


DETECTIONS = [
    det("d1", 110_000, "orders"), det("d2", 120_000, "api"), det("d3", 125_000, "postgres"),
    det("d4", 235_000, "postgres"),  # A's window includes the slack
    det("d5", 1_010_000, "orders"), det("d6", 1_020_000, "api"),
    det("d7", 190_000, "orders"),  # A's, grouped into P3
    det("d8", 5_000_000, "payments"),  # noise
    det("d9", 2_500_000, "inventory"),  # noise: after C's window
    det("d10", 3_010_000, "auth"), det("d11", 3_020_000, "auth"),
    det("d12", 1_030_000, "orders"),  # B's, in no problem
    det("d13", 2_050_000, "inventory"),  # C's, in no problem
]


@pytest.fixture(scope="module")
def result():
    return evaluate(LABELS, PROBLEMS, DETECTIONS, match_slack_ms=SLACK)


def test_per_incident_detection_time_to_detect_split_and_rank(result):
    rows = {o.incident.id: (o.detected, o.time_to_detect_ms, o.problem_ids, o.root_cause_rank)
            for o in result.incidents}
    assert rows == {
        "A": (True, 30_000, ("P1", "P2"), 2),
        "B": (True, 50_000, ("P3",), 1),
        "C": (False, None, (), None),
        "D": (True, 0, ("P6",), 4),
    }
    assert result.detected_count == 3 and result.detection_rate == 0.75
    assert result.mean_time_to_detect_ms == pytest.approx(80_000 / 3)


def test_false_alarms_per_simulated_day(result):
    assert result.false_alarm_ids == ("P7", "P5", "P4")  # by opening time
    assert result.problem_count == 7
    assert result.simulated_days == 2.0
    assert result.false_alarms_per_day == 1.5


def test_root_cause_accuracy_counts_undetected_incidents_as_misses(result):
    assert result.ac_at(1) == 0.25  # B only
    assert result.ac_at(3) == 0.5  # A (rank 2) and B; D is rank 4, C undetected


def test_pairwise_grouping_scores(result):
    # truth: A={d1,d2,d3,d4,d7} B={d5,d6,d12} C={d13} D={d10,d11} -> 10+3+0+1 = 14 pairs
    # predicted: P1={d1,d2,d3} P2={d4} P3={d5,d6,d7} P6={d10,d11} -> 3+0+3+1 = 7 pairs
    # correct: (A,P1) 3 + (B,P3) 1 + (D,P6) 1 = 5
    g = result.grouping
    assert (g.detections, g.truth_pairs, g.predicted_pairs, g.correct_pairs) == (11, 14, 7, 5)
    assert g.precision == pytest.approx(5 / 7)
    assert g.recall == pytest.approx(5 / 14)
    assert g.f1 == pytest.approx(10 / 21)


def test_slack_bounds_are_inclusive_and_exact():
    labels = Labels(1, 0, DAY, (inc("A", "db_outage", 100_000, 200_000, "db", ["db"]),))
    on_edge = problem("p", 200_000 + SLACK, None, ["db"], ["db"], [])
    past_edge = problem("q", 200_000 + SLACK + 1, None, ["db"], ["db"], [])
    ended_before = problem("r", 0, 99_999, ["db"], ["db"], [])
    res = evaluate(labels, [on_edge, past_edge, ended_before], [], match_slack_ms=SLACK)
    assert res.incidents[0].problem_ids == ("p",)
    assert res.false_alarm_ids == ("r", "q")


def test_empty_inputs_give_honest_zeros_and_valid_json():
    for labels in (Labels(1, 0, DAY), LABELS):
        res = evaluate(labels, [], [])
        data = result_to_dict(res)
        json.dumps(data, allow_nan=False)
        summary = data["summary"]
        assert summary["detected"] == 0 and summary["false_alarms"] == 0
        assert summary["ac_at_1"] == summary["ac_at_3"] == summary["detection_rate"] == 0.0
        assert summary["mean_time_to_detect_ms"] is None
        assert data["grouping"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                    "detections": 0, "truth_pairs": 0, "predicted_pairs": 0,
                                    "correct_pairs": 0}
        assert "detected" in format_table(res)


def test_labels_may_be_given_as_the_json_dict(result):
    again = evaluate(LABELS.to_dict(), PROBLEMS, DETECTIONS, match_slack_ms=SLACK)
    assert result_to_dict(again) == result_to_dict(result)


def test_report_dict_and_table(result):
    data = result_to_dict(result)
    json.dumps(data, allow_nan=False)
    assert data["summary"] == {
        "incidents": 4, "detected": 3, "detection_rate": 0.75,
        "mean_time_to_detect_ms": round(80_000 / 3, 6), "problems": 7, "false_alarms": 3,
        "simulated_days": 2.0, "false_alarms_per_day": 1.5, "ac_at_1": 0.25, "ac_at_3": 0.5,
        "match_slack_ms": SLACK}
    assert data["incidents"][0] == {
        "id": "A", "scenario": "db_outage", "root_cause_service": "postgres",
        "start_ms": 100_000, "end_ms": 200_000, "detected": True, "time_to_detect_ms": 30_000,
        "problems": ["P1", "P2"], "split_into": 2, "root_cause_rank": 2}
    assert data["false_alarms"] == ["P7", "P5", "P4"]
    table = format_table(result)
    lines = table.splitlines()
    assert lines[0].split() == ["incident", "scenario", "root", "cause", "detected", "TTD",
                                "problems", "RC", "rank"]
    assert lines[2].split() == ["A", "db_outage", "postgres", "yes", "30s", "2", "2"]
    assert lines[4].split() == ["C", "cpu_saturation", "inventory", "no", "-", "0", "-"]
    assert "AC@1 0.25  AC@3 0.50" in table
    assert "precision 0.71  recall 0.36  F1 0.48" in table
    assert "3 of 7 problems, 1.50 per simulated day" in table


def test_bad_input_names_the_record_and_field():
    with pytest.raises(EvaluationError, match=r"problems\[0\] \(P1\): missing field 'affected'"):
        evaluate(LABELS, [{"id": "P1", "opened_at": 1, "root_causes": [], "detections": []}])
    with pytest.raises(EvaluationError, match=r"detections\[1\]\.time: expected int/float"):
        evaluate(LABELS, [], [det("x", 1, "a"), det("y", "soon", "a")])


def test_a_long_problem_counts_for_one_incident_only():
    """The deploy's problem is still open when the leak starts on a service it shares;
    it counts for the deploy, and the leak is detected by its own, later problem."""
    labels = Labels(seed=1, start_ms=0, end_ms=DAY, incidents=(
        inc("A", "bad_deploy", 100_000, 400_000, "payments", ["payments", "gateway"]),
        inc("B", "memory_leak", 350_000, 2_000_000, "gateway", ["gateway"]),
    ))
    long = problem("P1", 110_000, 600_000, ["payments", "gateway"],
                   ["payments", "gateway"], [])
    leak = problem("P2", 1_500_000, 2_100_000, ["gateway"], ["gateway"], [])
    a, b = evaluate(labels, [long, leak], match_slack_ms=SLACK).incidents
    assert a.problem_ids == ("P1",) and b.problem_ids == ("P2",)
    assert b.time_to_detect_ms == 1_150_000 and b.root_cause_rank == 1
    # without its own problem the leak is missed, not detected "at once" by the deploy's
    alone = evaluate(labels, [long], match_slack_ms=SLACK)
    assert not alone.incidents[1].detected and alone.false_alarm_ids == ()


def test_a_keepalive_belongs_to_the_incident_its_episode_began_in():
    # an alarm that began in A (on a service both incidents affect) and is re-sent during B
    # stays in A's problem: it is judged where the correlator placed it, not by send time
    labels = Labels(1, 0, DAY, (inc("A", "cpu_saturation", 100_000, 200_000, "db", ["db", "api"]),
                                inc("B", "bad_deploy", 400_000, 500_000, "api", ["api"])))
    problems = [problem("PA", 100_000, None, ["db", "api"], ["db"], ["a1", "a2", "ka"]),
                problem("PB", 410_000, None, ["api"], ["api"], ["b1", "b2"])]
    dets = [det("a1", 110_000, "db"), det("a2", 120_000, "api"),
            det("b1", 410_000, "api"), det("b2", 420_000, "api")]
    keepalive = {**det("ka", 430_000, "api"), "since": 150_000}
    by_since = evaluate(labels, problems, [*dets, keepalive], match_slack_ms=SLACK).grouping
    assert by_since.f1 == 1.0
    by_time = evaluate(labels, problems, [*dets, {**keepalive, "since": 430_000}],
                       match_slack_ms=SLACK).grouping
    assert (by_time.truth_pairs, by_time.correct_pairs) == (1 + 3, 1 + 1)
