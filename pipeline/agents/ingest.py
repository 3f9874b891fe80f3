"""Ingest agents: one per telemetry topic, taking batches and handing them to the Ingestor.

Each batch runs through a :class:`~pipeline.agents.batches.BatchRunner`: its offsets are
committed only after the rows are stored, the rejections are on the dead-letter topic and
the records are forwarded to the detectors; a failing batch is retried in place (an
attempt after a failure skips the steps already done), never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
import numpy as np

from pipeline.agents.batches import BatchRunners, BatchSteps
from pipeline.events.codec import DecodedBatch
from pipeline.events.columns import SIGNAL_OF_TABLE, TIME_COLUMN
from pipeline.events.deadletter import deadletter_message, deadletter_table, describe
from pipeline.events.faults import Faults
from pipeline.events.schema import SPECS, RawMessage, RecordKind, Rejection
from pipeline.events.sizes import value_budget
from pipeline.events.slices import (
    TICK_KEY,
    Tick,
    encode_ticks,
    split_by_service,
    too_large_rejections,
)
from pipeline.ingest.step import Ingestor
from pipeline.settings import Settings

log = logging.getLogger("tocsin.ingest")


def _raw(event: Any) -> RawMessage:
    message = event.message
    return RawMessage(message.topic, message.partition, message.offset, message.value,
                      int((message.timestamp or 0) * 1000))


async def publish_deadletters(app: faust.App, settings: Settings,
                              rejections: list[Rejection]) -> None:
    """Send rejections to the dead-letter topic (each message within
    ``kafka.max_message_bytes``) and wait until the broker has them."""
    pending = []
    for rejection in rejections:
        key, value, headers = deadletter_message(rejection, settings.kafka.max_message_bytes)
        pending.append(await app.producer.send(settings.topics.deadletter, key, value, None,
                                               None, headers))
    await asyncio.gather(*pending)


class SourceProgress:
    """How far, in event time, each source partition of one ingest topic was forwarded.

    Producers key by service, so a source partition is in event order and its latest
    forwarded time is its progress; whether it still has a backlog comes from the
    consumer's high-water mark.
    """

    def __init__(self, signal: str, topic: str, name: str = "") -> None:
        self.signal = signal
        self.topic = topic
        self.name = name or signal  # ticks name their source <name>/<partition>
        self.latest: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}

    def update(self, batch: DecodedBatch, messages: list[RawMessage], now_ms: int) -> None:
        """Fold in a batch; a record from a skewed clock cannot move past ``now_ms``."""
        for message in messages:
            self.next_offset[message.partition] = max(
                self.next_offset.get(message.partition, 0), message.offset + 1)
        times = batch.columns[TIME_COLUMN[self.signal]]
        parts = batch.source_partitions
        for p in np.unique(parts).tolist():
            latest = min(int(times[parts == p].max()), now_ms)
            self.latest[p] = max(self.latest.get(p, -1), latest)

    def ticks(self, consumer: Any) -> list[Tick]:
        """One tick per assigned source partition: progress and whether records wait."""
        ticks = []
        committed = getattr(consumer, "_committed_offset", {})
        for tp in sorted(t for t in consumer.assignment() if t.topic == self.topic):
            done = self.next_offset.get(tp.partition)
            if done is None:
                # nothing processed here yet: records from the committed offset on wait
                # (the fetch position would count fetched, unprocessed records as done)
                done = committed.get(tp) or 0
            highwater = consumer.highwater(tp)
            backlog = highwater is None or done < highwater
            ticks.append(Tick(f"{self.name}/{tp.partition}",
                              self.latest.get(tp.partition, -1), backlog))
        return ticks


class TickSender:
    """Sends every source's progress to every by-service partition, at most every
    ``min_interval_s`` (a timer covers the quiet times); ticks are not awaited: a lost
    one is superseded by the next."""

    def __init__(self, app: faust.App, settings: Settings,
                 sources: Iterable[SourceProgress], min_interval_s: float = 0.2) -> None:
        self.app = app
        self.settings = settings
        self.sources = list(sources)
        self.min_interval_s = min_interval_s
        self._last = 0.0

    async def send(self, force: bool = False) -> None:
        """Send the ticks now if the last ones are old enough (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        value = encode_ticks([t for p in self.sources for t in p.ticks(self.app.consumer)])
        for partition in range(self.settings.topics.partitions):
            await self.app.producer.send(self.settings.topics.by_service, TICK_KEY, value,
                                         partition, None, None)


async def forward_by_service(app: faust.App, settings: Settings, batch: DecodedBatch,
                             messages: list[RawMessage], progress: SourceProgress,
                             ticks: TickSender, now_ms: int) -> list[Rejection]:
    """Send the batch's records to the by-service topic, then the ticks of every source.

    Ticks cover all sources, not only this batch's: the detectors must know every
    source that may still hold older records before event time can pass it. The batch
    counts as progress only once the broker has every slice: if a send fails, no tick
    (from this agent or another) can pass records that the retry will send again.
    Returns the records (stored already) that are too large to forward, as dead letters.
    """
    topic = settings.topics.by_service
    table = batch.to_arrow()
    # the largest key a service can have (256 characters of up to 4 bytes)
    budget = value_budget(settings.kafka.max_message_bytes, b"k" * 1024)
    forwarded = split_by_service(progress.signal, table, budget)
    pending = [await app.producer.send(topic, key, value, None, None, None)
               for key, value in forwarded.messages]
    await asyncio.gather(*pending)
    progress.update(batch, messages, now_ms)
    await ticks.send()
    if not forwarded.too_large:
        return []
    return too_large_rejections(progress.signal, table, forwarded.too_large, messages,
                                batch.source_messages, batch.source_indexes,
                                settings.kafka.max_message_bytes)


async def dead_letter_unforwarded(app: faust.App, settings: Settings, ingestor: Ingestor,
                                  kind: RecordKind, rejections: list[Rejection],
                                  now_ms: int) -> None:
    """Stored records too large for the by-service topic: to the dead-letter topic and
    table, logged and counted (they are not retried)."""
    for rejection in rejections[:5]:
        log.warning("not forwarded to the detectors: %s", describe(rejection))
    await ingestor.writer.insert("dead_letters", deadletter_table(rejections, now_ms))
    await publish_deadletters(app, settings, rejections)
    ingestor.counters.not_forwarded[kind.value] = (
        ingestor.counters.not_forwarded.get(kind.value, 0) + len(rejections))


def register_ingest_agents(app: faust.App, settings: Settings, ingestor: Ingestor,
                           runners: BatchRunners, new_runner: Any, faults: Faults) -> None:
    """Declare the raw topics (Tocsin's JSON ones and, unless ``ingest.otlp`` is off, the
    Collector's OTLP ones) and one ingest agent for each; ``new_runner(name, handle)``
    builds the agent's batch runner."""
    t = settings.topics
    sources = [(RecordKind.METRIC, t.metrics, False), (RecordKind.LOG, t.logs, False),
               (RecordKind.SPAN, t.traces, False)]
    if settings.ingest.otlp:
        sources += [(RecordKind.METRIC, t.otlp_metrics, True),
                    (RecordKind.LOG, t.otlp_logs, True), (RecordKind.SPAN, t.otlp_spans, True)]
    progress = {}
    for kind, topic_name, otlp in sources:
        signal = SIGNAL_OF_TABLE[SPECS[kind].table]
        progress[topic_name] = SourceProgress(signal, topic_name,
                                              f"otlp-{signal}" if otlp else signal)
    ticks = TickSender(app, settings, progress.values())
    for kind, topic_name, otlp in sources:
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
        name = f"{'otlp_' if otlp else ''}{kind.value}"

        async def ingest_batch(stream: Any, events: Any, steps: BatchSteps,
                               kind: RecordKind = kind, otlp: bool = otlp, name: str = name,
                               source: SourceProgress = progress[topic_name]) -> None:
            now_ms = steps.value("now", lambda: int(time.time() * 1000))
            messages = steps.value("messages", lambda: [_raw(e) for e in events])
            await faults.wait(f"ingest.{name}.before")
            batch = await steps.once("store", lambda: ingestor.ingest(kind, messages, now_ms,
                                                                      otlp=otlp))
            if batch.rejections:
                await steps.once("deadletter", lambda: publish_deadletters(
                    app, settings, batch.rejections))
            faults.check(f"ingest.{name}.after")
            if settings.detect.enabled:
                with ingestor.stages.timed("ingest.forward"):
                    unforwarded = await steps.once("forward", lambda: forward_by_service(
                        app, settings, batch, messages, source, ticks, now_ms))
                if unforwarded:
                    await steps.once("unforwarded", lambda: dead_letter_unforwarded(
                        app, settings, ingestor, kind, unforwarded, now_ms))

        runner = runners.add(new_runner(f"tocsin.ingest.{name}", ingest_batch))

        async def ingest_agent(stream: Any, runner: Any = runner) -> None:
            await runner.run(stream)

        ingest_agent.__name__ = f"ingest_{name}"
        ingest_agent.__qualname__ = ingest_agent.__name__
        app.agent(topic, name=f"tocsin.ingest.{name}")(ingest_agent)

    if settings.detect.enabled:
        async def tick_sources() -> None:
            """Let event time pass for detectors even when no batch arrives."""
            await ticks.send(force=True)

        app.timer(2.0, name="tocsin.ingest.ticks")(tick_sources)
