"""Present an evaluation (simulator labels or real fault cases): a text table, a JSON dict.

The JSON dict holds only finite numbers, strings, lists, booleans and ``null`` (a time
that does not exist, such as the time to detect an undetected incident).
"""

from __future__ import annotations

from typing import Any

from pipeline.evaluate.cases import CaseEvaluation
from pipeline.evaluate.matching import EvaluationResult

REPORT_VERSION = 1


def result_to_dict(result: EvaluationResult) -> dict[str, Any]:
    """The result as a JSON-ready dict (``summary``, ``incidents``, ``false_alarms``, ...)."""
    g = result.grouping
    return {
        "version": REPORT_VERSION,
        "summary": {
            "incidents": len(result.incidents),
            "detected": result.detected_count,
            "detection_rate": _r(result.detection_rate),
            "mean_time_to_detect_ms": _r(result.mean_time_to_detect_ms),
            "problems": result.problem_count,
            "false_alarms": len(result.false_alarm_ids),
            "simulated_days": _r(result.simulated_days),
            "false_alarms_per_day": _r(result.false_alarms_per_day),
            "ac_at_1": _r(result.ac_at(1)),
            "ac_at_3": _r(result.ac_at(3)),
            "match_slack_ms": result.match_slack_ms,
        },
        "grouping": {"precision": _r(g.precision), "recall": _r(g.recall), "f1": _r(g.f1),
                     "detections": g.detections, "truth_pairs": g.truth_pairs,
                     "predicted_pairs": g.predicted_pairs, "correct_pairs": g.correct_pairs},
        "incidents": [
            {"id": o.incident.id, "scenario": o.incident.scenario,
             "root_cause_service": o.incident.root_cause_service,
             "start_ms": o.incident.start_ms, "end_ms": o.incident.end_ms,
             "detected": o.detected, "time_to_detect_ms": o.time_to_detect_ms,
             "problems": list(o.problem_ids), "split_into": len(o.problem_ids),
             "root_cause_rank": o.root_cause_rank}
            for o in result.incidents
        ],
        "false_alarms": list(result.false_alarm_ids),
    }


def format_table(result: EvaluationResult) -> str:
    """A fixed-width text table: one row per incident, then the summary lines."""
    header = ("incident", "scenario", "root cause", "detected", "TTD", "problems", "RC rank")
    rows = [header]
    for o in result.incidents:
        rows.append((o.incident.id, o.incident.scenario, o.incident.root_cause_service,
                     "yes" if o.detected else "no", _duration(o.time_to_detect_ms),
                     str(len(o.problem_ids)),
                     "-" if o.root_cause_rank is None else str(o.root_cause_rank)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not result.incidents:
        lines.append("(no labelled incidents)")
    g = result.grouping
    lines += [
        "",
        f"detected      {result.detected_count}/{len(result.incidents)} "
        f"({result.detection_rate:.0%}), mean time to detect "
        f"{_duration(result.mean_time_to_detect_ms)}",
        f"false alarms  {len(result.false_alarm_ids)} of {result.problem_count} problems, "
        f"{result.false_alarms_per_day:.2f} per simulated day "
        f"({result.simulated_days:.2f} days)",
        f"root cause    AC@1 {result.ac_at(1):.2f}  AC@3 {result.ac_at(3):.2f} "
        "(undetected incidents count as misses)",
        f"grouping      precision {g.precision:.2f}  recall {g.recall:.2f}  F1 {g.f1:.2f} "
        f"({g.detections} detections, {g.truth_pairs} same-incident pairs)",
    ]
    return "\n".join(lines)


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000.0
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}m"


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def case_summary(ev: CaseEvaluation) -> dict[str, Any]:
    """Headline figures of a case evaluation (all cases, or one fault type's subset)."""
    return {
        "cases": len(ev.outcomes), "detected": ev.detected_count,
        "ac_at_1": _r(ev.ac_at(1)), "ac_at_3": _r(ev.ac_at(3)), "ac_at_5": _r(ev.ac_at(5)),
        "avg_at_5": _r(ev.avg_at_5), "mean_time_to_detect_ms": _r(ev.mean_time_to_detect_ms),
        "problems_per_case": _r(ev.problems_per_case),
        "problems_per_detected_case": _r(ev.problems_per_detected_case),
    }


def case_result_to_dict(ev: CaseEvaluation) -> dict[str, Any]:
    """A case evaluation as a JSON-ready dict: ``summary``, ``by_fault_type``, ``cases``."""
    summary = case_summary(ev)
    summary.update(problems=ev.problem_count, false_problems=len(ev.false_problem_ids),
                   labelled_hours=_r(ev.range_ms / 3_600_000),
                   window_before_ms=ev.before_ms, window_after_ms=ev.after_ms)
    return {
        "version": REPORT_VERSION, "kind": "cases", "summary": summary,
        "by_fault_type": {t: case_summary(ev.subset(t)) for t in ev.fault_types},
        "cases": [
            {"id": o.case.id, "fault_type": o.case.fault_type,
             "root_cause_service": o.case.root_cause_service, "start_ms": o.case.start_ms,
             "end_ms": o.case.end_ms, "detected": o.detected,
             "time_to_detect_ms": o.time_to_detect_ms, "problems": list(o.problem_ids),
             "root_cause_rank": o.root_cause_rank, "candidates": list(o.candidates)}
            for o in ev.outcomes],
        "false_problems": list(ev.false_problem_ids),
    }


def format_case_table(ev: CaseEvaluation) -> str:
    """One row per case, a row per fault type, then the summary lines."""
    header = ("case", "fault type", "root cause", "detected", "TTD", "problems", "rank",
              "top candidates")
    rows = [header]
    for o in ev.outcomes:
        rows.append((o.case.id, o.case.fault_type or "-", o.case.root_cause_service,
                     "yes" if o.detected else "no", _duration(o.time_to_detect_ms),
                     str(len(o.problem_ids)),
                     "-" if o.root_cause_rank is None else str(o.root_cause_rank),
                     ", ".join(o.candidates[:3]) or "-"))
    lines = _fixed(rows)
    if not ev.outcomes:
        lines.append("(no labelled cases)")
    kinds = [("fault type", "cases", "detected", "AC@1", "AC@3", "AC@5", "Avg@5", "mean TTD",
              "problems/case")]
    for t in [*ev.fault_types, ""]:
        sub = ev.subset(t) if t else ev
        kinds.append((t or "all", str(len(sub.outcomes)), str(sub.detected_count),
                      f"{sub.ac_at(1):.2f}", f"{sub.ac_at(3):.2f}", f"{sub.ac_at(5):.2f}",
                      f"{sub.avg_at_5:.2f}", _duration(sub.mean_time_to_detect_ms),
                      f"{sub.problems_per_case:.2f}"))
    lines += ["", *_fixed(kinds), "",
              f"false problems  {len(ev.false_problem_ids)} of {ev.problem_count} problems "
              f"(opened in no case's window, {ev.range_ms / 3_600_000:.1f} labelled hours)",
              f"a problem counts for a case when it opened within [start - "
              f"{_duration(ev.before_ms)}, end + {_duration(ev.after_ms)}]; AC@k over every "
              "case (undetected ones are misses)"]
    return "\n".join(lines)


def _fixed(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
