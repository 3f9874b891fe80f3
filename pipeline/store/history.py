"""Recent history of metric series, read back to warm up models that have no state.

One bounded query per service (or one statement for the requests of many services,
:func:`recent_metrics_many`): the last ``max_points`` points of each asked (host,
metric) series in ``[before - lookback, before)``, as metric columns the model engine's
``seed`` takes. ClickHouse's ``LIMIT n BY`` bounds the points per series; the table's
order key (service, name, host, time) makes the range read cheap.

The asked series are named per service and metric name, their hosts in one ``IN`` list
(:func:`series_filter`): a list of ``(service, host, name)`` tuples says the same, but
ClickHouse took 17 s to parse and plan it for a million new series (a rollout renaming
every pod, a first start), against 3 s for this form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.store.base import Store


def sql_string(text: str) -> str:
    """A ClickHouse string literal (backslashes and quotes escaped).

    >>> sql_string("it's a\\\\b")
    "'it\\\\'s a\\\\\\\\b'"
    """
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def series_filter(requests: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """A condition true for exactly the asked ``(host, name)`` series of each service:
    per service and name, ``service = s AND name = n AND host IN (...)``, OR-ed.

    >>> series_filter([("db", [("db-1", "cpu"), ("db-2", "cpu")])])
    "(service = 'db' AND name = 'cpu' AND host IN ('db-1', 'db-2'))"
    """
    parts = []
    for service, series in requests:
        hosts: dict[str, set[str]] = {}
        for host, name in series:
            hosts.setdefault(name, set()).add(host)
        parts += [f"(service = {sql_string(service)} AND name = {sql_string(name)} AND host IN "
                  f"({', '.join(sql_string(h) for h in sorted(hosts[name]))}))"
                  for name in sorted(hosts)]
    return " OR ".join(parts) if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def filter_chars(series: Sequence[tuple[str, str]]) -> int:
    """About how long :func:`series_filter` is for one service's ``series``, service
    name aside (each host once, plus each name's own clause)."""
    return (sum(len(h) + 4 for h, _ in series)
            + sum(len(n) + 48 for n in {n for _, n in series}))


def history_sql(database: str, service: str, series: Sequence[tuple[str, str]],
                before_ms: int, lookback_ms: int, max_points: int) -> str:
    """The query behind :func:`recent_metrics`."""
    return (
        "SELECT host, name, toUnixTimestamp64Milli(time) AS t, value "
        f"FROM {database}.metrics WHERE service = {sql_string(service)} "
        f"AND {series_filter([(service, series)])} "
        f"AND time >= fromUnixTimestamp64Milli({int(before_ms - lookback_ms)}) "
        f"AND time < fromUnixTimestamp64Milli({int(before_ms)}) "
        f"ORDER BY host, name, t DESC LIMIT {int(max_points)} BY host, name")


def recent_metrics(store: Store, service: str, series: Sequence[tuple[str, str]],
                   before_ms: int, lookback_ms: int, max_points: int) -> dict[str, Any]:
    """Metric columns (``time``, ``host``, ``name``, ``value``) of the asked series'
    recent points, oldest first per series; empty columns when none is stored."""
    if not series or lookback_ms <= 0 or max_points <= 0:
        return _columns([])
    rows = store.query(history_sql(store.database, service, series, before_ms, lookback_ms,
                                   max_points)).rows
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return _columns(rows)


MAX_SQL_CHARS = 200_000
"""Longest statement :func:`recent_metrics_many` sends (ClickHouse's ``max_query_size``
is 256 KiB by default); more requests go in several statements."""


def many_sql(database: str, requests: Sequence[tuple[str, Sequence[tuple[str, str]], int]],
             lookback_ms: int, max_points: int) -> str:
    """One statement for requests of distinct services: the rows of each request's
    :func:`history_sql` (the window per service, ``LIMIT n BY`` per series), tagged with
    the service."""
    services = ", ".join(sql_string(svc) for svc, _, _ in requests)
    befores = ", ".join(str(int(b)) for _, _, b in requests)
    low = min(int(b) for _, _, b in requests) - lookback_ms
    high = max(int(b) for _, _, b in requests)
    before = f"transform(service, [{services}], [{befores}], toInt64(0))"
    return (
        "SELECT service, host, name, toUnixTimestamp64Milli(time) AS t, value "
        f"FROM {database}.metrics WHERE service IN ({services}) "
        f"AND {series_filter([(svc, series) for svc, series, _ in requests])} "
        f"AND time >= fromUnixTimestamp64Milli({int(low)}) "
        f"AND time < fromUnixTimestamp64Milli({int(high)}) "
        f"AND t >= {before} - {int(lookback_ms)} AND t < {before} "
        f"ORDER BY service, host, name, t DESC LIMIT {int(max_points)} BY service, host, name")


def recent_metrics_many(store: Store, requests: Sequence[tuple[str, Sequence[tuple[str, str]],
                                                                int]],
                        lookback_ms: int, max_points: int,
                        max_sql_chars: int = MAX_SQL_CHARS) -> list[dict[str, Any]]:
    """:func:`recent_metrics` of many ``(service, series, before_ms)`` requests in as
    few statements as fit ``max_sql_chars`` (:func:`many_sql`; a service asked twice
    goes in another statement): the same rows, one answer per request, in order."""
    answers: list[list[tuple[Any, ...]]] = [[] for _ in requests]
    if lookback_ms <= 0 or max_points <= 0:
        return [_columns([]) for _ in requests]
    group: dict[str, int] = {}  # service -> request index, in the statement being built
    size = 0

    def flush() -> None:
        nonlocal size
        if group:
            sql = many_sql(store.database, [requests[i] for i in group.values()], lookback_ms,
                           max_points)
            for row in store.query(sql).rows:
                answers[group[str(row[0])]].append(tuple(row[1:]))
        group.clear()
        size = 0

    for i, (service, series, _) in enumerate(requests):
        if not series:
            continue
        names = len({n for _, n in series})
        cost = filter_chars(series) + (names + 2) * (len(service) + 16)
        if service in group or (group and size + cost > max_sql_chars - 2_000):
            flush()
        group[service] = i
        size += cost
    flush()
    for rows in answers:
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [_columns(rows) for rows in answers]


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {"time": np.array([int(r[2]) for r in rows], dtype=np.int64),
            "host": [str(r[0]) for r in rows], "name": [str(r[1]) for r in rows],
            "value": np.array([float(r[3]) for r in rows], dtype=np.float64)}
