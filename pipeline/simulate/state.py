"""Index arrays over a system, and the per-tick effects scenarios write into.

An *instance* is one (service, host) pair; metrics are emitted per instance. Scenarios
never draw random numbers for their numeric effects (only for log text), so the metric
stream depends only on the seed, whatever kinds of records are requested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.simulate.topology import System


class Layout:
    """Positions of services and instances in the generator's arrays."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.services = system.names
        self.index = {name: i for i, name in enumerate(self.services)}
        self.instances: list[tuple[str, str]] = [
            (svc.name, host) for svc in system.services for host in svc.hosts
        ]
        self.instance_service = np.array(
            [self.index[s] for s, _ in self.instances], dtype=np.int64
        )
        self.hosts_of = {svc.name: svc.hosts for svc in system.services}
        self.instances_of = {
            name: np.flatnonzero(self.instance_service == i)
            for i, name in enumerate(self.services)
        }
        self.order = _callees_first(system)

    @property
    def n_services(self) -> int:
        """Number of services."""
        return len(self.services)

    @property
    def n_instances(self) -> int:
        """Number of (service, host) instances."""
        return len(self.instances)


@dataclass
class Effects:
    """What active incidents do to the system during one tick (neutral by default).

    Service arrays: ``rate_mult`` (load), ``err_add`` (own error ratio added),
    ``lat_mult`` / ``lat_add_ms`` (own latency). Instance arrays: ``cpu_add``,
    ``cpu_floor``, ``mem_add``, ``queue_add`` and ``down`` (process not running: no
    heartbeat, no request metrics, no server spans).
    """

    rate_mult: np.ndarray
    err_add: np.ndarray
    lat_mult: np.ndarray
    lat_add_ms: np.ndarray
    cpu_add: np.ndarray
    cpu_floor: np.ndarray
    mem_add: np.ndarray
    queue_add: np.ndarray
    down: np.ndarray
    versions: dict[str, str] = field(default_factory=dict)
    interval_ms: int = 10_000
    active: bool = False  # False: the shared neutral effects of a tick with no incident

    @classmethod
    def neutral(cls, layout: Layout, versions: dict[str, str], interval_ms: int,
                active: bool = False) -> Effects:
        """Neutral effects; ``active=True`` for a tick whose incidents will write into them."""
        ns, ni = layout.n_services, layout.n_instances
        return cls(
            rate_mult=np.ones(ns), err_add=np.zeros(ns), lat_mult=np.ones(ns),
            lat_add_ms=np.zeros(ns), cpu_add=np.zeros(ni), cpu_floor=np.zeros(ni),
            mem_add=np.zeros(ni), queue_add=np.zeros(ni), down=np.zeros(ni, dtype=bool),
            versions=dict(versions), interval_ms=interval_ms, active=active,
        )

    def service_down(self, layout: Layout) -> np.ndarray:
        """Per service: True when every instance of it is down."""
        out = np.ones(layout.n_services, dtype=bool)
        np.logical_and.at(out, layout.instance_service, self.down)
        return out


def _callees_first(system: System) -> list[int]:
    """Service indices ordered so that every service comes after all it calls."""
    index = {name: i for i, name in enumerate(system.names)}
    done: list[int] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for callee in system.service(name).calls:
            visit(callee)
        done.append(index[name])

    for name in system.names:
        visit(name)
    return done
