"""Column batches shared by every step: signal names, their time columns, row selection.

A *column batch* is the codec's output for one kind of record: numpy arrays for times and
numbers, lists of strings for text, and ``attributes`` as a pyarrow array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import compress
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.events.schema import RecordKind

SIGNALS = ("metrics", "logs", "traces")
SIGNAL_OF_KIND = {RecordKind.METRIC: "metrics", RecordKind.LOG: "logs",
                  RecordKind.SPAN: "traces"}
SIGNAL_OF_TABLE = {"metrics": "metrics", "logs": "logs", "spans": "traces"}
TIME_COLUMN = {"metrics": "time", "logs": "time", "traces": "start"}


def take(columns: Mapping[str, Any], rows: np.ndarray | Sequence[int]) -> dict[str, Any]:
    """The given rows of every column (numpy, list or Arrow), in the order given.

    >>> take({"v": np.array([1.0, 2.0, 3.0]), "s": ["a", "b", "c"]}, [2, 0])
    {'v': array([3., 1.]), 's': ['c', 'a']}
    """
    rows = np.asarray(rows, dtype=np.int64)
    out: dict[str, Any] = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray):
            out[name] = col[rows]
        elif isinstance(col, (pa.Array, pa.ChunkedArray)):
            out[name] = col.take(pa.array(rows, type=pa.int64()))
        else:
            out[name] = [col[i] for i in rows.tolist()]
    return out


def keep_rows(columns: dict[str, Any], keep: np.ndarray) -> None:
    """Drop, in place, the rows of every column (numpy, Arrow or list) where ``keep`` is False.

    >>> cols = {"v": np.array([1, 2, 3]), "s": ["a", "b", "c"]}
    >>> keep_rows(cols, np.array([True, False, True])); cols["s"]
    ['a', 'c']
    """
    for name, values in columns.items():
        if isinstance(values, np.ndarray):
            columns[name] = values[keep]
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            columns[name] = values.filter(pa.array(keep))
        else:
            columns[name] = list(compress(values, keep))


def split_by_service(columns: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Columns of a multi-service batch, one batch per service (record order kept).

    >>> split_by_service({"service": ["a", "b", "a"], "v": np.array([1, 2, 3])})["a"]["v"]
    array([1, 3])
    """
    index: dict[str, list[int]] = {}
    for i, service in enumerate(columns.get("service") or []):
        index.setdefault(service, []).append(i)
    return {service: take(columns, rows) for service, rows in index.items()}


def concat(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Columns of several batches of one kind, one after the other."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {}
    for name, first in parts[0].items():
        cols = [p[name] for p in parts]
        if isinstance(first, np.ndarray):
            out[name] = np.concatenate(cols)
        elif isinstance(first, (pa.Array, pa.ChunkedArray)):
            out[name] = pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray)
                                          else c for c in cols])
        else:
            out[name] = [v for c in cols for v in c]
    return out
