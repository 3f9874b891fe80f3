"""The Faust app: built from settings, with the store, the ingest agents and the query page.

Everything a worker holds at run time (the store, counters) hangs off the app built here;
nothing is kept in module globals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from pipeline.agents.correlate import CorrelateCounters, register_correlate_agent
from pipeline.agents.detect import DetectCounters, register_detect_agent
from pipeline.agents.ingest import register_ingest_agents
from pipeline.engines import build_engines
from pipeline.errors import StoreError, StoreUnavailable
from pipeline.ingest import Ingestor
from pipeline.settings import Settings
from pipeline.store import ReadLimits, ReadRefused, Store, open_store
from pipeline.store.readonly import scrub_paths
from pipeline.store.writer import StoreWriter
from pipeline.transport import faust_credentials
from pipeline.web_api import (
    QUERY_PATH,
    RULES_RELOAD_PATH,
    SILENCES_PATH,
    STATUS_PATH,
    refuse,
    served_by,
)

log = logging.getLogger("tocsin.app")

__all__ = ["QUERY_PATH", "RULES_RELOAD_PATH", "SILENCES_PATH", "STATUS_PATH", "Pipeline",
           "create_pipeline"]


@dataclass
class Pipeline:
    """A worker's Faust app with the objects its agents and pages share."""

    app: faust.App
    settings: Settings
    store: Store
    writer: StoreWriter
    ingestor: Ingestor
    engines: dict[str, Any] = field(default_factory=dict)
    detect_counters: DetectCounters = field(default_factory=DetectCounters)
    correlate_counters: CorrelateCounters = field(default_factory=CorrelateCounters)
    correlation_table: Any = None


def _json(view: View, payload: object, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS),
                      content_type="application/json", status=status)


def _refused(view: View, request: Request, pipeline: Pipeline) -> Response | None:
    """The answer to a request the page must not serve (see ``pipeline.web_api``)."""
    refusal = refuse(request.method, request.headers, pipeline.settings.worker.api_token.reveal())
    if refusal is None:
        return None
    return _json(view, {"error": refusal.reason}, refusal.status)


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


