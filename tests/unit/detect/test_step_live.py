"""The detect step keeps states decoded between steps, and the store stays the truth.

A counting engine (state: records seen per service, stored as the decimal count) makes
every mistake visible as a wrong count: a stale live copy after a partition moved away
and back, a copy kept while another worker wrote the store, or records applied twice
when a failed step is run again.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.agents.detect import partition_of
from pipeline.detect.live import LiveStates
from pipeline.detect.step import DetectionStep, Message
from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service

NOW = 1_718_000_000_000
PARTITIONS = 2


class Count:
    """Records seen by one service; changed in place, as the real engines do."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def to_bytes(self) -> bytes:
        return str(self.n).encode()


class Counter:
    """An engine counting each service's records; counts its decodes."""

    def __init__(self) -> None:
        self.decoded = 0

    def new_state(self) -> Count:
        return Count()

    def state_from_bytes(self, data: bytes) -> Count:
        self.decoded += 1
        return Count(int(data))

    def process(self, signal: str, columns: dict[str, Any], state: Count) -> tuple:
        state.n += len(columns["time"])
        return state, [], None

    def advance(self, state: Count, watermark_ms: int) -> tuple:
        return state, []


class Store:
    """A worker's table: (engine, service) -> bytes."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], bytes] = {}

    def read(self, engine: str, service: str) -> bytes | None:
        return self.values.get((engine, service))

    def services_on(self, partition: int) -> list[str]:
        return sorted({s for _, s in self.values
                       if partition_of(s.encode(), PARTITIONS) == partition})

    def run(self, step: DetectionStep, messages: list[Message],
            assigned: list[int] | None = None) -> Any:
        result = step.run(messages, self.read, self.services_on, assigned)
        self.values.update(result.states)
        return result


def records(service: str, n: int) -> list[Message]:
    """The by-service message of ``n`` metric records of ``service``."""
    rows = [{"time": NOW - 1_000 + i, "service.name": service, "host.name": "h1",
             "name": "cpu", "value": float(i)} for i in range(n)]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(rows)], NOW + 60_000)
    return [Message(partition_of(k, PARTITIONS), k, v)
            for k, v in split_by_service("metrics", batch.to_arrow(), 1 << 20).messages]


def tick(partition: int, time_ms: int = NOW) -> Message:
    return Message(partition, TICK_KEY, encode_ticks([Tick("metrics/0", time_ms, False)]))


def count(store: Store, service: str) -> int:
    return int(store.values[("count", service)])


@pytest.fixture
def api_partition() -> int:
    return partition_of(b"api", PARTITIONS)


def test_states_stay_decoded_between_steps_and_only_changes_are_stored(api_partition):
    engine, store = Counter(), Store()
    step = DetectionStep({"count": engine}, 0)
    store.run(step, records("api", 3))
    store.run(step, records("api", 2))
    assert count(store, "api") == 5 and engine.decoded == 0  # never decoded again
    quiet = store.run(step, [tick(api_partition)])  # advanced, not changed
    assert quiet.states == {} and count(store, "api") == 5
    assert len(step.live) == 1


def test_a_partition_moved_away_and_back_is_read_from_the_store(api_partition):
    """Worker A counts 3 records of api; api's partition moves to worker B, which counts
    5 more (the store, its changelog, now says 8), then comes back to A with 2 more: A
    must count 10 from the store, not 5 from the copy it held before."""
    engine, store = Counter(), Store()
    a = DetectionStep({"count": engine}, 0)
    b = DetectionStep({"count": Counter()}, 0)
    other = 1 - api_partition
    store.run(a, records("api", 3), assigned=[0, 1])
    store.run(a, [tick(other)], assigned=[other])  # api's partition revoked
    assert len(a.live) == 0
    store.run(b, records("api", 5), assigned=[api_partition])
    assert count(store, "api") == 8
    store.run(a, records("api", 2), assigned=[0, 1])
    assert count(store, "api") == 10 and engine.decoded == 1


def test_a_copy_is_not_used_once_the_store_holds_other_bytes():
    """The partition left and came back between two steps (A never saw it go): what B
    wrote in between is in the store, so A decodes it."""
    engine, store = Counter(), Store()
    a = DetectionStep({"count": engine}, 0)
    b = DetectionStep({"count": Counter()}, 0)
    store.run(a, records("api", 3), assigned=[0, 1])
    store.run(b, records("api", 4), assigned=[0, 1])
    store.run(a, records("api", 1), assigned=[0, 1])
    assert count(store, "api") == 8 and engine.decoded == 1


def test_states_not_stored_are_not_used():
    """A step whose states were never stored (the batch's writes failed) leaves copies
    the next step must not use: the store still holds the states from before."""
    engine, store = Counter(), Store()
    step = DetectionStep({"count": engine}, 0)
    store.run(step, records("api", 3))
    step.run(records("api", 4), store.read, store.services_on)  # result dropped
    store.run(step, records("api", 4))  # the same batch again
    assert count(store, "api") == 7


def test_a_failed_step_run_again_applies_its_records_once():
    """The step fails after changing api's live state in place; run again on the same
    messages, api must count its records once."""
    engine, store = Counter(), Store()
    step = DetectionStep({"count": engine}, 0)
    store.run(step, records("api", 3) + records("web", 1))
    failing = {"web"}

    def read(name: str, service: str) -> bytes | None:
        if service in failing:
            failing.clear()
            raise OSError("table read failed")
        return store.read(name, service)

    batch = records("api", 2) + records("web", 1)
    with pytest.raises(OSError):
        step.run(batch, read, store.services_on)
    store.values.update(step.run(batch, read, store.services_on).states)
    assert count(store, "api") == 5 and count(store, "web") == 2


def test_without_live_states_every_step_decodes():
    engine, store = Counter(), Store()
    step = DetectionStep({"count": engine}, 0, live_bytes=0)
    store.run(step, records("api", 3))
    store.run(step, records("api", 2))
    assert count(store, "api") == 5 and engine.decoded == 1 and step.live is None


def test_states_past_the_byte_bound_are_decoded_again():
    """One byte held at most: of api ("3") and web ("1"), the state put last stays."""
    engine, store = Counter(), Store()
    step = DetectionStep({"count": engine}, 0, live_bytes=1)
    store.run(step, records("api", 3) + records("web", 1))
    assert len(step.live) == 1 and step.live.held_bytes == 1
    store.run(step, records("api", 4) + records("web", 5))
    assert count(store, "api") == 7 and count(store, "web") == 6
    assert engine.decoded == 1  # one of the two, held no longer


def test_the_bound_counts_what_a_state_takes_decoded_not_its_stored_bytes():
    """A state that says what it takes decoded (``held_bytes``) is budgeted by that: two
    states of one stored byte each, taking 600 bytes decoded, do not both fit in 1,000."""

    class Big(dict):
        def held_bytes(self) -> int:
            return 600

    live = LiveStates(max_bytes=1000)
    live.put(("models", "api"), Big(), b"1", partition=0)
    assert live.held_bytes == 600
    live.put(("models", "web"), Big(), b"2", partition=0)
    assert len(live) == 1 and live.held_bytes == 600
    assert live.take(("models", "api"), b"1") is None  # the older went
    assert live.take(("models", "web"), b"2") == {}
    assert live.held_bytes == 0
