"""The correlate agent: detections and control events in, problems and alerts out.

Detections and control events (acks, silences) are keyed by correlation scope, so a
scope's events arrive in order on one partition; its state (open problems, alert tracks,
silences) lives in a Faust table with a changelog, written once per batch. Problem
versions, their links and their changes (``problem_changes``) go to ClickHouse and alerts
to the alerts topic before the batch's offsets are acknowledged. A failing batch is
retried in place by its :class:`~pipeline.agents.batches.BatchRunner`; the correlation
step runs once per batch (its result is kept across attempts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from pipeline.agents.batches import BatchRunners, BatchSteps
from pipeline.agents.detect import SHADOW_HEADER
from pipeline.agents.diagnose import Diagnostician
from pipeline.agents.tables import get_value, set_value
from pipeline.alerts.cloudevents import alert_type, problem_changes_table
from pipeline.alerts.feedback import feedback_table
from pipeline.correlate import (
    alert_key,
    alert_message,
    problem_detections_table,
    problems_table,
)
from pipeline.correlate.step import CorrelationStep, Message
from pipeline.errors import StoreError
from pipeline.events.faults import Faults
from pipeline.events.sizes import MessageTooLarge, value_budget
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


def is_shadow(headers: Any) -> bool:
    """Whether a message's headers mark it as a shadow candidate's detection."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    return any(k == SHADOW_HEADER[0] and bytes(v or b"") == SHADOW_HEADER[1]
               for k, v in items)


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
    graph: dict[str, Any] = {"edges": {}, "read_at": 0.0}
    diagnostician = Diagnostician(writer) if settings.correlate.diagnostics else None

    async def diagnose(decisions: list) -> list:
        """Run the checks that are due; the decisions with results attached."""
        assert diagnostician is not None
        attached, runs = await diagnostician.attach(decisions)
        if runs.num_rows:
            await writer.insert("problem_diagnostics", runs)
        counters.diagnostics = diagnostician.runs
        return attached

    async def learned_call_graph() -> dict[str, list[str]]:
        """Edges learned from traces, read from the store at most every 30 s."""
        if time.monotonic() - graph["read_at"] >= 30.0:
            graph["read_at"] = time.monotonic()
            try:
                rows = (await writer.query(
                    f"SELECT caller, groupArray(callee) FROM {writer.store.database}"
                    ".service_edges GROUP BY caller")).rows
                graph["edges"] = {caller: list(callees) for caller, callees in rows}
            except StoreError as exc:  # the static graph still serves
                log.warning("reading the learned call graph failed: %s", exc)
        return graph["edges"]

    async def run_step(events: Any) -> Any:
        learned = await learned_call_graph()
        shadow = [is_shadow(e.message.headers) for e in events]
        counters.shadow_dropped += sum(shadow)
        messages = [Message((e.message.key or b"").decode(),
                            e.message.topic == topics.control, e.message.value)
                    for e, dropped in zip(events, shadow, strict=True) if not dropped]
        return step.run(messages, lambda scope: get_value(table, scope.encode()), learned)

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

    async def correlate_batch(stream: Any, events: Any, steps: BatchSteps) -> None:
        result = await steps.once("step", lambda: run_step(events))
        await steps.once("states", lambda: write_states(stream, events, result))
        if result.feedback:
            await steps.once("feedback", lambda: writer.insert(
                "feedback", feedback_table(result.feedback)))
        decisions = result.decisions
        if decisions and diagnostician is not None:
            decisions = await steps.once("diagnostics", lambda: diagnose(decisions))
        alerts = [d for d in decisions if d.notify]
        if decisions:
            await steps.once("problems", lambda: store_problems(decisions))
            if alerts:
                await steps.once("alerts", lambda: send_alerts(alerts))
        faults.check("correlate.after")
        counters.rejected += result.rejected
        counters.open_problems.update(result.open_problems)
        counters.event_time_ms.update(result.event_time_ms)
        for d in decisions:
            counters.decisions[d.kind] = counters.decisions.get(d.kind, 0) + 1

    runner = runners.add(new_runner("tocsin.correlate", correlate_batch))

    async def correlate(stream: Any) -> None:
        await runner.run(stream)

    app.agent(channel, name="tocsin.correlate")(correlate)
    return table
