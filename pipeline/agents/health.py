"""How each agent is doing: batches done, failed attempts, the batch it is stuck on.

Plain data, no Faust: the batch runner (``pipeline.agents.batches``) reports into it and
the status and health pages read it. An agent whose batch failed ``stuck_after`` times in
a row is *stuck*: it does not move past that batch (its offsets stay uncommitted) until
an attempt succeeds, and the worker's health says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_ERROR_CHARS = 500


@dataclass(frozen=True)
class OffsetRange:
    """The offsets of one topic partition a batch covers (both ends included)."""

    topic: str
    partition: int
    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.first}-{self.last}"

    def to_wire(self) -> dict[str, Any]:
        """The range as a JSON-ready dict."""
        return {"topic": self.topic, "partition": self.partition, "first": self.first,
                "last": self.last}


def offset_ranges(positions: Iterable[tuple[str, int, int]]) -> tuple[OffsetRange, ...]:
    """One range per (topic, partition) of ``(topic, partition, offset)`` positions."""
    bounds: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in positions:
        low, high = bounds.get((topic, partition), (offset, offset))
        bounds[(topic, partition)] = (min(low, offset), max(high, offset))
    return tuple(OffsetRange(t, p, low, high) for (t, p), (low, high) in sorted(bounds.items()))


def describe_ranges(ranges: Iterable[OffsetRange]) -> str:
    """``topic[p] offsets a-b, ...`` for log lines."""
    return ", ".join(str(r) for r in ranges) or "no offsets"


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, control characters escaped, at most 500 characters."""
    text = f"{type(exc).__name__}: {exc}"
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 3] + "..."


@dataclass
class AgentHealth:
    """One agent's record: what it completed, what failed, what it holds."""

    name: str
    stuck_after: int = 3
    batches: int = 0  # completed
    failures: int = 0  # failed attempts, all batches
    consecutive_failures: int = 0  # failed attempts of the batch in hand
    given_up: int = 0  # batches left uncommitted on a stop or rebalance
    crashes: int = 0  # times the agent task ended while holding a batch
    stale: int = 0  # events fetched before a rebalance, left to be delivered again
    last_error: str = ""
    last_failure_ms: int = -1
    ranges: tuple[OffsetRange, ...] = ()  # the batch in hand, or the last one that failed
    held: tuple[OffsetRange, ...] = ()  # batches left behind: their partitions commit nothing

    @property
    def stuck(self) -> bool:
        """True while the batch in hand has failed ``stuck_after`` times in a row."""
        return self.consecutive_failures >= self.stuck_after

    def started(self, ranges: tuple[OffsetRange, ...]) -> None:
        """A batch is taken."""
        self.ranges = ranges
        self.consecutive_failures = 0

    def failed(self, error: str, now_ms: int) -> None:
        """An attempt of the batch in hand failed with ``error``."""
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        self.last_failure_ms = now_ms

    def succeeded(self) -> None:
        """The batch in hand is done and released for commit."""
        self.batches += 1
        self.consecutive_failures = 0

    def gave_up(self) -> None:
        """The batch in hand is left uncommitted (a stop or a rebalance)."""
        self.given_up += 1
        self.consecutive_failures = 0

    def crashed(self, error: str, now_ms: int) -> None:
        """The agent task ended (cancelled or failed) while holding a batch."""
        self.crashes += 1
        self.consecutive_failures = 0
        self.last_error = error
        self.last_failure_ms = now_ms

    def to_wire(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (for the status and health pages)."""
        return {"batches": self.batches, "failures": self.failures,
                "consecutive_failures": self.consecutive_failures, "stuck": self.stuck,
                "given_up": self.given_up, "crashes": self.crashes, "stale": self.stale,
                "last_error": self.last_error, "last_failure_ms": self.last_failure_ms,
                "offsets": [r.to_wire() for r in self.ranges],
                "held": [r.to_wire() for r in self.held]}


@dataclass
class Health:
    """Every agent's record in one worker."""

    stuck_after: int = 3
    agents: dict[str, AgentHealth] = field(default_factory=dict)

    def agent(self, name: str) -> AgentHealth:
        """The record of agent ``name`` (created on first use)."""
        record = self.agents.get(name)
        if record is None:
            record = self.agents[name] = AgentHealth(name, self.stuck_after)
        return record

    def stuck(self) -> list[AgentHealth]:
        """The agents stuck on a batch, by name."""
        return [a for _, a in sorted(self.agents.items()) if a.stuck]

    def to_wire(self) -> dict[str, Any]:
        """Every agent's record by name."""
        return {name: a.to_wire() for name, a in sorted(self.agents.items())}
