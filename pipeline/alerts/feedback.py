"""Operators' feedback on problems: the rows of the ``feedback`` table.

Feedback travels as a control event (``kind = "feedback"``, see
:mod:`pipeline.alerts.control`); it never changes a problem, it is stored beside it with
who gave it and when, and evaluation and retraining read it as labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.alerts.control import ControlEvent


def feedback_table(events: Sequence[ControlEvent]) -> pa.Table:
    """Feedback events as rows of the ``feedback`` table (other kinds are left out)."""
    rows = [e for e in events if e.kind == "feedback"]
    return pa.table({
        "problem_id": pa.array([e.problem_id for e in rows], pa.string()),
        "scope": pa.array([e.scope for e in rows], pa.string()),
        "time": pa.array([e.time_ms for e in rows], pa.timestamp("ms", tz="UTC")),
        "author": pa.array([e.by for e in rows], pa.string()),
        "verdict": pa.array([e.verdict for e in rows], pa.string()),
        "root_cause": pa.array([e.root_cause for e in rows], pa.string()),
        "comment": pa.array([e.comment for e in rows], pa.string()),
    })
