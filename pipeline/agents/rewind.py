"""Partitions with nothing committed are read again from their beginning after a rebalance.

Faust remembers, per partition, the last offset its consumer read (``_read_offset``) and
drops any message at or below it, so a message is not handed to a stream twice. A
partition kept through a rebalance keeps that mark, while the messages read before the
rebalance but not yet processed were discarded with the old generation's buffers. With a
committed offset Faust seeks back to it and resets the mark; with none committed yet (a
new topic, a new consumer group) it does neither: the re-fetched messages are dropped as
already read, and the first commit after them skips them for good. Observed with two
workers whose group rebalanced while records were arriving on fresh topics.

So on every assignment, each partition of the agents' own topics that has no committed
offset is sought to its earliest offset, which also resets Faust's mark. Messages read
twice are harmless: rows are deduplicated by ``event_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

log = logging.getLogger("tocsin.rebalance")


def uncommitted(assigned: Iterable[Any], topics: Collection[str],
                committed: dict[Any, int | None]) -> list[Any]:
    """The partitions of ``topics`` among ``assigned`` with no offset committed (None, or
    0: Faust does not tell the two apart either), in a stable order.

    >>> from collections import namedtuple
    >>> TP = namedtuple("TP", "topic partition")
    >>> uncommitted([TP("m", 1), TP("m", 0), TP("x-changelog", 0)], {"m"}, {TP("m", 1): 5})
    [TP(topic='m', partition=0)]
    """
    return sorted((tp for tp in assigned if tp.topic in topics and not committed.get(tp)),
                  key=lambda tp: (tp.topic, tp.partition))


async def rewind_uncommitted(app: Any, assigned: Iterable[Any], topics: Collection[str]) -> int:
    """Seek the partitions of ``topics`` in ``assigned`` that have no committed offset to
    their earliest offset; returns how many were sought."""
    consumer = app.consumer
    thread = consumer._thread
    aio = thread._ensure_consumer()
    mine = [tp for tp in assigned if tp.topic in topics]
    if not mine:
        return 0
    committed = {}
    for tp in mine:
        committed[tp] = await thread.call_thread(aio.committed, tp)
    todo = uncommitted(mine, topics, committed)
    if not todo:
        return 0
    earliest = await consumer.earliest_offsets(*todo)
    for tp in todo:
        await consumer.seek(tp, earliest.get(tp, 0) or 0)
    log.info("read again from the beginning (nothing committed yet): %s",
             ", ".join(f"{tp.topic}[{tp.partition}]" for tp in todo))
    return len(todo)
