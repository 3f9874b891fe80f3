"""The service graph learned from spans: caller -> callee edges per time bucket.

:mod:`pipeline.graph.pairing` pairs spans into edges with one bounded store query per
time range; :mod:`pipeline.graph.anomaly` tests each edge's calls against its own latency
baseline and error ratio, raising anomalies on the callee; :mod:`pipeline.graph.step` runs
both for the buckets event time has passed (the correlate agent calls it).
"""

from pipeline.graph.anomaly import EdgeModel
from pipeline.graph.pairing import EdgeStat, edge_stats, metric_edges_sql, pairing_sql
from pipeline.graph.step import GraphResult, GraphStep, edges_table

__all__ = ["EdgeModel", "EdgeStat", "GraphResult", "GraphStep", "edge_stats", "edges_table",
           "metric_edges_sql", "pairing_sql"]
