"""Metric names, the series table, and a tick's metric values as one numpy block.

Every instance (service, host) reports these series once per interval, stamped at the
start of the interval they summarise. Names and units follow OpenTelemetry's semantic
conventions as the OTLP decoder stores them (the ``http.server.request.duration``
histogram as its percentiles, in seconds; utilizations as ratios 0..1), so the built-in
rules, whose thresholds carry units, meet them as they meet real telemetry::

    http.server.request.rate             {request}/s  requests served per second
    http.server.error.ratio              1            failed / served, 0..1
    http.server.request.duration.p50     s            latency percentiles, downstream calls
    http.server.request.duration.p95     s            included
    http.server.request.duration.p99     s
    system.cpu.utilization               1            0..1
    system.memory.utilization            1            0..1
    queue.depth                          {item}       in-flight requests / pending tasks
    heartbeat                            1            1 while the process is up

Databases, caches and workers use the same ``http.server.*`` names for their queries,
commands and tasks. While an instance is *down* (crashed, OOM-killed, restarting) its
request series, ``queue.depth`` and ``heartbeat`` are **missing** (absence detectors
fire on that); CPU and memory are still reported, low. Every point carries the
attribute ``service.version``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.events.schema import MetricPoint
from pipeline.simulate.state import Layout

METRICS: tuple[tuple[str, str], ...] = (
    ("http.server.request.rate", "{request}/s"),
    ("http.server.error.ratio", "1"),
    ("http.server.request.duration.p50", "s"),
    ("http.server.request.duration.p95", "s"),
    ("http.server.request.duration.p99", "s"),
    ("system.cpu.utilization", "1"),
    ("system.memory.utilization", "1"),
    ("queue.depth", "{item}"),
    ("heartbeat", "1"),
)
METRIC_NAMES = tuple(name for name, _ in METRICS)
REQUEST_RATE, ERROR_RATIO, P50, P95, P99, CPU, MEMORY, QUEUE, HEARTBEAT = range(len(METRICS))
DOWN_MISSING = np.array([REQUEST_RATE, ERROR_RATIO, P50, P95, P99, QUEUE, HEARTBEAT])
"""Series that are missing while an instance is down."""


class SeriesTable:
    """Wire-dict templates of every series, instance-major (instance 0's metrics first)."""

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        self.layout = layout
        self.versions = dict(versions)
        self.templates: list[dict[str, Any]] = []
        for service, host in layout.instances:
            self.templates.extend(self._instance(service, host))

    def _instance(self, service: str, host: str) -> list[dict[str, Any]]:
        attrs = {"service.version": self.versions[service]}
        return [MetricPoint(time=0, service=service, name=name, value=0.0, host=host,
                            unit=unit, attributes=attrs).to_wire() for name, unit in METRICS]

    def update(self, versions: dict[str, str]) -> None:
        """Rebuild the templates of services whose version changed (copy-on-write)."""
        changed = [s for s, v in versions.items() if self.versions.get(s) != v]
        if not changed:
            return
        self.versions.update(versions)
        self.templates = list(self.templates)
        k = len(METRICS)
        for i, (service, host) in enumerate(self.layout.instances):
            if service in changed:
                self.templates[i * k:(i + 1) * k] = self._instance(service, host)


class MetricBlock:
    """All metric points of one tick: values ``(instances, metrics)`` and what is present."""

    __slots__ = ("time_ms", "values", "present", "templates")

    def __init__(self, time_ms: int, values: np.ndarray, present: np.ndarray | None,
                 templates: list[dict[str, Any]]) -> None:
        self.time_ms = time_ms
        self.values = values
        self.present = present  # None: every series present
        self.templates = templates

    def __len__(self) -> int:
        return int(self.values.size if self.present is None else self.present.sum())

    def wire(self) -> list[dict[str, Any]]:
        """The points as wire dicts, equal to ``MetricPoint(...).to_wire()`` of each.

        Dicts of one block share their ``attributes`` object: treat them as read-only.
        """
        t = self.time_ms
        values = self.values.ravel().tolist()
        templates = self.templates
        if self.present is not None:
            keep = np.flatnonzero(self.present.ravel()).tolist()
            values = [values[i] for i in keep]
            templates = [templates[i] for i in keep]
        out = []
        append = out.append
        for template, value in zip(templates, values, strict=True):
            point = template.copy()  # the fastest way to build a dict with this key order
            point["time"] = t
            point["value"] = value
            append(point)
        return out

    def points(self) -> list[MetricPoint]:
        """The points as :class:`~pipeline.events.schema.MetricPoint` records."""
        return [MetricPoint(time=d["time"], service=d["service.name"], name=d["name"],
                            value=d["value"], host=d.get("host.name", ""),
                            unit=d.get("unit", ""), attributes=dict(d.get("attributes", {})))
                for d in self.wire()]

    def series(self, service: str, name: str, layout: Layout) -> dict[str, float]:
        """Values of one metric per host of ``service`` (missing series left out)."""
        col = METRIC_NAMES.index(name)
        out = {}
        for i in layout.instances_of[service].tolist():
            if self.present is None or self.present[i, col]:
                out[layout.instances[i][1]] = float(self.values[i, col])
        return out
