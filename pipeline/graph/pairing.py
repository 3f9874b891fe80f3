"""Pair spans into service edges with one bounded query per time range (the store does it).

An edge caller -> callee is seen three ways, as in the OpenTelemetry ``servicegraph``
connector and Tempo's service graphs:

- ``spans``: a span whose parent span (same trace id, ``parent_span_id = span_id``)
  belongs to another service: the parent's service calls the child's. The client-side
  latency is the parent's duration when the parent is a client/producer span (the call
  as the caller saw it), else the child's;
  For a client span paired with the callee's server span, the difference of their
  durations is the call's *network time* (on the wire, in proxies and queues: outside
  the callee's own handling), summarised per edge and bucket by its median;
- ``attribute``: a client/producer span naming its peer in ``peer.service``,
  ``server.address`` or ``db.system`` and with no child span of another service (an
  uninstrumented database, cache or external API);
- ``metrics``: a metric point of a service carrying ``peer.service`` (e.g. per-edge
  latency from a mesh), which says the service calls that peer (topology only).

Pairing in the store is independent of how records were partitioned: every span is
there, whichever worker ingested it. The join is bounded: children that *started* in
``[lo, hi)`` against parents that started in ``[lo - pair_window_ms, hi)``, so memory
is bounded by the span rate times the window, never by the table. A child is counted in
the bucket of its own start time, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PEER_ATTRIBUTES = ("peer.service", "server.address", "db.system")
OUTGOING = ("client", "producer")
BINS_PER_OCTAVE = 4  # latency histogram: bin b holds [2^(b/4), 2^((b+1)/4)) µs
MAX_BIN = 127  # about 4 minutes


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency in milliseconds."""
    us = max(ms * 1000.0, 1.0)
    return min(MAX_BIN, int(BINS_PER_OCTAVE * math.log2(us)))


def bin_floor_ms(b: int) -> float:
    """The lowest latency (ms) of bin ``b``."""
    return 2.0 ** (b / BINS_PER_OCTAVE) / 1000.0


@dataclass(frozen=True)
class EdgeStat:
    """One edge in one time bucket."""

    caller: str
    callee: str
    bucket_ms: int  # start of the bucket
    source: str  # spans, attribute or metrics
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    hist: tuple[tuple[int, int], ...] = ()  # (latency bin, calls), see latency_bin
    network_calls: int = 0  # calls paired client span -> server span
    network_p50_ms: float = 0.0  # their median client minus server duration

    @property
    def error_ratio(self) -> float:
        """Errors per call (0 without calls)."""
        return self.errors / self.calls if self.calls else 0.0


def _ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


def _between(column: str, lo: int, hi: int) -> str:
    return (f"{column} >= fromUnixTimestamp64Milli(toInt64({int(lo)})) "
            f"AND {column} < fromUnixTimestamp64Milli(toInt64({int(hi)}))")


def pairing_sql(database: str, lo_ms: int, hi_ms: int, bucket_ms: int,
                pair_window_ms: int) -> str:
    """One query: every edge of every bucket in ``[lo_ms, hi_ms)`` from paired spans and
    peer attributes, as rows ``(caller, callee, bucket, source, calls, errors, (p50, p95,
    p99), hist, network_calls, network_p50)`` (``hist``: latency bins and their calls;
    ``network_*``: the client -> server pairs and their median duration difference)."""
    db = database
    children = (f"SELECT trace_id, parent_span_id, service, start, status, kind, duration_ms "
                f"FROM {db}.spans WHERE {_between('start', lo_ms, hi_ms)} "
                "AND parent_span_id != ''")
    parents = (f"SELECT trace_id, span_id, service, status, kind, duration_ms FROM {db}.spans "
               f"WHERE {_between('start', lo_ms - pair_window_ms, hi_ms)}")
    peer = "multiIf(" + ", ".join(f"s.attributes['{a}'] != '', s.attributes['{a}']"
                                  for a in PEER_ATTRIBUTES) + ", '')"
    outgoing = ", ".join(f"'{k}'" for k in OUTGOING)
    paired = (
        "SELECT p.service AS caller, c.service AS callee, c.start AS t, 'spans' AS source, "
        "(p.status = 'error' OR c.status = 'error') AS failed, "
        f"if(p.kind IN ({outgoing}), p.duration_ms, c.duration_ms) AS latency, "
        "p.kind = 'client' AND c.kind = 'server' AS rpc, "
        "p.duration_ms - c.duration_ms AS network "
        f"FROM ({children}) AS c INNER JOIN ({parents}) AS p "
        "ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id "
        "WHERE p.service != c.service")
    named = (
        f"SELECT s.service AS caller, {peer} AS callee, s.start AS t, 'attribute' AS source, "
        "s.status = 'error' AS failed, s.duration_ms AS latency, "
        "false AS rpc, 0.0 AS network "
        f"FROM (SELECT * FROM {db}.spans WHERE {_between('start', lo_ms, hi_ms)} "
        f"AND kind IN ({outgoing})) AS s "
        f"LEFT ANTI JOIN ({children}) AS c "
        "ON c.trace_id = s.trace_id AND c.parent_span_id = s.span_id "
        "WHERE callee != '' AND callee != s.service")
    return (
        f"SELECT caller, callee, intDiv({_ms('t')}, {int(bucket_ms)}) * {int(bucket_ms)} "
        "AS bucket, source, count() AS calls, countIf(failed) AS errors, "
        "quantilesExact(0.5, 0.95, 0.99)(latency) AS q, "
        f"sumMap([toUInt16(least({MAX_BIN}, floor({BINS_PER_OCTAVE} * "
        "log2(greatest(latency * 1000, 1)))))], [toUInt64(1)]) AS hist, "
        "countIf(rpc) AS rpcs, quantileExactIf(0.5)(network, rpc) AS network_p50 "
        f"FROM ({paired} UNION ALL {named}) "
        "GROUP BY caller, callee, bucket, source ORDER BY bucket, caller, callee, source")


