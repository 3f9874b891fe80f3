"""Present an :class:`~pipeline.evaluate.matching.EvaluationResult`: a text table, a JSON dict.

The JSON dict holds only finite numbers, strings, lists, booleans and ``null`` (a time
that does not exist, such as the time to detect an undetected incident).
"""

from __future__ import annotations

from typing import Any

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
