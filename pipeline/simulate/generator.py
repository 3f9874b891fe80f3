"""The event-time generator: a seeded simulation yielding one :class:`SimStep` per interval.

>>> from pipeline.simulate import load_system, simulate
>>> sim = simulate(load_system(), start_ms=1_718_000_000_000, duration_ms=60_000, seed=7)
>>> [tick.time_ms - sim.labels.start_ms for tick in sim]
[0, 10000, 20000, 30000, 40000, 50000]

Same system, arguments and seed give the same ticks, record for record: randomness comes
from independent streams spawned from ``seed`` (system state, metric noise, logs, spans),
never from the clock. Load follows a daily cycle (``seasonality`` of the system) with
slow drift, noise and occasional harmless spikes (a few ticks of 1.4-2.5x load; one-tick
error blips of 2-6 %), so naive detectors are noisy. Errors and latency propagate from a
service to its callers along the call graph (see :mod:`pipeline.simulate.traces`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.events.schema import LogRecord, MetricPoint, Span
from pipeline.simulate import metrics as m
from pipeline.simulate.labels import Labels
from pipeline.simulate.logs import LogSink, background_logs
from pipeline.simulate.scenarios import SCENARIO_CLASSES
from pipeline.simulate.schedule import (
    ScenarioError,
    ScheduledIncident,
    mix_incidents,
    resolve_schedule,
)
from pipeline.simulate.state import Effects, Layout
from pipeline.simulate.topology import System
from pipeline.simulate.traces import ERROR_PROPAGATION, TraceSampler

KINDS = ("metric", "log", "span")
SPIKE_PROBABILITY = 0.003  # per service per tick
BLIP_PROBABILITY = 0.002


@dataclass(frozen=True)
class SimStep:
    """Everything emitted for ``[time_ms, time_ms + interval_ms)``; pace on ``time_ms``."""

    time_ms: int
    interval_ms: int
    metrics: m.MetricBlock
    logs: list[LogRecord]
    spans: list[Span]
    active: tuple[str, ...]  # ids of the incidents active during this tick

    def records(self) -> Iterator[MetricPoint | LogRecord | Span]:
        """Metric points, then log records, then spans (each kind in time order)."""
        yield from self.metrics.points()
        yield from self.logs
        yield from self.spans


class Simulation:
    """A configured, replayable simulation: iterate it for ticks; ``labels`` is the truth."""

    def __init__(self, system: System, *, start_ms: int, duration_ms: int, seed: int,
                 incidents: Sequence[ScheduledIncident] | None = None, mixed: bool = False,
                 interval_ms: int = 10_000, traces_per_tick: int = 2,
                 kinds: Sequence[str] = KINDS, allow_overlap: bool = False) -> None:
        for name, value in (("interval_ms", interval_ms), ("duration_ms", duration_ms)):
            if not isinstance(value, int) or value <= 0:
                raise ScenarioError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ScenarioError(f"seed must be a non-negative integer, got {seed!r}")
        if bad := sorted(set(kinds) - set(KINDS)):
            raise ScenarioError(f"kinds: unknown {bad}; expected some of {list(KINDS)}")
        if incidents and mixed:
            raise ScenarioError("give an explicit incident schedule or mixed=True, not both")
        self.system, self.seed, self.interval_ms = system, seed, interval_ms
        self.start_ms, self.traces_per_tick, self.kinds = start_ms, traces_per_tick, set(kinds)
        self.n_ticks = -(-duration_ms // interval_ms)
        self.end_ms = start_ms + self.n_ticks * interval_ms
        self.layout = Layout(system)
        seeds = np.random.SeedSequence(seed).spawn(6)
        sched_rng = np.random.default_rng(seeds[0])
        if mixed:
            incidents = mix_incidents(system, start_ms, self.end_ms - start_ms, sched_rng,
                                      interval_ms=interval_ms)
        resolved, quiet = resolve_schedule(system, incidents or [], start_ms=start_ms,
                                           end_ms=self.end_ms, interval_ms=interval_ms,
                                           rng=sched_rng, allow_overlap=allow_overlap)
        self.labels = Labels(seed, start_ms, self.end_ms, tuple(resolved), tuple(quiet),
                             system.name, interval_ms)
        self._seeds = seeds[1:]

    def __iter__(self) -> Iterator[SimStep]:
        """Generate the ticks from the start (every iteration replays the same run)."""
        lay, sysm = self.layout, self.system
        state_rng, metric_rng, log_np = (np.random.default_rng(s) for s in self._seeds[:3])
        log_py, span_py = (random.Random(int(s.generate_state(1)[0])) for s in self._seeds[3:])
        base = _Baselines(sysm)
        versions = {s.name: s.version for s in sysm.services}
        table = m.SeriesTable(lay, versions)
        sink = LogSink(log_py, lay)
        sampler = TraceSampler(span_py, lay, self.traces_per_tick)
        ni, svc = lay.n_instances, lay.instance_service
        noise, mem_ar = _Noise(state_rng, lay.n_services), np.zeros(ni)
        want_logs = "log" in self.kinds
        neutral = Effects.neutral(lay, versions, self.interval_ms)  # shared, never written
        for k in range(self.n_ticks):
            t = self.start_ms + k * self.interval_ms
            active = [inc for inc in self.labels.incidents if inc.start_ms <= t < inc.end_ms]
            fx = Effects.neutral(lay, versions, self.interval_ms, True) if active else neutral
            any_down = False
            if want_logs:
                sink.start_tick(t, self.interval_ms, fx.versions)
            for inc in active:
                SCENARIO_CLASSES[inc.scenario].apply(inc, t, fx, lay)
                if want_logs:
                    SCENARIO_CLASSES[inc.scenario].logs(inc, t, sink)
            drift, spike, blip = noise.step()
            load = _season(sysm, t) * drift * spike * fx.rate_mult
            own_err = np.minimum(base.err * spike + blip + fx.err_add, 1.0)
            if active and fx.down.any():
                any_down = True
                own_err[fx.service_down(lay)] = 1.0  # callers of a dead service get errors
            own_lat = (base.lat * np.maximum(0.5, 1.0 + 0.25 * (load - 1.0)) * fx.lat_mult
                       + fx.lat_add_ms)
            eff_err, eff_lat = base.propagate(own_err, own_lat)
            table.update(fx.versions)
            # metrics, vectorised over every instance
            z = metric_rng.standard_normal((8, ni))
            mem_ar = 0.98 * mem_ar + 0.15 * z[6]
            block = _metric_values(base, svc, load, eff_err, eff_lat, fx, z, mem_ar,
                                   self.interval_ms)
            present = None
            if any_down:
                present = np.ones(block.shape, dtype=bool)
                present[np.ix_(np.flatnonzero(fx.down), m.DOWN_MISSING)] = False
            metrics = m.MetricBlock(t, block, present, table.templates)
            if want_logs:
                background_logs(sink, log_np, block[:, m.REQUEST_RATE],
                                block[:, m.ERROR_RATIO], fx.down)
            spans: list[Span] = []
            if "span" in self.kinds:
                spans = sampler.tick(t, self.interval_ms, own_err, own_lat, fx.down,
                                     fx.versions, sink if want_logs else None)
            if "metric" not in self.kinds:
                metrics = m.MetricBlock(t, block[:0], None, [])
            logs = sink.sorted_records() if want_logs else []
            yield SimStep(t, self.interval_ms, metrics, logs, spans, tuple(i.id for i in active))


def _season(system: System, t_ms: int) -> float:
    """Daily load cycle: 1 +- amplitude, peaking at ``peak_hour_utc``."""
    hour = (t_ms / 3_600_000.0) % 24.0
    return 1.0 + system.season_amplitude * math.cos(
        2 * math.pi * (hour - system.peak_hour_utc) / 24.0)


class _Noise:
    """Per-service slow load drift, harmless load spikes and one-tick error blips."""

    def __init__(self, rng: np.random.Generator, n_services: int) -> None:
        self.rng = rng
        self.drift = np.ones(n_services)
        self.spike_left = np.zeros(n_services, dtype=np.int64)
        self.spike_mag = np.ones(n_services)

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one tick (a fixed number of draws); return drift, spike factor, blip."""
        n = self.drift.size
        u = self.rng.random((4, n))
        self.drift = 0.95 * self.drift + 0.05 + self.rng.normal(0.0, 0.02, n)
        start = (u[0] < SPIKE_PROBABILITY) & (self.spike_left == 0)
        self.spike_left = np.where(start, 1 + (u[1] * 3).astype(np.int64), self.spike_left)
        self.spike_mag = np.where(start, 1.4 + 1.1 * u[1], self.spike_mag)
        spike = np.where(self.spike_left > 0, self.spike_mag, 1.0)
        self.spike_left = np.maximum(self.spike_left - 1, 0)
        blip = np.where(u[2] < BLIP_PROBABILITY, 0.02 + 0.04 * u[3], 0.0)
        return self.drift, spike, blip


