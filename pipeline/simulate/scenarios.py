"""Incident scenarios: each a real failure mode with its signature in metrics, logs, traces.

| scenario | root cause (eligible) | signature |
|---|---|---|
| ``error_spike`` | http/worker | error ratio up; ``unhandled exception`` ERROR logs |
| ``memory_leak`` | http/worker/coordinator | memory grows linearly per hour, GC WARNs, then at the
  last tick ``OutOfMemoryError`` + ``OOMKilled``, heartbeat missing, ``restarted`` |
| ``db_outage`` | database | db down (no heartbeat); its callers log ``connection refused`` /
  ``database unavailable`` / ``connection timeout``; errors + latency cascade upstream |
| ``cpu_saturation`` | http/worker/database | CPU > 90 %, own latency x4-8, queue backlog |
| ``latency_degradation`` | any service with callers | its latency up (ramps), callers log
  ``slow response from``; latency cascades upstream |
| ``coordination_failure`` | coordinator | ``coordination_failed`` log bursts, queue depth of
  stuck tasks grows, worker heartbeats missing |
| ``bad_deploy`` | http/worker | ``deploy`` log line, ``service.version`` attribute changes,
  errors from that moment; rollback at the end |

Numeric effects are pure functions of the incident and the tick time; only log text uses
randomness (the log sink's generator).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.simulate.labels import Incident
from pipeline.simulate.logs import LogSink
from pipeline.simulate.state import Effects, Layout
from pipeline.simulate.topology import System

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
_EXCEPTIONS = ("NullPointerException: order.customer is null",
               "KeyError: 'shipping_address'",
               "IllegalStateException: cart already checked out")


class Scenario:
    """Base class: a failure mode, its category and where it can start."""

    name = ""
    category = ""
    root_kinds: tuple[str, ...] = ("http", "worker")
    duration_ms = (10 * MINUTE_MS, 20 * MINUTE_MS)  # range used when mixing

    def eligible(self, system: System) -> tuple[str, ...]:
        """Services this scenario can start in."""
        return system.of_kind(*self.root_kinds)

    def affected(self, system: System, root: str) -> tuple[str, ...]:
        """Services whose telemetry shows the incident: the root and its callers."""
        return (root, *system.upstream(root))

    def draw_params(self, rng: np.random.Generator, system: System, root: str,
                    duration_ms: int) -> dict[str, Any]:
        """Magnitudes of one incident (recorded in the labels)."""
        return {}

    def apply(self, inc: Incident, t_ms: int, fx: Effects, layout: Layout) -> None:
        """Write this tick's numeric effects into ``fx``."""

    def logs(self, inc: Incident, t_ms: int, sink: LogSink) -> None:
        """Write this tick's incident log lines into ``sink``."""


def _progress(inc: Incident, t_ms: int) -> float:
    return (t_ms - inc.start_ms) / max(1, inc.end_ms - inc.start_ms)


def _last_tick(inc: Incident, t_ms: int, interval_ms: int) -> bool:
    return t_ms + interval_ms >= inc.end_ms


class ErrorSpike(Scenario):
    name, category = "error_spike", "availability"

    def draw_params(self, rng, system, root, duration_ms):
        return {"error_ratio": round(float(rng.uniform(0.12, 0.35)), 3),
                "variant": int(rng.integers(len(_EXCEPTIONS)))}

    def apply(self, inc, t_ms, fx, layout):
        fx.err_add[layout.index[inc.root_cause_service]] += inc.params["error_ratio"]

    def logs(self, inc, t_ms, sink):
        svc, exc = inc.root_cause_service, _EXCEPTIONS[int(inc.params["variant"])]
        for _ in range(sink.rng.randint(3, 8)):
            sink.emit(svc, "ERROR", sink.fill(f"unhandled exception in {{op}}: {exc} "
                                              "request_id={rid}", svc))


