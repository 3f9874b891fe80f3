"""``tocsin shadow report``: a shadow candidate's stored detections against the current
detectors' over the same range (:func:`pipeline.backtest.compare.compare_detections`).

Only the detectors of the engine the candidate shadows are compared: rules (detectors
not named ``model:...``) for ``detect.shadow_rules``, models for ``detect.shadow_models``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline.backtest.compare import compare_detections
from pipeline.backtest.stored import quote
from pipeline.store import QueryResult

Query = Callable[[str], QueryResult]
ENGINES = ("rules", "models", "all")


def _detections(query: Query, database: str, from_ms: int, to_ms: int, shadow: bool,
                engine: str, services: Sequence[str]) -> list[dict[str, Any]]:
    where = [f"time >= fromUnixTimestamp64Milli({int(from_ms)}, 'UTC')",
             f"time < fromUnixTimestamp64Milli({int(to_ms)}, 'UTC')",
             f"shadow = {'true' if shadow else 'false'}"]
    if engine == "rules":
        where.append("NOT startsWith(detector, 'model:')")
    elif engine == "models":
        where.append("startsWith(detector, 'model:')")
    if services:
        where.append(f"service IN ({', '.join(quote(s) for s in services)})")
    result = query(
        "SELECT id, toUnixTimestamp64Milli(time) AS time_ms, detector, detector_version, "
        f"service, state, severity, observed FROM {database}.detections WHERE "
        f"{' AND '.join(where)} ORDER BY time, id")
    names = ("id", "time", "detector", "version", "service", "state", "severity", "observed")
    return [dict(zip(names, row, strict=True)) for row in result.rows]


def shadow_report(query: Query, database: str, from_ms: int, to_ms: int, engine: str = "all",
                  services: Sequence[str] = (), sample: int = 3) -> dict[str, Any]:
    """The shadow's detections against the current ones, JSON-ready."""
    current = _detections(query, database, from_ms, to_ms, False, engine, services)
    shadow = _detections(query, database, from_ms, to_ms, True, engine, services)
    diff = compare_detections(current, shadow, sample)
    return {"from_ms": from_ms, "to_ms": to_ms, "engine": engine, "services": list(services),
            "versions": {"current": sorted({d["version"] for d in current}),
                         "shadow": sorted({d["version"] for d in shadow})},
            "detections": {"current": len(current), "candidate": len(shadow), **diff.totals(),
                           "by_detector": diff.to_dict(("detector", "service"))}}


def format_shadow(report: dict[str, Any], limit: int = 20) -> str:
    """The shadow report as text."""
    from pipeline.backtest.report import counts_line, group_lines
    from pipeline.events.times import format_ms

    versions = report["versions"]
    lines = [f"shadow report, {report['engine']} detectors, "
             f"{format_ms(report['from_ms'])} .. {format_ms(report['to_ms'])}",
             f"versions: current {', '.join(versions['current']) or '-'}; shadow "
             f"{', '.join(versions['shadow']) or '-'}",
             "detections: " + counts_line(report["detections"]).replace("candidate", "shadow")]
    lines += group_lines(report["detections"]["by_detector"], ("detector", "service"), limit)
    return "\n".join(lines)
