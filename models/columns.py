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


PEER_ATTRIBUTES = ("peer.service", "server.address", "db.system")


def peer_series(columns: Mapping[str, Any], rows: np.ndarray) -> dict[int, tuple[str, dict]]:
    """Per-edge metric points among ``rows``: position in ``rows`` -> (series key suffix,
    identifying attributes). A point naming a peer (``peer.service``, ``server.address``
    or ``db.system``) is one edge's series, identified by all of its attributes (so two
    peers, or two reporters of one edge, are not one series); other points: none.
    """
    attrs = columns.get("attributes")
    if attrs is None or not len(rows):
        return {}
    if not isinstance(attrs, (pa.Array, pa.ChunkedArray)):
        attrs = pa.array(list(attrs), pa.map_(pa.string(), pa.string()))
    import pyarrow.compute as pc

    named = None  # over the whole column: cheaper than taking the rows first
    for key in PEER_ATTRIBUTES:
        found = pc.is_valid(pc.map_lookup(attrs, key, "first"))
        named = found if named is None else pc.or_(named, found)
    assert named is not None
    where = np.flatnonzero(named.to_numpy(zero_copy_only=False)[np.asarray(rows)])
    if not where.size:
        return {}
    picked = attrs.take(pa.array(np.asarray(rows)[where], pa.int64()))
    out: dict[int, tuple[str, dict]] = {}
    for m, n in enumerate(where.tolist()):
        items = picked[m].as_py() or []
        identity = {str(k): str(v) for k, v in sorted(items)}
        out[n] = ("|" + ",".join(f"{k}={v}" for k, v in identity.items()), identity)
    return out


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
