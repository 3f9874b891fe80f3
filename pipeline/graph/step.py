"""One service-graph step: pair the spans of the buckets event time has passed (no Faust).

The correlate agent runs it before each correlation step, with the watermark that
step will see (the event time every detect worker has passed once the batch's ticks are
in, so every span before it is stored: :func:`~pipeline.correlate.step.detection_progress`),
a function that queries the store, and the step's stored state. For every whole bucket
since the last run it runs the bounded pairing queries of :mod:`pipeline.graph.pairing`
(``MAX_BUCKETS_PER_RUN`` buckets per query, as many queries as it takes to catch up),
scores the edges (:class:`~pipeline.graph.anomaly.EdgeModel`) and returns:

- rows for ``service_edges`` (one per edge and bucket);
- edge detections, and the messages that carry them onto the detections path followed
  by a tick of this step's own source, ``service-graph``. They go to the correlator
  *with* the batch, ahead of it: the correlator's event time (the least of every
  source's) never passes a bucket before that bucket's edge detections are in;
- the topology the correlator reasons over: every edge seen within ``topology_ms``.

A first run starts at the first span stored within ``topology_ms`` before the watermark,
but not before the event time the correlator has already passed (the edges of those
buckets would come late): a worker started on a fresh store and a replay of what it
stored pair the same buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from pipeline.correlate.reorder import GRAPH_SOURCE
from pipeline.events.detection import Detection
from pipeline.graph.anomaly import EdgeModel
from pipeline.graph.pairing import (
    EdgeStat,
    edge_stats,
    first_span_sql,
    metric_edges_sql,
    pairing_sql,
)
from pipeline.settings import GraphSettings, Settings
from pipeline.store.base import QueryResult

SOURCE = GRAPH_SOURCE
MAX_BUCKETS_PER_RUN = 60  # buckets paired per query (a step far behind runs several)
STATE_FORMAT = 1


EDGE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("caller", pa.string()), ("callee", pa.string()), ("source", pa.string()),
    ("calls", pa.uint64()), ("errors", pa.uint64()), ("p50_ms", pa.float64()),
    ("p95_ms", pa.float64()), ("p99_ms", pa.float64()), ("network_calls", pa.uint64()),
    ("network_p50_ms", pa.float64()))
"""The ``service_edges`` columns an :class:`EdgeStat` gives as they are (the bucket aside),
with their stored types: one list for the rows and the table."""


@dataclass
class GraphResult:
    """What one step produced (see the module docstring)."""

    state: bytes
    detections: list[Detection] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    edges: list[EdgeStat] = field(default_factory=list)
    topology: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def edge_rows(self) -> list[dict[str, Any]]:
        """The edges as ``service_edges`` rows."""
        return [{"bucket": e.bucket_ms, **{name: getattr(e, name) for name, _ in EDGE_COLUMNS}}
                for e in self.edges]


def edges_table(edges: list[EdgeStat], bucket_ms: int) -> pa.Table:
    """Edge statistics as rows of the ``service_edges`` table."""
    return pa.table({
        "bucket": pa.array([e.bucket_ms for e in edges], pa.timestamp("ms", tz="UTC")),
        "bucket_ms": pa.array([bucket_ms] * len(edges), pa.uint32()),
        **{name: pa.array([getattr(e, name) for e in edges], kind)
           for name, kind in EDGE_COLUMNS},
    })


class GraphStep:
    """Pairs, scores and remembers service edges for one correlation scope."""

    def __init__(self, settings: GraphSettings, scope: str = "default",
                 database: str = "tocsin", keepalive_ms: int = 0, stale_ms: int = 0) -> None:
        self.settings = settings
        self.scope = scope
        self.database = database
        self.keepalive_ms = keepalive_ms  # re-send firing edge alarms (detect.keepalive_ms)
        self.stale_ms = stale_ms  # end the alarms of silent edges (detect.stale_ms)

    @classmethod
    def from_settings(cls, settings: Settings, database: str = "tocsin") -> GraphStep:
        """The step the settings configure: their graph, correlation scope, and the
        detectors' keep-alive and silence policy for the edge alarms."""
        return cls(settings.graph, settings.correlate.scope, database,
                   settings.detect.keepalive_ms, settings.detect.stale_ms)

    def topology(self, stored: bytes | None) -> dict[str, tuple[str, ...]]:
        """The call graph (caller -> callees) a stored state holds."""
        return _topology(_State.from_bytes(stored, self.settings.min_calls).edges)

    def run(self, watermark_ms: int, query: Callable[[str], QueryResult],
            stored: bytes | None, passed_ms: int = -1) -> GraphResult:
        """Process every whole bucket before ``watermark_ms`` not done yet; a first run
        pairs nothing before ``passed_ms`` (the correlator's event time)."""
        s = self.settings
        state = _State.from_bytes(stored, s.min_calls, self.keepalive_ms, self.stale_ms,
                                  s.network_ms)
        hi = (watermark_ms // s.bucket_ms) * s.bucket_ms if watermark_ms >= 0 else -1
        if state.done_until < 0 and hi >= 0:
            state.done_until = self._first_bucket(watermark_ms, passed_ms, hi, query)
        result = GraphResult(b"")
        while hi > state.done_until >= 0:
            lo = state.done_until
            upto = min(hi, lo + MAX_BUCKETS_PER_RUN * s.bucket_ms)
            rows = query(pairing_sql(self.database, lo, upto, s.bucket_ms, s.pair_window_ms))
            metric = query(metric_edges_sql(self.database, lo, upto, s.bucket_ms))
            edges = edge_stats(rows.rows, metric.rows)
            result.edges += edges
            result.detections += state.model.score(
                [e for e in edges if e.source != "metrics"], s.bucket_ms)
            result.detections += state.model.silent(upto)
            for e in edges:
                seen = state.edges.setdefault(f"{e.caller}\t{e.callee}", [0, 0])
                seen[0] = max(seen[0], e.bucket_ms + s.bucket_ms)
                seen[1] += e.calls
            state.done_until = upto
        result.messages = [d.to_json() for d in result.detections]
        if state.done_until >= 0:
            result.messages.append(orjson.dumps({"tick": state.done_until, "source": SOURCE}))
            horizon = state.done_until - s.topology_ms
            state.edges = {k: v for k, v in state.edges.items() if v[0] >= horizon}
        result.topology = _topology(state.edges)
        result.state = state.to_bytes()
        return result

    def _first_bucket(self, watermark_ms: int, passed_ms: int, hi: int,
                      query: Callable[[str], QueryResult]) -> int:
        """Where a first run starts: the bucket of the first span stored within
        ``topology_ms`` before the watermark and not before ``passed_ms``; ``hi`` (the
        watermark's bucket) when there is none."""
        s = self.settings
        lo = max(watermark_ms - s.topology_ms, passed_ms, 0)
        rows = query(first_span_sql(self.database, lo, watermark_ms)).rows
        first = rows[0][0] if rows and rows[0] and rows[0][1] else None
        if first is None:
            return hi
        return min(hi, (max(int(first), lo) // s.bucket_ms) * s.bucket_ms)


def _topology(edges: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    topology: dict[str, set[str]] = {}
    for key in edges:
        caller, callee = key.split("\t")
        topology.setdefault(caller, set()).add(callee)
    return {k: tuple(sorted(v)) for k, v in sorted(topology.items())}


@dataclass
class _State:
    """Buckets done, edges seen (for the topology) and the edge model."""

    done_until: int
    edges: dict[str, list[int]]  # "caller\tcallee" -> [last bucket end, calls]
    model: EdgeModel

    @classmethod
    def from_bytes(cls, data: bytes | None, min_calls: int, keepalive_ms: int = 0,
                   stale_ms: int = 0, network_ms: float = 0.0) -> _State:
        model = EdgeModel(min_calls=min_calls, keepalive_ms=keepalive_ms, stale_ms=stale_ms,
                          network_ms=network_ms)
        if not data:
            return cls(-1, {}, model)
        raw: Mapping[str, Any] = orjson.loads(data)
        model.load(raw["model"])
        return cls(int(raw["done_until"]), {k: list(v) for k, v in raw["edges"].items()},
                   model)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"format": STATE_FORMAT, "done_until": self.done_until,
                             "edges": self.edges, "model": self.model.to_dict()})
