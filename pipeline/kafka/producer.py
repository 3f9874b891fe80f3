"""Send telemetry to Kafka: records batched into JSON-array messages, routed by kind.

``tocsin produce FILE`` reads NDJSON (a file, a ``.gz`` file, or ``-`` for standard input,
see :mod:`pipeline.kafka.produce_input`) where each line is one record with a ``type`` of
``metric``, ``log`` or ``span``. Records are batched per (kind, service) as
:mod:`pipeline.kafka.produce_buffer` says: by count, by message size, by event-time distance and
by wall time. A line that cannot be sent (malformed JSON, unknown type, over
``kafka.max_message_bytes`` on its own) goes to the dead-letter topic with its reason,
like any other bad input.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.events.deadletter import fit_payload
from pipeline.events.schema import RecordKind
from pipeline.events.sizes import MessageTooLarge, value_budget
from pipeline.kafka.produce_buffer import (
    TIME_FIELD,
    BufferLimits,
    MessageBuffers,
    Outgoing,
    event_time_ms,
)
from pipeline.kafka.produce_input import LineSource
from pipeline.kafka.transport import KafkaUnavailable, client_kwargs
from pipeline.settings import Settings

_KEY_ROOM = b"k" * 1024  # the longest service name (256 characters) as a key


@dataclass
class ProduceReport:
    """What a produce run sent, per kind, and the lines it could not send."""

    records: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    unroutable: list[tuple[int, str]] = field(default_factory=list)


class TelemetryProducer:
    """An aiokafka producer that batches records into JSON-array messages keyed by service.

    Kafka keeps order only within a partition, and detectors need each series in event
    order, so records are grouped per service and every message is keyed by
    ``service.name``: all of a service's records then travel through one partition. No
    message is over ``kafka.max_message_bytes``; ``max_event_lag_ms`` and ``max_wait_ms``
    bound how long a record waits for others (:mod:`pipeline.kafka.produce_buffer`).
    """

    def __init__(self, settings: Settings, records_per_message: int = 100,
                 max_event_lag_ms: int = 10_000, max_wait_ms: int = 500,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.limits = BufferLimits(
            records_per_message, value_budget(settings.kafka.max_message_bytes, _KEY_ROOM),
            max_event_lag_ms, max_wait_ms)
        self.records_per_message = records_per_message
        self.topics = {
            RecordKind.METRIC: settings.topics.metrics,
            RecordKind.LOG: settings.topics.logs,
            RecordKind.SPAN: settings.topics.traces,
        }
        self.report = ProduceReport()
        self._buffers = MessageBuffers(self.limits)
        self._clock = clock
        self._wall_clock = wall_clock
        self._producer: Any = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def __aenter__(self) -> TelemetryProducer:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        limit = self.settings.kafka.max_message_bytes
        self._producer = AIOKafkaProducer(
            **client_kwargs(self.settings.kafka), linger_ms=5,
            max_batch_size=min(1_048_576, limit), max_request_size=limit, acks="all",
            enable_idempotence=True,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self.settings.kafka.bootstrap_servers}: {exc}"
            ) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def send_value(self, topic: str, value: bytes, key: bytes | None = None,
                         headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one message as it is (the producer batches and sends in the background)."""
        await self._producer.send(topic, value, key=key, headers=headers)
        self.report.messages += 1

    async def send(self, kind: RecordKind, records: Iterable[dict]) -> None:
        """Queue wire-format records of one kind; messages that are due go out right away.

        Raises :class:`~pipeline.events.sizes.MessageTooLarge` for a record over the limit alone.
        """
        time_field = TIME_FIELD[kind]
        for record in records:
            service = record.get("service.name", "")
            await self.send_record(kind, service if isinstance(service, str) else "",
                                   orjson.dumps(record), event_time_ms(record.get(time_field)))
        await self.send_due()

    async def send_record(self, kind: RecordKind, service: str, record: bytes,
                          event_ms: int | None) -> None:
        """Queue one encoded record of ``service`` with its event time (None: unknown).

        Raises :class:`~pipeline.events.sizes.MessageTooLarge` for a record over the limit alone.
        """
        clock = self.clock()
        for message in self.hold(kind, service, record, event_ms, clock):
            await self.send_message(message)

    def clock(self) -> tuple[int, int]:
        """(monotonic ms, latest believable event time) for :meth:`hold`, taken once
        for any number of records."""
        future_ms = int(self._wall_clock() * 1000) + self.settings.ingest.max_future_ms
        return self._now_ms(), future_ms

    def hold(self, kind: RecordKind, service: str, record: bytes, event_ms: int | None,
             clock: tuple[int, int]) -> list[Outgoing]:
        """Buffer one encoded record; returns the messages to send now (in order) with
        :meth:`send_message`. A time beyond ``ingest.max_future_ms`` from now does not
        move event time (the worker will reject the record)."""
        now_ms, future_ms = clock
        if event_ms is not None and event_ms > future_ms:
            event_ms = None
        return self._buffers.add(kind, service, record, event_ms, now_ms)

    async def send_due(self) -> None:
        """Send the messages that have waited ``max_wait_ms`` of wall time."""
        for message in self._buffers.due(self._now_ms()):
            await self.send_message(message)

    async def send_message(self, message: Outgoing) -> None:
        """Queue one message of buffered records."""
        kind = message.kind.value
        self.report.records[kind] = self.report.records.get(kind, 0) + message.records
        await self.send_value(self.topics[message.kind], message.value,
                              key=message.service.encode())

    async def send_partial(self) -> None:
        """Send every partly filled message now (e.g. at the end of a paced tick)."""
        for message in self._buffers.drain():
            await self.send_message(message)

    async def send_deadletter(self, label: str, number: int, line: bytes, reason: str) -> None:
        """Send an input line that cannot go to a topic to the dead-letter topic, within
        the message size limit, and list it in the report."""
        self.report.unroutable.append((number, reason))
        key = f"file:{label}/{number}".encode()
        headers = [("tocsin.reason", reason.encode()), ("tocsin.topic", f"file:{label}".encode()),
                   ("tocsin.partition", b"-1"), ("tocsin.offset", str(number).encode()),
                   ("tocsin.index", b"-1")]
        value, headers = fit_payload(key, line, headers, self.settings.kafka.max_message_bytes)
        await self.send_value(self.settings.topics.deadletter, value, key=key, headers=headers)

    async def flush(self) -> None:
        """Send what is buffered and wait until the broker acknowledged every message."""
        await self.send_partial()
        await self._producer.flush()


