"""Feedback: the control event, the correlation step's hand-off, the stored rows and the
figures computed from verdicts."""

from __future__ import annotations

import pytest

from pipeline.alerts.control import ControlError, ControlEvent
from pipeline.alerts.feedback import feedback_table
from pipeline.correlate.step import CorrelationStep, Message
from pipeline.evaluate import evaluate
from pipeline.evaluate.feedback import feedback_labels, score_feedback
from pipeline.settings import CorrelateSettings
from tests.unit.correlate.support import MIN, T0, det


def test_feedback_event_round_trips_and_names_bad_fields():
    event = ControlEvent.feedback("p-1", "true", "alice", T0, "postgres", "pool exhausted",
                                  scope="prod")
    again = ControlEvent.from_json(event.to_json())
    assert again == event
    assert (again.verdict, again.root_cause, again.by) == ("true", "postgres", "alice")
    with pytest.raises(ControlError, match="control.verdict"):
        ControlEvent.feedback("p-1", "maybe", "alice", T0)
    with pytest.raises(ControlError, match="control.problem_id"):
        ControlEvent.feedback("", "true", "alice", T0)
    with pytest.raises(ControlError, match="control.root_cause"):
        ControlEvent.from_wire({**event.to_wire(), "root_cause": 3})


def test_step_hands_feedback_over_without_touching_the_correlation():
    step = CorrelationStep(CorrelateSettings())
    detections = [det("high-error-rate", "orders", T0 + i * MIN) for i in range(3)]
    plain = step.run([Message("default", False, d.to_json()) for d in detections],
                     lambda scope: None)
    step = CorrelationStep(CorrelateSettings())
    feedback = ControlEvent.feedback("p-x", "false-positive", "bob", T0 + 5, comment="noise")
    messages = [Message("default", False, d.to_json()) for d in detections]
    messages.insert(1, Message("default", True, feedback.to_json()))
    judged = step.run(messages, lambda scope: None)
    assert judged.feedback == [ControlEvent.feedback("p-x", "false-positive", "bob", T0 + 5,
                                                     comment="noise", scope="default")]
    assert judged.states == plain.states
    assert [d.problem for d in judged.decisions] == [d.problem for d in plain.decisions]
    assert plain.feedback == []


def test_feedback_rows_keep_who_and_when():
    events = [ControlEvent.feedback("p-1", "duplicate", "carol", T0, scope="s"),
              ControlEvent.ack("p-1", "carol", "", T0)]
    rows = feedback_table(events).to_pylist()
    assert len(rows) == 1
    assert rows[0]["author"] == "carol" and rows[0]["verdict"] == "duplicate"
    assert int(rows[0]["time"].timestamp() * 1000) == T0 and rows[0]["scope"] == "s"


PROBLEMS = [
    {"id": "p1", "opened_at": T0, "resolved_at": T0 + 30 * MIN, "affected": ["orders"],
     "root_causes": ["postgres", "orders"], "category": "availability"},
    {"id": "p2", "opened_at": T0 + 60 * MIN, "resolved_at": T0 + 70 * MIN,
     "affected": ["cache"], "root_causes": ["cache"], "category": "performance"},
    {"id": "p3", "opened_at": T0 + 80 * MIN, "resolved_at": None, "affected": ["auth"],
     "root_causes": ["auth"], "category": "resource"},
    {"id": "p4", "opened_at": T0 + 90 * MIN, "resolved_at": None, "affected": ["api"],
     "root_causes": ["api"], "category": "availability"},
]
FEEDBACK = [  # oldest first; p1's later verdict replaces its first
    {"problem_id": "p1", "verdict": "false-positive", "root_cause": ""},
    {"problem_id": "p1", "verdict": "true", "root_cause": "orders"},
    {"problem_id": "p2", "verdict": "false-positive", "root_cause": ""},
    {"problem_id": "p3", "verdict": "duplicate", "root_cause": ""},
    {"problem_id": "elsewhere", "verdict": "true", "root_cause": "x"},
]


def test_figures_from_the_latest_verdict_per_problem():
    score = score_feedback(PROBLEMS, FEEDBACK)
    assert (score.problems, score.judged, score.true, score.false_positive,
            score.duplicate) == (4, 3, 1, 1, 1)
    assert score.coverage == 0.75
    assert score.precision == pytest.approx(1 / 3)
    assert score.false_alarm_rate == pytest.approx(1 / 3)
    # orders is the second candidate: a miss at 1, a hit at 3
    assert (score.root_cause_ac1, score.root_cause_ac3) == (0.0, 1.0)
    assert score_feedback([], []).precision == 0.0


def test_feedback_as_labels_scores_a_candidate():
    end = T0 + 120 * MIN
    labels = feedback_labels(PROBLEMS, FEEDBACK, T0, end)
    assert [(i.id, i.root_cause_service, i.start_ms, i.end_ms) for i in labels.incidents] == \
        [("feedback:p1", "orders", T0, T0 + 30 * MIN)]
    # a candidate that finds p1 again and also fires where p2 was judged a false alarm
    candidate = [
        {"id": "c1", "opened_at": T0 + MIN, "resolved_at": T0 + 20 * MIN,
         "affected": ["orders"], "root_causes": ["orders"], "detections": []},
        {"id": "c2", "opened_at": T0 + 61 * MIN, "resolved_at": T0 + 65 * MIN,
         "affected": ["cache"], "root_causes": ["cache"], "detections": []},
    ]
    result = evaluate(labels, candidate, [])
    assert result.detected_count == 1
    assert result.ac_at(1) == 1.0
    assert [p for p in result.false_alarm_ids] == ["c2"]
