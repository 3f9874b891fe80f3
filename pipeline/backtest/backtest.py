"""A backtest: a candidate replayed over a stored range, compared with what is stored.

The candidate runs from ``from_ms - warmup_ms`` (so windows and models are warm at
``from_ms``) to ``to_ms``; its detections in ``[from_ms, to_ms)`` and its problems
opened there are compared with the stored ones of the current detectors (``shadow =
false``) over the same range. With labels, both sides are scored by
:func:`pipeline.evaluate.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline.backtest.candidates import Candidate, engines_with
from pipeline.backtest.compare import compare_detections, compare_problems
from pipeline.backtest.run import Progress, Replay, ReplayResult
from pipeline.backtest.stored import StoredTelemetry, quote
from pipeline.evaluate import evaluate, result_to_dict
from pipeline.evaluate.load import _root_cause_services
from pipeline.events.problem import Problem
from pipeline.settings import Settings
from pipeline.simulate.labels import Labels
from pipeline.store.base import QueryResult

ReadArrow = Callable[[str], pa.Table]


@dataclass(frozen=True)
class Range:
    """What to replay: ``[from_ms, to_ms)``, warm-up before it, services (all if empty)."""

    from_ms: int
    to_ms: int
    warmup_ms: int = 0
    services: tuple[str, ...] = ()
    chunk_ms: int = 300_000


def problem_dict(p: Problem) -> dict[str, Any]:
    """A problem as the comparison and the evaluation read it."""
    return {"id": p.id, "opened_at": p.opened_at, "resolved_at": p.resolved_at,
            "affected": list(p.affected), "root_causes": [c.service for c in p.root_causes],
            "category": p.category, "severity": p.severity,
            "detections": list(p.detection_ids)}


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def stored_detections(read: ReadArrow, database: str, span: Range,
                      shadow: bool = False) -> list[dict[str, Any]]:
    """Detections stored for ``span`` (the current detectors', or the shadow's)."""
    services = (f" AND service IN ({', '.join(quote(s) for s in span.services)})"
                if span.services else "")
    rows = _rows(read(  # aliases never shadow a column the WHERE reads
        "SELECT id, toUnixTimestamp64Milli(time) AS time_ms, detector, detector_version AS "
        "version, service, state, severity, observed, if(JSONHas(evidence, 'firing_since'), "
        "JSONExtractInt(evidence, 'firing_since'), toUnixTimestamp64Milli(time)) AS since FROM "
        f"{database}.detections WHERE time >= fromUnixTimestamp64Milli({span.from_ms}, 'UTC') "
        f"AND time < fromUnixTimestamp64Milli({span.to_ms}, 'UTC') AND shadow = "
        f"{'true' if shadow else 'false'}{services} ORDER BY time, id"))
    for row in rows:
        row["time"] = row.pop("time_ms")
    return rows


def stored_problems(read: ReadArrow, database: str, scope: str,
                    span: Range) -> list[dict[str, Any]]:
    """The latest version of the problems opened in ``span`` (not merged away)."""
    rows = _rows(read(
        "SELECT id, toUnixTimestamp64Milli(opened_at) AS opened_ms, "
        "if(resolved_at IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(resolved_at))) "
        "AS resolved_ms, affected, root_causes, category, severity, detection_ids FROM "
        f"{database}.problems WHERE scope = {quote(scope)} AND merged_into = '' AND "
        f"opened_at >= fromUnixTimestamp64Milli({span.from_ms}, 'UTC') AND "
        f"opened_at < fromUnixTimestamp64Milli({span.to_ms}, 'UTC') ORDER BY opened_at, id"))
    out = []
    for r in rows:
        r["opened_at"], r["resolved_at"] = r.pop("opened_ms"), r.pop("resolved_ms")
        problem = {**r, "root_causes": _root_cause_services(r["root_causes"]),
                   "detections": list(r.pop("detection_ids"))}
        if not span.services or set(problem["affected"]) & set(span.services):
            out.append(problem)
    return out


def stored_topology(read: ReadArrow, database: str, span: Range,
                    topology_ms: int) -> dict[str, tuple[str, ...]]:
    """The call graph the worker's service-graph step stored for ``span`` (its edges seen
    up to ``topology_ms`` before the start): caller -> callees."""
    rows = _rows(read(
        f"SELECT DISTINCT caller, callee FROM {database}.service_edges WHERE bucket >= "
        f"fromUnixTimestamp64Milli({span.from_ms - topology_ms}, 'UTC') AND bucket < "
        f"fromUnixTimestamp64Milli({span.to_ms}, 'UTC') ORDER BY caller, callee"))
    graph: dict[str, list[str]] = {}
    for r in rows:
        graph.setdefault(r["caller"], []).append(r["callee"])
    return {caller: tuple(callees) for caller, callees in graph.items()}


def replay(settings: Settings, read: ReadArrow, candidate: Candidate | None, span: Range,
           on_progress: Callable[[Progress], None] | None = None) -> ReplayResult:
    """The candidate's detections and problems over ``span`` (nothing is written)."""
    stored = StoredTelemetry(read, settings.store.database, span.services)
    topology = stored_topology(read, settings.store.database, span,
                               settings.graph.topology_ms)
    run = Replay(settings, engines_with(settings, candidate), span.from_ms, span.to_ms,
                 topology=topology, query=lambda sql: QueryResult.from_arrow(read(sql)))
    for chunk in stored.chunks(span.from_ms - span.warmup_ms, span.to_ms, span.chunk_ms):
        run.feed(chunk)
        if on_progress is not None:
            on_progress(run.result.progress)
    return run.finish()


