"""Run recorded telemetry through the worker's own steps in-process, in event-time order.

No Kafka and no Faust: records are decoded by the stream's codec, cut into event-time
steps, split by service into the by-service messages the ingest agent forwards (Arrow IPC
slices plus a tick per source), and handed to the same
:class:`~pipeline.detect.step.DetectionStep`, :class:`~pipeline.graph.step.GraphStep` and
:class:`~pipeline.correlate.step.CorrelationStep` the agents run, with the states
round-tripped through bytes as the Faust tables keep them. The result is what a worker
would have stored: problems (latest version), detections and service-graph edges.

Used by ``bench/rca_bench.py`` to score real fault cases quickly, and by tests.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.feather as feather

from pipeline.correlate.step import CorrelationStep, detection_progress
from pipeline.correlate.step import Message as CorrelateMessage
from pipeline.detect.engines import build_engines
from pipeline.detect.step import DetectionStep, Engine
from pipeline.detect.step import Message as DetectMessage
from pipeline.errors import TocsinError
from pipeline.events.codec import DecodeLimits, decode_messages
from pipeline.events.columns import SIGNAL_OF_KIND, TIME_COLUMN
from pipeline.events.detection import Detection
from pipeline.events.problem import Problem
from pipeline.events.schema import RawMessage, RecordKind
from pipeline.events.sizes import value_budget
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service
from pipeline.graph.step import SOURCE as GRAPH_SOURCE
from pipeline.graph.step import GraphStep
from pipeline.settings import Settings
from pipeline.store.base import Store
from pipeline.store.history import recent_metrics

REPLAY_NOW_MS = 4_102_444_800_000  # 2100-01-01: recorded data is never "in the future"
DECODE_CHUNK = 20_000
SOURCE = "offline"
STORE_TABLE = {"metrics": "metrics", "logs": "logs", "traces": "spans"}


class OfflineError(TocsinError):
    """A recorded file could not be read or decoded."""


def read_tables(path: str | Path, cache_dir: str | Path | None = None,
                ) -> dict[str, pa.Table]:
    """Records of an NDJSON file (``.gz`` too) decoded by the stream's codec, as one Arrow
    table per signal sorted by event time; cached as Feather files when ``cache_dir`` is
    set (keyed by the file's name, size and modification time)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise OfflineError(f"{path}: cannot read: {exc.strerror or exc}") from None
    key = hashlib.blake2b(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode(),
                          digest_size=8).hexdigest()
    cached = {s: Path(cache_dir) / f"{path.name}.{key}.{s}.feather"
              for s in SIGNAL_OF_KIND.values()} if cache_dir else {}
    if cached and all(p.exists() for p in cached.values()):
        return {s: feather.read_table(p) for s, p in cached.items()}
    by_kind: dict[RecordKind, list[dict]] = {kind: [] for kind in RecordKind}
    kinds = {kind.value: kind for kind in RecordKind}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                by_kind[kinds[record["type"]]].append(record)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise OfflineError(f"{path}:{number}: expected a JSON record with \"type\" "
                                   f"metric, log or span ({exc})") from None
    tables = {SIGNAL_OF_KIND[kind]: _decode(kind, records, path)
              for kind, records in by_kind.items()}
    if cached:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for signal, p in cached.items():
            feather.write_feather(tables[signal], p)
    return tables


def _decode(kind: RecordKind, records: list[dict], path: Path) -> pa.Table:
    limits = DecodeLimits(now_ms=REPLAY_NOW_MS, max_message_bytes=1 << 31,
                          max_future_ms=1 << 40)
    parts = []
    for i in range(0, len(records), DECODE_CHUNK):
        message = RawMessage(str(path), 0, i, orjson.dumps(records[i:i + DECODE_CHUNK]))
        batch = decode_messages(kind, [message], limits)
        if batch.rejections:
            raise OfflineError(f"{path}: {len(batch.rejections)} {kind.value} records "
                               f"rejected, e.g. {batch.rejections[0].reason}")
        parts.append(batch.to_arrow())
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts)
    signal = SIGNAL_OF_KIND[kind]
    order = np.argsort(table.column(TIME_COLUMN[signal]).cast(pa.int64()).to_numpy(),
                       kind="stable")
    return table.take(pa.array(order))


