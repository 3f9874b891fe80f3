"""The worker's own metrics in Prometheus text format, without Faust.

Two sources, one registry per worker (:class:`WorkerMetrics`, never the process-wide
default registry: two workers in one process count apart):

- *Counts the worker keeps anyway* (the status page's: records per kind, agent batches
  and failures, detections, alerts, reads ...) are not counted a second time: a
  collector turns the status snapshot into metric families at each scrape
  (:func:`status_families`).
- *Distributions* the status page has no room for are histograms observed where they
  happen: batch sizes and durations per agent, store insert durations per table, query
  durations.

Names follow Prometheus conventions: a ``tocsin_`` prefix, base units in the name
(``_seconds``, ``_records``), ``_total`` on counters, ``_timestamp_seconds`` for event
times as Unix seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.graph.anomaly import DETECTOR as EDGE_DETECTOR

METRICS_PATH = "/metrics"
# the classic text format every Prometheus version reads (the names need no escaping)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)

Snapshot = Callable[[], Mapping[str, Any]]


class WorkerMetrics:
    """One worker's metrics registry: its histograms and the status collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_size = Histogram(
            "tocsin_agent_batch_size_records", "Messages per batch an agent took",
            ["agent"], buckets=_SIZE_BUCKETS, registry=self.registry)
        self.batch_duration = Histogram(
            "tocsin_agent_batch_duration_seconds",
            "Time from taking a batch to releasing it for commit, retries included",
            ["agent"], buckets=_SECONDS_BUCKETS, registry=self.registry)
        self.insert_duration = Histogram(
            "tocsin_store_insert_duration_seconds", "Duration of successful store inserts",
            ["table"], buckets=_SECONDS_BUCKETS, registry=self.registry)
        self.query_duration = Histogram(
            "tocsin_query_duration_seconds",
            "Duration of analysts' reads on the query page (answered, refused or failed)",
            buckets=_SECONDS_BUCKETS, registry=self.registry)

    def observe_batch(self, agent: str, size: int, seconds: float) -> None:
        """A batch of ``size`` messages completed in ``seconds``."""
        self.batch_size.labels(agent).observe(size)
        self.batch_duration.labels(agent).observe(seconds)

    def observe_insert(self, table: str, seconds: float) -> None:
        """An insert into ``table`` succeeded in ``seconds``."""
        self.insert_duration.labels(table).observe(seconds)

    def observe_query(self, seconds: float) -> None:
        """An analyst's read ended after ``seconds``."""
        self.query_duration.observe(seconds)

    def collect_status(self, snapshot: Snapshot) -> None:
        """Expose the counts of ``snapshot()`` (the status page's dict) at each scrape."""
        self.registry.register(_StatusCollector(snapshot))

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE


class _StatusCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from status_families(self.snapshot())


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels or [])


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def _by_label(family: Metric, values: Mapping[str, Any] | None) -> Metric:
    for label, value in sorted((values or {}).items()):
        family.add_metric([str(label)], float(value))
    return family


def _seconds(ms: int) -> float:
    return ms / 1000.0


def status_families(status: Mapping[str, Any]) -> list[Metric]:
    """Metric families of a worker status snapshot (the ``/tocsin/status`` dict).

    >>> names = [f.name for f in status_families({"stored": {"metric": 3}})]
    >>> "tocsin_ingest_records_stored" in names
    True
    """
    families: list[Metric] = [
        _by_label(_counter("tocsin_ingest_messages_consumed_total",
                           "Kafka messages the ingest agents consumed", ["kind"]),
                  status.get("messages")),
        _by_label(_counter("tocsin_ingest_records_stored_total",
                           "Records stored in the raw tables", ["kind"]),
                  status.get("stored")),
        _by_label(_counter("tocsin_ingest_records_dead_lettered_total",
                           "Records (or unreadable messages) rejected to the dead-letter "
                           "topic", ["kind"]), status.get("rejected")),
        _by_label(_counter("tocsin_ingest_records_not_forwarded_total",
                           "Records stored but too large for the detectors (dead-lettered)",
                           ["kind"]), status.get("not_forwarded")),
        _by_label(_counter("tocsin_ingest_empty_messages_total",
                           "Messages holding an empty JSON array", ["kind"]),
                  status.get("empty_messages")),
        _by_label(_counter("tocsin_ingest_records_older_than_ttl_total",
                           "Records stored already older than store.ttl_days", ["kind"]),
                  status.get("older_than_ttl")),
    ]
    failures = _counter("tocsin_store_insert_failures_total",
                        "Store inserts that failed (each is retried with its batch)")
    failures.add_metric([], float(status.get("store_failed_attempts", 0)))
    families.append(failures)
    families += _agent_families(status.get("agents") or {})
    families += _lag_families(status.get("consumer_lag") or [])
    families += _detect_families(status.get("detect") or {},
                                 (status.get("correlate") or {}).get("edge_detections") or {})
    families += _correlate_families(status.get("correlate") or {})
    families += _read_families(status.get("reads") or {})
    return families


