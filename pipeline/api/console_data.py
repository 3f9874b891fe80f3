"""What the console reads from the store: bounded statements on the read-only path.

Every statement here goes through ``read`` (the worker's :meth:`StoreWriter.read`, the
query page's path: ClickHouse's read-only mode, ``final = 1``, the operator's limits)
and carries its own ``LIMIT`` and time window. Filters from the page are checked
against their allowed values or quoted as string literals; times come back as epoch ms.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.events import durations
from pipeline.events.detection import SEVERITIES, STATES
from pipeline.events.problem import STATUSES
from pipeline.store.base import QueryResult

Read = Callable[[str], Awaitable[QueryResult]]

MAX_PROBLEMS = 200
MAX_DETECTIONS = 300
MAX_MEMBERS = 2000
MAX_CHANGES = 500
MAX_SERIES = 8
MAX_POINTS = 240
DEFAULT_SINCE = "7d"
DEFAULT_DETECTIONS_SINCE = "24h"
#: Signals shown for an affected service whose detections name no metric, best first.
KEY_SIGNALS = ("http.server.error.ratio", "http.server.request.duration.p95",
               "http.server.duration.p95", "http.server.request.rate", "system.cpu.utilization",
               "system.memory.utilization", "queue.depth")


class FilterError(ValueError):
    """A filter of a console page has a value it does not take; the message names it."""


def quote(text: str) -> str:
    """``text`` as a ClickHouse string expression: a literal with quotes doubled, or
    ``unhex('…')`` when it holds a backslash (the read path hands the statement to the
    engine as a query parameter, whose backslash escapes would change the text).

    >>> quote("it's")
    "'it''s'"
    >>> quote("a\\\\b")
    "unhex('615C62')"
    """
    if "\\" in text:
        return f"unhex('{text.encode().hex().upper()}')"
    return "'" + text.replace("'", "''") + "'"


def rows(result: QueryResult) -> list[dict[str, Any]]:
    """The result's rows as dicts by column name."""
    return [dict(zip(result.columns, r, strict=True)) for r in result.rows]


@dataclass(frozen=True)
class Filters:
    """A list page's filters: status (or state), severity, service, and how far back."""

    status: str = ""
    severity: str = ""
    service: str = ""
    since: str = DEFAULT_SINCE

    @classmethod
    def parse(cls, query: Mapping[str, str], statuses: Sequence[str],
              default_since: str = DEFAULT_SINCE) -> Filters:
        """Filters from a query string; raises :class:`FilterError` naming a bad value."""
        status = query.get("status", "").strip()
        severity = query.get("severity", "").strip()
        service = query.get("service", "").strip()
        since = query.get("since", "").strip() or default_since
        if status and status not in statuses:
            raise FilterError(f"status: expected one of {', '.join(statuses)}, got {status!r}")
        if severity and severity not in SEVERITIES:
            raise FilterError(f"severity: expected one of {', '.join(SEVERITIES)}, "
                              f"got {severity!r}")
        if len(service) > 200:
            raise FilterError("service: at most 200 characters")
        try:
            if durations.parse_duration_ms(since) <= 0:
                raise FilterError(f"since: expected a positive duration, got {since!r}")
        except durations.DurationError as exc:
            raise FilterError(f"since: {exc}") from None
        return cls(status, severity, service, since)

    def since_ms(self, now_ms: int) -> int:
        """The earliest time the page shows."""
        return now_ms - durations.parse_duration_ms(self.since)


def problems_sql(db: str, filters: Filters, now_ms: int, limit: int = MAX_PROBLEMS) -> str:
    """The problems list: open first, then acknowledged, then resolved; newest first."""
    where = [f"updated_at >= fromUnixTimestamp64Milli({filters.since_ms(now_ms)})"]
    if filters.status:
        where.append(f"status = {quote(filters.status)}")
    if filters.severity:
        where.append(f"severity = {quote(filters.severity)}")
    if filters.service:
        where.append(f"has(affected, {quote(filters.service)})")
    return (
        "SELECT id, status, severity, category, title, affected, root_causes, version, "
        "toUnixTimestamp64Milli(opened_at) AS opened_ms, "
        "toUnixTimestamp64Milli(updated_at) AS updated_ms, acknowledged_by, merged_into "
        f"FROM {db}.problems WHERE {' AND '.join(where)} "
        "ORDER BY indexOf(['open', 'acknowledged', 'resolved'], status), opened_at DESC "
        f"LIMIT {int(limit)}")


