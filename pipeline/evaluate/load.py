"""Read the problems and detections of a labelled run's time range from the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pipeline.simulate.labels import Labels
from pipeline.store import QueryResult

Query = Callable[[str], QueryResult]


def _root_cause_services(text: str) -> list[str]:
    """Service names of a problem's ranked root-cause candidates (stored as JSON)."""
    if not text:
        return []
    candidates = orjson.loads(text)
    return [c["service"] if isinstance(c, dict) else str(c) for c in candidates]


def load_problems(query: Query, database: str, labels: Labels,
                  slack_ms: int) -> list[dict[str, Any]]:
    """Latest version of every problem whose lifetime overlaps the labelled range (a
    problem merged into another counts as that one, whose detections it handed over)."""
    return load_problems_between(query, database, labels.start_ms - slack_ms,
                                 labels.end_ms + slack_ms)


def load_problems_between(query: Query, database: str, lo: int, hi: int,
                          ) -> list[dict[str, Any]]:
    """Latest version of every problem (not merged away) whose lifetime overlaps
    ``[lo, hi]`` (epoch ms)."""
    result = query(
        "SELECT id, toUnixTimestamp64Milli(opened_at), "
        "if(resolved_at IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(resolved_at))), "
        "affected, root_causes, detection_ids, "
        "arrayMap(t -> toUnixTimestamp64Milli(t), reopened_at), "
        "arrayMap(t -> toUnixTimestamp64Milli(t), recurred_at) "
        f"FROM {database}.problems "
        f"WHERE merged_into = '' AND toUnixTimestamp64Milli(opened_at) <= {hi} "
        "AND (resolved_at IS NULL OR "
        f"toUnixTimestamp64Milli(assumeNotNull(resolved_at)) >= {lo}) ORDER BY opened_at, id"
    )
    return [
        {"id": pid, "opened_at": int(opened), "resolved_at": None if resolved is None
         else int(resolved), "affected": list(affected),
         "root_causes": _root_cause_services(causes), "detections": list(detections),
         "reopened_at": [int(t) for t in reopened or ()],
         "recurred_at": [int(t) for t in recurred or ()]}
        for pid, opened, resolved, affected, causes, detections, reopened, recurred
        in result.rows
    ]


def telemetry_range(query: Query, database: str) -> tuple[int, int] | None:
    """First and last event time (epoch ms) of the stored metrics, logs and spans, or
    None when none is stored."""
    parts = [f"SELECT min({t}) AS lo, max({t}) AS hi, count() AS n FROM {database}.{table}"
             for table, t in (("metrics", "time"), ("logs", "time"), ("spans", "start"))]
    result = query("SELECT toUnixTimestamp64Milli(min(lo)), toUnixTimestamp64Milli(max(hi)) "
                   f"FROM ({' UNION ALL '.join(parts)}) WHERE n > 0")
    if not result.rows or result.rows[0][0] is None:
        return None
    lo, hi = result.rows[0]
    if int(hi) <= 0:  # min/max of no rows at all
        return None
    return int(lo), int(hi)


def load_detections(query: Query, database: str, labels: Labels,
                    slack_ms: int) -> list[dict[str, Any]]:
    """Detections (firing) in the labelled range, with when their episode began
    (``since``: the evidence's ``firing_since`` of a keep-alive, else ``time``)."""
    lo, hi = labels.start_ms - slack_ms, labels.end_ms + slack_ms
    result = query(
        "SELECT id, toUnixTimestamp64Milli(time), service, "
        "if(JSONHas(evidence, 'firing_since'), JSONExtractInt(evidence, 'firing_since'), "
        f"toUnixTimestamp64Milli(time)) FROM {database}.detections "
        f"WHERE toUnixTimestamp64Milli(time) BETWEEN {lo} AND {hi} AND state = 'firing' "
        "AND NOT shadow "
        "ORDER BY time, id"
    )
    return [{"id": did, "time": int(t), "service": service, "since": int(since)}
            for did, t, service, since in result.rows]
