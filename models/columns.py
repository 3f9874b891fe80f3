"""Reading the stream's column batches: numpy, Arrow or list columns alike.

The codec gives numpy arrays for numbers and times, lists for strings and an Arrow map
array for attributes; a store query gives Arrow columns. The models read them through
these helpers, and classify metrics by name.

>>> metric_category("http.server.duration.p95"), metric_category("system.cpu.utilization")
('performance', 'resource')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

_CATEGORY = (
    (re.compile(r"error|fail"), "availability"),
    (re.compile(r"duration|latency|response"), "performance"),
    (re.compile(r"cpu|memory|mem\.|disk|queue|utilization|gc|heap"), "resource"),
    (re.compile(r"request|throughput|rate"), "availability"),
)


def metric_category(name: str) -> str:
    """Detection category of a metric from its name."""
    for pattern, category in _CATEGORY:
        if pattern.search(name):
            return category
    return "performance"


def values_of(columns: Mapping[str, Any], name: str) -> list[Any]:
    """A column as a list of Python values (Arrow timestamps as epoch ms)."""
    col = columns[name]
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms", tz=col.type.tz), safe=False).cast(pa.int64())
        return col.to_pylist()
    return col.tolist() if isinstance(col, np.ndarray) else list(col)


def times_of(columns: Mapping[str, Any], name: str) -> np.ndarray:
    """A time column as int64 epoch ms."""
    col = columns[name]
    if isinstance(col, np.ndarray):
        return col.astype(np.int64, copy=False)
    return np.asarray(values_of(columns, name), dtype=np.int64)
