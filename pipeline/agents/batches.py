"""Agent batches that no exception loses: retried in place, committed only once done.

Faust's ``Stream.take_events`` acknowledges a batch's events when the agent asks for the
next batch, and also when the generator is closed: when an exception leaves the agent
(Faust then restarts it) the batch it was working on is acknowledged, its offsets are
committed, and the batch is neither stored nor dead-lettered; and the records the stream
reads while the agent restarts go nowhere (``pipeline.agents.stream_buffer``). Every agent
of Tocsin therefore takes its batches from a :class:`StreamBuffer` attached to its stream
once, and runs them through a :class:`BatchRunner`:

- *Hold.* The reference Faust's conductor gives each message for the agent's stream is
  kept while its batch is in hand; the runner drops it (``Stream.ack``) when the batch is
  done. Faust commits an offset only at a message's last acknowledgement, so whichever
  way the agent is left (an exception, a cancellation, a stop) the offsets of an
  unfinished batch stay uncommitted, and the batch is delivered again after a restart or
  a rebalance; what the buffer holds meanwhile is taken by the restarted task.
- *Retry in place.* An exception in a batch is counted and logged with the agent, the
  topic, partition and offsets, and the same batch is tried again after a capped
  exponential backoff; steps an earlier attempt finished are not repeated
  (:class:`BatchSteps`). The agent never moves past a batch it could not complete: a
  batch that keeps failing makes the agent *stuck* (``pipeline.agents.health``).
- *Settle before a stop or a rebalance* (:meth:`BatchRunners.settle`, in place of
  Faust's ``stream_wait_empty``, which waits for every event to be acknowledged and so
  forever for a batch that cannot be stored): batches in progress finish, within a
  bound. On a stop, a batch waiting for its next attempt is given up, uncommitted.
- *Nothing acknowledged past a batch left behind.* Faust commits the longest run of
  acknowledged offsets and does not always see a gap before it (none is seen while a
  partition has no committed offset yet, nor a gap of one offset). So once a batch is
  given up or its agent task ended while holding it, later batches of the same
  partitions are processed but stay held too, until the consumer's next generation
  (a rebalance seeks back to the committed offset and delivers the batch again) or a
  restart. The agent's health lists those partitions (``held``).
- *Only the current generation.* An event fetched before a rebalance is neither processed
  nor acknowledged after it (counted as ``stale``): the consumer has been sought back to
  the committed offsets and delivers it again, to this worker or to the partition's new
  owner. Acknowledging it would let Faust commit past the records before it on a
  partition with nothing committed yet (see ``pipeline.agents.transport``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.agents.health import (
    AgentHealth,
    OffsetRange,
    describe_error,
    describe_ranges,
    offset_ranges,
)
from pipeline.agents.stream_buffer import StreamBuffer
from pipeline.ingest.stages import StageTimes

log = logging.getLogger("tocsin.agents")

T = TypeVar("T")


class BatchSteps:
    """What the attempts of one batch finished so far: a step runs until it succeeds once."""

    def __init__(self) -> None:
        self._done: dict[str, Any] = {}

    async def once(self, name: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` unless an earlier attempt of this batch completed it; its result."""
        if name not in self._done:
            self._done[name] = await step()
        return self._done[name]

    def value(self, name: str, make: Callable[[], T]) -> T:
        """``make()`` on the first attempt, the same value on every later one."""
        if name not in self._done:
            self._done[name] = make()
        return self._done[name]


BatchHandler = Callable[[Any, Sequence[Any], BatchSteps], Awaitable[None]]
"""``handle(stream, events, steps)``: one attempt at a batch; raising means it failed."""

