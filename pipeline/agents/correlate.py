"""The correlate agent: detections and control events in, problems and alerts out.

Detections and control events (acks, silences) are keyed by correlation scope, so a
scope's events arrive in order on one partition; its state (open problems, alert tracks,
silences) lives in a Faust table with a changelog, written once per batch. Problem
versions and their links go to ClickHouse and alerts to the alerts topic before the
batch's offsets are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from pipeline.agents.tables import get_value, set_value
from pipeline.correlate import (
    alert_key,
    alert_message,
    problem_detections_table,
    problems_table,
)
from pipeline.correlate.step import CorrelationStep, Message
from pipeline.errors import StoreError
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


def register_correlate_agent(app: faust.App, settings: Settings, step: CorrelationStep,
                             writer: StoreWriter, counters: CorrelateCounters) -> Any:
    """Declare the detections + control channel, the state table and the agent."""
    topics = settings.topics
    channel = app.topic(topics.detections, topics.control, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw",
                        partitions=topics.partitions)
    table = app.Table(CORRELATION_TABLE, partitions=topics.partitions, key_type=bytes,
                      value_type=bytes, help="open problems, alert tracks, silences per scope")
    within_s = settings.ingest.batch_within_ms / 1000
    max_bytes = settings.kafka.max_message_bytes
    graph: dict[str, Any] = {"edges": {}, "read_at": 0.0}

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

    async def correlate(stream: Any) -> None:
        async for events in stream.take_events(settings.ingest.batch_size, within_s):
            learned = await learned_call_graph()
            messages = [Message((e.message.key or b"").decode(),
                                e.message.topic == topics.control, e.message.value)
                        for e in events]
            last_of = {(e.message.key or b"").decode(): e for e in events}
            result = step.run(messages, lambda scope: get_value(table, scope.encode()),
                              learned)
            previous = stream.current_event
            for scope, data in result.states.items():
                stream._set_current_event(last_of[scope])  # the changelog partition
                set_value(table, scope.encode(), data, max_bytes)
            stream._set_current_event(previous)
            decisions = result.decisions
            if decisions:
                latest = {}
                for d in decisions:  # one row per problem version
                    latest[(d.problem.id, d.problem.version)] = d.problem
                await writer.insert("problems", problems_table(list(latest.values())))
                links = [link for d in decisions for link in d.links]
                if links:
                    await writer.insert("problem_detections", problem_detections_table(links))
                pending = []
                for d in decisions:
                    if not d.notify:
                        continue
                    key = alert_key(d)
                    try:
                        value = alert_message(d, value_budget(max_bytes, key))
                    except MessageTooLarge as exc:  # the problems table has it all the same
                        counters.not_sent += 1
                        log.error("not sent to %s: %s", topics.alerts, exc)
                        continue
                    pending.append(await app.producer.send(topics.alerts, key, value, None,
                                                           None, None))
                await asyncio.gather(*pending)
                counters.alerts += len(pending)
            counters.rejected += result.rejected
            for d in decisions:
                counters.decisions[d.kind] = counters.decisions.get(d.kind, 0) + 1

    app.agent(channel, name="tocsin.correlate")(correlate)
    return table
