"""Evaluation against labelled real fault cases: hand-made problems, hand-computed figures."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluate.cases import (
    CaseLabelsError,
    evaluate_cases,
    is_case_list,
    load_cases,
    parse_cases,
)
from pipeline.evaluate.report import case_result_to_dict, format_case_table

MIN = 60_000
LABELS = [
    {"id": "c1", "start": 10 * MIN, "end": 13 * MIN, "root_cause_service": "cart",
     "fault_type": "network_delay", "namespace": "shop"},
    {"id": "c2", "start": 20 * MIN, "end": 23 * MIN, "root_cause_service": "checkout",
     "fault_type": "cpu_contention"},
    {"id": "c3", "start": 26 * MIN, "end": 29 * MIN, "root_cause_service": "ads",
     "fault_type": "cpu_contention"},
    {"id": "c4", "start": 60 * MIN, "end": 63 * MIN, "root_cause_service": "email",
     "fault_type": "network_delay"},
]


def problem(ident, opened, causes):
    return {"id": ident, "opened_at": opened, "root_causes": causes}


def test_a_problem_counts_only_if_it_opened_in_the_case_window():
    cases = parse_cases(LABELS)
    result = evaluate_cases(cases, [
        problem("old", 5 * MIN, ["cart"]),  # opened 5 min before c1: a background one
        problem("p1", 10 * MIN + 40_000, ["frontend", "cart"]),  # c1, rank 2, TTD 40 s
        problem("p1b", 12 * MIN, ["cart"]),  # c1 again: split into 2 problems
        problem("early", 19 * MIN + 30_000, [{"service": "checkout", "score": 0.9}]),  # c2
        problem("noise", 40 * MIN, ["email"]),  # in no window: a false problem
    ])
    by_id = {o.case.id: o for o in result.outcomes}
    assert by_id["c1"].problem_ids == ("p1", "p1b") and by_id["c1"].root_cause_rank == 2
    assert by_id["c1"].time_to_detect_ms == 40_000
    assert by_id["c2"].root_cause_rank == 1 and by_id["c2"].time_to_detect_ms == 0
    assert not by_id["c3"].detected and not by_id["c4"].detected
    assert result.false_problem_ids == ("noise",)  # "old" opened before the labelled range
    assert result.ac_at(1) == 0.25 and result.ac_at(3) == 0.5
    assert result.avg_at_5 == pytest.approx((0.25 + 0.5 * 4) / 5)
    assert result.problems_per_case == 0.75 and result.problems_per_detected_case == 1.5
    assert result.mean_time_to_detect_ms == 20_000


def test_overlapping_windows_give_a_problem_to_one_case():
    cases = parse_cases(LABELS)
    # opened 27 min: inside c2's window (until 28 min) and c3's (from 25 min)
    naming = evaluate_cases(cases, [problem("p", 27 * MIN, ["checkout"])])
    assert [o.problem_ids for o in naming.outcomes[1:3]] == [("p",), ()]  # it names c2's root
    latest = evaluate_cases(cases, [problem("p", 27 * MIN, ["frontend"])])
    assert [o.problem_ids for o in latest.outcomes[1:3]] == [(), ("p",)]  # c3 began last
    before = evaluate_cases(cases, [problem("p", 25 * MIN + 30_000, ["frontend"])])
    assert [o.problem_ids for o in before.outcomes[1:3]] == [("p",), ()]  # c3 not begun


def test_figures_per_fault_type_in_text_and_json():
    cases = parse_cases(LABELS)
    result = evaluate_cases(cases, [problem("p1", 10 * MIN, ["cart"]),
                                    problem("p3", 30 * MIN, ["checkout", "ads"])])
    data = case_result_to_dict(result)
    json.dumps(data, allow_nan=False)
    assert data["summary"]["ac_at_1"] == 0.25 and data["summary"]["detected"] == 2
    assert data["by_fault_type"]["network_delay"]["ac_at_1"] == 0.5
    assert data["by_fault_type"]["cpu_contention"]["ac_at_3"] == 0.5
    assert data["cases"][2]["candidates"] == ["checkout", "ads"]
    text = format_case_table(result)
    assert "network_delay" in text and "cpu_contention" in text and "Avg@5" in text
    assert text.splitlines()[2].startswith("c1")


@pytest.mark.parametrize("data, message", [
    ({"incidents": []}, "expected a JSON list"),
    ([{"id": "a", "start": 1, "end": 2}], "root_cause_service"),
    ([{"id": "a", "start": "1", "end": 2, "root_cause_service": "x"}], "start"),
    ([{"id": "a", "start": 5, "end": 2, "root_cause_service": "x"}], "before start"),
    ([{"id": "a", "start": 1, "end": 2, "root_cause_service": "x"}] * 2, "appears twice"),
])
def test_bad_case_labels_say_where(data, message):
    with pytest.raises(CaseLabelsError, match=message):
        parse_cases(data)


def test_load_cases_and_format_detection(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(LABELS))
    assert [c.id for c in load_cases(path)] == ["c1", "c2", "c3", "c4"]
    assert load_cases(path)[0].extra == {"namespace": "shop", "fault_type": "network_delay"}
    assert is_case_list(LABELS) and not is_case_list({"incidents": []})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CaseLabelsError, match="not JSON"):
        load_cases(tmp_path / "bad.json")


def test_a_problem_reopened_in_a_case_window_counts_from_its_reopening():
    cases = parse_cases(LABELS)
    result = evaluate_cases(cases, [
        {"id": "p", "opened_at": 2 * MIN, "root_causes": ["checkout"],
         "reopened_at": [5 * MIN, 20 * MIN + 30_000]},  # resolved, then back for c2
    ])
    assert [o.problem_ids for o in result.outcomes] == [(), ("p",), (), ()]
    assert result.outcomes[1].time_to_detect_ms == 30_000
    assert result.false_problem_ids == ()


def test_a_problem_reopened_by_its_aftermath_is_no_opening():
    """The store says which reopens were the root cause failing again (``recurred_at``):
    a reopen that took in the aftermath of the fault before does not detect c2."""
    cases = parse_cases(LABELS)
    problem = {"id": "p", "opened_at": 2 * MIN, "root_causes": ["checkout"],
               "reopened_at": [11 * MIN, 20 * MIN + 30_000]}
    aftermath = evaluate_cases(cases, [{**problem, "recurred_at": [11 * MIN]}])
    assert [o.problem_ids for o in aftermath.outcomes] == [("p",), (), (), ()]
    assert aftermath.outcomes[0].time_to_detect_ms == MIN
    recurred = evaluate_cases(cases, [{**problem, "recurred_at": [20 * MIN + 30_000]}])
    assert [o.problem_ids for o in recurred.outcomes] == [(), ("p",), (), ()]