class _Baselines:
    """Per-service baseline arrays and the call-graph propagation of errors and latency."""

    def __init__(self, system: System) -> None:
        b = [s.baseline for s in system.services]
        self.rate = np.array([x.request_rate for x in b])
        self.err = np.array([x.error_ratio for x in b])
        self.lat = np.array([x.latency_ms for x in b])
        layout = Layout(system)
        self.order = layout.order
        self.calls = [[layout.index[c] for c in s.calls] for s in system.services]
        svc = layout.instance_service  # per-instance copies, for the per-tick arithmetic
        self.rate_i = self.rate[svc]
        self.cpu_i = np.array([x.cpu_pct for x in b])[svc]
        self.mem_i = np.array([x.memory_pct for x in b])[svc]
        self.queue_i = np.array([x.queue_depth for x in b])[svc]
        self.queue_sd_i = 0.5 * np.sqrt(self.queue_i)
        self.eff_lat0_i = self.propagate(self.err, self.lat)[1][svc]

    def propagate(self, own_err: np.ndarray, own_lat: np.ndarray) -> tuple[np.ndarray,
                                                                         np.ndarray]:
        """Effective error ratio and p50 latency of each service, callees included."""
        err, lat = own_err.tolist(), own_lat.tolist()
        for i in self.order:
            ok = 1.0 - err[i]
            for c in self.calls[i]:
                ok *= 1.0 - ERROR_PROPAGATION * err[c]
                lat[i] += lat[c]
            err[i] = 1.0 - ok
        return np.array(err), np.array(lat)


