"""Replay recorded telemetry through the detectors as the stream feeds them, per service.

One module for both engines: :class:`Replayer` runs the rule engine over decoded batches
(``tocsin rules test``, benchmarks, tests); :func:`replay` runs the model engine over
simulator ticks (tests, benchmarks, notebooks). Records are decoded by the stream's own
codec, split per service (the stream's key) and fed in event-time order.

>>> from pipeline.simulate import load_system, simulate
>>> from models import ModelEngine
>>> sim = simulate(load_system(), 1_718_000_000_000, 60_000, seed=1)
>>> run = replay(ModelEngine(), sim)
>>> sorted(run.states)[:2], run.records > 0
(['agent-coordinator', 'agent-worker'], True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.engine import RuleEngine
from detectors.state import NO_TIME, ServiceState
from models.engine import ModelEngine, ServiceModelState
from pipeline.events.codec import DecodeLimits, decode_messages, decode_values
from pipeline.events.columns import SIGNAL_OF_KIND, TIME_COLUMN, concat, split_by_service, take
from pipeline.events.detection import Detection
from pipeline.events.schema import RawMessage, RecordKind

SIGNAL_OF = SIGNAL_OF_KIND
REPLAY_NOW_MS = 4_102_444_800_000  # 2100-01-01: recorded data is never "in the future"
DECODE_CHUNK = 5_000


def decode_wire(kind: RecordKind, records: Sequence[Mapping[str, Any]]
                ) -> tuple[dict[str, Any], list[str]]:
    """Validate wire dicts with the stream's codec: columns and rejection reasons."""
    if not records:
        return {}, []
    limits = DecodeLimits(now_ms=REPLAY_NOW_MS, max_message_bytes=1 << 31)
    parts, reasons = [], []
    for i in range(0, len(records), DECODE_CHUNK):  # a bad record slows only its chunk
        message = RawMessage("replay", 0, i, orjson.dumps(list(records[i:i + DECODE_CHUNK])))
        batch = decode_messages(kind, [message], limits)
        parts.append(batch.columns)
        reasons += [r.reason for r in batch.rejections]
    return concat(parts), reasons








def sort_by_time(signal: str, columns: Mapping[str, Any]) -> dict[str, Any]:
    """Columns in event-time order (stable)."""
    order = np.argsort(np.asarray(columns[TIME_COLUMN[signal]]), kind="stable")
    return take(columns, order)


class Replayer:
    """Feeds batches through an engine with one state per service; collects the output."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine
        self.states: dict[str, ServiceState] = {}
        self.detections: list[Detection] = []
        self.records = 0
        self.late = 0
        self.end_ms = NO_TIME

    def feed(self, signal: str, columns: Mapping[str, Any]) -> list[Detection]:
        """Process one batch (any number of services, all at once) and return its
        detections."""
        out: list[Detection] = []
        pieces = split_by_service(columns)
        for service in pieces:
            self.states.setdefault(service, self.engine.new_state())
        results = self.engine.process_many([(signal, cols, self.states[service])
                                            for service, cols in pieces.items()])
        for (service, cols), (state, found, stats) in zip(pieces.items(), results,
                                                          strict=True):
            self.states[service] = state
            self.records += stats.records
            self.late += stats.late
            self.end_ms = max(self.end_ms, int(np.max(cols[TIME_COLUMN[signal]])))
            out += found
        self.detections += out
        return out

    def finish(self, watermark_ms: int | None = None) -> list[Detection]:
        """Advance every service to ``watermark_ms`` (default: the last event time)."""
        end = self.end_ms if watermark_ms is None else watermark_ms
        out: list[Detection] = []
        for service in sorted(self.states):
            self.states[service], found = self.engine.advance(self.states[service], end)
            out += found
        self.detections += out
        return out


def read_ndjson(path: str | Path) -> tuple[dict[RecordKind, list[dict]], list[str]]:
    """Records of an NDJSON file by kind (from their ``type``) and the unreadable lines."""
    by_kind: dict[RecordKind, list[dict]] = {kind: [] for kind in RecordKind}
    problems: list[str] = []
    kinds = {kind.value: kind for kind in RecordKind}
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                problems.append(f"line {number}: malformed JSON: {exc}")
                continue
            kind = kinds.get(record.get("type")) if isinstance(record, dict) else None
            if kind is None:
                problems.append(f"line {number}: expected a record with \"type\": metric, "
                                "log or span")
                continue
            by_kind[kind].append(record)
    return by_kind, problems


def replay_chunks(by_signal: Mapping[str, Mapping[str, Any]], chunk_ms: int
                  ) -> Iterable[tuple[str, dict[str, Any]]]:
    """Time-sorted columns per signal cut into event-time chunks, interleaved in order."""
    pieces: list[tuple[int, int, str, dict[str, Any]]] = []
    for rank, (signal, columns) in enumerate(by_signal.items()):
        if not columns:
            continue
        cols = sort_by_time(signal, columns)
        t = np.asarray(cols[TIME_COLUMN[signal]])
        if not t.size:
            continue
        bucket = t // chunk_ms
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, t.size].tolist(), strict=True):
            pieces.append((int(bucket[lo]), rank, signal,
                           take(cols, np.arange(lo, hi, dtype=np.int64))))
    pieces.sort(key=lambda p: (p[0], p[1]))
    for _, _, signal, cols in pieces:
        yield signal, cols

def tick_batches(ticks: Iterable[Any]) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """(tick time, signal, service, columns) per tick, kind and service, codec-decoded."""
    from pipeline.simulate import tick_wire

    for tick in ticks:
        now = tick.time_ms + 3_600_000
        for kind, records in tick_wire(tick).items():
            if not records:
                continue
            batch = decode_values(kind, [orjson.dumps(records)], now_ms=now)
            columns = batch.columns
            if kind is not RecordKind.SPAN:  # the engine reads attributes of spans only
                columns = {k: v for k, v in columns.items() if k != "attributes"}
            for service, cols in split_by_service(columns).items():
                yield tick.time_ms, SIGNAL_OF_KIND[kind], service, cols


@dataclass
class ReplayRun:
    """What a replay produced: detections in order, the states, and counts."""

    detections: list[Detection] = field(default_factory=list)
    states: dict[str, ServiceModelState] = field(default_factory=dict)
    records: int = 0


def replay(engine: ModelEngine, ticks: Iterable[Any], run: ReplayRun | None = None,
           advance_every_ms: int = 60_000) -> ReplayRun:
    """Feed simulator ticks through ``engine`` per service; close windows as time passes."""
    run = run or ReplayRun()
    last_advance = None
    for time_ms, signal, service, cols in tick_batches(ticks):
        state = run.states.get(service) or engine.new_state()
        state, found, stats = engine.process(signal, cols, state)
        run.states[service] = state
        run.detections.extend(found)
        run.records += stats["records"]
        if last_advance is None:
            last_advance = time_ms
        if time_ms - last_advance >= advance_every_ms:
            for name, st in run.states.items():
                st, found = engine.advance(st, time_ms)
                run.states[name] = st
                run.detections.extend(found)
            last_advance = time_ms
    return run
