"""Automated diagnostics: the knowledge base's checks that stored telemetry can answer, as
read-only ClickHouse queries bounded in time and rows (pure: SQL in, evidence out).

When a problem opens, reopens or changes its top root cause, the correlate agent runs
:func:`diagnostic_queries` for the root-cause service on the store's read-only session
(``readonly``, the ``[query]`` limits) and attaches the results to the problem as
evidence (``diagnostic_plan.results``, the ``problem_diagnostics`` table, the alert).
Times are event times: *now* is the decision's time, *onset* the problem's opening.
Checks that need the host (``nc``, ``kubectl`` ...) stay described in the plan; none is
executed.

>>> [q.name for q in diagnostic_queries("tocsin", "orders", 3_600_000, 4_200_000)]
['error_rate_by_operation', 'slowest_callees', 'new_log_templates', 'deploys_and_versions']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.events.problem import Decision

MINUTE_MS = 60_000
RECENT_MS = 15 * MINUTE_MS  # "the last 15 minutes"
BASELINE_MS = 60 * MINUTE_MS  # what "new" and "before onset" look back over
MAX_ROWS = 10  # rows kept per check
MAX_TEXT = 200  # characters kept per value
RUN_ON = ("opened", "reopened")  # decision kinds that always run the checks
# a log line as a template: ids, hex and numbers folded (ClickHouse re2 patterns)
_TEMPLATE = ("replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(body, "
             "'[0-9a-fA-F]{8,}', '<id>'), '[0-9]+(\\\\.[0-9]+)?', '<n>'), '\\\\s+', ' ')")


@dataclass(frozen=True)
class DiagnosticQuery:
    """One check as a bounded read statement."""

    name: str
    title: str
    expect: str
    sql: str


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _at(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({int(ms)}, 'UTC')"


def diagnostic_queries(database: str, service: str, onset_ms: int,
                       now_ms: int) -> list[DiagnosticQuery]:
    """The checks of ``service`` for a problem that began at ``onset_ms``, at ``now_ms``."""
    db, svc = database, _quote(service)
    recent_lo, hi = now_ms - RECENT_MS, max(now_ms, onset_ms) + 1
    recent = f"start >= {_at(recent_lo)} AND start < {_at(hi)}"
    recent_c = f"c.start >= {_at(recent_lo)} AND c.start < {_at(hi)}"
    logs_lo = min(onset_ms - 5 * MINUTE_MS, recent_lo)
    return [
        DiagnosticQuery(
            "error_rate_by_operation", f"error rate by operation of {service}, last 15 min",
            "no operation above 1% errors",
            "SELECT name AS operation, count() AS spans, countIf(status = 'error') AS errors, "
            "round(errors / spans, 4) AS error_rate, round(quantile(0.95)(duration_ms), 1) "
            f"AS p95_ms FROM {db}.spans WHERE service = {svc} AND {recent} "
            f"GROUP BY operation ORDER BY error_rate DESC, spans DESC LIMIT {MAX_ROWS}"),
        DiagnosticQuery(
            "slowest_callees", f"slowest callees of {service}, last 15 min",
            "callees answer within their usual latency, without errors",
            "SELECT c.service AS callee, count() AS calls, round(quantile(0.95)(c.duration_ms), "
            "1) AS p95_ms, countIf(c.status = 'error') AS errors FROM "
            f"{db}.spans AS c INNER JOIN (SELECT trace_id, span_id FROM {db}.spans WHERE "
            f"service = {svc} AND {recent}) AS p ON c.trace_id = p.trace_id AND "
            f"c.parent_span_id = p.span_id WHERE c.service != {svc} AND {recent_c} "
            f"GROUP BY callee ORDER BY p95_ms DESC LIMIT {MAX_ROWS}"),
        DiagnosticQuery(
            "new_log_templates", f"log templates of {service} new since onset",
            "no new error template",
            f"SELECT {_TEMPLATE} AS template, count() AS n, max(severity_text) AS severity, "
            f"min(time) AS first_seen FROM {db}.logs WHERE service = {svc} AND "
            f"time >= {_at(logs_lo)} AND time < {_at(hi)} AND template NOT IN (SELECT "
            f"{_TEMPLATE} FROM {db}.logs WHERE service = {svc} AND time >= "
            f"{_at(logs_lo - BASELINE_MS)} AND time < {_at(logs_lo)}) "
            f"GROUP BY template ORDER BY n DESC LIMIT {MAX_ROWS}"),
        DiagnosticQuery(
            "deploys_and_versions", f"deploys and versions of {service} in the hour before "
            "onset", "no deploy or version change within 15 minutes before onset",
            "SELECT 'version' AS what, attributes['service.version'] AS detail, "
            "min(time) AS first_seen, max(time) AS last_seen, uniqExact(host) AS hosts "
            f"FROM {db}.metrics WHERE service = {svc} AND time >= "
            f"{_at(onset_ms - BASELINE_MS)} AND time < {_at(hi)} AND "
            "attributes['service.version'] != '' GROUP BY detail UNION ALL "
            "SELECT 'deploy log' AS what, any(body) AS detail, min(time) AS first_seen, "
            "max(time) AS last_seen, uniqExact(host) AS hosts FROM "
            f"{db}.logs WHERE service = {svc} AND time >= {_at(onset_ms - BASELINE_MS)} "
            f"AND time < {_at(hi)} AND body ILIKE '%deploy%' GROUP BY body "
            f"ORDER BY first_seen LIMIT {MAX_ROWS}"),
    ]


def top_root_cause(decision: Decision) -> str:
    """The first root-cause candidate of a decision's problem ('' when none)."""
    causes = decision.problem.root_causes
    return causes[0].service if causes else ""


def due(decisions: Sequence[Decision], last_root: Mapping[str, str]) -> list[Decision]:
    """The decisions whose problem needs its checks run: it opened or reopened, or its
    top root cause is not the one last checked (``last_root``: problem id → service)."""
    out: dict[str, Decision] = {}
    for d in decisions:
        root = top_root_cause(d)
        if not root or d.problem.status == "resolved" or d.problem.merged_into:
            continue
        if d.kind in RUN_ON or last_root.get(d.problem.id, root) != root or \
                d.problem.id not in last_root:
            out[d.problem.id] = d  # the latest decision of a problem in the batch
    return list(out.values())


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, int | bool) or value is None:
        return value
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def evidence(query: DiagnosticQuery, service: str, time_ms: int, columns: Sequence[str],
             rows: Sequence[Sequence[Any]], error: str = "") -> dict[str, Any]:
    """One check's result as evidence: JSON-ready, at most ``MAX_ROWS`` short rows."""
    return {"check": query.name, "title": query.title, "service": service, "time_ms": time_ms,
            "expect": query.expect, "columns": list(columns),
            "rows": [[_plain(v) for v in row] for row in rows[:MAX_ROWS]],
            "error": error[:MAX_TEXT]}
