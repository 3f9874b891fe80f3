"""One detection step: run the detector engines over forwarded slices and ticks.

Plain Python, no Faust: the detect agent hands over a batch of messages of one or more
partitions and a way to read each service's stored state; the step returns the new state
per (engine, service), to be written once per batch, and the detections to publish.
Engines (the rule engine of ``detectors``, the model engine of ``models``) share one
shape, :class:`Engine`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.detection import Detection
from pipeline.forward import TICK_KEY, read_slice, read_tick

log = logging.getLogger("tocsin.detect")


class EngineState(Protocol):
    """The state of one engine for one service."""

    def to_bytes(self) -> bytes: ...


class Engine(Protocol):
    """A detector engine: per-service state in, state and detections out."""

    def new_state(self) -> Any: ...

    def state_from_bytes(self, data: bytes) -> Any: ...

    def process(self, signal: str, columns: Mapping[str, Any],
                state: Any) -> tuple[Any, list[Detection], Any]: ...

    def advance(self, state: Any, watermark_ms: int) -> tuple[Any, list[Detection]]: ...


@dataclass(frozen=True)
class Message:
    """A message of the by-service topic as the step needs it."""

    partition: int
    key: bytes
    value: bytes


@dataclass
class StepResult:
    """New states to store and detections to publish after one step."""

    states: dict[tuple[str, str], bytes] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    late_records: int = 0


StateReader = Callable[[str, str], bytes | None]


@dataclass
class _SourceClock:
    event_ms: int
    seen_wall_ms: int


class Watermarks:
    """Event-time progress per partition: the slowest active source decides.

    Each ingest agent (a *source*: metrics, logs, traces) ticks every partition with how
    far it has forwarded. A partition's watermark is the minimum over its sources, so a
    source that lags behind (say logs while metrics race ahead in a replay) holds event
    time back instead of having its records arrive late. A source that has not ticked for
    ``idle_ms`` of wall-clock time (it stopped sending) no longer holds anything back.
    """

    def __init__(self, idle_ms: int = 30_000) -> None:
        self.idle_ms = idle_ms
        self._clocks: dict[int, dict[str, _SourceClock]] = {}

    def observe(self, partition: int, source: str, event_ms: int, wall_ms: int) -> int:
        """Record a tick; returns the partition's watermark (before lateness)."""
        clocks = self._clocks.setdefault(partition, {})
        clock = clocks.get(source)
        if clock is None or event_ms >= clock.event_ms:
            clocks[source] = _SourceClock(event_ms, wall_ms)
        else:
            clock.seen_wall_ms = wall_ms
        active = [c.event_ms for c in clocks.values() if wall_ms - c.seen_wall_ms <= self.idle_ms]
        return min(active) if active else event_ms


class DetectionStep:
    """Applies engines to messages in order, touching each service's state once."""

    def __init__(self, engines: Mapping[str, Engine], allowed_lateness_ms: int,
                 idle_source_ms: int = 30_000) -> None:
        self.engines = dict(engines)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.watermarks = Watermarks(idle_source_ms)
        self._advanced: dict[int, int] = {}

    def run(self, messages: Iterable[Message], read_state: StateReader,
            services_on: Callable[[int], Iterable[str]], wall_ms: int) -> StepResult:
        """Process ``messages`` in order.

        ``services_on(p)`` lists the services with stored state on partition ``p``;
        ``wall_ms`` (the wall clock, taken once per batch by the caller) only serves to
        notice sources that went idle.
        """
        result = StepResult()
        live: dict[tuple[str, str], Any] = {}

        def state_of(engine_name: str, service: str) -> Any:
            key = (engine_name, service)
            if key not in live:
                engine = self.engines[engine_name]
                stored = read_state(engine_name, service)
                live[key] = engine.new_state() if stored is None \
                    else engine.state_from_bytes(stored)
            return live[key]

        for message in messages:
            if message.key == TICK_KEY:
                source, event_ms = read_tick(message.value)
                progress = self.watermarks.observe(message.partition, source, event_ms, wall_ms)
                watermark = progress - self.allowed_lateness_ms
                if watermark <= self._advanced.get(message.partition, watermark - 1):
                    continue
                self._advanced[message.partition] = watermark
                for service in sorted(set(services_on(message.partition))):
                    for name, engine in self.engines.items():
                        state, found = engine.advance(state_of(name, service), watermark)
                        live[(name, service)] = state
                        result.detections.extend(found)
                continue
            piece = read_slice(message.key, message.value)
            for name, engine in self.engines.items():
                state, found, stats = engine.process(piece.signal, piece.columns,
                                                     state_of(name, piece.service))
                live[(name, piece.service)] = state
                result.detections.extend(found)
                late = _late_count(stats)
                if late:
                    result.late_records += late
                    log.warning("%s: %d %s records of %s arrived later than the allowed "
                                "lateness (%d ms) and were counted, not windowed",
                                name, late, piece.signal, piece.service,
                                self.allowed_lateness_ms)
        result.states = {key: state.to_bytes() for key, state in live.items()}
        return result


def _late_count(stats: Any) -> int:
    if stats is None:
        return 0
    if isinstance(stats, int):
        return stats
    for attr in ("late", "late_records", "total_late"):
        value = getattr(stats, attr, None)
        if isinstance(value, int):
            return value
        if isinstance(value, Mapping):
            return int(sum(value.values()))
    return 0
