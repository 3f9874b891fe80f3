"""Ingest agents: one per telemetry topic, taking batches and handing them to the Ingestor.

Faust acknowledges a batch's offsets only after this agent asks for the next batch, that
is after the rows are stored and the rejections are on the dead-letter topic: offsets
are never committed ahead of the data they cover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import faust
import numpy as np

from pipeline.events.codec import DecodedBatch
from pipeline.events.columns import SIGNAL_OF_TABLE, TIME_COLUMN
from pipeline.events.deadletter import deadletter_headers, deadletter_key
from pipeline.events.schema import SPECS, RawMessage, RecordKind, Rejection
from pipeline.events.slices import (
    TICK_KEY,
    Tick,
    encode_ticks,
    split_by_service,
)
from pipeline.ingest.step import Ingestor
from pipeline.settings import Settings


def _raw(event: Any) -> RawMessage:
    message = event.message
    return RawMessage(message.topic, message.partition, message.offset, message.value,
                      int((message.timestamp or 0) * 1000))


async def publish_deadletters(app: faust.App, topic: str, rejections: list[Rejection]) -> None:
    """Send rejections to the dead-letter topic and wait until the broker has them."""
    pending = [
        await app.producer.send(topic, deadletter_key(r), r.payload, None, None,
                                deadletter_headers(r))
        for r in rejections
    ]
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
                             ticks: TickSender, now_ms: int) -> None:
    """Send the batch's records to the by-service topic, then the ticks of every source.

    Ticks cover all sources, not only this batch's: the detectors must know every
    source that may still hold older records before event time can pass it.
    """
    topic = settings.topics.by_service
    pending = [await app.producer.send(topic, key, value, None, None, None)
               for key, value in split_by_service(progress.signal, batch.to_arrow())]
    progress.update(batch, messages, now_ms)
    await asyncio.gather(*pending)
    await ticks.send()


def register_ingest_agents(app: faust.App, settings: Settings, ingestor: Ingestor) -> None:
    """Declare the raw topics (Tocsin's JSON ones and, unless ``ingest.otlp`` is off, the
    Collector's OTLP ones) and one ingest agent for each."""
    within_s = settings.ingest.batch_within_ms / 1000
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

        async def ingest_agent(stream: Any, kind: RecordKind = kind, otlp: bool = otlp,
                               source: SourceProgress = progress[topic_name]) -> None:
            async for events in stream.take_events(settings.ingest.batch_size, within_s):
                now_ms = int(time.time() * 1000)
                messages = [_raw(e) for e in events]
                batch = await ingestor.ingest(kind, messages, now_ms, otlp=otlp)
                if batch.rejections:
                    await publish_deadletters(app, settings.topics.deadletter,
                                              batch.rejections)
                if settings.detect.enabled:
                    await forward_by_service(app, settings, batch, messages, source,
                                             ticks, now_ms)

        name = f"{'otlp_' if otlp else ''}{kind.value}"
        ingest_agent.__name__ = f"ingest_{name}"
        ingest_agent.__qualname__ = ingest_agent.__name__
        app.agent(topic, name=f"tocsin.ingest.{name}")(ingest_agent)

    if settings.detect.enabled:
        async def tick_sources() -> None:
            """Let event time pass for detectors even when no batch arrives."""
            await ticks.send(force=True)

        app.timer(2.0, name="tocsin.ingest.ticks")(tick_sources)
