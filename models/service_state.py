"""The model state of one service key: metric series, service vector, log and trace
analytics, in compact plain data (zstd-compressed JSON; zlib in states written before)
for a Faust table."""

from __future__ import annotations

import pickle
import struct
import zlib
from typing import Protocol

import orjson

from models.base import ModelError
from models.logs import LogAnalytics
from models.multivariate import ServiceVectorHST
from models.series import BANK_MAGIC, SeriesBank, SeriesDetector
from models.traces import TraceAnalytics
from pipeline.events.packing import PackingError, is_packed, pack, unpack


class StateFactory(Protocol):
    """What restores a state: an engine that makes new, configured states (around a
    given service vector detector, when one is restored)."""

    def new_state(self, vector: ServiceVectorHST | None = None) -> ServiceModelState: ...

_STATE_VERSION = 1
FIXED_BYTES = 40_000
"""Memory a service's model state takes before any series, about (a new state measured
37 kB with tracemalloc: mostly the service vector's trees)."""


class ServiceModelState:
    """All model state of one service key; :meth:`to_bytes` is compact plain data.

    A restored state decodes its metric series (:attr:`metrics`, most of its memory:
    about 600 bytes a series decoded, some 40 stored) only when they are first used: a
    step that only lets event time pass (logs, traces) never decodes them, and one that
    holds many services' states at once holds their series compressed until scored.
    """

    def __init__(self, metric_detector: SeriesDetector, vector: ServiceVectorHST,
                 logs: LogAnalytics, traces: TraceAnalytics) -> None:
        self.service = ""
        self._metrics = SeriesBank(metric_detector)
        # to_bytes output holding the undecoded series: kept compressed, not as the series'
        # hex text, which re-encodes at half the CPU but holds 8x the bytes (843 against
        # 99 a series for 500 series of 150 points)
        self._stored: bytes | None = None
        self.vector = vector
        self.vector_pending: dict[str, dict[str, list[float]]] = {}  # time -> feature sums
        self.vector_done_until = 0
        self.vector_firing: int | None = None
        self.vector_sent: int | None = None  # last firing or keep-alive time
        self.vector_streak = 0
        self.vector_peak = 0.0
        self.logs = logs
        self.traces = traces

    def held_bytes(self) -> int:
        """About the memory this state takes decoded (series still as stored count
        their stored bytes): what :class:`~pipeline.detect.live.LiveStates` budgets."""
        metrics = len(self._stored) if self._stored is not None else \
            self._metrics.held_bytes()
        return FIXED_BYTES + metrics + self.traces.held_bytes() + self.logs.held_bytes()

    @property
    def metrics(self) -> SeriesBank:
        """The metric series' bank, decoded from the stored state on first use."""
        if self._stored is not None:
            stored, self._stored = self._stored, None
            try:
                self._metrics = SeriesBank.from_bytes(
                    bytes.fromhex(_read(stored)["metrics"]), self._metrics.detector)
            except (ModelError, ValueError, struct.error) as exc:
                self._stored = stored  # unchanged: the next use fails alike
                raise ModelError(f"service model state of {self.service!r}: its metric "
                                 f"series are not readable ({exc})") from exc
        return self._metrics

    @metrics.setter
    def metrics(self, bank: SeriesBank) -> None:
        self._metrics, self._stored = bank, None

    @property
    def metrics_decoded(self) -> bool:
        """Whether :attr:`metrics` is decoded (False: still as stored, not used yet)."""
        return self._stored is None

    def to_bytes(self) -> bytes:
        """zstd-compressed JSON; the service vector's river trees are the one pickle."""
        metrics = (self._metrics.to_bytes().hex() if self._stored is None
                   else _read(self._stored)["metrics"])  # never decoded: as it was stored
        data = {"v": _STATE_VERSION, "service": self.service,
                "metrics": metrics,
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
        """Restore :meth:`to_bytes` output, configured like ``engine``'s new states; the
        metric series are decoded when first used (see the class docstring)."""
        obj = _read(data)
        # the stored vector detector replaces a fresh one: not cloned just to be dropped
        state = engine.new_state(vector=pickle.loads(bytes.fromhex(obj["vector"])))
        state.service = obj["service"]
        if not isinstance(obj.get("metrics"), str) or obj["metrics"][:8] != _BANK_MAGIC_HEX:
            raise ModelError("service model state: its metric series are not a series bank")
        state._stored = data  # the bank's detector is the new state's (the engine's)
        state.vector_pending = obj["vector_pending"]
        state.vector_done_until = obj["vector_done_until"]
        state.vector_firing = obj["vector_firing"]
        state.vector_sent = obj.get("vector_sent", state.vector_firing)  # older: fired time
        state.vector_streak, state.vector_peak = obj["vector_streak"], obj["vector_peak"]
        state.logs.load(obj["logs"])
        state.traces.load(obj["traces"])
        return state


_BANK_MAGIC_HEX = BANK_MAGIC.hex()


def _read(data: bytes) -> dict:
    """The plain data of a stored state, its version checked."""
    try:
        obj = orjson.loads(unpack(data) if is_packed(data)
                           else zlib.decompress(data))  # zlib: written before zstd
    except (zlib.error, orjson.JSONDecodeError, PackingError) as exc:
        raise ModelError(f"service model state: not readable ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("v") != _STATE_VERSION:
        version = obj.get("v") if isinstance(obj, dict) else None
        raise ModelError(f"service model state version {version!r}, expected "
                         f"{_STATE_VERSION}")
    return obj
