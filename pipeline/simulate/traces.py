"""Sampled traces that follow the call graph.

Each tick, ``traces_per_tick`` traces start at every entry service (a service nobody
calls). A request walks the whole call tree: a ``server`` span per service visited, a
``client`` span (attribute ``peer.service``) per call. A server span's duration is its own
processing time plus its calls; it fails on its own (its own error ratio) or, with
probability :data:`ERROR_PROPAGATION`, when a call failed. A call to a service that is
down fails after the connect time with ``error.type=connection_refused`` and no server
span. Failed server spans also write an ERROR log carrying the trace context.

A trace is emitted with the tick it starts in; its root span starts inside the tick, but
in a slow trace a child span may start after the tick ends.
"""

from __future__ import annotations

import random

import numpy as np

from pipeline.events.schema import Span
from pipeline.simulate.logs import LogSink
from pipeline.simulate.state import Layout

ERROR_PROPAGATION = 0.6
"""Probability that a failed call fails its caller (the rest is retried or degraded)."""

_DB_SYSTEM = {"database": "postgresql", "cache": "redis"}


class TraceSampler:
    """Builds the sampled spans of one tick from the system's per-service state."""

    def __init__(self, rng: random.Random, layout: Layout, traces_per_tick: int) -> None:
        self.rng = rng
        self.layout = layout
        self.traces_per_tick = traces_per_tick
        self.roots = [layout.index[n] for n in layout.system.roots()]
        self.services = layout.system.services
        self.calls = [[layout.index[c] for c in s.calls] for s in self.services]

    def tick(self, t_ms: int, interval_ms: int, own_err: np.ndarray, own_lat_ms: np.ndarray,
             down: np.ndarray, versions: dict[str, str], sink: LogSink | None) -> list[Span]:
        """The spans of traces starting in ``[t_ms, t_ms + interval_ms)``, by start time.

        ``own_err`` and ``own_lat_ms`` are per service; ``down`` is per instance.
        """
        self._err = own_err.tolist()
        self._lat = own_lat_ms.tolist()
        up: list[list[str]] = [[] for _ in self.services]
        for (_, host), svc, is_down in zip(self.layout.instances,
                                           self.layout.instance_service.tolist(), down.tolist(),
                                           strict=True):
            if not is_down:
                up[svc].append(host)
        self._up = up
        self._down = [not hosts for hosts in up]
        self._versions = versions
        self._sink = sink
        self._last_ms = t_ms + interval_ms - 1  # logs stay inside the tick
        out: list[Span] = []
        for root in self.roots:
            if self._down[root]:
                continue
            for _ in range(self.traces_per_tick):
                trace_id = f"{self.rng.getrandbits(128):032x}"
                start = t_ms + self.rng.random() * interval_ms * 0.9
                op = self.rng.choice(self.services[root].operations)
                self._server(root, op, start, trace_id, "", out)
        out.sort(key=lambda s: s.start)
        return out

    def _server(self, i: int, op: str, start: float, trace_id: str, parent: str,
                out: list[Span]) -> tuple[float, bool]:
        rng, svc = self.rng, self.services[i]
        span_id = f"{rng.getrandbits(64):016x}"
        host = rng.choice(self._up[i])
        own = self._lat[i] * rng.lognormvariate(0.0, 0.35)
        cursor = start + own * 0.3
        failed = rng.random() < self._err[i]
        for callee in self.calls[i]:
            duration, call_failed = self._client(i, host, callee, cursor, trace_id, span_id,
                                                 out)
            cursor += duration
            if call_failed and rng.random() < ERROR_PROPAGATION:
                failed = True
        duration = cursor - start + own * 0.7
        attrs = {"service.version": self._versions.get(svc.name, svc.version)}
        if svc.kind in _DB_SYSTEM:
            attrs["db.system"] = _DB_SYSTEM[svc.kind]
        else:
            attrs["http.status_code"] = "500" if failed else "200"
        out.append(Span(trace_id=trace_id, span_id=span_id, service=svc.name, name=op,
                        start=int(start), duration_ms=round(duration, 3),
                        parent_span_id=parent, host=host, status="error" if failed else "ok",
                        kind="server", attributes=attrs))
        if failed and self._sink is not None:
            self._sink.emit(svc.name, "ERROR", f"request failed: {op} status=500", host,
                            trace_id=trace_id, span_id=span_id,
                            time_ms=min(int(start + duration), self._last_ms))
        return duration, failed

    def _client(self, caller: int, host: str, callee: int, start: float, trace_id: str,
                parent: str, out: list[Span]) -> tuple[float, bool]:
        rng = self.rng
        span_id = f"{rng.getrandbits(64):016x}"
        target = self.services[callee]
        op = rng.choice(target.operations)
        attrs = {"peer.service": target.name,
                 "service.version": self._versions.get(self.services[caller].name,
                                                       self.services[caller].version)}
        if self._down[callee]:
            duration = max(1.0, self._lat[callee]) * rng.lognormvariate(0.0, 0.2)
            failed = True
            attrs["error.type"] = "connection_refused"
        else:
            child, failed = self._server(callee, op, start + 0.2, trace_id, span_id, out)
            duration = child + 0.4
        out.append(Span(trace_id=trace_id, span_id=span_id, service=self.services[caller].name,
                        name=op, start=int(start), duration_ms=round(duration, 3),
                        parent_span_id=parent, host=host,
                        status="error" if failed else "ok", kind="client", attributes=attrs))
        return duration, failed
