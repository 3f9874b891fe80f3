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
from pipeline.api.paths import QUERY_PATH, RULES_RELOAD_PATH, SILENCES_PATH, STATUS_PATH
from pipeline.detect.engines import build_engines
from pipeline.errors import StoreError
from pipeline.ingest.step import Ingestor
from pipeline.kafka.transport import ssl_context
from pipeline.settings import KafkaSettings, Settings
from pipeline.store import Store, is_read_only, open_store
from pipeline.store.writer import StoreWriter

log = logging.getLogger("tocsin.app")



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


def _register_pages(pipeline: Pipeline) -> None:
    app = pipeline.app

    @app.page(QUERY_PATH)
    class QueryView(View):
        """POST {"sql": "..."}: run a read-only query on the store this worker owns."""

        async def post(self, request: Request) -> Response:
            body = await request.json()
            sql = body.get("sql", "") if isinstance(body, dict) else ""
            if not is_read_only(sql):
                return _json(self, {"error": "only read statements (SELECT, WITH, SHOW, "
                                    "DESCRIBE, EXPLAIN, EXISTS) are served"}, 400)
            try:
                result = await pipeline.writer.query(sql)
            except StoreError as exc:
                return _json(self, {"error": str(exc)}, 400)
            return _json(self, {"columns": result.columns, "rows": result.rows})

    @app.page(STATUS_PATH)
    class StatusView(View):
        """GET: ingest counters and the store this worker writes to."""

        async def get(self, request: Request) -> Response:
            counters = pipeline.ingestor.counters
            detect = pipeline.detect_counters
            return _json(self, {
                "app_id": pipeline.settings.worker.app_id,
                "store": "embedded" if pipeline.settings.store.embedded else "server",
                "messages": counters.messages,
                "stored": counters.stored,
                "rejected": counters.rejected,
                "empty_messages": counters.empty_messages,
                "older_than_ttl": counters.older_than_ttl,
                "not_forwarded": counters.not_forwarded,
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
                    "not_sent": detect.not_sent,
                },
                "correlate": {
                    "decisions": pipeline.correlate_counters.decisions,
                    "alerts": pipeline.correlate_counters.alerts,
                    "rejected": pipeline.correlate_counters.rejected,
                    "not_sent": pipeline.correlate_counters.not_sent,
                },
            })

    @app.page(SILENCES_PATH)
    class SilencesView(View):
        """GET: the silences of every scope this worker holds."""

        async def get(self, request: Request) -> Response:
            from pipeline.agents.tables import get_value, value_keys
            from pipeline.correlate import CorrelationState

            table = pipeline.correlation_table
            silences = []
            if table is not None:
                for key in value_keys(table):
                    data = get_value(table, key)
                    if data is None:
                        continue
                    state = CorrelationState.from_bytes(data)
                    silences += [{"scope": key.decode(), **s.to_wire()}
                                 for s in state.silences.values()]
            return _json(self, {"silences": silences})

    @app.page(RULES_RELOAD_PATH)
    class RulesReloadView(View):
        """POST: load the rule files again now; a bad file keeps the old rules running."""

        async def post(self, request: Request) -> Response:
            engine = pipeline.engines.get("rules")
            if engine is None:
                return _json(self, {"error": "this worker runs no rule detectors"}, 400)
            result = engine.reload(force=True)
            return _json(self, {"changed": result.changed, "version": result.version,
                                "problems": result.problems},
                         400 if result.problems else 200)


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust ``broker_credentials`` for the configured security protocol (or None)."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.reveal(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


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
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=worker.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_ms / 3000),
        stream_buffer_maxsize=max(4096, settings.ingest.batch_size * 2),
        # every message this worker writes is sized within kafka.max_message_bytes; the
        # fetch size per partition is at least that
        producer_max_request_size=settings.kafka.max_message_bytes,
        consumer_max_fetch_size=max(settings.kafka.max_message_bytes, 1_048_576),
        autodiscover=False,
    )
    store = store or open_store(settings.store)
    writer = StoreWriter(store, settings.ingest.store_retry_max_s)
    ingestor = Ingestor(writer, settings.ingest, ttl_days=settings.store.ttl_days)
    pipeline = Pipeline(app, settings, store, writer, ingestor, build_engines(settings))
    register_ingest_agents(app, settings, pipeline.ingestor)
    if pipeline.engines:
        register_detect_agent(app, settings, pipeline.engines, writer, pipeline.detect_counters)
        for name, engine in pipeline.engines.items():
            app.timer(settings.detect.reload_interval_s, name=f"tocsin.{name}.reload")(
                _reloader(engine))
    if settings.correlate.enabled:
        from pipeline.correlate.step import CorrelationStep

        pipeline.correlation_table = register_correlate_agent(
            app, settings, CorrelationStep(settings.correlate), writer,
            pipeline.correlate_counters)
    _register_pages(pipeline)
    return pipeline


def _reloader(engine: Any):
    async def reload_rules_if_changed() -> None:
        engine.reload()

    return reload_rules_if_changed
