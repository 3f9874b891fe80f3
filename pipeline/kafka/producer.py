"""Send telemetry to Kafka: records batched into JSON-array messages, routed by kind.

``tocsin produce FILE`` reads NDJSON where each line is one record with a ``type`` of
``metric``, ``log`` or ``span``. A line that cannot be routed (malformed JSON, unknown
type) goes to the dead-letter topic with its reason, like any other bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pipeline.errors import TocsinError
from pipeline.events.schema import RecordKind
from pipeline.kafka.transport import KafkaUnavailable, client_kwargs
from pipeline.settings import Settings


@dataclass
class ProduceReport:
    """What a produce run sent, per kind, and the lines it could not route."""

    records: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    unroutable: list[tuple[int, str]] = field(default_factory=list)


class TelemetryProducer:
    """An aiokafka producer that batches records into JSON-array messages keyed by service.

    Kafka keeps order only within a partition, and detectors need each series in event
    order, so records are grouped per service and every message is keyed by
    ``service.name``: all of a service's records then travel through one partition.
    """

    def __init__(self, settings: Settings, records_per_message: int = 100) -> None:
        if records_per_message < 1:
            raise TocsinError(f"records per message must be >= 1, got {records_per_message}")
        self.settings = settings
        self.records_per_message = records_per_message
        self.topics = {
            RecordKind.METRIC: settings.topics.metrics,
            RecordKind.LOG: settings.topics.logs,
            RecordKind.SPAN: settings.topics.traces,
        }
        self.report = ProduceReport()
        self._buffers: dict[tuple[RecordKind, str], list[dict]] = {}
        self._producer = None

    async def __aenter__(self) -> TelemetryProducer:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        self._producer = AIOKafkaProducer(
            **client_kwargs(self.settings.kafka), linger_ms=5, max_batch_size=1_048_576,
            max_request_size=8 * 1024 * 1024, acks="all", enable_idempotence=True,
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
        """Queue wire-format records of one kind; full messages go out right away."""
        buffers = self._buffers
        limit = self.records_per_message
        for record in records:
            key = (kind, record.get("service.name", ""))
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = []
            buffer.append(record)
            if len(buffer) >= limit:
                await self._send_buffer(key)

    async def _send_buffer(self, key: tuple[RecordKind, str]) -> None:
        buffer = self._buffers.pop(key, None)
        if not buffer:
            return
        kind, service = key
        self.report.records[kind.value] = self.report.records.get(kind.value, 0) + len(buffer)
        await self.send_value(self.topics[kind], orjson.dumps(buffer), key=service.encode())

    async def send_partial(self) -> None:
        """Send every partly filled message now (e.g. at the end of a paced tick)."""
        for key in list(self._buffers):
            await self._send_buffer(key)

    async def flush(self) -> None:
        """Send what is buffered and wait until the broker acknowledged every message."""
        await self.send_partial()
        await self._producer.flush()


def route(line: bytes) -> tuple[RecordKind, dict] | str:
    """The kind and record of one NDJSON line (``type`` removed), or why it cannot go."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(record, dict):
        return "expected a JSON object with a 'type' of metric, log or span"
    kind = record.pop("type", None)
    try:
        return RecordKind(kind), record
    except ValueError:
        return f"field 'type': expected metric, log or span, got {kind!r}"


async def produce_file(settings: Settings, path: Path, records_per_message: int = 100,
                       progress: bool = True) -> ProduceReport:
    """Send every record of an NDJSON file to its topic; report what went where."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TransferSpeedColumn

    size = path.stat().st_size
    async with TelemetryProducer(settings, records_per_message) as producer:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      TaskProgressColumn(), TransferSpeedColumn(), disable=not progress,
                      transient=True) as bar:
            task = bar.add_task(f"producing {path.name}", total=size)
            with path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    bar.advance(task, len(line))
                    if not line.strip():
                        continue
                    routed = route(line)
                    if isinstance(routed, str):
                        producer.report.unroutable.append((number, routed))
                        await producer.send_value(
                            settings.topics.deadletter, line.rstrip(b"\r\n"),
                            key=f"file:{path.name}/{number}".encode(),
                            headers=[("tocsin.reason", routed.encode()),
                                     ("tocsin.topic", f"file:{path}".encode()),
                                     ("tocsin.partition", b"-1"),
                                     ("tocsin.offset", str(number).encode()),
                                     ("tocsin.index", b"-1")])
                        continue
                    kind, record = routed
                    await producer.send(kind, (record,))
        return producer.report
