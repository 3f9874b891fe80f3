"""The Faust app: built from settings, with the store, the agents and the web pages.

Everything a worker holds at run time (the store, counters, agent health) hangs off the
app built here; nothing is kept in module globals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from pipeline.agents.batches import Backoff, BatchRunner, BatchRunners
from pipeline.agents.changelog import ChangelogTables
from pipeline.agents.console import register_console
from pipeline.agents.correlate import (
    CorrelateCounters,
    held_silences,
    register_correlate_agent,
)
from pipeline.agents.detect import DetectCounters, register_detect_agent
from pipeline.agents.health import Health, describe_ranges
from pipeline.agents.heap import HeapTrimmer
from pipeline.agents.ingest import register_ingest_agents
from pipeline.agents.ops import register_ops_pages, worker_status
from pipeline.api.metrics import WorkerMetrics
from pipeline.api.web import (
    HEALTH_PATH,
    QUERY_PATH,
    RULES_RELOAD_PATH,
    SILENCES_PATH,
    STATUS_PATH,
    refuse,
    served_by,
)
from pipeline.detect.engines import build_engines
from pipeline.errors import StoreError, StoreUnavailable
from pipeline.events.faults import Faults
from pipeline.ingest.stages import StageTimes
from pipeline.ingest.step import Ingestor
from pipeline.kafka.transport import ssl_context
from pipeline.settings import KafkaSettings, Settings
from pipeline.store import ReadLimits, ReadRefused, Store, open_store
from pipeline.store.readonly import scrub_paths
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
    detect_tables: dict[str, Any] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    runners: BatchRunners = field(default_factory=BatchRunners)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    stages: StageTimes = field(default_factory=StageTimes)  # seconds per stage (status)


class TocsinApp(faust.App):
    """The Faust app of a worker: a stop lets the batches in hand settle, within a bound.

    Faust's own wait for streams on a stop or rebalance (``stream_wait_empty``) waits for
    every message to be acknowledged, and a batch that cannot be stored never is: the
    worker would never stop. Tocsin's batch runners wait instead: batches in progress
    finish, batches waiting for a retry are left uncommitted (``BatchRunners.settle``).
    Past ``shutdown_timeout_s`` after the stop began the process exits at once; whatever
    was in hand is uncommitted and is delivered again to the next worker.
    """

    runners: BatchRunners | None = None
    shutdown_timeout_s: float = 30.0
    fetch_max_wait_ms: int | None = None  # kafka.fetch_max_wait_ms (None: Faust's 1500)
    faults: Faults = Faults()  # injected faults (tests only; see pipeline.events.faults)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """Flow control into the agents' queues, resumed without clearing them (see
        ``pipeline.agents.transport``)."""
        from pipeline.agents.transport import FlowControl

        return FlowControl(loop=self.loop)

    def _new_transport(self) -> Any:
        """Faust's aiokafka transport, its consumer waiting ``fetch_max_wait_ms`` at most
        on a fetch (see ``pipeline.agents.transport``)."""
        from pipeline.agents.transport import Transport

        return Transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        """Start the shutdown deadline, let the batches settle, then stop Faust."""
        deadline = threading.Timer(self.shutdown_timeout_s, _exit_now,
                                   (self.shutdown_timeout_s,))
        deadline.daemon = True
        deadline.start()
        if self.runners is not None:
            busy = await self.runners.settle(self.shutdown_timeout_s / 2, give_up=True)
            if busy:
                log.warning("stopping with batches in hand (%s): they stay uncommitted",
                            ", ".join(busy))
        await super().on_stop()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _exit_now(timeout_s: float) -> None:
    log.error("the worker did not stop within worker.shutdown_timeout_s=%.0fs; exiting now "
              "(batches in hand stay uncommitted and are delivered again)", timeout_s)
    logging.shutdown()
    os._exit(70)


def _json(view: View, payload: object, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS),
                      content_type="application/json", status=status)


def _refused(view: View, request: Request, pipeline: Pipeline) -> Response | None:
    """The answer to a request the page must not serve (see ``pipeline.api.web``)."""
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
            return _json(self, worker_status(pipeline, _now_ms(), time.monotonic()))

    @app.page(HEALTH_PATH)
    class HealthView(View):
        """GET: 200 while every agent makes progress, 503 naming the agents stuck on a
        batch (failed ``worker.stuck_after_failures`` times in a row)."""

        async def get(self, request: Request) -> Response:
            stuck = pipeline.health.stuck()
            if not stuck:
                return _json(self, {"status": "ok"})
            return _json(self, {"status": "stuck", "stuck": {
                a.name: {"consecutive_failures": a.consecutive_failures,
                         "last_error": a.last_error, "offsets": describe_ranges(a.ranges)}
                for a in stuck}}, 503)

    @app.page(SILENCES_PATH)
    class SilencesView(View):
        """GET: the silences of every scope this worker holds."""

        async def get(self, request: Request) -> Response:
            refused = _refused(self, request, pipeline)
            if refused is not None:
                return refused
            silences = held_silences(pipeline.correlation_table)
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
    app = TocsinApp(
        worker.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings.kafka),
        broker_client_id=settings.kafka.client_id,
        store="memory://",
        TableManager=ChangelogTables,  # its changelog queue refuses stale records
        datadir=worker.data_dir,
        web_enabled=True,
        web_host=worker.web_host,
        web_bind=worker.web_host,
        web_port=worker.web_port,
        # Faust's own pages answer without the API token: /table/... would show detector
        # and correlator state, /router/ and /graph/ the cluster's layout, /stats/ timings
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=worker.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_ms / 3000),
        stream_buffer_maxsize=max(4096, settings.ingest.batch_size * 2),
        stream_wait_empty=False,  # the batch runners settle instead (TocsinApp.on_stop)
        # every message this worker writes is sized within kafka.max_message_bytes; the
        # fetch size per partition is at least that
        producer_max_request_size=settings.kafka.max_message_bytes,
        # a batch's by-service slices go out in few record batches, not one per slice
        # (Faust's default is 16 KiB, smaller than a typical slice); half the message
        # limit keeps a full record batch well within the broker's; a larger single
        # message still goes alone
        producer_max_batch_size=settings.kafka.max_message_bytes // 2,
        consumer_max_fetch_size=max(settings.kafka.max_message_bytes,
                                    settings.kafka.fetch_partition_bytes),
        autodiscover=False,
    )
    app.fetch_max_wait_ms = settings.kafka.fetch_max_wait_ms
    if worker.web_host not in ("127.0.0.1", "localhost", "::1") and not worker.api_token:
        log.warning("the worker's pages (the query page included) listen on %s without "
                    "worker.api_token: anyone who reaches that address can query the store",
                    worker.web_host)
    faults = app.faults = Faults.from_env(os.environ)
    store = store or open_store(settings.store, ReadLimits.from_settings(settings.query))
    metrics = WorkerMetrics()  # this app's registry: never shared with another worker
    writer = StoreWriter(store, faults, on_insert=metrics.observe_insert,
                         on_read=metrics.observe_query)
    stages = StageTimes()
    ingestor = Ingestor(writer, settings.ingest, ttl_days=settings.store.ttl_days,
                        stages=stages)
    pipeline = Pipeline(app, settings, store, writer, ingestor, build_engines(settings),
                        health=Health(worker.stuck_after_failures), metrics=metrics,
                        stages=stages)
    app.runners = runners = pipeline.runners
    app.shutdown_timeout_s = worker.shutdown_timeout_s
    backoff = Backoff(max_s=settings.ingest.store_retry_max_s)
    within_s = settings.ingest.batch_within_ms / 1000

    def new_runner(name: str, handle: Any) -> BatchRunner:
        return BatchRunner(app, pipeline.health.agent(name), handle,
                           batch_size=settings.ingest.batch_size, within_s=within_s,
                           backoff=backoff, observe=metrics.observe_batch, stages=stages)

    register_ingest_agents(app, settings, pipeline.ingestor, runners, new_runner, faults)
    if pipeline.engines:
        from pipeline.backtest.candidates import shadow_engines

        shadow = shadow_engines(settings)
        pipeline.detect_tables = register_detect_agent(
            app, settings, pipeline.engines, writer, pipeline.detect_counters, runners,
            new_runner, faults, shadow)
        for name, engine in [*pipeline.engines.items(), *shadow.items()]:
            app.timer(settings.detect.reload_interval_s, name=f"tocsin.{name}.reload")(
                _reloader(engine))
    if settings.correlate.enabled:
        from pipeline.correlate.step import CorrelationStep

        pipeline.correlation_table = register_correlate_agent(
            app, settings, CorrelationStep(settings.correlate), writer,
            pipeline.correlate_counters, runners, new_runner, faults)

    trimmer = HeapTrimmer.from_libc()
    if worker.heap_trim_interval_s > 0 and trimmer.available:
        app.timer(worker.heap_trim_interval_s, name="tocsin.heap.trim")(
            _heap_trim(trimmer, stages))

    @app.on_partitions_revoked.connect
    async def settle_batches(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """Before partitions move, the batches in hand finish (within the session timeout;
        the consumer seeks back to the committed offsets afterwards)."""
        busy = await runners.settle(worker.session_timeout_ms / 1000, give_up=False)
        if busy:
            log.warning("rebalancing while %s still hold a batch", ", ".join(busy))

    _register_pages(pipeline)
    register_console(pipeline)
    register_ops_pages(pipeline, _now_ms)
    return pipeline


def _heap_trim(trimmer: HeapTrimmer, stages: StageTimes):
    def timed_trim() -> None:
        began = time.monotonic()
        trimmer.trim()
        stages.add("worker.heap_trim", time.monotonic() - began)

    async def trim_heap() -> None:
        # off the loop: a trim walks every arena, each under its lock
        await asyncio.get_running_loop().run_in_executor(None, timed_trim)

    return trim_heap


def _reloader(engine: Any):
    async def reload_rules_if_changed() -> None:
        engine.reload()

    return reload_rules_if_changed
