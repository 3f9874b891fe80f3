"""The worker's own health on its web server: the status snapshot, ``/metrics``,
``/healthz`` and ``/readyz``.

One snapshot (:func:`worker_status`) serves the JSON status page, the Prometheus
metrics (``pipeline.api.metrics``) and ``tocsin status``: every count is kept once.
``/metrics`` wants the bearer token like the other pages (a scraper sends it with
``authorization: {credentials: ...}``); the probes do not (``pipeline.api.probes``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.web import Request, Response, View

from pipeline.agents.detect import services_with_state
from pipeline.agents.heap import arrow_memory
from pipeline.agents.partitions import partition_states
from pipeline.agents.recovery import recovery_state
from pipeline.api.metrics import METRICS_PATH
from pipeline.api.probes import HEALTHZ_PATH, READYZ_PATH, readiness
from pipeline.api.web import refuse, served_by
from pipeline.store.readonly import scrub_paths

log = logging.getLogger("tocsin.app")

_CHANGELOG_SUFFIX = "-changelog"


def consumer_lag(consumer: Any) -> list[dict[str, Any]]:
    """Per assigned partition of the agents' topics (table changelogs aside): the high
    watermark, the committed offset and the messages between them."""
    if consumer is None:
        return []
    committed = getattr(consumer, "_committed_offset", {})
    try:
        assigned = sorted(consumer.assignment())
    except Exception:  # the consumer is not started yet: nothing assigned
        return []
    rows = []
    for tp in assigned:
        if tp.topic.endswith(_CHANGELOG_SUFFIX):
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet: unknown, not zero
            highwater = None
        if highwater is None:
            continue
        done = committed.get(tp) or 0
        rows.append({"topic": tp.topic, "partition": tp.partition, "highwater": highwater,
                     "committed": done, "lag": max(0, highwater - done)})
    return rows


def assignment(app: Any) -> dict[str, list[int]]:
    """The partitions this worker reads, by topic (none before its first assignment)."""
    try:
        tps = app.consumer.assignment()
    except Exception:  # no consumer yet: the worker is still starting
        return {}
    out: dict[str, list[int]] = {}
    for tp in tps:
        out.setdefault(tp.topic, []).append(tp.partition)
    return {topic: sorted(ps) for topic, ps in sorted(out.items())}


def worker_status(pipeline: Any, now_ms: int,
                  monotonic_s: float | None = None) -> dict[str, Any]:
    """The worker's counters, agent health, lag and watermarks as one JSON-ready dict
    (``monotonic_s``, the monotonic clock now, dates table recovery's events)."""
    settings = pipeline.settings
    counters = pipeline.ingestor.counters
    detect = pipeline.detect_counters
    correlate = pipeline.correlate_counters
    reads = pipeline.writer.reads
    app = pipeline.app
    assigned = assignment(app)
    return {
        **served_by(settings),
        "now_ms": now_ms,
        "backend": "embedded" if settings.store.embedded else "clickhouse-connect",
        "messages": counters.messages,
        "stored": counters.stored,
        "rejected": counters.rejected,
        "empty_messages": counters.empty_messages,
        "older_than_ttl": counters.older_than_ttl,
        "not_forwarded": counters.not_forwarded,
        "store_failed_attempts": pipeline.writer.failed_attempts,
        "agents": pipeline.health.to_wire(),
        "assigned": assigned,
        "rebalancing": bool(getattr(app, "rebalancing", False)),
        "consumer_lag": consumer_lag(getattr(app, "_consumer", None)),
        # where each assigned partition stands: fetched, delivered, acknowledged, committed
        "consumer": partition_states(app, getattr(getattr(app, "_consumer", None),
                                                  "delivery", None)),
        # table recovery: per changelog partition its end, applied offset, last event
        "recovery": recovery_state(app, monotonic_s),
        "detect": {
            "services_with_state": services_with_state(
                pipeline.detect_tables, settings.topics.partitions,
                assigned.get(settings.topics.by_service, [])),
            "engines": {name: getattr(engine, "version", "")
                        for name, engine in pipeline.engines.items()},
            "batches": detect.batches,
            "slices": detect.slices,
            "watermark_ms": detect.watermark_ms,
            "allowed_lateness_ms": settings.detect.allowed_lateness_ms,
            "errors": detect.errors,
            "detections": detect.detections,
            "by_detector": detect.by_detector,
            "sources": detect.sources,
            "late_records": detect.late_records,
            "not_sent": detect.not_sent,
            "shadow": detect.shadow,
            "seeded_series": detect.seeded_series,
            "history_errors": detect.history_errors,
        },
        "stages": pipeline.stages.to_wire(),
        # where Arrow allocates (worker.arrow_memory_pool) and what it holds now
        "memory": arrow_memory(),
        "reads": {"running": reads.running, "served": reads.served,
                  "refused": reads.refused, "failed": reads.failed},
        "correlate": {
            "decisions": correlate.decisions,
            "alerts": correlate.alerts,
            "alerts_by_type": correlate.alerts_by_type,
            "open_problems": correlate.open_problems,
            "event_time_ms": correlate.event_time_ms,
            # event time every detection source (and the service graph) has passed
            "watermark_ms": correlate.watermark_ms,
            "rejected": correlate.rejected,
            "not_sent": correlate.not_sent,
            "shadow_dropped": correlate.shadow_dropped,
            "diagnostics": correlate.diagnostics,
            "edge_detections": correlate.edge_detections,  # the service-graph step's
        },
    }


def register_ops_pages(pipeline: Any, now_ms: Any) -> None:
    """Add ``/metrics``, ``/healthz`` and ``/readyz`` to the worker's web server;
    ``now_ms()`` reads the clock for the snapshot."""
    app = pipeline.app
    metrics = pipeline.metrics
    metrics.collect_status(lambda: worker_status(pipeline, now_ms(), time.monotonic()))

    @app.page(METRICS_PATH)
    class MetricsView(View):
        """GET: every metric in Prometheus text format (bearer token when configured)."""

        async def get(self, request: Request) -> Response:
            refusal = refuse(request.method, request.headers,
                             pipeline.settings.worker.api_token.reveal())
            if refusal is not None:
                return self.text(refusal.reason + "\n", status=refusal.status)
            body, content_type = metrics.exposition()
            # aiohttp takes no charset in content_type: the header goes as it is
            return self.bytes(body, headers={"Content-Type": content_type})

    @app.page(HEALTHZ_PATH)
    class HealthzView(View):
        """GET: 200 while the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "up"})

    @app.page(READYZ_PATH)
    class ReadyzView(View):
        """GET: 200 when partitions are assigned, the store answers and no agent is
        stuck; 503 with the reasons otherwise."""

        async def get(self, request: Request) -> Response:
            consumer = getattr(app, "_consumer", None)
            assigned = len(consumer.assignment()) if consumer is not None else 0
            store_error = await pipeline.writer.ping()
            answer = readiness(
                assigned=assigned, rebalancing=bool(getattr(app, "rebalancing", False)),
                store_error=None if store_error is None else scrub_paths(store_error)[:300],
                stuck=[(a.name, a.consecutive_failures, a.last_error)
                       for a in pipeline.health.stuck()])
            return self.json(answer.to_wire(), status=answer.status)
