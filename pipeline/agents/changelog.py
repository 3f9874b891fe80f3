"""The tables' changelog queue, which refuses events fetched in an earlier consumer
generation.

Faust's table recovery reads the changelog records the fetch loop puts on one queue and
applies each one whose offset is past the last one it applied; it has no generation
check. When partitions are revoked Faust stops the flow, suspends flow control and clears
the queue. A put that was about to start then survives: the fetch loop delivers a record
to a full changelog queue by starting a separate put task (``transport.Conductor``), and
stops waiting for that task when the flow stops; if the revocation clears the queue
before the task's first step, the task waits for flow control to resume. Flow control
resumes when the next recovery has sought every changelog partition to the offset it
applied last, and clears the queue once more; the task then puts its record, from the
earlier generation. Recovery applies it, and its offset passes the records the
revocation cleared: they are fetched again after the seek and skipped as already
applied. The table misses them for good and recovery counts the partition as restored.

This queue drops an event whose message was fetched in another generation than the
consumer's current one at the moment it would enter the queue (the put returns as if it
had entered). A record dropped this way is read again from the offset recovery seeks to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.tables import TableManager
from mode.utils.queues import ThrowableQueue

log = logging.getLogger("tocsin.app")


class ChangelogQueue(ThrowableQueue):
    """Faust's changelog queue, refusing events of an earlier consumer generation (see
    the module doc); ``refused`` counts them. Unlike the agents' queues it is cleared
    when flow control resumes (``pipeline.agents.transport.FlowControl``)."""

    cleared_on_resume = True

    def __init__(self, *args: Any, generation: Callable[[], int | None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generation = generation
        self.refused = 0

    def _stale(self, event: Any) -> bool:
        fetched_in = getattr(getattr(event, "message", None), "generation_id", None)
        current = self._generation()
        if fetched_in is None or current is None or fetched_in == current:
            return False
        self.refused += 1
        message = event.message
        log.info("changelog record %s/%s@%s of generation %s refused in generation %s "
                 "(read again after recovery's seek)", message.topic, message.partition,
                 message.offset, fetched_in, current)
        return True

    def put_nowait(self, item: Any) -> None:
        """Put ``item`` unless it was fetched in an earlier generation."""
        if not self._stale(item):
            super().put_nowait(item)

    def force_put_nowait(self, item: Any) -> None:
        """Put ``item`` even when full, unless it was fetched in an earlier generation."""
        if not self._stale(item):
            super().force_put_nowait(item)


class ChangelogTables(TableManager):
    """Faust's table manager with a :class:`ChangelogQueue` (``TableManager=`` setting)."""

    @property
    def changelog_queue(self) -> ThrowableQueue:
        """The queue of changelog events table recovery reads."""
        if self._changelog_queue is None:
            app = self.app
            self._changelog_queue = ChangelogQueue(
                maxsize=app.conf.stream_buffer_maxsize, flow_control=app.flow_control,
                clear_on_resume=True,
                generation=lambda: getattr(app, "consumer_generation_id", None))
        return self._changelog_queue
