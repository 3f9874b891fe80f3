"""Liveness and readiness of a worker, decided without Faust.

- ``/healthz``: the process is up and its event loop answers (always 200 when it can
  answer at all).
- ``/readyz``: 200 when the worker does its job: partitions are assigned (not in the
  middle of a rebalance), the store answers, and no agent is stuck on a batch; 503 with
  every reason otherwise.

Neither asks for the bearer token: orchestrators' probes rarely hold secrets, and the
answers carry no data (agent names, a short scrubbed error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"


@dataclass(frozen=True)
class Readiness:
    """Whether the worker is ready, and why not."""

    ready: bool
    reasons: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return 200 if self.ready else 503

    def to_wire(self) -> dict[str, Any]:
        """The answer's JSON body."""
        body: dict[str, Any] = {"status": "ready" if self.ready else "not ready"}
        if self.reasons:
            body["reasons"] = list(self.reasons)
        return {**body, **self.details}


def readiness(*, assigned: int, rebalancing: bool, store_error: str | None,
              stuck: Sequence[tuple[str, int, str]]) -> Readiness:
    """Decide readiness from what the worker knows now.

    ``assigned``: partitions assigned to this worker; ``store_error``: why the store did
    not answer a probe query (None: it did); ``stuck``: ``(agent, consecutive failures,
    last error)`` of the agents stuck on a batch.

    >>> readiness(assigned=3, rebalancing=False, store_error=None, stuck=()).status
    200
    >>> readiness(assigned=0, rebalancing=True, store_error=None, stuck=()).reasons
    ('rebalancing: partitions are being assigned',)
    """
    reasons = []
    if rebalancing:
        reasons.append("rebalancing: partitions are being assigned")
    elif assigned == 0:
        reasons.append("no partitions assigned (the consumer has not joined its group, or "
                       "more workers than partitions)")
    if store_error is not None:
        reasons.append(f"store unreachable: {store_error}")
    for agent, failures, error in stuck:
        reasons.append(f"agent {agent} stuck: its batch failed {failures} times in a row "
                       f"({error})")
    return Readiness(not reasons, tuple(reasons), {"partitions_assigned": assigned})
