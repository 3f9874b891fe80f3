"""The correlate agent: detections and control events in, problems and alerts out.

Detections and control events (acks, silences) are keyed by correlation scope, so a
scope's events arrive in order on one partition; its state (open problems, alert tracks,
silences) lives in a Faust table with a changelog, written once per batch. Problem
versions, their links and their changes (``problem_changes``) go to ClickHouse and alerts
to the alerts topic before the batch's offsets are acknowledged. A failing batch is
retried in place by its :class:`~pipeline.agents.batches.BatchRunner`; the correlation
step runs once per batch (its result is kept across attempts).

The worker owning a scope's partition also runs the scope's service-graph step
(``pipeline.graph``) *before* each correlation step: it pairs the spans of the buckets
the batch's detection watermark passes in the store, stores the edges and edge
detections, and hands those detections and its tick to the correlation step ahead of the
batch, so the correlator's event time never passes a bucket whose edge detections are
still to come; its state sits in the same table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust

from pipeline.agents.batches import BatchRunners, BatchSteps
from pipeline.agents.detect import SHADOW_HEADER
from pipeline.agents.diagnose import Diagnostician
from pipeline.agents.tables import get_value, set_value, value_keys
from pipeline.alerts.cloudevents import alert_type, problem_changes_table
from pipeline.alerts.feedback import feedback_table
from pipeline.correlate import (
    CorrelationState,
    alert_key,
    alert_message,
    problem_detections_table,
    problems_table,
)
from pipeline.correlate.step import (
    CorrelationStep,
    Message,
    detection_progress,
    source_watermark,
)
from pipeline.events.detection import detections_table
from pipeline.events.faults import Faults
from pipeline.events.sizes import MessageTooLarge, value_budget
from pipeline.graph.step import SOURCE as GRAPH_SOURCE
from pipeline.graph.step import GraphResult, GraphStep, edges_table
from pipeline.kafka.transport import CORRELATION_TABLE
from pipeline.settings import Settings
from pipeline.store.writer import StoreWriter

log = logging.getLogger("tocsin.correlate")


@dataclass
class CorrelateCounters:
    """Running totals of the correlate agent, for the status page."""

    decisions: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    rejected: int = 0
    not_sent: int = 0  # alerts too large for the alerts topic even trimmed
    alerts_by_type: dict[str, int] = field(default_factory=dict)  # CloudEvents type
    open_problems: dict[str, int] = field(default_factory=dict)  # per scope
    event_time_ms: dict[str, int] = field(default_factory=dict)  # per scope
    shadow_dropped: int = 0  # shadow candidates' detections, never correlated
    diagnostics: int = 0  # automated diagnostics runs (one per problem and root cause)
    watermark_ms: int = -1  # event time every detection source (and the graph) passed
    edge_detections: dict[str, int] = field(default_factory=dict)  # service graph, by state


def is_shadow(headers: Any) -> bool:
    """Whether a message's headers mark it as a shadow candidate's detection."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return any(k == SHADOW_HEADER[0] and bytes(v or b"") == SHADOW_HEADER[1]
               for k, v in items)


GRAPH_KEY_SEPARATOR = "\x00"  # scope + separator + source: a graph step's state


def graph_state_key(scope: str) -> bytes:
    """The correlation table's key of a scope's service-graph step state."""
    return f"{scope}{GRAPH_KEY_SEPARATOR}{GRAPH_SOURCE}".encode()


def held_silences(table: Any) -> list[dict[str, Any]]:
    """The silences of every correlation scope in ``table`` (as wire dicts with their
    scope); the graph steps' states kept in the same table are skipped."""
    held: list[dict[str, Any]] = []
    if table is None:
        return held
    for key in value_keys(table):
        if GRAPH_KEY_SEPARATOR.encode() in key:
            continue
        data = get_value(table, key)
        if data is not None:
            held += [{"scope": key.decode(), **s.to_wire()}
                     for s in CorrelationState.from_bytes(data).silences.values()]
    return held