def root_cause_of(root_causes_json: str) -> str:
    """The top root-cause candidate's service from the stored JSON ('' when none)."""
    try:
        causes = orjson.loads(root_causes_json or "[]")
    except orjson.JSONDecodeError:
        return ""
    return str(causes[0].get("service", "")) if causes and isinstance(causes[0], dict) else ""


async def list_problems(read: Read, db: str, filters: Filters, now_ms: int) -> list[dict]:
    """Problems for the list page, each with ``root_cause``."""
    found = rows(await read(problems_sql(db, filters, now_ms)))
    for p in found:
        p["root_cause"] = root_cause_of(p["root_causes"])
    return found


def detections_sql(db: str, filters: Filters, now_ms: int, limit: int = MAX_DETECTIONS) -> str:
    """The detections list, newest first."""
    where = [f"time >= fromUnixTimestamp64Milli({filters.since_ms(now_ms)})",
             "NOT shadow"]  # a shadow candidate's detections: `tocsin shadow report`
    if filters.status:
        where.append(f"state = {quote(filters.status)}")
    if filters.severity:
        where.append(f"severity = {quote(filters.severity)}")
    if filters.service:
        where.append(f"service = {quote(filters.service)}")
    return (
        "SELECT id, toUnixTimestamp64Milli(time) AS time_ms, detector, detector_version, "
        "signal, service, host, entity, category, severity, state, title, observed, "
        f"threshold, score FROM {db}.detections WHERE {' AND '.join(where)} "
        f"ORDER BY time DESC LIMIT {int(limit)}")


async def list_detections(read: Read, db: str, filters: Filters, now_ms: int) -> list[dict]:
    """Detections for the list page."""
    return rows(await read(detections_sql(db, filters, now_ms)))


@dataclass
class ProblemData:
    """Everything the problem page shows, as read from the store."""

    problem: dict[str, Any]
    root_causes: list[dict[str, Any]]
    diagnostic_plan: dict[str, Any]
    runbook: dict[str, Any]
    links: list[dict[str, Any]]
    detections: list[dict[str, Any]]
    window: tuple[int, int]
    series: list[dict[str, Any]] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)  # operators' verdicts


def _json_field(value: Any, empty: Any) -> Any:
    if not isinstance(value, str) or not value:
        return empty
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return empty


def chart_window(opened_ms: int, end_ms: int, before_ms: int = 30 * 60_000,
                 after_ms: int = 15 * 60_000, max_span_ms: int = 12 * 3_600_000
                 ) -> tuple[int, int]:
    """The time the problem page plots: from before the onset to after the last change,
    at most ``max_span_ms`` long (the onset kept in view)."""
    start = opened_ms - before_ms
    end = max(end_ms, opened_ms) + after_ms
    return start, min(end, start + max_span_ms)


def step_ms(window: tuple[int, int], points: int = MAX_POINTS) -> int:
    """A bucket width (whole seconds) that gives at most ``points`` points."""
    span = max(window[1] - window[0], 1)
    return max(1000, math.ceil(span / points / 1000) * 1000)