_KINDS = {kind.value: kind for kind in RecordKind}


def route(line: bytes) -> tuple[RecordKind, dict] | str:
    """The kind and record of one NDJSON line (``type`` removed), or why it cannot go."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"malformed JSON: {exc}"
    if type(record) is not dict:
        return "expected a JSON object with a 'type' of metric, log or span"
    kind = record.pop("type", None)
    found = _KINDS.get(kind) if type(kind) is str else None
    if found is None:
        return f"field 'type': expected metric, log or span, got {str(kind)[:40]!r}"
    return found, record


async def _send_lines(producer: TelemetryProducer, label: str, first: int,
                      lines: list[bytes]) -> None:
    """Route and queue one block of lines; the line itself is the record sent (with its
    ``type``, which the worker checks against the topic)."""
    clock = producer.clock()
    for number, line in enumerate(lines, start=first):
        data = line.strip()
        if not data:
            continue
        routed = route(data)
        if type(routed) is str:
            await producer.send_deadletter(label, number, data, routed)
            continue
        kind, record = routed
        service = record.get("service.name", "")
        try:
            out = producer.hold(kind, service if type(service) is str else "", data,
                                event_time_ms(record.get(TIME_FIELD[kind])), clock)
        except MessageTooLarge as exc:
            await producer.send_deadletter(label, number, data, str(exc))
            continue
        for message in out:
            await producer.send_message(message)


class _Reader:
    """Reads blocks of a :class:`LineSource` in a daemon thread (standard input may block
    for as long as its writer likes) into a bounded queue."""

    _END = object()

    def __init__(self, source: LineSource, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        self._source, self._loop = source, loop
        threading.Thread(target=self._run, name="tocsin-produce-reader", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                block: Any = self._source.read_block()
            except Exception as exc:  # handed to the event loop, raised there
                block = exc
            item = self._END if block is None else block
            try:
                asyncio.run_coroutine_threadsafe(self.queue.put(item), self._loop).result()
            except RuntimeError:  # the loop is gone: nobody reads any more
                return
            if item is self._END or isinstance(item, Exception):
                return

    async def blocks(self, idle_s: float, on_idle: Callable[[], Any]):
        """Blocks as they come; ``await on_idle()`` every ``idle_s`` without one."""
        while True:
            try:
                item = await asyncio.wait_for(self.queue.get(), idle_s)
            except asyncio.TimeoutError:
                await on_idle()
                continue
            if item is self._END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


async def produce_file(settings: Settings, source: str | Path, records_per_message: int = 100,
                       progress: bool = True, max_event_lag_ms: int = 10_000,
                       max_wait_ms: int = 500, stdin: Any = None) -> ProduceReport:
    """Send every record of an NDJSON source (a path, a ``.gz`` path or ``-`` for
    standard input) to its topic; report what went where."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TransferSpeedColumn

    with LineSource(str(source), stdin=stdin) as lines:
        async with TelemetryProducer(settings, records_per_message, max_event_lag_ms,
                                     max_wait_ms) as producer:
            with Progress("[progress.description]{task.description}", BarColumn(),
                          TaskProgressColumn(), TransferSpeedColumn(), disable=not progress,
                          transient=True) as bar:
                task = bar.add_task(f"producing {lines.label}", total=lines.total_bytes)
                reader = _Reader(lines, asyncio.get_running_loop())
                async for first, block in reader.blocks(max_wait_ms / 2000, producer.send_due):
                    await _send_lines(producer, lines.label, first, block)
                    await producer.send_due()
                    bar.update(task, completed=lines.consumed_bytes)
            return producer.report