def register_correlate_agent(app: faust.App, settings: Settings, step: CorrelationStep,
                             writer: StoreWriter, counters: CorrelateCounters,
                             runners: BatchRunners, new_runner: Any, faults: Faults) -> Any:
    """Declare the detections + control channel, the state table and the agent;
    ``new_runner(name, handle)`` builds its batch runner."""
    topics = settings.topics
    channel = app.topic(topics.detections, topics.control, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw",
                        partitions=topics.partitions)
    table = app.Table(CORRELATION_TABLE, partitions=topics.partitions, key_type=bytes,
                      value_type=bytes, help="open problems, alert tracks, silences per scope")
    max_bytes = settings.kafka.max_message_bytes
    diagnostician = Diagnostician(writer) if settings.correlate.diagnostics else None

    async def diagnose(decisions: list) -> list:
        """Run the checks that are due; the decisions with results attached."""
        assert diagnostician is not None
        attached, runs = await diagnostician.attach(decisions)
        if runs.num_rows:
            await writer.insert("problem_diagnostics", runs)
        counters.diagnostics = diagnostician.runs
        return attached

    scope = settings.correlate.scope
    graph_step = (GraphStep.from_settings(settings, writer.store.database)
                  if settings.graph.enabled else None)
    graph_key = graph_state_key(scope)
    learned: dict[str, Any] = {"topology": None}

    def topology() -> dict[str, tuple[str, ...]]:
        """The call graph the graph step has learned (read from its state once)."""
        if learned["topology"] is None:
            learned["topology"] = (graph_step.topology(get_value(table, graph_key))
                                   if graph_step is not None else {})
        return learned["topology"]

    def messages_of(events: Any) -> list[Message]:
        shadow = [is_shadow(e.message.headers) for e in events]
        counters.shadow_dropped += sum(shadow)
        return [Message((e.message.key or b"").decode(), e.message.topic == topics.control,
                        e.message.value)
                for e, dropped in zip(events, shadow, strict=True) if not dropped]

    async def run_step(messages: list[Message]) -> Any:
        return step.run(messages, lambda key: get_value(table, key.encode()), topology())

    async def run_graph(messages: list[Message]) -> GraphResult:
        """Pair the spans of the buckets the batch's detection watermark passes (a
        blocking store query)."""
        assert graph_step is not None
        watermark, passed = detection_progress(
            get_value(table, scope.encode()),
            [m.value for m in messages if m.scope == scope and not m.is_control],
            GRAPH_SOURCE)
        return await asyncio.get_running_loop().run_in_executor(
            None, graph_step.run, watermark, writer.store.query, get_value(table, graph_key),
            passed)

    async def store_graph(result: GraphResult) -> None:
        if result.edges:
            await writer.insert("service_edges", edges_table(result.edges,
                                                             settings.graph.bucket_ms))
        if result.detections:
            await writer.insert("detections", detections_table(result.detections))
            for d in result.detections:
                counters.edge_detections[d.state] = counters.edge_detections.get(d.state, 0) + 1

    async def write_graph_state(stream: Any, event: Any, result: GraphResult) -> None:
        previous = stream.current_event
        try:
            stream._set_current_event(event)  # the scope's changelog partition
            set_value(table, graph_key, result.state, max_bytes)
        finally:
            stream._set_current_event(previous)

    async def write_states(stream: Any, events: Any, result: Any) -> None:
        last_of = {(e.message.key or b"").decode(): e for e in events}
        previous = stream.current_event
        try:
            for scope, data in result.states.items():
                stream._set_current_event(last_of[scope])  # the changelog partition
                set_value(table, scope.encode(), data, max_bytes)
        finally:
            stream._set_current_event(previous)

    async def store_problems(decisions: list) -> None:
        latest = {}
        for d in decisions:  # one row per problem version
            latest[(d.problem.id, d.problem.version)] = d.problem
        await writer.insert("problems", problems_table(list(latest.values())))
        links = [link for d in decisions for link in d.links]
        if links:
            await writer.insert("problem_detections", problem_detections_table(links))
        await writer.insert("problem_changes", problem_changes_table(decisions))

    async def send_alerts(alerts: list) -> None:
        pending = []
        sent: list[str] = []
        for d in alerts:
            key = alert_key(d)
            try:
                value = alert_message(d, value_budget(max_bytes, key))
            except MessageTooLarge as exc:  # the problems table has it all the same
                counters.not_sent += 1
                log.error("not sent to %s: %s", topics.alerts, exc)
                continue
            pending.append(await app.producer.send(topics.alerts, key, value, None, None, None))
            sent.append(alert_type(d.kind))
        await asyncio.gather(*pending)
        counters.alerts += len(pending)
        for kind in sent:
            counters.alerts_by_type[kind] = counters.alerts_by_type.get(kind, 0) + 1

    async def apply(stream: Any, events: Any, result: Any, steps: BatchSteps) -> None:
        """Write a correlation result: states, problems, alerts (each once per batch)."""
        await steps.once("states", lambda: write_states(stream, events, result))
        if result.feedback:
            await steps.once("feedback", lambda: writer.insert(
                "feedback", feedback_table(result.feedback)))
        decisions = result.decisions
        if decisions and diagnostician is not None:
            decisions = await steps.once("diagnostics",
                                         lambda: diagnose(decisions))
        alerts = [d for d in decisions if d.notify]
        if decisions:
            await steps.once("problems", lambda: store_problems(decisions))
            if alerts:
                await steps.once("alerts", lambda: send_alerts(alerts))

    def count(result: Any) -> None:
        counters.rejected += result.rejected
        counters.open_problems.update(result.open_problems)
        counters.event_time_ms.update(result.event_time_ms)
        for d in result.decisions:
            counters.decisions[d.kind] = counters.decisions.get(d.kind, 0) + 1

    async def correlate_batch(stream: Any, events: Any, steps: BatchSteps) -> None:
        messages = steps.value("messages", lambda: messages_of(events))
        own = [e for e in events if (e.message.key or b"").decode() == scope]
        graph = None
        if graph_step is not None and own:  # first the graph, up to the batch's watermark
            graph = await steps.once("graph", lambda: run_graph(messages))
            await steps.once("graph.store", lambda: store_graph(graph))
            learned["topology"] = graph.topology
            # its edge detections and tick ahead of the batch, in the same step
            messages = [Message(scope, False, m) for m in graph.messages] + messages
        result = await steps.once("step", lambda: run_step(messages))
        await apply(stream, events, result, steps)
        if graph is not None:
            # only once the correlator's own state holds the edge detections: a crash
            # before this pairs the buckets again on replay (a repeat the correlator
            # ignores) instead of finding them done and losing their detections
            await steps.once("graph.state",
                             lambda: write_graph_state(stream, own[-1], graph))
        faults.check("correlate.after")
        count(result)
        counters.watermark_ms = max(counters.watermark_ms,
                                    source_watermark(get_value(table, scope.encode())))

    runner = runners.add(new_runner("tocsin.correlate", correlate_batch))

    async def correlate(stream: Any) -> None:
        await runner.run(stream)

    app.agent(channel, name="tocsin.correlate")(correlate)
    return table
