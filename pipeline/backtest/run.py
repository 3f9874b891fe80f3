"""Replay stored telemetry through the stream's own detection and correlation steps.

Each chunk of stored rows becomes the by-service messages the ingest agents would have
forwarded (:func:`pipeline.events.slices.split_by_service`) and goes through a
:class:`~pipeline.detect.step.DetectionStep`; once every signal of a stretch of event
time is in, a tick (how far event time got, as ingest sends it) lets windows close. The
detections, followed by the detection watermark, go through a
:class:`~pipeline.correlate.step.CorrelationStep` as the correlate agent hands them over.
States live in dicts of bytes, as they would in the agents' tables. Given a store query,
the correlate agent's service-graph step runs before each correlation batch as in the
worker: it pairs the stored spans of the buckets the batch's watermark passes into edges,
and its edge detections and tick go to the correlator ahead of the batch (the call graph
starts from the edges the worker stored). Nothing is written anywhere: no topic, no
table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.backtest.stored import Chunk, max_time_ms
from pipeline.correlate.step import CorrelationStep, detection_progress
from pipeline.correlate.step import Message as CorrelateMessage
from pipeline.detect.step import DetectionStep, Message
from pipeline.events.detection import Detection
from pipeline.events.problem import Problem
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service
from pipeline.graph.step import SOURCE as GRAPH_SOURCE
from pipeline.graph.step import GraphStep
from pipeline.settings import Settings
from pipeline.store.base import QueryResult

SOURCE = "backtest"


@dataclass(frozen=True)
class Found:
    """The parts of a detection a comparison looks at."""

    id: str
    time: int
    detector: str
    version: str
    service: str
    state: str
    severity: str
    observed: float
    since: int = field(default=-1, compare=False)  # when its firing episode began

    @classmethod
    def of(cls, d: Detection) -> Found:
        """The comparable parts of a detection."""
        return cls(d.id, d.time, d.detector, d.detector_version, d.service, d.state,
                   d.severity, float(d.observed), int(d.evidence.get("firing_since", d.time)))


@dataclass
class Progress:
    """How far a replay got: records, event time, wall time."""

    records: int = 0
    chunks: int = 0
    event_ms: int = -1
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float:
        """Records replayed per wall-clock second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ReplayResult:
    """Detections (in the kept range) and the latest version of each problem."""

    detections: list[Found] = field(default_factory=list)
    problems: dict[str, Problem] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    late_records: int = 0
    errors: int = 0


class Replay:
    """Feeds chunks through detection and correlation (see the module docstring);
    detections with a time in ``[keep_from_ms, keep_to_ms)`` are kept."""

    def __init__(self, settings: Settings, engines: Mapping[str, Any], keep_from_ms: int,
                 keep_to_ms: int, clock: Callable[[], float] = time.perf_counter,
                 topology: Mapping[str, Sequence[str]] | None = None,
                 query: Callable[[str], QueryResult] | None = None) -> None:
        self.detect = DetectionStep(engines, settings.detect.allowed_lateness_ms)
        self.correlate = (CorrelationStep(settings.correlate)
                          if settings.correlate.enabled else None)
        self.scope = settings.correlate.scope
        self.max_bytes = settings.kafka.max_message_bytes
        self.keep = (keep_from_ms, keep_to_ms)
        self.clock = clock
        self.detect_states: dict[tuple[str, str], bytes] = {}
        self.correlate_states: dict[str, bytes] = {}
        self.topology = {k: tuple(v) for k, v in (topology or {}).items()}
        # the correlate agent's service-graph step, pairing the stored spans
        self.graph = (GraphStep.from_settings(settings, settings.store.database)
                      if query is not None and settings.graph.enabled and self.correlate
                      else None)
        self.query = query
        self.graph_state: bytes | None = None
        self.result = ReplayResult()
        self._window: int | None = None
        self._sent: int | None = None  # the watermark sent last
        self._started = clock()

    def feed(self, chunk: Chunk) -> None:
        """One chunk of stored rows; a chunk of a later stretch first closes the last."""
        if self._window is not None and chunk.start_ms != self._window:
            self._tick()
        self._window = chunk.start_ms
        forwarded = split_by_service(chunk.signal, chunk.table, self.max_bytes)
        self._step([Message(0, key, value) for key, value in forwarded.messages])
        progress = self.result.progress
        progress.records += chunk.table.num_rows
        progress.chunks += 1
        progress.event_ms = max(progress.event_ms, max_time_ms(chunk))
        progress.seconds = self.clock() - self._started

    def finish(self) -> ReplayResult:
        """Let event time reach the last record; the result."""
        if self._window is not None:
            self._tick()
        self.result.progress.seconds = self.clock() - self._started
        return self.result

    def _tick(self) -> None:
        tick = Tick(SOURCE, self.result.progress.event_ms, False)
        self._step([Message(0, TICK_KEY, encode_ticks([tick]))])

    def _step(self, messages: list[Message]) -> None:
        states = self.detect_states
        out = self.detect.run(messages, lambda e, s: states.get((e, s)),
                              lambda p: sorted({s for _, s in states}))
        states.update(out.states)
        self.result.late_records += out.late_records
        self.result.errors += out.errors
        lo, hi = self.keep
        self.result.detections += [Found.of(d) for d in out.detections if lo <= d.time < hi]
        if self.correlate is None:
            return
        wire: list[bytes] = [d.to_json() for d in out.detections]
        if self._sent is None:  # announced first, as the detect agent does
            self._sent = -1
            wire.insert(0, orjson.dumps({"tick": -1, "source": SOURCE}))
        if out.watermark_ms > self._sent:  # the worker's watermark, as sent
            self._sent = out.watermark_ms
            wire.append(orjson.dumps({"tick": out.watermark_ms, "source": SOURCE}))
        if self.graph is not None:
            wire = self._graph(wire) + wire
        if wire:
            self._correlate(wire)

    def _graph(self, batch: list[bytes]) -> list[bytes]:
        """The service-graph step before a correlation batch, as the correlate agent runs
        it: up to the watermark the batch brings; its edge detections and tick, to go to
        the correlator ahead of the batch."""
        assert self.graph is not None and self.query is not None
        watermark, passed = detection_progress(self.correlate_states.get(self.scope), batch,
                                               GRAPH_SOURCE)
        out = self.graph.run(watermark, self.query, self.graph_state, passed)
        self.graph_state = out.state
        for caller, callees in out.topology.items():
            self.topology[caller] = tuple(sorted({*self.topology.get(caller, ()), *callees}))
        lo, hi = self.keep
        self.result.detections += [Found.of(d) for d in out.detections if lo <= d.time < hi]
        return out.messages

    def _correlate(self, values: Iterable[bytes]) -> None:
        assert self.correlate is not None
        messages = [CorrelateMessage(self.scope, False, v) for v in values]
        out = self.correlate.run(messages, self.correlate_states.get, self.topology)
        self.correlate_states.update(out.states)
        for decision in out.decisions:
            self.result.problems[decision.problem.id] = decision.problem