async def read_problem(read: Read, db: str, problem_id: str) -> ProblemData | None:
    """The problem's latest version, its member links and detections (None when the
    store has no such problem)."""
    found = rows(await read(
        "SELECT id, version, scope, status, title, category, severity, confidence, affected, "
        "root_causes, detection_ids, symptoms, potential_causes, diagnostic_plan, runbook, "
        "resolution, merged_into, acknowledged_by, "
        "toUnixTimestamp64Milli(opened_at) AS opened_ms, "
        "toUnixTimestamp64Milli(updated_at) AS updated_ms, "
        "toUnixTimestamp64Milli(resolved_at) AS resolved_ms "
        f"FROM {db}.problems WHERE id = {quote(problem_id)} LIMIT 1"))
    if not found:
        return None
    p = found[0]
    links = rows(await read(
        "SELECT detection_id, toUnixTimestamp64Milli(time) AS time_ms, service, role "
        f"FROM {db}.problem_detections WHERE problem_id = {quote(problem_id)} "
        f"ORDER BY time LIMIT {MAX_MEMBERS}"))
    end = p["resolved_ms"] or p["updated_ms"]
    window = chart_window(p["opened_ms"], end)
    detections = []
    if links:
        detections = rows(await read(
            "SELECT id, toUnixTimestamp64Milli(time) AS time_ms, detector, detector_version, "
            "signal, service, host, entity, severity, state, title, observed, threshold, "
            f"score, labels, evidence FROM {db}.detections "
            f"WHERE time >= fromUnixTimestamp64Milli({window[0] - 86_400_000}) "
            f"AND time <= fromUnixTimestamp64Milli({window[1] + 86_400_000}) "
            "AND NOT shadow "
            f"AND id IN (SELECT detection_id FROM {db}.problem_detections "
            f"WHERE problem_id = {quote(problem_id)}) ORDER BY time LIMIT {MAX_MEMBERS}"))
    changes = rows(await read(
        "SELECT version, toUnixTimestamp64Milli(time) AS time_ms, kind, reason, event_id, "
        f"event_type, status, severity, acknowledged_by FROM {db}.problem_changes "
        f"WHERE problem_id = {quote(problem_id)} ORDER BY time, version LIMIT {MAX_CHANGES}"))
    feedback = rows(await read(
        "SELECT toUnixTimestamp64Milli(time) AS time_ms, author, verdict, root_cause, comment "
        f"FROM {db}.feedback WHERE problem_id = {quote(problem_id)} ORDER BY time "
        f"LIMIT {MAX_CHANGES}"))
    return ProblemData(p, _json_field(p["root_causes"], []),
                       _json_field(p["diagnostic_plan"], {}), _json_field(p["runbook"], {}),
                       links, detections, window, changes=changes, feedback=feedback)


def metric_of(detection: Mapping[str, Any]) -> str:
    """The metric a detection is about, when it is about one ('' otherwise)."""
    if detection.get("signal") != "metrics":
        return ""
    labels = detection.get("labels") or {}
    if isinstance(labels, list):  # a Map may arrive as pairs
        labels = dict(labels)
    return str(labels.get("metric") or detection.get("entity") or "")


def key_signals(data: ProblemData, available: Iterable[tuple[str, str]],
                max_series: int = MAX_SERIES) -> list[tuple[str, str]]:
    """(service, metric) pairs to plot: the root cause's first, then the affected
    services'; per service the metrics its detections name, else :data:`KEY_SIGNALS`."""
    have = set(available)
    services = [c.get("service", "") for c in data.root_causes[:1]]
    services += [s for s in data.problem.get("affected", []) if s]
    named: dict[str, list[str]] = {}
    for d in data.detections:
        metric = metric_of(d)
        if metric and (d["service"], metric) in have:
            named.setdefault(d["service"], [])
            if metric not in named[d["service"]]:
                named[d["service"]].append(metric)
    chosen: list[tuple[str, str]] = []
    for service in dict.fromkeys(services):
        metrics = named.get(service) or [m for m in KEY_SIGNALS if (service, m) in have][:2]
        for metric in metrics[:3]:
            if len(chosen) < max_series:
                chosen.append((service, metric))
    return chosen


async def read_series(read: Read, db: str, data: ProblemData) -> None:
    """Fill ``data.series``: the key signals around the onset, bucketed to at most
    :data:`MAX_POINTS` points, with the expected band and thresholds from detections."""
    services = list(dict.fromkeys([c.get("service", "") for c in data.root_causes[:1]]
                                  + list(data.problem.get("affected", []))))
    services = [s for s in services if s][:20]
    if not services:
        return
    t0, t1 = data.window
    span = (f"time >= fromUnixTimestamp64Milli({t0}) "
            f"AND time <= fromUnixTimestamp64Milli({t1})")
    in_services = ", ".join(quote(s) for s in services)
    available = (await read(
        f"SELECT DISTINCT service, name FROM {db}.metrics WHERE service IN ({in_services}) "
        f"AND {span} LIMIT 2000")).rows
    pairs = key_signals(data, [(str(s), str(n)) for s, n in available])
    if not pairs:
        return
    step = step_ms(data.window)
    names = ", ".join(quote(n) for n in dict.fromkeys(n for _, n in pairs))
    chosen_services = ", ".join(quote(s) for s in dict.fromkeys(s for s, _ in pairs))
    result = await read(
        f"SELECT service, name, host, {t0} + intDiv(toUnixTimestamp64Milli(time) - {t0}, "
        f"{step}) * {step} AS t, avg(value) AS v FROM {db}.metrics "
        f"WHERE service IN ({chosen_services}) AND name IN ({names}) AND {span} "
        "GROUP BY service, name, host, t ORDER BY service, name, host, t "
        f"LIMIT {MAX_SERIES * MAX_POINTS * 16}")
    per_host: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for service, name, host, t, v in result.rows:
        per_host.setdefault((service, name, host), []).append((int(t), float(v)))
    for service, metric in pairs:
        data.series.append(series_entry(data.detections, service, metric, per_host))


