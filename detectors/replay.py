"""Replay recorded telemetry through the engine: NDJSON or wire dicts, per service.

Used by ``tocsin rules test``, the benchmark and tests. Records are decoded by the same
codec the stream uses, split per service, and fed in event-time order; a final
:meth:`Replayer.finish` moves every service's watermark to the end of the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from detectors.columns import TIME_COLUMN
from detectors.engine import RuleEngine
from detectors.state import NO_TIME, ServiceState
from pipeline.codec import DecodeLimits, decode_messages
from pipeline.detection import Detection
from pipeline.schema import RawMessage, RecordKind

SIGNAL_OF = {RecordKind.METRIC: "metrics", RecordKind.LOG: "logs", RecordKind.SPAN: "traces"}
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


def concat(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Columns of several batches of one kind, one after the other."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {}
    for name, first in parts[0].items():
        cols = [p[name] for p in parts]
        if isinstance(first, np.ndarray):
            out[name] = np.concatenate(cols)
        elif isinstance(first, (pa.Array, pa.ChunkedArray)):
            out[name] = pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray)
                                          else c for c in cols])
        else:
            out[name] = [v for c in cols for v in c]
    return out


def take(columns: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The given rows of every column (numpy, list or Arrow)."""
    out: dict[str, Any] = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray):
            out[name] = col[rows]
        elif isinstance(col, (pa.Array, pa.ChunkedArray)):
            out[name] = col.take(pa.array(rows))
        else:
            out[name] = [col[i] for i in rows.tolist()]
    return out


def split_by_service(columns: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Columns of a multi-service batch, one batch per service (record order kept)."""
    services = columns.get("service") or []
    index: dict[str, list[int]] = {}
    for i, s in enumerate(services):
        index.setdefault(s, []).append(i)
    return {s: take(columns, np.asarray(rows, dtype=np.int64)) for s, rows in index.items()}


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
        """Process one batch (any number of services) and return its detections."""
        out: list[Detection] = []
        for service, cols in split_by_service(columns).items():
            state = self.states.get(service) or self.engine.new_state()
            state, found, stats = self.engine.process(signal, cols, state)
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
