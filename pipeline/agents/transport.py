"""Faust's aiokafka transport with the worker's fetch wait and a rebalance-safe fetch loop.

*Fetch wait.* faust-streaming builds its worker consumer with ``fetch_max_wait_ms=1500``
and no setting to change it. With several topics on one broker that stalls the agents:
once a batch keeps the consumer busy past aiokafka's prefetch backoff, aiokafka fetches
only the partitions with nothing buffered (the idle log and trace topics), the broker
holds that fetch up to ``fetch_max_wait_ms`` for data that never comes, and no other fetch
goes to that broker meanwhile. The worker's consumer here has aiokafka's
``fetch_max_wait_ms`` set from ``kafka.fetch_max_wait_ms`` before it starts (aiokafka
hands it to its fetcher in ``start()``; the default is Kafka's own consumer default, 500).

*Fetch loop.* Faust's loop (``Consumer._drain_messages``) keeps a *read offset* per
partition: a fetched message below it is dropped as already read, and a jump past it is
taken for a gap of compacted or transaction-marker offsets, which then count as
acknowledged. Around a rebalance the read offset and aiokafka's fetch position part: the
read offset is set to the committed offset while the fetcher still returns records it
fetched from further on, or it is set by a message fetched before the rebalance and
delivered after it. Both lose records: the offsets skipped over are taken for a gap
and committed unread, and the re-fetched ones below the read offset are dropped. With
that loop the scale-out test lost 777 logs and 1,404 metric points in one run, and a
trace partition's commit stopped moving. The loop here is ours, with the same flow
control and two rules:

- every message fetched in the current consumer generation while the flow is active is
  delivered, including one the fetcher returns again after a seek back to the committed
  offset (a duplicate, stored once by its event id and counted as late by the
  detectors); nothing is dropped or taken for a gap on a guess;
- a message fetched in an earlier generation, or while the flow is stopped, is not
  delivered: the consumer has been (or is about to be) sought back to the committed
  offsets, and reads it again.

*Changelog partitions* have no committed offset (nothing acknowledges their records) and
are not sought by a seek to the committed offsets; table recovery seeks them itself, and
dropping their records is still safe. The flow stops only when partitions are revoked
(a rebalance or a stop), and after a rebalance it is resumed only by table recovery
(Faust's ``Recovery._restart_recovery``), right after it sought every active changelog
partition to the last offset it applied (``active_offsets``) with no await in between;
the client discards what it had buffered for a partition it seeks. So a changelog
record fetched and dropped while the flow was stopped, or in an earlier generation, lies
at or after the offset that seek reads from, and is read again; recovery counts a
partition as restored only from offsets it applied (an applied offset moves only when a
record is applied, and only forward), never from what the fetcher passed. Standby
partitions are sought to their applied offsets in the same way before they are resumed.
What could still reach recovery from before a rebalance is a put to the full changelog
queue begun just before the revocation; the tables' changelog queue refuses such a
record (``pipeline.agents.changelog``).

Without gap filling, a commit still passes the single offset a transaction marker takes
(Faust commits across a hole of one offset), but stops at a hole left by compaction:
input topics must not be compacted. The batch runners drop events that reached a stream
before a rebalance in the same way (``pipeline.agents.batches``).

*Queues kept on resume.* Faust's flow control (``app.flow_control``) cleared every
agent's queue each time it resumed. The last resume ends a rebalance, right after the
seek of every assigned partition to its committed offset (``Consumer.perform_seek``, one
round trip per partition); when the worker restored table state, the fetch loop already
runs then, and the partitions resumed before the seek are fetched and delivered during
it. A partition sought early in that loop had records fetched from the committed offset
on and delivered, waiting in its agent's queue behind the batch in hand; the resume
cleared them, nothing read them again (the fetch position had passed them) and nothing
acknowledged them, so the partition's commit stopped below them for good: the agent sat
idle with lag left (after a restart on a busy machine the state-chunks test's ingest
agent processed 202 of the 240 messages left, then waited; ``tests/integration/
test_seek_window.py`` widens the window on purpose). The worker's flow control resumes
without clearing the agents' queues: what one holds from the current generation is
processed, what it holds from an earlier one is skipped by the stream (the generation
check of Faust's compiled stream iterator, which does not acknowledge it) or by the batch
runners. The tables' changelog queue is still cleared on resume (table recovery has no
generation check), and every queue still is when partitions are revoked. Everything
else (groups, assignment, commits, rebalances, flow control) is Faust's.

What the client returned and what the loop delivered and dropped per partition is kept
(``delivery``) for the status page (``pipeline.agents.partitions``; table recovery's own
view is in ``pipeline.agents.recovery``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from mode.utils.queues import FlowControlEvent

from pipeline.agents.partitions import DeliveryLog


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivery = DeliveryLog()  # what the fetch loop delivered or dropped (status)

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek every assigned partition to its committed offset (Faust's), then the
        ``consumer.seek`` test fault point (a slow seek on a busy machine)."""
        await super().perform_seek()
        faults = getattr(self.app, "faults", None)
        if faults is not None:
            await faults.wait("consumer.seek")

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        """The client's records (Faust's), counted per partition for the status."""
        records = await super()._getmany(active_partitions, timeout)
        for tp, batch in (records or {}).items():
            if batch:
                self.delivery.fetched(tp.topic, tp.partition, batch[-1].offset, len(batch))
        return records

    async def _drain_messages(self, fetcher: Any) -> None:
        """Deliver fetched messages to the streams until the consumer or fetcher stops."""
        app = self.app
        delivery = self.delivery
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for _tp, message in messages:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()  # a rebalance can run meanwhile
                    if (not self.flow_active
                            or message.generation_id != app.consumer_generation_id):
                        # read again from the committed offset
                        delivery.dropped(message.topic, message.partition, message.offset,
                                         flow_stopped=not self.flow_active)
                        continue
                    delivery.delivered(message.topic, message.partition, message.offset,
                                       message.generation_id)
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class FlowControl(FlowControlEvent):
    """Faust's flow control into the agents' queues, whose resume keeps what the agents'
    queues hold (see the module doc); a queue that says it is ``cleared_on_resume`` (the
    tables' changelog queue, whose recovery has no generation check) is still cleared,
    and ``clear()`` still empties them all."""

    def resume(self) -> None:
        """Resume production into the queues, keeping the agents' queues' contents."""
        self._suspend.clear()
        self._resume.set()
        for queue in list(self._queues):
            if getattr(queue, "cleared_on_resume", False):
                queue.clear()


class Transport(driver.Transport):
    """The aiokafka transport whose worker consumer waits ``app.fetch_max_wait_ms`` and
    delivers what it fetches without read-offset guesses (see the module doc)."""

    Consumer = _Consumer
