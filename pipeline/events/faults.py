"""Injected faults for tests: make a named point of the worker fail on chosen calls.

Integration tests drive a real worker process against a real broker and store; to crash
an agent mid-batch or make the store refuse inserts they set ``TOCSIN_TEST_FAULT`` (read
here only, never a setting). The value is one or more comma-separated specs::

    <point>:<action>[:after=N][:times=K]

``point`` names a place in the code (``ingest.metric.before``, ``ingest.metric.after``,
``detect.after``, ``correlate.after``, ``store.insert``, ``store.ping``: the readiness
probe's query); ``action`` is ``raise`` (an ordinary exception, which the agent
retries), ``cancel`` (the agent task is cancelled mid-batch, as Faust does to an agent
it restarts) or ``delay`` (the call waits ``seconds=S``, 5 by default, while the rest of
the worker runs on: a slow step on a busy machine; only points checked with
:meth:`Faults.wait` take it, ``ingest.<kind>.before``, ``consumer.seek``, the
consumer's seek to the committed offsets when partitions are assigned, and
``<agent>.start``, e.g. ``tocsin.ingest.metric.start``, an agent task starting or
restarting). The first ``N`` calls of the point pass (default 0), the next ``K`` fail
(default 1; ``*``: every later call). Example:
``ingest.metric.after:raise:after=3:times=4`` stores three batches, then fails the
fourth four times after its rows are stored.

Unset (always, outside tests) every check is a dictionary lookup that finds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.errors import SettingsError, TocsinError

log = logging.getLogger("tocsin.faults")

FAULT_ENV = "TOCSIN_TEST_FAULT"
_ACTIONS = ("raise", "cancel", "delay")


class InjectedFault(TocsinError):
    """The failure a ``raise`` fault injects."""


@dataclass
class FaultSpec:
    """One point's fault: which calls fail and how."""

    point: str
    action: str
    after: int = 0
    times: int | None = 1  # None: every call from ``after`` on
    calls: int = 0
    seconds: float = 5.0  # how long ``delay`` waits

    def hit(self) -> bool:
        """Count a call; true when this call is one that fails."""
        n, self.calls = self.calls, self.calls + 1
        return n >= self.after and (self.times is None or n < self.after + self.times)


def parse_faults(text: str) -> dict[str, FaultSpec]:
    """Fault specs by point from a ``TOCSIN_TEST_FAULT`` value (see the module doc)."""
    specs: dict[str, FaultSpec] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        point, _, rest = item.partition(":")
        action, *options = rest.split(":") if rest else [""]
        if not point or action not in _ACTIONS:
            raise SettingsError(f"{FAULT_ENV}: {item!r} is not <point>:raise|cancel|delay"
                                "[:after=N][:times=K|*][:seconds=S]")
        spec = FaultSpec(point, action)
        for option in options:
            key, _, value = option.partition("=")
            try:
                if key == "after":
                    spec.after = int(value)
                elif key == "times":
                    spec.times = None if value == "*" else int(value)
                elif key == "seconds" and action == "delay":
                    spec.seconds = float(value)
                else:
                    raise ValueError
            except ValueError:
                raise SettingsError(f"{FAULT_ENV}: bad option {option!r} in {item!r} "
                                    "(after=N, times=K or times=*, seconds=S for delay)"
                                    ) from None
        specs[point] = spec
    return specs


class Faults:
    """The injected faults of one worker; empty unless ``TOCSIN_TEST_FAULT`` is set."""

    def __init__(self, specs: Mapping[str, FaultSpec] | None = None) -> None:
        self.specs = dict(specs or {})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Faults:
        """The faults ``environ`` asks for (none when the variable is unset)."""
        faults = cls(parse_faults(environ.get(FAULT_ENV, "")))
        for spec in faults.specs.values():
            log.warning("test fault injected: %s %s after %d calls, %s times", spec.point,
                        spec.action, spec.after, "every" if spec.times is None else spec.times)
        return faults

    def check(self, point: str, error: type[Exception] = InjectedFault) -> None:
        """Fail here if a fault is set for ``point`` and this call is one of its victims:
        ``raise`` raises ``error``, ``cancel`` raises :class:`asyncio.CancelledError`
        (a ``delay`` fault needs :meth:`wait`: here it is a :class:`SettingsError`)."""
        spec = self.specs.get(point)
        if spec is None or not spec.hit():
            return
        self._fail(spec, point, error)

    async def wait(self, point: str, error: type[Exception] = InjectedFault) -> None:
        """:meth:`check` at a point where the worker may also be slowed down: a ``delay``
        fault waits its ``seconds`` (other tasks of the worker run meanwhile)."""
        spec = self.specs.get(point)
        if spec is None or not spec.hit():
            return
        if spec.action == "delay":
            log.warning("test fault: %s waits %.1fs", point, spec.seconds)
            await asyncio.sleep(spec.seconds)
            return
        self._fail(spec, point, error)

    @staticmethod
    def _fail(spec: FaultSpec, point: str, error: type[Exception]) -> None:
        if spec.action == "delay":
            raise SettingsError(f"{FAULT_ENV}: {point} cannot be delayed (only "
                                "ingest.<kind>.before, consumer.seek and <agent>.start can)")
        if spec.action == "cancel":
            raise asyncio.CancelledError(f"injected fault at {point}")
        raise error(f"injected fault at {point} (call {spec.calls})")
