"""The simulated system: services, their hosts, call dependencies and baselines.

A system is described in YAML (see ``default_system.yaml``, shipped with the package)::

    name: shop
    seasonality: {amplitude: 0.35, peak_hour_utc: 15}
    services:
      orders:
        kind: http            # http | database | cache | coordinator | worker
        replicas: 2           # hosts orders-1, orders-2 (or list them: hosts: [a, b])
        version: "4.2.0"
        calls: [postgres, cache]
        operations: ["POST /orders", "GET /orders/{id}"]
        baseline:
          request_rate: 40    # req/s per host at the daily mean
          error_ratio: 0.003  # 0..1, own errors (without failing dependencies)
          latency_ms: 12      # own p50 processing time, downstream calls excluded
          cpu_pct: 30         # 0..100
          memory_pct: 45      # 0..100
          queue_depth: 2      # in-flight requests or pending tasks

:func:`load_system` validates the whole file and raises one :class:`TopologyError` listing
every problem, each naming the file and the field (``default_system.yaml:
services.orders.calls[1]: unknown service 'pg'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import TocsinError

SERVICE_KINDS = ("http", "database", "cache", "coordinator", "worker")
_SERVICE_KEYS = {"kind", "replicas", "hosts", "version", "calls", "operations", "baseline"}
_BASELINE_RANGES: dict[str, tuple[float, float]] = {
    "request_rate": (0.0, 1e7),
    "error_ratio": (0.0, 1.0),
    "latency_ms": (0.0, 1e6),
    "cpu_pct": (0.0, 100.0),
    "memory_pct": (0.0, 100.0),
    "queue_depth": (0.0, 1e9),
}
DEFAULT_SYSTEM = "default_system.yaml"


class SimulationError(TocsinError):
    """The simulator was given something it cannot simulate; the message says what."""


class TopologyError(SimulationError):
    """The system description is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class HostBaseline:
    """Normal behaviour of one host of a service at the daily mean load."""

    request_rate: float
    error_ratio: float
    latency_ms: float
    cpu_pct: float
    memory_pct: float
    queue_depth: float


@dataclass(frozen=True)
class Service:
    """One service of the simulated system."""

    name: str
    kind: str
    hosts: tuple[str, ...]
    version: str
    calls: tuple[str, ...]
    operations: tuple[str, ...]
    baseline: HostBaseline


@dataclass(frozen=True)
class System:
    """A validated system: services in file order, call graph acyclic."""

    name: str
    services: tuple[Service, ...]
    season_amplitude: float = 0.35
    peak_hour_utc: float = 15.0

    def peaking_at(self, t_ms: int) -> System:
        """This system with its daily load peak at the time of day of ``t_ms``."""
        return replace(self, peak_hour_utc=t_ms / 3_600_000 % 24.0)

    def service(self, name: str) -> Service:
        """The service called ``name`` (``KeyError`` if unknown)."""
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Service names in file order."""
        return tuple(s.name for s in self.services)

    def callers(self, name: str) -> tuple[str, ...]:
        """Services that call ``name`` directly."""
        return tuple(s.name for s in self.services if name in s.calls)

    def upstream(self, name: str) -> tuple[str, ...]:
        """Every service that depends on ``name`` directly or transitively (file order)."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            for caller in self.callers(todo.pop()):
                if caller not in seen:
                    seen.add(caller)
                    todo.append(caller)
        return tuple(n for n in self.names if n in seen)

    def of_kind(self, *kinds: str) -> tuple[str, ...]:
        """Names of the services of the given kinds."""
        return tuple(s.name for s in self.services if s.kind in kinds)

    def roots(self) -> tuple[str, ...]:
        """Entry points: services nobody calls (where traces start)."""
        return tuple(n for n in self.names if not self.callers(n))


def load_system(path: str | Path | None = None) -> System:
    """Load and validate a system YAML file; ``None`` loads the packaged default."""
    if path is None:
        text = resources.files("pipeline.simulate").joinpath(DEFAULT_SYSTEM).read_text("utf-8")
        source = DEFAULT_SYSTEM
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise TopologyError(f"{source}: cannot read system file: {exc}") from exc
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: not valid YAML: {exc}") from exc
    return parse_system(obj, source=source)