def first_span_sql(database: str, lo_ms: int, hi_ms: int) -> str:
    """The first span's start in ``[lo_ms, hi_ms)``, as one row ``(start_ms, spans)``."""
    return (f"SELECT {_ms('min(start)')}, count() FROM {database}.spans "
            f"WHERE {_between('start', lo_ms, hi_ms)}")


def metric_edges_sql(database: str, lo_ms: int, hi_ms: int, bucket_ms: int) -> str:
    """Edges named by metric points' ``peer.service`` in ``[lo_ms, hi_ms)``, as rows
    ``(caller, callee, bucket, points)``."""
    return (
        "SELECT service AS caller, attributes['peer.service'] AS callee, "
        f"intDiv({_ms('time')}, {int(bucket_ms)}) * {int(bucket_ms)} AS bucket, count() "
        f"FROM {database}.metrics WHERE {_between('time', lo_ms, hi_ms)} "
        "AND callee != '' AND callee != caller "
        "GROUP BY caller, callee, bucket ORDER BY bucket, caller, callee")


def edge_stats(paired_rows: Iterable[Sequence], metric_rows: Iterable[Sequence] = (),
               ) -> list[EdgeStat]:
    """Rows of :func:`pairing_sql` and :func:`metric_edges_sql` as edge statistics, by
    bucket then edge (a metric edge is listed only where no span saw it)."""
    out: dict[tuple[str, str, int], EdgeStat] = {}
    for caller, callee, bucket, source, calls, errors, q, *rest in paired_rows:
        q = [_finite(x) for x in (q or [0.0, 0.0, 0.0])]
        hist = _hist(rest[0]) if rest else ()
        rpcs, network = (int(rest[1]), _finite(rest[2])) if len(rest) >= 3 else (0, 0.0)
        key = (str(caller), str(callee), int(bucket))
        stat = EdgeStat(key[0], key[1], key[2], str(source), int(calls), int(errors), *q[:3],
                        hist=hist, network_calls=rpcs,
                        network_p50_ms=network if rpcs else 0.0)
        old = out.get(key)
        if old is None or (old.source != "spans" and source == "spans"):
            out[key] = stat  # a paired edge speaks for the call better than an attribute
    for caller, callee, bucket, _points in metric_rows:
        key = (str(caller), str(callee), int(bucket))
        out.setdefault(key, EdgeStat(key[0], key[1], key[2], "metrics", 0, 0, 0.0, 0.0, 0.0))
    return [out[k] for k in sorted(out, key=lambda k: (k[2], k[0], k[1]))]


def _finite(value: Any) -> float:
    """A number from the store, 0.0 for a missing or non-finite one."""
    x = float(value) if value is not None else 0.0
    return x if math.isfinite(x) else 0.0


def _hist(value: Any) -> tuple[tuple[int, int], ...]:
    """A ``sumMap`` result (a (bins, counts) pair, as a tuple, list or mapping)."""
    if isinstance(value, Mapping):  # an Arrow struct {"1": bins, "2": counts}, or a map
        parts = list(value.values())
        if len(parts) == 2 and all(isinstance(p, (list, tuple)) for p in parts):
            bins, counts = parts
        else:
            bins, counts = list(value.keys()), parts
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        bins, counts = value
    else:
        return ()
    return tuple(sorted((int(b), int(c)) for b, c in zip(bins, counts, strict=True) if c))