def quality(labels: Labels, problems: Sequence[dict[str, Any]],
            detections: Sequence[Any]) -> dict[str, Any]:
    """The evaluation figures of one side (see :mod:`pipeline.evaluate.matching`)."""
    firing = [{"id": d["id"] if isinstance(d, dict) else d.id,
               "time": d["time"] if isinstance(d, dict) else d.time,
               "service": d["service"] if isinstance(d, dict) else d.service,
               "since": int(d.get("since", d["time"]) if isinstance(d, dict)
                            else d.since if d.since >= 0 else d.time)}
              for d in detections
              if (d["state"] if isinstance(d, dict) else d.state) == "firing"]
    result = evaluate(labels, problems, firing)
    full = result_to_dict(result)
    return {**full["summary"], "grouping_f1": full["grouping"]["f1"]}


def backtest(settings: Settings, read: ReadArrow, candidate: Candidate | None, span: Range,
             labels: Labels | None = None, sample: int = 3,
             on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Replay, compare with the stored current results, score both: a JSON-ready report."""
    db = settings.store.database
    result = replay(settings, read, candidate, span, on_progress)
    current_detections = stored_detections(read, db, span)
    current_problems = stored_problems(read, db, settings.correlate.scope, span)
    candidate_problems = [problem_dict(p) for p in result.problems.values()
                          if span.from_ms <= p.opened_at < span.to_ms and not p.merged_into
                          and (not span.services or set(p.affected) & set(span.services))]
    detections = compare_detections(current_detections, result.detections, sample)
    problems = compare_problems(current_problems, candidate_problems, span.to_ms, sample)
    progress = result.progress
    report: dict[str, Any] = {
        "candidate": candidate.describe() if candidate else "the current detectors",
        "from_ms": span.from_ms, "to_ms": span.to_ms, "warmup_ms": span.warmup_ms,
        "services": list(span.services),
        "replay": {"records": progress.records, "chunks": progress.chunks,
                   "seconds": round(progress.seconds, 3),
                   "records_per_s": round(progress.records_per_s, 1),
                   "late_records": result.late_records, "engine_errors": result.errors},
        "detections": {"current": len(current_detections), "candidate": len(result.detections),
                       **detections.totals(),
                       "by_detector": detections.to_dict(("detector", "service"))},
        "problems": {"current": len(current_problems), "candidate": len(candidate_problems),
                     **problems.totals(), "by_service": problems.to_dict(("service",))},
    }
    if labels is not None:
        report["quality"] = {
            "current": quality(labels, current_problems, current_detections),
            "candidate": quality(labels, candidate_problems, result.detections)}
    return report
