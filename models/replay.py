"""Offline replay: telemetry through the model engine exactly as the stream feeds it.

Used by tests, benchmarks and notebooks. Records are encoded as the producers send them
and decoded by the stream's own codec (:func:`pipeline.codec.decode_values`), then split
per service key, as the Faust agent receives them.

>>> from pipeline.simulate import load_system, simulate
>>> sim = simulate(load_system(), 1_718_000_000_000, 60_000, seed=1)
>>> engine = ModelEngine()
>>> run = replay(engine, sim)
>>> sorted(run.states)[:2], run.records > 0
(['agent-coordinator', 'agent-worker'], True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from models.engine import ModelEngine, ServiceModelState
from pipeline.codec import decode_values
from pipeline.detection import Detection
from pipeline.schema import RecordKind

SIGNALS = {RecordKind.METRIC: "metrics", RecordKind.LOG: "logs", RecordKind.SPAN: "traces"}


def take(columns: Mapping[str, Any], rows: list[int]) -> dict[str, Any]:
    """The given rows of a column batch (numpy, Arrow or list columns alike)."""
    out: dict[str, Any] = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray):
            out[name] = col[rows]
        elif isinstance(col, (pa.Array, pa.ChunkedArray)):
            out[name] = col.take(pa.array(rows, type=pa.int64()))
        else:
            out[name] = [col[i] for i in rows]
    return out


def split_by_service(columns: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A decoded batch cut into one batch per service (the stream's key)."""
    rows: dict[str, list[int]] = {}
    for i, service in enumerate(columns["service"]):
        rows.setdefault(service, []).append(i)
    return {service: take(columns, r) for service, r in rows.items()}


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
                yield tick.time_ms, SIGNALS[kind], service, cols


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
