"""Writers: NDJSON files and wire-dict batches for a Kafka producer.

Both take any iterable of :class:`~pipeline.simulate.generator.SimStep` (a ``Simulation``)
and keep event-time order tick by tick. Pacing (real time or compressed) belongs to the
caller: every batch carries the event time of the tick it was completed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from pipeline.events.schema import RecordKind
from pipeline.simulate.generator import SimStep


def tick_wire(tick: SimStep) -> dict[RecordKind, list[dict[str, Any]]]:
    """The tick's records as wire dicts (with ``"type"``), per kind."""
    return {RecordKind.METRIC: tick.metrics.wire(),
            RecordKind.LOG: [r.to_wire() for r in tick.logs],
            RecordKind.SPAN: [s.to_wire() for s in tick.spans]}


def write_ndjson(ticks: Iterable[SimStep], out: str | Path | IO[bytes]) -> dict[str, int]:
    """Write one JSON record per line (metrics, logs, spans per tick); return counts."""
    if isinstance(out, (str, Path)):
        with open(out, "wb") as fh:
            return write_ndjson(ticks, fh)
    counts = {kind.value: 0 for kind in RecordKind}
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for tick in ticks:
        for kind, records in tick_wire(tick).items():
            out.write(b"".join(dumps(r, option=newline) for r in records))
            counts[kind.value] += len(records)
    return counts


@dataclass(frozen=True)
class WireBatch:
    """Up to ``batch_size`` wire dicts of one kind; ``time_ms`` is the tick to pace on."""

    kind: RecordKind
    time_ms: int
    records: list[dict[str, Any]]

    def encode(self) -> bytes:
        """The batch as one JSON-array message."""
        return orjson.dumps(self.records)


def wire_batches(ticks: Iterable[SimStep], batch_size: int = 100,
                 flush_each_tick: bool = True) -> Iterator[WireBatch]:
    """Batches of wire dicts per kind, in tick order.

    With ``flush_each_tick`` (default) a tick's leftovers are sent at the end of the tick,
    so no record waits for the next tick (right for real-time pacing); without it batches
    fill up across ticks (fewer, fuller messages when replaying as fast as possible).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: dict[RecordKind, list[dict[str, Any]]] = {kind: [] for kind in RecordKind}
    time_ms = 0
    for tick in ticks:
        time_ms = tick.time_ms
        for kind, records in tick_wire(tick).items():
            buf = pending[kind]
            buf.extend(records)
            while len(buf) >= batch_size:
                yield WireBatch(kind, time_ms, buf[:batch_size])
                del buf[:batch_size]
            if flush_each_tick and buf:
                yield WireBatch(kind, time_ms, buf[:])
                buf.clear()
    for kind, buf in pending.items():
        if buf:
            yield WireBatch(kind, time_ms, buf)