def parse_system(obj: Any, source: str = "<system>") -> System:
    """Validate a parsed YAML document and build the :class:`System`."""
    problems: list[str] = []
    if not isinstance(obj, Mapping):
        raise TopologyError(f"{source}: expected a mapping at the top, got {_tname(obj)}")
    for key in sorted(set(obj) - {"name", "seasonality", "services"}):
        problems.append(f"{key}: unknown field")
    season = obj.get("seasonality") or {}
    amplitude = _number(season, "amplitude", "seasonality", problems, 0.35, (0.0, 0.95))
    peak = _number(season, "peak_hour_utc", "seasonality", problems, 15.0, (0.0, 24.0))
    raw = obj.get("services")
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"services: expected a non-empty mapping of name -> service, "
                        f"got {_tname(raw)}")
        raw = {}
    services = [_service(str(name), spec, problems) for name, spec in raw.items()]
    names = {s.name for s in services}
    for svc in services:
        for i, callee in enumerate(svc.calls):
            if callee not in names:
                problems.append(f"services.{svc.name}.calls[{i}]: unknown service {callee!r}")
            elif callee == svc.name:
                problems.append(f"services.{svc.name}.calls[{i}]: a service cannot call itself")
    if not problems:
        cycle = _find_cycle({s.name: s.calls for s in services})
        if cycle:
            problems.append(f"services: call cycle {' -> '.join(cycle)}")
    if problems:
        raise TopologyError(f"{source}: invalid system:\n  " + "\n  ".join(problems))
    return System(str(obj.get("name", "system")), tuple(services), amplitude, peak)


def _service(name: str, spec: Any, problems: list[str]) -> Service:
    where = f"services.{name}"
    if not isinstance(spec, Mapping):
        problems.append(f"{where}: expected a mapping, got {_tname(spec)}")
        spec = {}
    for key in sorted(set(spec) - _SERVICE_KEYS):
        problems.append(f"{where}.{key}: unknown field")
    kind = spec.get("kind", "http")
    if kind not in SERVICE_KINDS:
        problems.append(f"{where}.kind: expected one of {', '.join(SERVICE_KINDS)}, got {kind!r}")
    hosts = spec.get("hosts")
    if hosts is None:
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            problems.append(f"{where}.replicas: expected an integer >= 1, got {replicas!r}")
            replicas = 1
        hosts = [f"{name}-{i + 1}" for i in range(replicas)]
    elif not _str_list(hosts) or not hosts:
        problems.append(f"{where}.hosts: expected a non-empty list of host names")
        hosts = [f"{name}-1"]
    calls = spec.get("calls", [])
    if not _str_list(calls):
        problems.append(f"{where}.calls: expected a list of service names, got {calls!r}")
        calls = []
    ops = spec.get("operations", [f"{name}.handle"])
    if not _str_list(ops) or not ops:
        problems.append(f"{where}.operations: expected a non-empty list of strings")
        ops = [f"{name}.handle"]
    base = spec.get("baseline")
    if not isinstance(base, Mapping):
        problems.append(f"{where}.baseline: expected a mapping, got {_tname(base)}")
        base = {}
    for key in sorted(set(base) - set(_BASELINE_RANGES)):
        problems.append(f"{where}.baseline.{key}: unknown field")
    values = {k: _number(base, k, f"{where}.baseline", problems, None, rng)
              for k, rng in _BASELINE_RANGES.items()}
    return Service(name, str(kind), tuple(hosts), str(spec.get("version", "1.0.0")),
                   tuple(calls), tuple(ops), HostBaseline(**values))


def _number(obj: Any, key: str, where: str, problems: list[str], default: float | None,
            bounds: tuple[float, float]) -> float:
    value = obj.get(key, default) if isinstance(obj, Mapping) else default
    if value is None:
        problems.append(f"{where}.{key}: missing (a number)")
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{where}.{key}: expected a number, got {value!r}")
        return 0.0
    lo, hi = bounds
    if not lo <= value <= hi:
        problems.append(f"{where}.{key}: {value!r} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _tname(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return []


def write_call_graph(system: System, path: str | Path) -> None:
    """Write the system's call graph as YAML (``caller: [callees]``), the format of the
    correlator's ``correlate.dependencies`` file."""
    graph = {svc.name: list(svc.calls) for svc in system.services if svc.calls}
    Path(path).write_text(yaml.safe_dump(graph, sort_keys=False))
