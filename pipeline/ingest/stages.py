"""Where a worker's time goes: seconds and calls per pipeline stage, for the status page.

Each stage (decoding a batch, an insert, the by-service forward, an agent waiting for
its next batch ...) adds the wall seconds it took. Stages that run in threads overlap
the event loop's, so the seconds of all stages may add up to more than the time elapsed;
they say how long each stage held its batch, which is what a benchmark compares.

>>> stages = StageTimes()
>>> stages.add("decode", 0.25)
>>> stages.add("decode", 0.5)
>>> stages.to_wire()
{'decode': {'seconds': 0.75, 'calls': 2}}
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Running totals of seconds and calls per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        """Count one call of ``stage`` that took ``seconds``."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Count the block's wall time (monotonic clock) as one call of ``stage``,
        whether it returns or raises."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.add(stage, time.monotonic() - began)

    def to_wire(self) -> dict[str, dict[str, float | int]]:
        """``{stage: {"seconds": s, "calls": n}}``, stages in name order."""
        return {name: {"seconds": round(self.seconds[name], 6), "calls": self.calls[name]}
                for name in sorted(self.seconds)}