BatchObserver = Callable[[str, int, float], None]
"""``observe(agent, messages, seconds)``: a batch completed (for the worker's metrics)."""


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts of a failing batch: doubling from ``first_s`` to ``max_s``."""

    first_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, failures: int, hint_s: float = 0.0) -> float:
        """The wait after the ``failures``-th failed attempt (at least ``hint_s``)."""
        doubled = self.first_s * 2.0 ** min(max(failures - 1, 0), 30)
        return min(self.max_s, max(doubled, hint_s))


def _now_ms() -> int:
    return int(time.time() * 1000)


class BatchRunner:
    """Runs one agent's batches: hold, retry in place, release, report (see module doc)."""

    def __init__(self, app: Any, health: AgentHealth, handle: BatchHandler, *,
                 batch_size: int, within_s: float, backoff: Backoff,
                 observe: BatchObserver | None = None,
                 stages: StageTimes | None = None) -> None:
        self.app = app
        self.observe = observe
        # "<agent>.wait": waiting for the next batch (fetches included), "<agent>.busy":
        # working on one, attempts and backoffs included
        self.stages = stages if stages is not None else StageTimes()
        self.health = health
        self.handle = handle
        self.batch_size = batch_size
        self.within_s = within_s
        self.backoff = backoff
        self._idle = asyncio.Event()
        self._idle.set()
        self._give_up = asyncio.Event()
        # partitions with a batch left behind: (topic, partition) -> (generation, range)
        self._held: dict[tuple[str, int], tuple[int | None, OffsetRange]] = {}
        self._buffer: StreamBuffer | None = None  # the agent's stream's, across restarts

    @property
    def name(self) -> str:
        """The agent's name."""
        return self.health.name

    @property
    def busy(self) -> bool:
        """True while a batch is in hand."""
        return not self._idle.is_set()

    def give_up_failing(self, give_up: bool = True) -> None:
        """From now on (or no longer), a failed attempt leaves its batch behind at once."""
        if give_up:
            self._give_up.set()
        else:
            self._give_up.clear()

    async def wait_idle(self) -> None:
        """Until no batch is in hand."""
        await self._idle.wait()

    async def run(self, stream: Any) -> None:
        """The agent body: take batches from ``stream`` until the worker stops."""
        if self._buffer is None or self._buffer.stream is not stream:
            self._buffer = StreamBuffer(stream, self.batch_size)
        buffer = self._buffer
        faults = getattr(self.app, "faults", None)
        if faults is not None:  # a slow (re)start on a busy machine (tests)
            await faults.wait(f"{self.name}.start")
        asked = time.monotonic()
        while not self.app.should_stop:
            events = await buffer.take(self.within_s)
            if not events or self.app.should_stop:
                continue  # taken while stopping: left unacknowledged to the next worker
            self.stages.add(f"{self.name}.wait", time.monotonic() - asked)
            await self._complete(stream, events)
            asked = time.monotonic()

    async def _complete(self, stream: Any, events: Sequence[Any]) -> bool:
        """Run one batch to success (True) or until it is given up (False)."""
        events = self._current(events)
        if not events:
            return True
        ranges = offset_ranges((e.message.topic, e.message.partition, e.message.offset)
                               for e in events)
        self.health.started(ranges)
        started = time.monotonic()
        self._idle.clear()
        steps = BatchSteps()
        try:
            while True:
                try:
                    await self.handle(stream, events, steps)
                    break
                except Exception as exc:
                    if not await self._after_failure(exc, ranges):
                        log.warning("agent %s: gave up %s after %d failed attempts; it stays "
                                    "uncommitted and is delivered again after a restart or "
                                    "rebalance", self.name, describe_ranges(ranges),
                                    self.health.consecutive_failures)
                        self.health.gave_up()
                        self._leave_behind(events, ranges)
                        return False
            await self._release(stream, events)
            if self.health.consecutive_failures:
                log.warning("agent %s: %s done after %d failed attempts", self.name,
                            describe_ranges(ranges), self.health.consecutive_failures)
            self.health.succeeded()
            self.stages.add(f"{self.name}.busy", time.monotonic() - started)
            if self.observe is not None:
                self.observe(self.name, len(events), time.monotonic() - started)
            return True
        except BaseException as exc:  # cancelled (a restart or a stop) or worse
            self._leave_behind(events, ranges)
            if not self.app.should_stop:
                self.health.crashed(describe_error(exc) or type(exc).__name__, _now_ms())
                log.error("agent %s: ended while holding %s (%s); it stays uncommitted and "
                          "is delivered again after a restart or rebalance", self.name,
                          describe_ranges(ranges), describe_error(exc))
            raise
        finally:
            self._idle.set()

    def _current(self, events: Sequence[Any]) -> Sequence[Any]:
        """The events fetched in the consumer's current generation (see the module doc);
        the others are left unacknowledged for good."""
        generation = self.app.consumer_generation_id
        current = [e for e in events if e.message.generation_id == generation]
        if len(current) < len(events):
            stale = len(events) - len(current)
            self.health.stale += stale
            log.info("agent %s: %d events fetched before the last rebalance are left to be "
                     "delivered again from the committed offsets", self.name, stale)
        return current

    async def _release(self, stream: Any, events: Sequence[Any]) -> None:
        """Drop the hold of a completed batch, except on partitions with a batch left
        behind in the same consumer generation (see the module doc)."""
        if self._held:
            assigned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
            for key in [k for k in self._held if k not in assigned]:
                del self._held[key]  # moved to another worker, which starts from the commit
        for event in events:
            message = event.message
            key = (message.topic, message.partition)
            held = self._held.get(key)
            if held is not None and held[0] != message.generation_id:
                del self._held[key]  # a new generation: delivered again from the commit
                held = None
            if held is None and message.generation_id == self.app.consumer_generation_id:
                await stream.ack(event)  # release: the batch may be committed now
        self.health.held = tuple(r for _, r in self._held.values())

    def _leave_behind(self, events: Sequence[Any], ranges: tuple[OffsetRange, ...]) -> None:
        """Keep later batches of these partitions from being committed past this one."""
        generation = {(e.message.topic, e.message.partition): e.message.generation_id
                      for e in events}
        for r in ranges:
            key = (r.topic, r.partition)
            if key not in self._held:
                self._held[key] = (generation.get(key), r)
        self.health.held = tuple(r for _, r in self._held.values())

    async def _after_failure(self, exc: Exception, ranges: tuple) -> bool:
        """Count and log a failed attempt, wait the backoff; False: give the batch up."""
        error = describe_error(exc)
        self.health.failed(error, _now_ms())
        failures = self.health.consecutive_failures
        delay = self.backoff.delay_s(failures, float(getattr(exc, "retry_after_s", 0.0)))
        message = ("agent %s: attempt %d at %s failed, retrying in %.1fs: %s",
                   self.name, failures, describe_ranges(ranges), delay, error)
        if failures == 1:
            log.error(*message, exc_info=exc)
        else:
            log.error(*message)
        if failures == self.health.stuck_after:
            log.error("agent %s is stuck: %s failed %d times in a row; it is retried every "
                      "%.0fs at most and not skipped", self.name, describe_ranges(ranges),
                      failures, self.backoff.max_s)
        if self._give_up.is_set():
            return False
        try:
            await asyncio.wait_for(self._give_up.wait(), timeout=delay)
            return False
        except asyncio.TimeoutError:
            return not self.app.should_stop


class BatchRunners:
    """Every runner of one worker, to let their batches settle before a stop or rebalance."""

    def __init__(self) -> None:
        self.runners: list[BatchRunner] = []

    def add(self, runner: BatchRunner) -> BatchRunner:
        """Register ``runner``."""
        self.runners.append(runner)
        return runner

    async def settle(self, timeout_s: float, *, give_up: bool) -> list[str]:
        """Wait up to ``timeout_s`` until no runner holds a batch; returns the agents still
        busy then. With ``give_up`` (a stop) a batch that fails, or waits for its next
        attempt, is left uncommitted at once; without (a rebalance) it keeps being
        retried, and the rebalance goes on after ``timeout_s`` (the consumer then seeks
        back to the committed offsets: the batch is delivered again)."""
        if give_up:
            for runner in self.runners:
                runner.give_up_failing()
        waits = [asyncio.ensure_future(r.wait_idle()) for r in self.runners if r.busy]
        try:
            if waits:
                await asyncio.wait(waits, timeout=timeout_s)
            return [r.name for r in self.runners if r.busy]
        finally:
            for wait in waits:
                wait.cancel()