def _metric_values(base: _Baselines, svc: np.ndarray, load: np.ndarray, eff_err: np.ndarray,
                   eff_lat: np.ndarray, fx: Effects, z: np.ndarray, mem_ar: np.ndarray,
                   interval_ms: int) -> np.ndarray:
    """One tick's values, shape ``(instances, len(METRICS))``."""
    out = np.empty((svc.size, len(m.METRICS)))
    load_i, p, lat = load[svc], eff_err[svc], eff_lat[svc]
    rate = np.maximum(base.rate_i * load_i * (1.0 + 0.04 * z[0]), 0.0)
    n = np.maximum(rate * (interval_ms / 1000.0), 1.0)
    out[:, m.REQUEST_RATE] = rate
    out[:, m.ERROR_RATIO] = np.minimum(np.maximum(p + z[1] * np.sqrt(p * (1.0 - p) / n), 0.0),
                                       1.0)
    out[:, m.P50] = lat * np.exp(0.05 * z[2])
    out[:, m.P95] = out[:, m.P50] * 2.2 * np.exp(0.06 * z[3]) * (1.0 + p)
    out[:, m.P99] = out[:, m.P95] * 1.9 * np.exp(0.1 * z[4]) * (1.0 + p)
    out[:, m.CPU] = base.cpu_i * load_i ** 0.9 + 1.5 * z[5]
    out[:, m.MEMORY] = base.mem_i + mem_ar
    out[:, m.QUEUE] = base.queue_i * load_i * (lat / base.eff_lat0_i) + base.queue_sd_i * z[7]
    if fx.active:
        out[:, m.CPU] += fx.cpu_add
        out[:, m.CPU] = np.where(fx.cpu_floor > 0,
                                 np.maximum(out[:, m.CPU], fx.cpu_floor + np.abs(z[5])),
                                 out[:, m.CPU])
        out[:, m.MEMORY] += fx.mem_add
        out[:, m.QUEUE] += fx.queue_add
        out[:, m.CPU] = np.where(fx.down, 1.0 + np.abs(z[5]), out[:, m.CPU])
        out[:, m.MEMORY] = np.where(fx.down, base.mem_i * 0.3, out[:, m.MEMORY])
    out[:, m.QUEUE] = np.maximum(out[:, m.QUEUE], 0.0).round()
    out[:, m.HEARTBEAT] = 1.0
    out[:, m.CPU:m.QUEUE] = np.minimum(np.maximum(out[:, m.CPU:m.QUEUE], 0.0), 100.0)
    out = out.round(4)
    out[:, m.P50:m.P99 + 1] = (out[:, m.P50:m.P99 + 1] * 1e-3).round(7)  # ms -> s
    out[:, m.CPU:m.MEMORY + 1] = (out[:, m.CPU:m.MEMORY + 1] * 1e-2).round(6)  # % -> 0..1
    return out


def simulate(system: System, start_ms: int, duration_ms: int, seed: int,
             incidents: Sequence[ScheduledIncident] | None = None, *, mixed: bool = False,
             interval_ms: int = 10_000, traces_per_tick: int = 2,
             kinds: Sequence[str] = KINDS, allow_overlap: bool = False) -> Simulation:
    """A :class:`Simulation` of ``system``: iterate it for :class:`SimStep` s in event time.

    Give ``incidents`` (an explicit schedule) or ``mixed=True`` (a seeded random mix), or
    neither for a run without incidents. The run covers ``duration_ms`` rounded up to whole
    intervals; ``kinds`` limits what is generated (a metrics-only producer skips the cost
    of logs and spans; the metric stream is the same either way).
    """
    return Simulation(system, start_ms=start_ms, duration_ms=duration_ms, seed=seed,
                      incidents=incidents, mixed=mixed, interval_ms=interval_ms,
                      traces_per_tick=traces_per_tick, kinds=kinds, allow_overlap=allow_overlap)