def _agent_families(agents: Mapping[str, Mapping[str, Any]]) -> list[Metric]:
    specs = [
        ("tocsin_agent_batches_total", "Batches an agent completed", "batches", _counter),
        ("tocsin_agent_batch_failures_total", "Failed attempts at a batch (retried in place)",
         "failures", _counter),
        ("tocsin_agent_crashes_total", "Times an agent task ended while holding a batch",
         "crashes", _counter),
        ("tocsin_agent_stale_events_total",
         "Events fetched before a rebalance, left to be delivered again", "stale", _counter),
        ("tocsin_agent_batches_given_up_total",
         "Batches left uncommitted on a stop or rebalance", "given_up", _counter),
        ("tocsin_agent_consecutive_failures", "Failed attempts of the batch in hand",
         "consecutive_failures", _gauge),
        ("tocsin_agent_stuck", "1 while the agent is stuck on a batch", "stuck", _gauge),
    ]
    families = []
    for name, doc, key, make in specs:
        family = make(name, doc, ["agent"])
        for agent, record in sorted(agents.items()):
            family.add_metric([agent], float(record.get(key, 0)))
        families.append(family)
    return families


def _lag_families(lags: list[Mapping[str, Any]]) -> list[Metric]:
    lag = _gauge("tocsin_consumer_lag_records",
                 "Messages in a partition past the committed offset", ["topic", "partition"])
    for row in lags:
        lag.add_metric([str(row["topic"]), str(row["partition"])], float(row["lag"]))
    return [lag]


def _detect_families(detect: Mapping[str, Any],
                     edge_detections: Mapping[str, int]) -> list[Metric]:
    if not detect.get("engines"):
        return []
    families: list[Metric] = []
    for name, doc, key in (
            ("tocsin_detect_batches_total", "Batches the detect agent completed", "batches"),
            ("tocsin_detect_slices_total", "By-service slices run through the engines",
             "slices"),
            ("tocsin_detect_engine_errors_total", "Engine failures (state kept, logged)",
             "errors"),
            ("tocsin_detect_late_records_total",
             "Records later than detect.allowed_lateness_ms (counted, not windowed)",
             "late_records"),
            ("tocsin_detections_not_sent_total",
             "Detections stored but too large for the detections topic", "not_sent"),
            ("tocsin_detect_seeded_series_total",
             "Model series warmed up from stored history", "seeded_series"),
            ("tocsin_detect_history_errors_total",
             "History reads that failed (those series started cold)", "history_errors")):
        family = _counter(name, doc)
        family.add_metric([], float(detect.get(key, 0)))
        families.append(family)
    detections = _counter("tocsin_detections_total", "Detections by detector and state",
                          ["detector", "state"])
    # the detect agent's detectors, and the service-graph step's (it runs in the correlator)
    by_detector = dict(detect.get("by_detector") or {})
    if edge_detections:
        by_detector[EDGE_DETECTOR] = dict(edge_detections)
    for detector, states in sorted(by_detector.items()):
        for state, n in sorted(states.items()):
            detections.add_metric([detector, state], float(n))
    families.append(detections)
    watermark_ms = int(detect.get("watermark_ms", -1))
    if watermark_ms >= 0:
        family = _gauge("tocsin_detect_watermark_timestamp_seconds",
                        "Event time every detector has passed (Unix seconds)")
        family.add_metric([], _seconds(watermark_ms))
        families.append(family)
    sources = detect.get("sources") or {}
    times = _gauge("tocsin_detect_source_timestamp_seconds",
                   "Event time a source partition was forwarded up to (Unix seconds)",
                   ["source"])
    lag = _gauge("tocsin_detect_watermark_lag_seconds",
                 "Event time between a source's progress and the detect watermark",
                 ["source"])
    backlog = _gauge("tocsin_detect_source_backlog",
                     "1 while records wait in the source partition", ["source"])
    for source, info in sorted(sources.items()):
        if info["time_ms"] >= 0:
            times.add_metric([source], _seconds(info["time_ms"]))
        lag.add_metric([source], _seconds(info["lag_ms"]))
        backlog.add_metric([source], 1.0 if info["backlog"] else 0.0)
    return families + [times, lag, backlog]


def _correlate_families(correlate: Mapping[str, Any]) -> list[Metric]:
    if not correlate:
        return []
    decisions = _by_label(_counter("tocsin_correlate_decisions_total",
                                   "Problem lifecycle decisions by kind", ["kind"]),
                          correlate.get("decisions"))
    alerts = _by_label(_counter("tocsin_alerts_sent_total",
                                "Alerts sent to the alerts topic by CloudEvents type",
                                ["type"]), correlate.get("alerts_by_type"))
    not_sent = _counter("tocsin_alerts_not_sent_total",
                        "Alerts too large for the alerts topic even trimmed")
    not_sent.add_metric([], float(correlate.get("not_sent", 0)))
    rejected = _counter("tocsin_correlate_rejected_messages_total",
                        "Unreadable detection or control messages skipped")
    rejected.add_metric([], float(correlate.get("rejected", 0)))
    open_problems = _by_label(_gauge("tocsin_problems_open",
                                     "Open and acknowledged problems per scope", ["scope"]),
                              correlate.get("open_problems"))
    event_time = _gauge("tocsin_correlate_event_time_timestamp_seconds",
                        "Latest event time the correlator processed (Unix seconds)", ["scope"])
    for scope, ms in sorted((correlate.get("event_time_ms") or {}).items()):
        if ms > 0:
            event_time.add_metric([scope], _seconds(ms))
    return [decisions, alerts, not_sent, rejected, open_problems, event_time]


def _read_families(reads: Mapping[str, Any]) -> list[Metric]:
    queries = _counter("tocsin_queries_total", "Analysts' reads on the query page by outcome",
                       ["outcome"])
    for outcome in ("served", "refused", "failed"):
        queries.add_metric([outcome], float(reads.get(outcome, 0)))
    running = _gauge("tocsin_queries_running", "Analysts' reads in flight")
    running.add_metric([], float(reads.get("running", 0)))
    return [queries, running]
