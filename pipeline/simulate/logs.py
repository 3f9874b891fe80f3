"""Log lines: a per-tick sink and the background (non-incident) message templates.

Background logs are INFO/DEBUG chatter per instance, occasional harmless WARN lines
(slow requests, a retried ``connection timeout``) and ERROR lines in proportion to the
requests that failed. The strings operators grep for during incidents -- ``database
unavailable``, ``connection refused``, ``coordination_failed``, ``OutOfMemoryError``,
``OOMKilled``, ``restarted``, ``deploy`` -- are written only by scenarios
(:mod:`pipeline.simulate.scenarios`), never here.
"""

from __future__ import annotations

import random

import numpy as np

from pipeline.events.schema import LogRecord
from pipeline.simulate.state import Layout

_INFO = {
    "http": ("{op} 200 {ms}ms request_id={rid}", "request completed: {op} status=200 "
             "duration={ms}ms", "GET /health 200 1ms"),
    "database": ("checkpoint complete: wrote {n} buffers ({pct}%)",
                 "automatic vacuum of table \"shop.public.orders\": removed {n} dead tuples",
                 "connection authorized: user=app database=shop"),
    "cache": ("{n} clients connected", "background saving terminated with success",
              "DB saved on disk"),
    "coordinator": ("dispatched task {tid} to {peer}", "scheduled {n} tasks",
                    "lease renewed for task {tid}"),
    "worker": ("task {tid} completed in {ms}ms", "heartbeat sent seq={n}",
               "picked up task {tid}"),
}
_DEBUG = "cache lookup key=item:{n} hit={hit}"
_WARN = ("slow request {op} took {slow}ms", "retrying call to {peer} (attempt 2/3)",
         "connection timeout to {peer} after {slow}ms, retry succeeded")
_ERROR = {
    "http": "request failed: {op} status={status} request_id={rid}",
    "database": "ERROR: duplicate key value violates unique constraint \"orders_pkey\"",
    "cache": "ERR max number of clients reached",
    "coordinator": "task {tid} failed: worker reported error",
    "worker": "task {tid} failed: ValueError: invalid payload",
}


class LogSink:
    """Collects the log records of one tick at random times inside it."""

    def __init__(self, rng: random.Random, layout: Layout) -> None:
        self.rng = rng
        self.layout = layout
        self.records: list[LogRecord] = []
        self.t_ms = 0
        self.interval_ms = 1
        self.versions: dict[str, str] = {}

    def start_tick(self, t_ms: int, interval_ms: int, versions: dict[str, str]) -> None:
        """Begin a new tick covering ``[t_ms, t_ms + interval_ms)``."""
        self.records = []
        self.t_ms, self.interval_ms, self.versions = t_ms, interval_ms, versions

    def emit(self, service: str, severity: str, body: str, host: str | None = None,
             trace_id: str = "", span_id: str = "", time_ms: int | None = None) -> None:
        """Add one log line; host and time are drawn when not given."""
        if host is None:
            host = self.rng.choice(self.layout.hosts_of[service])
        if time_ms is None:
            time_ms = self.t_ms + self.rng.randrange(self.interval_ms)
        time_ms = min(time_ms, self.t_ms + self.interval_ms - 1)  # never past the tick
        attrs = {"service.version": self.versions.get(service, "")}
        self.records.append(LogRecord(time=time_ms, service=service, severity_text=severity,
                                      body=body, host=host, trace_id=trace_id,
                                      span_id=span_id, attributes=attrs))

    def fill(self, text: str, service: str) -> str:
        """Fill a template's variable parts (ids, durations, peers)."""
        r = self.rng
        svc = self.layout.system.service(service)
        peers = svc.calls or self.layout.system.callers(service) or (service,)
        return text.format(op=r.choice(svc.operations), ms=r.randint(1, 90),
                           slow=r.randint(800, 4000), rid=f"{r.getrandbits(32):08x}",
                           tid=f"task-{r.randrange(10**6):06d}", n=r.randint(2, 900),
                           pct=r.randint(1, 30), hit=r.choice(("true", "false")),
                           peer=r.choice(peers), status=r.choice((500, 502, 503)))

    def sorted_records(self) -> list[LogRecord]:
        """The tick's records in time order (stable)."""
        return sorted(self.records, key=lambda rec: rec.time)


def background_logs(sink: LogSink, np_rng: np.random.Generator, rate: np.ndarray,
                    err: np.ndarray, down: np.ndarray) -> None:
    """Write one tick of ordinary logs for every instance that is up.

    ``rate`` and ``err`` are per-instance request rate (req/s) and error ratio.
    """
    layout = sink.layout
    scale = sink.interval_ms / 10_000.0
    n = layout.n_instances
    info_n = np_rng.poisson(2.0 * scale, n)
    debug_n = np_rng.poisson(0.5 * scale, n)
    warn_n = (np_rng.random(n) < 0.01 * scale).astype(int)
    failed = rate * (sink.interval_ms / 1000.0) * err
    error_n = np_rng.poisson(np.minimum(failed * 0.2, 30.0))
    for i in np.flatnonzero(~down).tolist():
        service, host = layout.instances[i]
        kind = layout.system.service(service).kind
        for _ in range(int(info_n[i])):
            sink.emit(service, "INFO", sink.fill(sink.rng.choice(_INFO[kind]), service), host)
        for _ in range(int(debug_n[i])):
            sink.emit(service, "DEBUG", sink.fill(_DEBUG, service), host)
        for _ in range(int(warn_n[i])):
            sink.emit(service, "WARN", sink.fill(sink.rng.choice(_WARN), service), host)
        for _ in range(int(error_n[i])):
            sink.emit(service, "ERROR", sink.fill(_ERROR[kind], service), host)