def _register_pages(pipeline: Pipeline) -> None:
    app = pipeline.app
    identity = served_by(pipeline.settings)

    @app.page(QUERY_PATH)
    class QueryView(View):
        """POST {"sql": "..."}: one read statement on the store's read-only path.

        Answers, errors included, name the app id and store that served them (``served_by``)
        once the request passed the checks of ``pipeline.web_api.refuse``.
        """

        async def post(self, request: Request) -> Response:
            refused = _refused(self, request, pipeline)
            if refused is not None:
                return refused
            body = await _json_body(request)
            sql = body.get("sql") if isinstance(body, dict) else None
            if not isinstance(sql, str):
                return _json(self, {"error": 'send {"sql": "<one read statement>"}',
                                    "served_by": identity}, 400)
            try:
                result = await pipeline.writer.read(sql)
            except ReadRefused as exc:
                return _json(self, {"error": str(exc), "refused": True, "served_by": identity},
                             400)
            except StoreUnavailable as exc:
                return _json(self, {"error": scrub_paths(str(exc)), "served_by": identity}, 503)
            except StoreError as exc:
                return _json(self, {"error": scrub_paths(str(exc)), "served_by": identity}, 400)
            return _json(self, {"columns": result.columns, "rows": result.rows,
                                "served_by": identity})

    @app.page(STATUS_PATH)
    class StatusView(View):
        """GET: ingest counters and the store this worker writes to."""

        async def get(self, request: Request) -> Response:
            refused = _refused(self, request, pipeline)
            if refused is not None:
                return refused
            counters = pipeline.ingestor.counters
            detect = pipeline.detect_counters
            reads = pipeline.writer.reads
            return _json(self, {
                **identity,
                "backend": "embedded" if pipeline.settings.store.embedded
                else "clickhouse-connect",
                "messages": counters.messages,
                "stored": counters.stored,
                "rejected": counters.rejected,
                "store_failed_attempts": pipeline.writer.failed_attempts,
                "detect": {
                    "engines": {name: getattr(engine, "version", "")
                                for name, engine in pipeline.engines.items()},
                    "batches": detect.batches,
                    "slices": detect.slices,
                    "watermark_ms": detect.watermark_ms,
                    "errors": detect.errors,
                    "detections": detect.detections,
                    "late_records": detect.late_records,
                },
                "reads": {"running": reads.running, "served": reads.served,
                          "refused": reads.refused, "failed": reads.failed},
                "correlate": {
                    "decisions": pipeline.correlate_counters.decisions,
                    "alerts": pipeline.correlate_counters.alerts,
                    "rejected": pipeline.correlate_counters.rejected,
                },
            })

    @app.page(SILENCES_PATH)
    class SilencesView(View):
        """GET: the silences of every scope this worker holds."""

        async def get(self, request: Request) -> Response:
            from pipeline.correlate import CorrelationState

            refused = _refused(self, request, pipeline)
            if refused is not None:
                return refused
            table = pipeline.correlation_table
            silences = []
            if table is not None:
                for key in list(table.keys()):
                    state = CorrelationState.from_bytes(table[key])
                    silences += [{"scope": key.decode(), **s.to_wire()}
                                 for s in state.silences.values()]
            return _json(self, {"silences": silences})

    @app.page(RULES_RELOAD_PATH)
    class RulesReloadView(View):
        """POST: load the rule files again now; a bad file keeps the old rules running."""

        async def post(self, request: Request) -> Response:
            refused = _refused(self, request, pipeline)
            if refused is not None:
                return refused
            engine = pipeline.engines.get("rules")
            if engine is None:
                return _json(self, {"error": "this worker runs no rule detectors"}, 400)
            result = engine.reload(force=True)
            return _json(self, {"changed": result.changed, "version": result.version,
                                "problems": result.problems},
                         400 if result.problems else 200)


def create_pipeline(settings: Settings, store: Store | None = None) -> Pipeline:
    """Build the Faust app, open the store and register agents and web pages."""
    worker = settings.worker
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings.kafka),
        broker_client_id=settings.kafka.client_id,
        store="memory://",
        datadir=worker.data_dir,
        web_enabled=True,
        web_host=worker.web_host,
        web_bind=worker.web_host,
        web_port=worker.web_port,
        web_tables_enabled=False,  # /table/... would show the correlator's state to anyone
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=worker.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_ms / 3000),
        stream_buffer_maxsize=max(4096, settings.ingest.batch_size * 2),
        producer_max_request_size=8 * 1024 * 1024,
        autodiscover=False,
    )
    if worker.web_host not in ("127.0.0.1", "localhost", "::1") and not worker.api_token:
        log.warning("the worker's pages (the query page included) listen on %s without "
                    "worker.api_token: anyone who reaches that address can query the store",
                    worker.web_host)
    store = store or open_store(settings.store, ReadLimits.from_settings(settings.query))
    writer = StoreWriter(store, settings.ingest.store_retry_max_s)
    pipeline = Pipeline(app, settings, store, writer, Ingestor(writer, settings.ingest),
                        build_engines(settings))
    register_ingest_agents(app, settings, pipeline.ingestor)
    if pipeline.engines:
        register_detect_agent(app, settings, pipeline.engines, writer, pipeline.detect_counters)
        for name, engine in pipeline.engines.items():
            app.timer(settings.detect.reload_interval_s, name=f"tocsin.{name}.reload")(
                _reloader(engine))
    if settings.correlate.enabled:
        from pipeline.correlation import CorrelationStep

        pipeline.correlation_table = register_correlate_agent(
            app, settings, CorrelationStep(settings.correlate), writer,
            pipeline.correlate_counters)
    _register_pages(pipeline)
    return pipeline


def _reloader(engine: Any):
    async def reload_rules_if_changed() -> None:
        engine.reload()

    return reload_rules_if_changed