class MemoryLeak(Scenario):
    name, category = "memory_leak", "resource"
    root_kinds = ("http", "worker", "coordinator")
    duration_ms = (45 * MINUTE_MS, 90 * MINUTE_MS)

    def affected(self, system, root):
        return (root,)

    def draw_params(self, rng, system, root, duration_ms):
        base = system.service(root).baseline.memory_pct
        growth = (99.0 - base) / (duration_ms / HOUR_MS)  # reaches 99 % at the last tick
        return {"growth_pct_per_hour": round(growth, 3)}

    def _mem_add(self, inc: Incident, t_ms: int) -> float:
        return inc.params["growth_pct_per_hour"] * (t_ms - inc.start_ms) / HOUR_MS

    def apply(self, inc, t_ms, fx, layout):
        svc = layout.system.service(inc.root_cause_service)
        insts = layout.instances_of[svc.name]
        if _last_tick(inc, t_ms, fx.interval_ms):
            fx.down[insts] = True  # OOM-killed, restarting
            return
        added = self._mem_add(inc, t_ms)
        fx.mem_add[insts] += added
        pressure = max(0.0, svc.baseline.memory_pct + added - 85.0) / 15.0
        fx.lat_mult[layout.index[svc.name]] *= 1.0 + 1.5 * pressure

    def logs(self, inc, t_ms, sink):
        svc = sink.layout.system.service(inc.root_cause_service)
        if _last_tick(inc, t_ms, sink.interval_ms):
            for host in svc.hosts:
                sink.emit(svc.name, "FATAL", "java.lang.OutOfMemoryError: Java heap space",
                          host, time_ms=t_ms + 1_000)
                sink.emit(svc.name, "ERROR", f"container {svc.name} on {host} OOMKilled "
                          "(exit code 137)", host, time_ms=t_ms + 2_000)
                sink.emit(svc.name, "INFO", f"{svc.name} restarted on {host} "
                          "(restart count 1)", host, time_ms=t_ms + sink.interval_ms - 1)
            return
        used = svc.baseline.memory_pct + self._mem_add(inc, t_ms)
        if used > 80.0:
            for host in svc.hosts:
                sink.emit(svc.name, "WARN", f"GC overhead high: {int(used - 60)}% of time in "
                          f"garbage collection, heap {used:.0f}% used", host)


class DbOutage(Scenario):
    name, category = "db_outage", "connectivity"
    root_kinds = ("database",)
    duration_ms = (5 * MINUTE_MS, 15 * MINUTE_MS)

    def draw_params(self, rng, system, root, duration_ms):
        return {"connect_ms": int(rng.integers(200, 800))}

    def apply(self, inc, t_ms, fx, layout):
        i = layout.index[inc.root_cause_service]
        fx.down[layout.instances_of[inc.root_cause_service]] = True
        fx.err_add[i] += 1.0
        fx.lat_add_ms[i] += inc.params["connect_ms"]

    def logs(self, inc, t_ms, sink):
        db = inc.root_cause_service
        dbhost = sink.layout.hosts_of[db][0]
        system = sink.layout.system
        if t_ms == inc.start_ms:
            sink.emit(db, "FATAL", 'could not write to file "pg_wal/xlogtemp": No space left '
                      "on device", time_ms=t_ms)
        direct = system.callers(db)
        for caller in direct:
            for host in sink.layout.hosts_of[caller]:
                for _ in range(sink.rng.randint(2, 6)):
                    body = sink.rng.choice((
                        f"connection refused: could not connect to {db} at {dbhost}:5432",
                        f"database unavailable: giving up on {db} after 3 attempts "
                        "request_id={rid}",
                        f"connection timeout to {db} at {dbhost}:5432 after {{slow}}ms"))
                    sink.emit(caller, "ERROR", sink.fill(body, caller), host)
        for svc in system.upstream(db):
            if svc not in direct:
                callee = next(c for c in system.service(svc).calls if c in inc.affected_services)
                for _ in range(sink.rng.randint(1, 4)):
                    sink.emit(svc, "ERROR", f"upstream {callee} returned 503 Service "
                              "Unavailable")


class CpuSaturation(Scenario):
    name, category = "cpu_saturation", "resource"
    root_kinds = ("http", "worker", "database")

    def draw_params(self, rng, system, root, duration_ms):
        return {"latency_factor": round(float(rng.uniform(4.0, 8.0)), 2)}

    def apply(self, inc, t_ms, fx, layout):
        ramp = min(1.0, _progress(inc, t_ms) / 0.1 + 0.2)
        i, insts = layout.index[inc.root_cause_service], layout.instances_of[
            inc.root_cause_service]
        fx.cpu_floor[insts] = np.maximum(fx.cpu_floor[insts], 90.0 + 7.0 * ramp)
        fx.lat_mult[i] *= 1.0 + (inc.params["latency_factor"] - 1.0) * ramp
        fx.err_add[i] += 0.02 * ramp
        fx.queue_add[insts] += 40.0 * ramp

    def logs(self, inc, t_ms, sink):
        svc = inc.root_cause_service
        for _ in range(sink.rng.randint(2, 5)):
            body = sink.rng.choice(("thread pool exhausted: 64/64 workers busy, {n} requests "
                                    "queued", "slow request {op} took {slow}ms"))
            sink.emit(svc, "WARN", sink.fill(body, svc))


