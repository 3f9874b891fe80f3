"""The detect agent: by-service slices and ticks in, detections out.

Each engine keeps its per-service state in a Faust table backed by a changelog topic,
written once per batch per service whose state changed, so a restarted or rebalanced
worker resumes with its windows intact. The table is the truth: the step keeps states
decoded between batches only while the table holds the bytes they were stored as, and
drops those of revoked partitions. Detections go to the detections topic and table
before the batch's offsets are acknowledged. Shadow engines (candidates, see
``detect.shadow_rules``) run on the same batches in a step of their own; their
detections are stored with ``shadow`` set and published with the :data:`SHADOW_HEADER`,
which the correlate agent drops. A failing batch is retried in place by its
:class:`~pipeline.agents.batches.BatchRunner`; the detection step itself runs once per
batch (its result is kept across attempts), so a retry never applies records twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
import pyarrow as pa
from aiokafka.partitioner import murmur2

from pipeline.agents.batches import BatchRunners, BatchSteps
from pipeline.agents.tables import get_value, set_value, value_keys
from pipeline.detect.step import DetectionStep, Engine, Message
from pipeline.events.detection import detection_message, detections_table
from pipeline.events.faults import Faults
from pipeline.events.sizes import MessageTooLarge, value_budget
from pipeline.events.slices import TICK_KEY
from pipeline.kafka.transport import engine_table
from pipeline.settings import Settings
from pipeline.store.history import recent_metrics, recent_metrics_many
from pipeline.store.writer import StoreWriter

log = logging.getLogger("tocsin.detect")

SHADOW_HEADER = ("tocsin-shadow", b"true")  # on a shadow candidate's detection messages


def shadow_table(detections: list) -> pa.Table:
    """Detections of a shadow candidate as rows of the ``detections`` table."""
    table = detections_table(detections)
    return table.append_column("shadow", pa.array([True] * table.num_rows, pa.bool_()))


@dataclass
class DetectCounters:
    """Running totals of the detect agent, for the status page."""

    batches: int = 0
    slices: int = 0
    watermark_ms: int = -1
    errors: int = 0
    detections: dict[str, int] = field(default_factory=dict)
    late_records: int = 0
    not_sent: int = 0  # detections stored but too large for the detections topic
    shadow: dict[str, int] = field(default_factory=dict)  # shadow detections by state
    seeded_series: int = 0  # model series warmed up from stored history
    history_errors: int = 0
    by_detector: dict[str, dict[str, int]] = field(default_factory=dict)  # detector -> state
    # source (ingest topic partition) -> time_ms, backlog, lag_ms behind the watermark
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, detector: str, state: str) -> None:
        """Count one detection of ``detector`` in ``state``."""
        self.detections[state] = self.detections.get(state, 0) + 1
        states = self.by_detector.setdefault(detector, {})
        states[state] = states.get(state, 0) + 1


def source_lags(ticks: Mapping[str, Any], watermark_ms: int,
                allowed_lateness_ms: int) -> dict[str, dict[str, Any]]:
    """Per source: how far it was forwarded, whether records wait, and how far (event
    time) the detect watermark is behind it, lateness allowance aside (0: caught up)."""
    passed = watermark_ms + allowed_lateness_ms if watermark_ms >= 0 else -1
    return {name: {"time_ms": t.time_ms, "backlog": t.backlog,
                   "lag_ms": max(0, t.time_ms - passed) if passed >= 0 else max(0, t.time_ms)}
            for name, t in ticks.items()}


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as producers do)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def services_with_state(tables: Mapping[str, Any], partitions: int,
                        assigned: Collection[int]) -> int:
    """How many services have detector state on the by-service partitions in ``assigned``
    (restored from the changelogs after a rebalance, before their next record)."""
    mine = set(assigned)
    keys: set[bytes] = set()
    for table in tables.values():
        keys.update(k for k in value_keys(table) if partition_of(k, partitions) in mine)
    return len(keys)


def register_detect_agent(app: faust.App, settings: Settings, engines: Mapping[str, Engine],
                          writer: StoreWriter, counters: DetectCounters, runners: BatchRunners,
                          new_runner: Any, faults: Faults,
                          shadow: Mapping[str, Engine] | None = None) -> dict[str, Any]:
    """Declare the by-service topic, one state table per engine, and the detect agent;
    ``new_runner(name, handle)`` builds its batch runner; ``shadow`` engines run beside
    ``engines`` (see the module docstring)."""
    shadow = dict(shadow or {})
    partitions = settings.topics.partitions
    topic = app.topic(settings.topics.by_service, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw", partitions=partitions)
    tables = {
        name: app.Table(engine_table(name), partitions=partitions, key_type=bytes,
                        value_type=bytes, help=f"per-service state of the {name} engine")
        for name in [*engines, *shadow]
    }
    history = history_many = None
    if settings.detect.warmup_history_ms > 0 and settings.detect.warmup_history_points > 0:
        lookback = settings.detect.warmup_history_ms
        points = settings.detect.warmup_history_points

        def history(service: str, series: Sequence[tuple[str, str]], before_ms: int
                    ) -> dict[str, Any]:  # runs in the step's worker thread
            return recent_metrics(writer.store, service, series, before_ms, lookback, points)

        def history_many(requests: Sequence[tuple[str, Sequence[tuple[str, str]], int]]
                         ) -> list[dict[str, Any]]:  # one read for a step's new services
            return recent_metrics_many(writer.store, requests, lookback, points)

    step = DetectionStep(engines, settings.detect.allowed_lateness_ms, history,
                         history_many=history_many,
                         live_bytes=settings.detect.live_state_bytes)
    # a candidate in shadow warms up from history as the current detectors do
    shadow_step = (DetectionStep(shadow, settings.detect.allowed_lateness_ms, history,
                                 history_many=history_many,
                                 live_bytes=settings.detect.live_state_bytes)
                   if shadow else None)
    # the correlator waits for every detect worker's watermark: name this one stably
    source = f"{socket.gethostname()}:{settings.worker.web_port}"

    max_bytes = settings.kafka.max_message_bytes
    scope_key = settings.correlate.scope.encode()  # one scope, one partition, in order
    detection_budget = value_budget(max_bytes, scope_key)

    def services_on(partition: int) -> list[str]:
        keys: set[bytes] = set()
        for table in tables.values():
            keys.update(k for k in value_keys(table) if partition_of(k, partitions) == partition)
        return [k.decode() for k in keys]

    async def run_step(events: Any, step: DetectionStep = step) -> Any:
        messages = [Message(e.message.partition, e.message.key or b"", e.message.value)
                    for e in events]
        # the engines run in a thread on a snapshot of what they need, so the event
        # loop stays free for fetching; the table writes happen back on the loop
        services = {p: services_on(p) for p in {m.partition for m in messages
                                                 if m.key == TICK_KEY}}
        touched = {m.key.decode() for m in messages if m.key != TICK_KEY}
        touched.update(s for names in services.values() for s in names)
        states = {(name, service): get_value(tables[name], service.encode())
                  for name in tables for service in touched}
        assigned = {tp.partition for tp in app.consumer.assignment()
                    if tp.topic == settings.topics.by_service}
        return await asyncio.get_running_loop().run_in_executor(
            None, step.run, messages, lambda e, s, known=states: known.get((e, s)),
            lambda p, known=services: known.get(p, []), assigned)

    async def write_states(stream: Any, events: Any, result: Any) -> None:
        last_of = {e.message.partition: e for e in events}
        previous = stream.current_event
        try:
            for (engine, service), data in result.states.items():
                key = service.encode()
                # a table write goes to the changelog partition of the current event
                stream._set_current_event(last_of[partition_of(key, partitions)])
                set_value(tables[engine], key, data, max_bytes)
        finally:
            stream._set_current_event(previous)

    def detection_messages(detections: list) -> list[bytes]:
        values = []
        for d in detections:
            try:
                values.append(detection_message(d, detection_budget))
            except MessageTooLarge as exc:  # stored in the table all the same
                counters.not_sent += 1
                log.error("not sent to %s: %s", settings.topics.detections, exc)
        return values

    async def publish(result: Any, headers: list | None = None) -> None:
        pending = [
            await app.producer.send(settings.topics.detections, scope_key, value,
                                    None, None, headers)
            for value in detection_messages(result.detections)
        ]
        await asyncio.gather(*pending)

    async def run_shadow(stream: Any, events: Any, steps: BatchSteps) -> None:
        """The shadow candidates on the same batch: stored and published, marked."""
        assert shadow_step is not None
        result = await steps.once("shadow", lambda: run_step(events, shadow_step))
        await steps.once("shadow-states", lambda: write_states(stream, events, result))
        if result.detections:
            await steps.once("shadow-publish", lambda: publish(result, [SHADOW_HEADER]))
            await steps.once("shadow-detections", lambda: writer.insert(
                "detections", shadow_table(result.detections)))
        counters.errors += result.errors
        counters.history_errors += result.history_errors
        for d in result.detections:
            counters.shadow[d.state] = counters.shadow.get(d.state, 0) + 1

    async def send_watermark(watermark_ms: int) -> None:
        await app.producer.send(settings.topics.detections, scope_key,
                                orjson.dumps({"tick": int(watermark_ms), "source": source}),
                                None, None, None)

    async def detect_batch(stream: Any, events: Any, steps: BatchSteps) -> None:
        result = await steps.once("step", lambda: run_step(events))
        await steps.once("states", lambda: write_states(stream, events, result))
        if result.detections:
            await steps.once("publish", lambda: publish(result))
            await steps.once("detections", lambda: writer.insert(
                "detections", detections_table(result.detections)))
        if result.watermark_ms > counters.watermark_ms:
            await steps.once("watermark", lambda: send_watermark(result.watermark_ms))
        if shadow_step is not None:
            await run_shadow(stream, events, steps)
        faults.check("detect.after")
        counters.batches += 1
        counters.slices += result.slices
        counters.errors += result.errors
        counters.watermark_ms = max(counters.watermark_ms, result.watermark_ms)
        counters.late_records += result.late_records
        counters.seeded_series += result.seeded
        counters.history_errors += result.history_errors
        for d in result.detections:
            counters.count(d.detector, d.state)
        counters.sources = source_lags(step.watermarks.sources(), counters.watermark_ms,
                                       settings.detect.allowed_lateness_ms)

    runner = runners.add(new_runner("tocsin.detect", detect_batch))

    async def detect(stream: Any) -> None:
        # announce this worker before its first detections, so the correlator waits for
        # its watermark instead of taking them in as they come (-1: nothing passed yet)
        await send_watermark(-1)
        await runner.run(stream)

    app.agent(topic, name="tocsin.detect")(detect)
    return tables