@dataclass
class OfflineResult:
    """What the run stored: problems (latest version each), detections, edge rows."""

    problems: dict[str, Problem] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0

    def problem_rows(self) -> list[dict[str, Any]]:
        """Problems as the evaluation reads them from the store (merged ones left out)."""
        return [{"id": p.id, "opened_at": p.opened_at, "resolved_at": p.resolved_at,
                 "reopened_at": list(p.reopened_at), "recurred_at": list(p.recurred_at),
                 "affected": list(p.affected),
                 "root_causes": [c.service for c in p.root_causes],
                 "detections": list(p.detection_ids)}
                for p in sorted(self.problems.values(), key=lambda p: (p.opened_at, p.id))
                if not p.merged_into]


class OfflinePipeline:
    """The worker's detect, graph and correlate steps over recorded tables.

    ``engines`` default to those the settings enable; ``store`` (with the spans inserted
    as ingest stores them) lets the graph step pair spans into service edges.
    """

    def __init__(self, settings: Settings, engines: Mapping[str, Engine] | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings
        detect = settings.detect
        history = None
        if store is not None and detect.warmup_history_ms > 0 \
                and detect.warmup_history_points > 0:
            def history(service: str, series: Sequence[tuple[str, str]], before_ms: int,
                        ) -> Mapping[str, Any]:  # as the detect agent: from the store
                return recent_metrics(store, service, series, before_ms,
                                      detect.warmup_history_ms, detect.warmup_history_points)
        self.detect = DetectionStep(engines if engines is not None else build_engines(settings),
                                    detect.allowed_lateness_ms, history)
        self.correlate = CorrelationStep(settings.correlate)
        self.store = store
        graph = getattr(settings, "graph", None)
        self.graph = GraphStep.from_settings(settings) \
            if store is not None and graph is not None and graph.enabled else None
        self.scope = settings.correlate.scope
        # as the ingest agent: every by-service value within the topic's message limit
        self._value_budget = value_budget(settings.kafka.max_message_bytes, b"k" * 1024)
        self._detect_states: dict[tuple[str, str], bytes] = {}
        self._correlate_states: dict[str, bytes] = {}
        self._graph_state: bytes | None = None
        self.result = OfflineResult()
        self.record: list[dict[str, Any]] | None = None  # a list: correlation inputs kept
        self.topology: dict[str, tuple[str, ...]] | None = None  # learned from spans

    def run(self, tables: Mapping[str, pa.Table], step_ms: int = 60_000,
            on_step: Callable[[int], None] | None = None) -> OfflineResult:
        """Feed ``tables`` (one per signal, time-sorted) in event-time steps, then let
        event time pass far enough for every window and problem to close."""
        times = {s: t.column(TIME_COLUMN[s]).cast(pa.int64()).to_numpy()
                 for s, t in tables.items() if t.num_rows}
        if not times:
            return self.result
        first = min(int(t[0]) for t in times.values())
        last = max(int(t[-1]) for t in times.values())
        if self.store is not None:  # as ingest stores them: the graph step reads them
            for signal, table in tables.items():
                if table.num_rows:
                    self.store.insert_arrow(STORE_TABLE[signal], table)
        lo = first - first % step_ms
        while lo <= last:
            hi = lo + step_ms
            pieces = []
            for signal, t in times.items():
                a, b = np.searchsorted(t, [lo, hi])
                if b > a:
                    pieces.append((signal, tables[signal].slice(int(a), int(b - a))))
            self.step(pieces, hi - 1)
            if on_step is not None:
                on_step(hi)
            lo = hi
        tail = self.settings.detect.allowed_lateness_ms + 2 * step_ms + 600_000
        self.step([], last + tail, data_end_ms=last)
        return self.result

    def step(self, pieces: Iterable[tuple[str, pa.Table]], tick_ms: int,
             data_end_ms: int | None = None) -> None:
        """One batch: the by-service messages of ``pieces`` and ticks at ``tick_ms``.

        ``data_end_ms`` marks the flush after the last record: event time passes so that
        windows close, but the end of the recording is no silence of the services (a
        worker's event time never passes its last record), so absence detections after
        it are left out (see :func:`after_the_data`)."""
        messages = []
        for signal, table in pieces:
            forwarded = split_by_service(signal, table, self._value_budget)
            for key, value in forwarded.messages:
                messages.append(DetectMessage(0, key, value))
        ticks = [Tick(f"{s}/0", tick_ms, False) for s in ("metrics", "logs", "traces")]
        messages.append(DetectMessage(0, TICK_KEY, encode_ticks(ticks)))
        services = sorted({k[1] for k in self._detect_states})
        res = self.detect.run(messages, lambda e, s: self._detect_states.get((e, s)),
                              lambda p: services, assigned=[0])
        self._detect_states.update(res.states)
        detections = [d for d in res.detections if not after_the_data(d, data_end_ms)]
        self.result.detections.extend(detections)
        scope = self.scope
        out = [CorrelateMessage(scope, False, d.to_json()) for d in detections]
        out.append(CorrelateMessage(scope, False, orjson.dumps(
            {"tick": int(res.watermark_ms), "source": SOURCE})))
        if self.graph is not None:  # as the correlate agent: the graph first, up to the
            # batch's watermark; its edge detections and tick go ahead of the batch
            watermark, passed = detection_progress(self._correlate_states.get(scope),
                                                   [m.value for m in out], GRAPH_SOURCE)
            graph = self.graph.run(watermark, self.store.query, self._graph_state, passed)
            self._graph_state = graph.state
            self.topology = graph.topology
            self.result.detections.extend(graph.detections)
            self.result.edges.extend(graph.edge_rows)
            out = [CorrelateMessage(scope, False, m) for m in graph.messages] + out
        self._correlate(out, data_end_ms)

    def _correlate(self, messages: list[CorrelateMessage], data_end_ms: int | None) -> None:
        if self.record is not None:
            step: dict[str, Any] = {"messages": [m.value.decode() for m in messages],
                                    "topology": self.topology}
            if data_end_ms is not None:
                step["data_end_ms"] = data_end_ms
            self.record.append(step)
        self.correlate_step(messages, self.topology)

    def correlate_step(self, messages: list[CorrelateMessage],
                       learned: Mapping[str, tuple[str, ...]] | None) -> None:
        """One correlation step over detections-topic messages."""
        corr = self.correlate.run(messages, self._correlate_states.get, learned)
        self._correlate_states.update(corr.states)
        for d in corr.decisions:
            self.result.problems[d.problem.id] = d.problem
        self.result.steps += 1

    def rerun(self, recorded: Iterable[Mapping[str, Any]]) -> OfflineResult:
        """Run only the correlation steps over a recording of their input (see
        ``record``): the detections and topology of every step, to try a correlator
        change in seconds. The flush after the last record (the last step; marked
        ``data_end_ms`` in recordings since it was) leaves out absence detections after
        the data, as :meth:`run` does."""
        steps = list(recorded)
        watermark: int | None = None
        for i, step in enumerate(steps):
            end = step.get("data_end_ms", watermark if i == len(steps) - 1 else None)
            messages = []
            for m in step["messages"]:
                data = orjson.loads(m)
                if "tick" in data:
                    watermark = max(watermark or 0, int(data["tick"]))
                else:
                    det = Detection.from_wire(data)
                    if after_the_data(det, end):
                        continue
                    self.result.detections.append(det)
                messages.append(CorrelateMessage(self.scope, False, m.encode()))
            topology = step.get("topology")
            self.correlate_step(messages, {k: tuple(v) for k, v in topology.items()}
                                if topology else None)
        return self.result


def after_the_data(det: Detection, data_end_ms: int | None) -> bool:
    """Whether ``det`` is an absence alarm raised only by event time passing beyond the
    end of the recorded data (``data_end_ms``; None: not the flush)."""
    return (data_end_ms is not None and det.time > data_end_ms and det.state == "firing"
            and det.evidence.get("kind") == "absence")
