"""Ingest agents: one per telemetry topic, taking batches and handing them to the Ingestor.

Faust acknowledges a batch's offsets only after this agent asks for the next batch, that
is after the rows are stored and the rejections are on the dead-letter topic: offsets
are never committed ahead of the data they cover.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust

from pipeline.codec import DecodedBatch
from pipeline.deadletter import deadletter_headers, deadletter_key
from pipeline.forward import (
    SIGNAL_OF_TABLE,
    TICK_KEY,
    TIME_COLUMN,
    split_by_service,
    tick_value,
)
from pipeline.ingest import Ingestor
from pipeline.schema import SPECS, RawMessage, RecordKind, Rejection
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


async def forward_by_service(app: faust.App, settings: Settings, batch: DecodedBatch,
                             now_ms: int) -> None:
    """Send the batch's records to the by-service topic, then a tick to every partition."""
    if len(batch) == 0:
        return
    signal = SIGNAL_OF_TABLE[SPECS[batch.kind].table]
    topic = settings.topics.by_service
    pending = [await app.producer.send(topic, key, value, None, None, None)
               for key, value in split_by_service(signal, batch.to_arrow())]
    # a record from a skewed clock must not drag event time past the ingest time
    latest = min(int(batch.columns[TIME_COLUMN[signal]].max()), now_ms)
    tick = tick_value(signal, latest)
    pending += [await app.producer.send(topic, TICK_KEY, tick, partition, None, None)
                for partition in range(settings.topics.partitions)]
    await asyncio.gather(*pending)


def register_ingest_agents(app: faust.App, settings: Settings, ingestor: Ingestor) -> None:
    """Declare the raw topics and one ingest agent for each."""
    within_s = settings.ingest.batch_within_ms / 1000
    sources = {
        RecordKind.METRIC: settings.topics.metrics,
        RecordKind.LOG: settings.topics.logs,
        RecordKind.SPAN: settings.topics.traces,
    }
    for kind, topic_name in sources.items():
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

        async def ingest_agent(stream: Any, kind: RecordKind = kind) -> None:
            async for events in stream.take_events(settings.ingest.batch_size, within_s):
                now_ms = int(time.time() * 1000)
                batch = await ingestor.ingest(kind, [_raw(e) for e in events], now_ms)
                if batch.rejections:
                    await publish_deadletters(app, settings.topics.deadletter,
                                              batch.rejections)
                if settings.detect.enabled:
                    await forward_by_service(app, settings, batch, now_ms)

        ingest_agent.__name__ = f"ingest_{kind.value}"
        ingest_agent.__qualname__ = ingest_agent.__name__
        app.agent(topic, name=f"tocsin.ingest.{kind.value}")(ingest_agent)
