"""Detections in event-time order before the correlator takes them in.

Detect workers close each service's windows in turn, so detections of different services
reach the detections topic out of event-time order (in a fast replay, by up to the whole
run). Grouping depends on order - a database outage seen callers-first looks like several
problems - so the correlator holds each detection until event time has passed it.

Event time is what the detect workers say: a worker announces itself when it starts (a
tick at -1), and after each batch sends a tick with its watermark (every partition it
is assigned has passed it, lateness included) and its name.
A held detection is released once the slowest worker's watermark reaches its time; a
worker whose watermark lags the fastest one by more than ``max_lag_ms`` (stopped, or
replaced after a rebalance) no longer holds the others back. With no ticks at all (a
producer of detections other than the detect agent) nothing is held.

The service-graph step (``GRAPH_SOURCE``) ticks too, but it *follows* detection: it
runs up to the detect workers' watermark before each correlation step, so it is always
a bucket or less behind them. It is never the lead, and it stops holding the others
back only when it lags the slowest live detect worker by more than ``max_lag_ms`` (the
graph step was turned off): a fast jump of detection's event time cannot make the
correlator pass buckets whose edge detections are still to come.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.events.detection import Detection

MAX_LAG_MS = 30 * 60_000  # a detect worker this far behind the fastest one is ignored
MAX_HELD = 2_000  # beyond this many held detections the oldest are released early
GRAPH_SOURCE = "service-graph"  # the service-graph step's ticks: it follows detection


@dataclass(frozen=True)
class Reorder:
    """Held detections and each detect worker's watermark, for one scope."""

    held: tuple[Detection, ...] = ()
    sources: Mapping[str, int] = field(default_factory=dict)  # worker -> watermark (ms)

    def tick(self, source: str, watermark_ms: int) -> Reorder:
        """``source`` has passed ``watermark_ms`` (watermarks never go back)."""
        if watermark_ms <= self.sources.get(source, watermark_ms - 1):
            return self
        return Reorder(self.held, {**self.sources, source: watermark_ms})

    def hold(self, detections: Iterable[Detection]) -> Reorder:
        """The buffer with ``detections`` added (one already held is not held twice)."""
        ids = {d.id for d in self.held}
        more = tuple(d for d in detections if d.id not in ids and not ids.add(d.id))
        return Reorder(self.held + more, self.sources) if more else self

    def watermark(self, max_lag_ms: int = MAX_LAG_MS, exclude: str = "") -> int | None:
        """Event time every live detect worker (but ``exclude``) and the graph step have
        passed; None before any tick."""
        sources = {k: v for k, v in self.sources.items() if k != exclude}
        detect = [w for k, w in sources.items() if k != GRAPH_SOURCE]
        if not detect:
            return min(sources.values()) if sources else None
        lead = max(detect)
        slowest = min(w for w in detect if w >= lead - max_lag_ms)
        graph = sources.get(GRAPH_SOURCE)
        return slowest if graph is None or graph < slowest - max_lag_ms \
            else min(slowest, graph)

    def release(self, max_lag_ms: int = MAX_LAG_MS, max_held: int = MAX_HELD,
                ) -> tuple[Reorder, list[Detection], int | None]:
        """Split off the detections event time has passed, in order; also the watermark."""
        wm = self.watermark(max_lag_ms)
        ordered = sorted(self.held, key=lambda d: (d.time, d.id))
        if wm is None:
            return Reorder((), self.sources), ordered, None
        ready = sum(1 for d in ordered if d.time <= wm)
        ready = max(ready, len(ordered) - max_held)
        return Reorder(tuple(ordered[ready:]), self.sources), ordered[:ready], wm

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"held": [d.to_wire() for d in self.held], "sources": dict(self.sources)}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> Reorder:
        """The inverse of :meth:`to_wire` (None: an empty buffer)."""
        if not data:
            return cls()
        return cls(tuple(Detection.from_wire(d) for d in data["held"]),
                   {str(k): int(v) for k, v in data["sources"].items()})
