"""Evaluation: how well problems and detections match a simulation's labels."""

from pipeline.evaluate.matching import (
    DEFAULT_MATCH_SLACK_MS,
    EvaluationError,
    EvaluationResult,
    GroupingScore,
    IncidentOutcome,
    evaluate,
)
from pipeline.evaluate.report import format_table, result_to_dict

__all__ = [
    "DEFAULT_MATCH_SLACK_MS",
    "EvaluationError",
    "EvaluationResult",
    "GroupingScore",
    "IncidentOutcome",
    "evaluate",
    "format_table",
    "result_to_dict",
]
