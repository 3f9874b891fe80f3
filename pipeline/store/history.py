"""Recent history of metric series, read back to warm up models that have no state.

One bounded query per service: the last ``max_points`` points of each asked (host,
metric) series in ``[before - lookback, before)``, as metric columns the model engine's
``seed`` takes. ClickHouse's ``LIMIT n BY`` bounds the points per series; the table's
order key (service, name, host, time) makes the range read cheap.
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


def history_sql(database: str, service: str, series: Sequence[tuple[str, str]],
                before_ms: int, lookback_ms: int, max_points: int) -> str:
    """The query behind :func:`recent_metrics`."""
    pairs = ", ".join(f"({sql_string(h)}, {sql_string(n)})" for h, n in series)
    names = ", ".join(sorted({sql_string(n) for _, n in series}))
    return (
        "SELECT host, name, toUnixTimestamp64Milli(time) AS t, value "
        f"FROM {database}.metrics WHERE service = {sql_string(service)} "
        f"AND name IN ({names}) AND (host, name) IN ({pairs}) "
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


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {"time": np.array([int(r[2]) for r in rows], dtype=np.int64),
            "host": [str(r[0]) for r in rows], "name": [str(r[1]) for r in rows],
            "value": np.array([float(r[3]) for r in rows], dtype=np.float64)}
