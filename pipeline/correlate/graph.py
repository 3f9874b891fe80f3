"""The service call graph (caller → callees) the correlator reasons over.

"Upstream of" in the alerting sense: a *dependency* (callee) sits below its callers, and a
failing dependency shows up as symptoms in everything that calls it, directly or not.

>>> g = Graph({"api": ["orders"], "orders": ["postgres"]})
>>> sorted(g.dependencies("api"))
['orders', 'postgres']
>>> sorted(g.dependents("postgres"))
['api', 'orders']
>>> g.link("orders", "postgres")
'orders calls postgres'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class Graph:
    """A call graph with bounded transitive closures, cached per service."""

    def __init__(self, calls: Mapping[str, Sequence[str]], max_hops: int = 4) -> None:
        self.max_hops = max_hops
        self._callees: dict[str, frozenset[str]] = {}
        self._callers: dict[str, set[str]] = {}
        for caller, callees in calls.items():
            self._callees[caller] = frozenset(c for c in callees if c != caller)
            for callee in self._callees[caller]:
                self._callers.setdefault(callee, set()).add(caller)
        self._down: dict[str, frozenset[str]] = {}
        self._up: dict[str, frozenset[str]] = {}

    def callees(self, service: str) -> frozenset[str]:
        """Services ``service`` calls directly."""
        return self._callees.get(service, frozenset())

    def callers(self, service: str) -> frozenset[str]:
        """Services that call ``service`` directly."""
        return frozenset(self._callers.get(service, ()))

    def dependencies(self, service: str) -> frozenset[str]:
        """Everything ``service`` depends on, within ``max_hops`` calls."""
        if service not in self._down:
            self._down[service] = self._closure(service, self.callees)
        return self._down[service]

    def dependents(self, service: str) -> frozenset[str]:
        """Everything that depends on ``service``, within ``max_hops`` calls."""
        if service not in self._up:
            self._up[service] = self._closure(service, self.callers)
        return self._up[service]

    def link(self, a: str, b: str) -> str | None:
        """How ``a`` and ``b`` are adjacent (``"a calls b"``), or None."""
        if b in self.callees(a):
            return f"{a} calls {b}"
        if a in self.callees(b):
            return f"{b} calls {a}"
        return None

    def _closure(self, start: str, step) -> frozenset[str]:
        seen: set[str] = set()
        frontier = {start}
        for _ in range(self.max_hops):
            frontier = {n for s in frontier for n in step(s)} - seen - {start}
            if not frontier:
                break
            seen |= frontier
        return frozenset(seen)
