"""The model state of one service key: metric series, service vector, log and trace
analytics, in compact plain data (zstd-compressed JSON; zlib in states written before)
for a Faust table."""

from __future__ import annotations

import pickle
import zlib
from typing import Protocol

import orjson

from models.base import ModelError
from models.logs import LogAnalytics
from models.multivariate import ServiceVectorHST
from models.series import SeriesBank, SeriesDetector
from models.traces import TraceAnalytics
from pipeline.events.packing import PackingError, is_packed, pack, unpack


class StateFactory(Protocol):
    """What restores a state: an engine that makes new, configured states (around a
    given service vector detector, when one is restored)."""

    def new_state(self, vector: ServiceVectorHST | None = None) -> ServiceModelState: ...

_STATE_VERSION = 1


class ServiceModelState:
    """All model state of one service key; :meth:`to_bytes` is compact plain data."""

    def __init__(self, metric_detector: SeriesDetector, vector: ServiceVectorHST,
                 logs: LogAnalytics, traces: TraceAnalytics) -> None:
        self.service = ""
        self.metrics = SeriesBank(metric_detector)
        self.vector = vector
        self.vector_pending: dict[str, dict[str, list[float]]] = {}  # time -> feature sums
        self.vector_done_until = 0
        self.vector_firing: int | None = None
        self.vector_sent: int | None = None  # last firing or keep-alive time
        self.vector_streak = 0
        self.vector_peak = 0.0
        self.logs = logs
        self.traces = traces

    def to_bytes(self) -> bytes:
        """zstd-compressed JSON; the service vector's river trees are the one pickle."""
        data = {"v": _STATE_VERSION, "service": self.service,
                "metrics": self.metrics.to_bytes().hex(),
                "vector": pickle.dumps(self.vector).hex(),
                "vector_pending": self.vector_pending,
                "vector_done_until": self.vector_done_until,
                "vector_firing": self.vector_firing, "vector_sent": self.vector_sent,
                "vector_streak": self.vector_streak, "vector_peak": self.vector_peak,
                "logs": self.logs.to_dict(), "traces": self.traces.to_dict()}
        # a state is written every step it changes in (most steps): zstd level 1 took a
        # quarter of zlib level 1's time (itself a quarter of level 6's), for fewer bytes
        return pack(orjson.dumps(data))

    @classmethod
    def from_bytes(cls, data: bytes, engine: StateFactory) -> ServiceModelState:
        """Restore :meth:`to_bytes` output, configured like ``engine``'s new states."""
        try:
            obj = orjson.loads(unpack(data) if is_packed(data)
                               else zlib.decompress(data))  # zlib: written before zstd
        except (zlib.error, orjson.JSONDecodeError, PackingError) as exc:
            raise ModelError(f"service model state: not readable ({exc})") from exc
        if obj.get("v") != _STATE_VERSION:
            raise ModelError(f"service model state version {obj.get('v')!r}, expected "
                             f"{_STATE_VERSION}")
        # the stored vector detector replaces a fresh one: not cloned just to be dropped
        state = engine.new_state(vector=pickle.loads(bytes.fromhex(obj["vector"])))
        state.service = obj["service"]
        state.metrics = SeriesBank.from_bytes(bytes.fromhex(obj["metrics"]),
                                              state.metrics.detector)
        state.vector_pending = obj["vector_pending"]
        state.vector_done_until = obj["vector_done_until"]
        state.vector_firing = obj["vector_firing"]
        state.vector_sent = obj.get("vector_sent", state.vector_firing)  # older: fired time
        state.vector_streak, state.vector_peak = obj["vector_streak"], obj["vector_peak"]
        state.logs.load(obj["logs"])
        state.traces.load(obj["traces"])
        return state
