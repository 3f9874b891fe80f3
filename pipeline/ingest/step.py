"""Ingest: decode a batch of raw messages, store the good records, keep the rejected ones.

Plain asyncio and our own modules only; the Faust agent in ``pipeline.agents.ingest``
feeds it batches and publishes the rejections to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from pipeline.events.codec import DecodedBatch, DecodeLimits, decode_messages
from pipeline.events.deadletter import deadletter_table, describe
from pipeline.events.json_scan import (
    SCAN_CHUNK_BYTES,
    describe_json_decoder,
    json_decoder,
    scan_decode,
)
from pipeline.events.otlp import decode_otlp
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_wire import describe_decoder, metrics_decoder
from pipeline.events.schema import SPECS, FieldType, RawMessage, RecordKind
from pipeline.events.times import format_ms
from pipeline.ingest.stages import StageTimes
from pipeline.settings import IngestSettings
from pipeline.store.writer import StoreWriter

log = logging.getLogger("tocsin.ingest")

_LOGGED_REJECTIONS_PER_BATCH = 5
_DAY_MS = 86_400_000
_TIME_COLUMN = {kind: next(f.column for f in spec.fields if f.type is FieldType.TIME)
                for kind, spec in SPECS.items()}


@dataclass
class IngestCounters:
    """Running totals per record kind, for the worker's status page and benchmarks."""

    messages: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    empty_messages: dict[str, int] = field(default_factory=dict)  # an empty JSON array
    older_than_ttl: dict[str, int] = field(default_factory=dict)  # stored, soon expired
    not_forwarded: dict[str, int] = field(default_factory=dict)  # stored, too large to forward

    def add(self, kind: RecordKind, messages: int, stored: int, rejected: int,
            empty_messages: int = 0, older_than_ttl: int = 0) -> None:
        """Count one batch."""
        for totals, n in ((self.messages, messages), (self.stored, stored),
                          (self.rejected, rejected), (self.empty_messages, empty_messages),
                          (self.older_than_ttl, older_than_ttl)):
            totals[kind.value] = totals.get(kind.value, 0) + n


def older_than_ttl(batch: DecodedBatch, now_ms: int, ttl_days: int) -> tuple[int, int]:
    """How many of the batch's records are older than ``ttl_days`` at ``now_ms`` (the
    store drops them at its next merge), and the oldest record time; ``(0, 0)`` when
    ``ttl_days`` is 0 (keep forever) or none is."""
    if ttl_days <= 0 or not len(batch):
        return 0, 0
    times = np.asarray(batch.columns[_TIME_COLUMN[batch.kind]], dtype=np.int64)
    old = times < now_ms - ttl_days * _DAY_MS
    count = int(np.count_nonzero(old))
    return count, (int(times[old].min()) if count else 0)


def _decode_to_arrow(decode: Callable[..., DecodedBatch], kind: RecordKind,
                     messages: Sequence[RawMessage], limits: DecodeLimits,
                     stages: StageTimes) -> DecodedBatch:
    with stages.timed("ingest.decode"):
        batch = decode(kind, messages, limits)
        batch.to_arrow()  # built here, off the event loop, and kept on the batch
    return batch


class Ingestor:
    """Turns batches of raw messages into stored rows and dead-letter rows."""

    def __init__(self, writer: StoreWriter, settings: IngestSettings,
                 ttl_days: int = 0, stages: StageTimes | None = None) -> None:
        self.writer = writer
        self.settings = settings
        self.ttl_days = ttl_days  # the store's (store.ttl_days), to warn of expiring rows
        self.counters = IngestCounters()
        self.stages = stages if stages is not None else StageTimes()
        # the previous point of each cumulative OTLP metric series (for rates): kept in
        # memory, so a restart forgets it and each series' next point only seeds it
        self.otlp_series = SeriesMemory(settings.otlp_max_series)
        self.otlp_decoder = metrics_decoder(settings.otlp_decoder)
        log.info("%s", describe_decoder(self.otlp_decoder))
        self.json_decoder = json_decoder(settings.json_decoder)
        log.info("%s", describe_json_decoder(self.json_decoder))
        self._decode_json = (partial(decode_messages, decoder=scan_decode,
                                     chunk_bytes=SCAN_CHUNK_BYTES)
                             if self.json_decoder == "c" else decode_messages)

    def _decode_otlp(self, kind: RecordKind, messages: Sequence[RawMessage],
                     limits: DecodeLimits) -> DecodedBatch:
        return decode_otlp(kind, messages, limits, self.otlp_series, self.settings.otlp_encoding,
                           self.otlp_decoder)

    async def ingest(
        self, kind: RecordKind, messages: Sequence[RawMessage], now_ms: int, otlp: bool = False
    ) -> DecodedBatch:
        """Decode, validate and store one batch; ``now_ms`` is the ingest time; ``otlp``:
        the messages are OTLP export batches (in ``ingest.otlp_encoding``), not JSON."""
        limits = DecodeLimits(now_ms, self.settings.max_message_bytes, self.settings.max_future_ms)
        decode = self._decode_otlp if otlp else self._decode_json
        # decoding in a thread keeps the event loop free to send the next fetch request
        batch = await asyncio.get_running_loop().run_in_executor(
            None, _decode_to_arrow, decode, kind, messages, limits, self.stages)
        with self.stages.timed("ingest.store"):
            await self.writer.insert(SPECS[kind].table, batch.to_arrow())
        buckets = getattr(batch, "buckets", None)  # OTLP histograms' buckets
        if buckets is not None:
            await self.writer.insert("metric_buckets", buckets)
        if batch.rejections:
            for rejection in batch.rejections[:_LOGGED_REJECTIONS_PER_BATCH]:
                log.warning("rejected %s", describe(rejection))
            if len(batch.rejections) > _LOGGED_REJECTIONS_PER_BATCH:
                log.warning("... and %d more rejected %s records in this batch",
                            len(batch.rejections) - _LOGGED_REJECTIONS_PER_BATCH, kind.value)
            await self.writer.insert("dead_letters", deadletter_table(batch.rejections, now_ms))
        old, oldest_ms = older_than_ttl(batch, now_ms, self.ttl_days)
        if old:
            log.warning("%d of %d %s records in this batch are older than store.ttl_days "
                        "(%d days; oldest %s): they are stored, but the store drops them "
                        "at its next merge; raise TOCSIN_STORE_TTL_DAYS (0 keeps data "
                        "forever) to keep them", old, len(batch), kind.value, self.ttl_days,
                        format_ms(oldest_ms))
        self.counters.add(kind, len(messages), len(batch), len(batch.rejections),
                          batch.empty_messages, old)
        return batch