class LatencyDegradation(Scenario):
    name, category = "latency_degradation", "performance"
    duration_ms = (10 * MINUTE_MS, 25 * MINUTE_MS)

    def eligible(self, system):
        return tuple(n for n in system.names if system.callers(n))

    def draw_params(self, rng, system, root, duration_ms):
        return {"added_ms": int(rng.integers(150, 600))}

    def apply(self, inc, t_ms, fx, layout):
        ramp = min(1.0, _progress(inc, t_ms) / 0.2 + 0.25)
        i = layout.index[inc.root_cause_service]
        fx.lat_add_ms[i] += inc.params["added_ms"] * ramp
        fx.err_add[i] += 0.01 * ramp

    def logs(self, inc, t_ms, sink):
        slow = int(inc.params["added_ms"] * min(1.0, _progress(inc, t_ms) / 0.2 + 0.25))
        root = inc.root_cause_service
        for caller in sink.layout.system.callers(root):
            for _ in range(sink.rng.randint(1, 4)):
                ms = slow + sink.rng.randint(0, 200)
                sink.emit(caller, "WARN", f"slow response from {root}: {ms}ms (threshold 200ms)")
            if sink.rng.random() < 0.3:
                sink.emit(caller, "ERROR", f"connection timeout to {root} after 1000ms")


class CoordinationFailure(Scenario):
    name, category = "coordination_failure", "coordination"
    root_kinds = ("coordinator",)
    duration_ms = (5 * MINUTE_MS, 15 * MINUTE_MS)

    def affected(self, system, root):
        return (root, *system.service(root).calls)

    def draw_params(self, rng, system, root, duration_ms):
        return {"stuck_per_min": int(rng.integers(20, 60))}

    def _lost(self, layout: Layout, root: str) -> list[tuple[int, str, str]]:
        out = []
        for callee in layout.system.service(root).calls:
            insts = layout.instances_of[callee]
            for i in insts[: max(1, len(insts) - 1)].tolist():  # all workers but one
                out.append((i, *layout.instances[i]))
        return out

    def apply(self, inc, t_ms, fx, layout):
        root = inc.root_cause_service
        for i, _, _ in self._lost(layout, root):
            fx.down[i] = True
        minutes = (t_ms - inc.start_ms) / MINUTE_MS
        fx.queue_add[layout.instances_of[root]] += inc.params["stuck_per_min"] * minutes
        fx.err_add[layout.index[root]] += 0.3

    def logs(self, inc, t_ms, sink):
        root, r = inc.root_cause_service, sink.rng
        lost = self._lost(sink.layout, root)
        for _ in range(r.randint(8, 25)):
            _, _, whost = r.choice(lost)
            sink.emit(root, "ERROR", sink.fill(f"coordination_failed: lease for task {{tid}} "
                                               f"expired (worker={whost}, attempt "
                                               f"{r.randint(1, 5)}/5)", root))
        for _ in range(r.randint(2, 5)):
            sink.emit(root, "WARN", sink.fill("task {tid} stuck in state DISPATCHED for "
                                              f"{(t_ms - inc.start_ms) // 1000 + 30}s", root))
        missed = (t_ms - inc.start_ms) // sink.interval_ms + 1
        for _, _, whost in lost:
            sink.emit(root, "WARN", f"worker {whost} missed heartbeat ({missed} consecutive)")


class BadDeploy(Scenario):
    name, category = "bad_deploy", "configuration"

    def draw_params(self, rng, system, root, duration_ms):
        old = system.service(root).version
        parts = old.split(".")
        new = ".".join([*parts[:-1], str(int(parts[-1]) + 1)]) if parts[-1].isdigit() \
            else f"{old}-1"
        return {"error_ratio": round(float(rng.uniform(0.08, 0.25)), 3),
                "old_version": old, "new_version": new}

    def apply(self, inc, t_ms, fx, layout):
        fx.versions[inc.root_cause_service] = inc.params["new_version"]
        fx.err_add[layout.index[inc.root_cause_service]] += inc.params["error_ratio"]

    def logs(self, inc, t_ms, sink):
        svc, p = inc.root_cause_service, inc.params
        if t_ms == inc.start_ms:
            sink.emit(svc, "INFO", f"deploy started: {svc} {p['old_version']} -> "
                      f"{p['new_version']}", time_ms=t_ms)
            for host in sink.layout.hosts_of[svc]:
                sink.emit(svc, "INFO", f"deployed {svc} version {p['new_version']} on {host}",
                          host, time_ms=t_ms + 1)
        for _ in range(sink.rng.randint(3, 8)):
            sink.emit(svc, "ERROR", sink.fill("unhandled exception in {op}: TypeError: "
                                              "'NoneType' object is not subscriptable "
                                              f"(version {p['new_version']})", svc))
        if _last_tick(inc, t_ms, sink.interval_ms):
            sink.emit(svc, "WARN", f"rollback: {svc} {p['new_version']} -> "
                      f"{p['old_version']} (error budget exhausted)",
                      time_ms=t_ms + sink.interval_ms - 1)


SCENARIO_CLASSES: dict[str, Scenario] = {
    s.name: s for s in (ErrorSpike(), MemoryLeak(), DbOutage(), CpuSaturation(),
                        LatencyDegradation(), CoordinationFailure(), BadDeploy())
}
