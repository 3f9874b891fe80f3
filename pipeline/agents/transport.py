"""Faust's aiokafka transport with the worker's fetch wait.

faust-streaming builds its worker consumer with ``fetch_max_wait_ms=1500`` and no setting
to change it. With several topics on one broker that stalls the agents: once a batch
keeps the consumer busy past aiokafka's prefetch backoff, aiokafka fetches only the
partitions with nothing buffered (the idle log and trace topics), the broker holds that
fetch up to ``fetch_max_wait_ms`` for data that never comes, and no other fetch goes to
that broker meanwhile. The worker's consumer here
is Faust's own, with aiokafka's ``fetch_max_wait_ms`` set from ``kafka.fetch_max_wait_ms``
before it starts (aiokafka hands it to its fetcher in ``start()``; the default is Faust's
1500); everything else (groups, assignment, commits, rebalances) is Faust's.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """The aiokafka transport whose worker consumer waits ``app.fetch_max_wait_ms``."""

    Consumer = _Consumer
