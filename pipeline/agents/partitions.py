"""Where each assigned partition stands in the worker's consumer, for the status snapshot.

An agent that waits with lag left can be stalled at any of four places, and the status
names which: the partition is not fetched (``paused`` by Faust, or left out of its
``active`` set while a stream buffer is full, or ``kafka_paused`` by the client), it is
fetched but what was fetched was not delivered (the fetch ``position`` is past the
last offset ``delivered`` to the streams; ``dropped`` counts the messages the fetch loop
did not deliver and why, and ``fetched`` past ``delivered`` + ``dropped`` counts those
Faust's ``getmany`` filtered out before the loop saw them), it was delivered but not
acknowledged (``delivered`` past ``committed`` and nothing ``acked`` waiting), or it was
acknowledged but cannot be committed (``acked`` offsets wait above a gap after ``committed``).

Reading the consumer's fields from the web handler is a snapshot, not a transaction:
good enough to say where a stall is, not to count exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_CHANGELOG_SUFFIX = "-changelog"


@dataclass
class PartitionDelivery:
    """What the fetch loop did with one partition's messages (``pipeline.agents.transport``)."""

    fetched: int = 0  # records the client returned (Faust's getmany filters some out)
    last_fetched_offset: int = -1
    delivered: int = 0  # messages handed to the streams
    last_offset: int = -1  # offset of the last one
    last_generation: int | None = None  # consumer generation it was fetched in
    dropped_flow_stopped: int = 0  # fetched while the flow was stopped (rebalance, stop)
    dropped_old_generation: int = 0  # fetched in an earlier consumer generation
    last_dropped_offset: int = -1

    def to_wire(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return {"fetched": self.fetched, "last_fetched_offset": self.last_fetched_offset,
                "delivered": self.delivered, "last_offset": self.last_offset,
                "last_generation": self.last_generation,
                "dropped": {"flow_stopped": self.dropped_flow_stopped,
                            "old_generation": self.dropped_old_generation},
                "last_dropped_offset": self.last_dropped_offset}


@dataclass
class DeliveryLog:
    """Per partition (topic, partition): the fetch loop's :class:`PartitionDelivery`."""

    partitions: dict[tuple[str, int], PartitionDelivery] = field(default_factory=dict)

    def of(self, topic: str, partition: int) -> PartitionDelivery:
        """The record of one partition (created on first use)."""
        key = (topic, partition)
        record = self.partitions.get(key)
        if record is None:
            record = self.partitions[key] = PartitionDelivery()
        return record

    def fetched(self, topic: str, partition: int, last_offset: int, count: int) -> None:
        """Count records the client returned; those neither delivered nor dropped after
        that were filtered out by Faust's ``getmany`` (the flow stopped or the generation
        changed mid-batch, or the partition was paused)."""
        record = self.of(topic, partition)
        record.fetched += count
        record.last_fetched_offset = last_offset

    def delivered(self, topic: str, partition: int, offset: int,
                  generation: int | None) -> None:
        """Count a message handed to the streams."""
        record = self.of(topic, partition)
        record.delivered += 1
        record.last_offset = offset
        record.last_generation = generation

    def dropped(self, topic: str, partition: int, offset: int, *, flow_stopped: bool) -> None:
        """Count a fetched message the loop did not deliver (it is read again after the
        consumer seeks back: input partitions to the committed offset, changelog
        partitions to the offset table recovery applied last)."""
        record = self.of(topic, partition)
        if flow_stopped:
            record.dropped_flow_stopped += 1
        else:
            record.dropped_old_generation += 1
        record.last_dropped_offset = offset


def _client_state(consumer: Any, tp: Any) -> tuple[int | None, bool | None]:
    """The client's fetch position and pause flag of ``tp`` (None when unknown)."""
    try:
        client = consumer._thread._ensure_consumer()
        assignment = client._subscription.subscription.assignment
        state = assignment.state_value(tp)
    except Exception:  # not started, between assignments, or another client
        return None, None
    if state is None:
        return None, None
    position = state.position if state.has_valid_position else None
    return position, bool(state.paused)


def _acked(consumer: Any, tp: Any) -> dict[str, Any]:
    acked = list(getattr(consumer, "_acked", {}).get(tp) or ())
    return {"count": len(acked), "min": min(acked) if acked else None,
            "max": max(acked) if acked else None}


def partition_states(app: Any, delivery: DeliveryLog | None) -> dict[str, Any]:
    """The consumer's generation and flow, and per assigned partition (table changelogs
    included) its fetch, delivery, acknowledgement and commit state (see the module doc)."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return {}
    try:
        assigned = sorted(consumer.assignment())
    except Exception:  # no consumer yet: the worker is still starting
        return {}
    paused = set(getattr(consumer, "_paused_partitions", ()) or ())
    active = getattr(consumer, "_active_partitions", None)
    buffered = set(getattr(consumer, "_buffered_partitions", ()) or ())
    committed = getattr(consumer, "_committed_offset", {})
    flow_control = getattr(app, "flow_control", None)
    rows = []
    for tp in assigned:
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            highwater = None
        position, kafka_paused = _client_state(consumer, tp)
        record = delivery.of(tp.topic, tp.partition) if delivery is not None else None
        rows.append({
            "topic": tp.topic, "partition": tp.partition,
            "changelog": tp.topic.endswith(_CHANGELOG_SUFFIX),  # read by table recovery
            "paused": tp in paused,
            "active": active is None or tp in active,
            "buffer_full": tp in buffered,
            "kafka_paused": kafka_paused,
            "position": position,
            "highwater": highwater,
            "committed": committed.get(tp),
            "acked": _acked(consumer, tp),
            **(record.to_wire() if record is not None else {}),
        })
    return {
        "generation": getattr(app, "consumer_generation_id", None),
        "flow_active": bool(getattr(consumer, "flow_active", False)),
        "flow_control_active": bool(flow_control.is_active()) if flow_control else None,
        "partitions": rows,
    }