def series_entry(detections: Sequence[Mapping[str, Any]], service: str, metric: str,
                 per_host: Mapping[tuple[str, str, str], Sequence[tuple[int, float]]]
                 ) -> dict[str, Any]:
    """One chart's data: where a model gave an expected band, the host it was about most
    often, with that host's band; else the mean over hosts, with a rule's threshold."""
    bands: dict[str, list[tuple[int, float, float, float]]] = {}
    threshold = None
    for d in detections:
        if d["service"] != service or metric_of(d) != metric:
            continue
        evidence = _json_field(d.get("evidence"), {})
        if isinstance(evidence, dict) and "band_low" in evidence and "band_high" in evidence:
            bands.setdefault(str(d.get("host", "")), []).append(
                (int(d["time_ms"]), float(evidence["band_low"]), float(evidence["band_high"]),
                 float(evidence.get("expected", math.nan))))
        elif d.get("threshold") is not None and math.isfinite(d["threshold"]):
            threshold = float(d["threshold"])
    host = max(sorted(bands), key=lambda h: len(bands[h])) if bands else ""
    if host and (service, metric, host) in per_host:
        points = list(per_host[(service, metric, host)])
        band = sorted(bands[host])
    else:
        host, band = "", []
        sums: dict[int, list[float]] = {}
        for (s, m, _h), pts in per_host.items():
            if (s, m) == (service, metric):
                for t, v in pts:
                    sums.setdefault(t, []).append(v)
        points = [(t, sum(vs) / len(vs)) for t, vs in sorted(sums.items())]
    return {"service": service, "metric": metric, "host": host, "points": points,
            "band": band, "threshold": threshold}


async def read_edges(read: Read, db: str, services: Sequence[str],
                     static: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Calls touching ``services``: learned from traces (``service_edges``) and the
    correlator's static dependencies."""
    edges = {(a, b) for a, callees in static.items() for b in callees
             if a in services or b in services}
    if services:
        listed = ", ".join(quote(s) for s in services)
        result = await read(f"SELECT DISTINCT caller, callee FROM {db}.service_edges "
                            f"WHERE caller IN ({listed}) OR callee IN ({listed}) LIMIT 500")
        edges |= {(str(a), str(b)) for a, b in result.rows}
    return sorted(edges)


def dead_letters_sql(db: str, since_ms: int) -> tuple[str, str]:
    """Dead letters by topic and reason, and the latest ones, since ``since_ms``."""
    span = f"received_at >= fromUnixTimestamp64Milli({since_ms})"
    by_reason = ("SELECT topic, substring(reason, 1, 300) AS why, count() AS records, "
                 "toUnixTimestamp64Milli(max(received_at)) AS last_ms "
                 f"FROM {db}.dead_letters WHERE {span} GROUP BY topic, why "
                 "ORDER BY records DESC LIMIT 50")
    latest = ("SELECT toUnixTimestamp64Milli(received_at) AS received_ms, topic, partition, "
              "offset, record_index, substring(reason, 1, 500) AS reason, "
              "substring(payload, 1, 200) AS payload "
              f"FROM {db}.dead_letters WHERE {span} ORDER BY received_at DESC LIMIT 20")
    return by_reason, latest


__all__ = ["STATES", "STATUSES", "FilterError", "Filters", "ProblemData", "chart_window",
           "dead_letters_sql", "detections_sql", "key_signals", "list_detections",
           "list_problems", "problems_sql", "read_edges", "read_problem", "read_series"]
