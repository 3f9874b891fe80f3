"""A step scores its staged metric slices a group of services at a time and lets each
group's states go before the next group is decoded: the step's memory is one group's.

A staging counting engine (state: records per service) records, whenever it scores,
which services' states are alive (decoded and not yet encoded). With many services and
a small ``max_records``, no scoring may see more than its own group alive, and the
counts must equal those of one step with every slice in one group, and of the slices
fed one by one in separate steps.
"""

from __future__ import annotations

import weakref
from typing import Any

import orjson

from pipeline.agents.detect import partition_of
from pipeline.detect.step import DetectionStep, Message
from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service

NOW = 1_718_000_000_000
PARTITIONS = 2
SERVICES = [f"svc-{i:02d}" for i in range(12)]


class Count:
    """Records seen by one service; encoding it marks it let go (as the step does last)."""

    def __init__(self, service: str, n: int = 0) -> None:
        self.service, self.n, self.encoded = service, n, False

    def to_bytes(self) -> bytes:
        self.encoded = True
        return orjson.dumps([self.service, self.n])


class StagingCounter:
    """A staging engine: slices are staged, then scored together (as the models are)."""

    def __init__(self) -> None:
        self.states: list[weakref.ref] = []
        self.alive_when_scoring: list[set[str]] = []
        self.ticks: list[tuple[str, int]] = []

    def _made(self, state: Count) -> Count:
        self.states.append(weakref.ref(state))
        return state

    def new_state(self) -> Count:
        return self._made(Count(""))

    def state_from_bytes(self, data: bytes) -> Count:
        service, n = orjson.loads(data)
        return self._made(Count(service, n))

    def process(self, signal: str, columns: dict[str, Any], state: Count) -> tuple:
        state.service = columns["service"][0]
        state.n += len(columns["time"])
        return state, [], None

    def advance(self, state: Count, watermark_ms: int) -> tuple:
        self.ticks.append((state.service, state.n))
        return state, []

    def stage(self, signal: str, columns: dict[str, Any], state: Count) -> Any:
        state.service = columns["service"][0]
        return (columns, state)

    def process_staged(self, staged: list[Any]) -> list[Any]:
        alive = {s.service for ref in self.states
                 if (s := ref()) is not None and not s.encoded and s.service}
        self.alive_when_scoring.append(alive)
        return [self.process("metrics", columns, state) for columns, state in staged]


def slices(service: str, n: int, start: int = 0) -> list[Message]:
    rows = [{"time": NOW - 10_000 + start + i, "service.name": service, "host.name": "h1",
             "name": "cpu", "value": float(i)} for i in range(n)]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(rows)], NOW + 60_000)
    return [Message(partition_of(k, PARTITIONS), k, v)
            for k, v in split_by_service("metrics", batch.to_arrow(), 1 << 20).messages]


def tick(partition: int) -> Message:
    return Message(partition, TICK_KEY, encode_ticks([Tick("metrics/0", NOW, False)]))


def batch() -> list[Message]:
    """Every service three times (10 records each), ticks of both partitions between."""
    out: list[Message] = []
    for round_ in range(3):
        for service in SERVICES:
            out += slices(service, 10, round_ * 10)
        out += [tick(0), tick(1)]
    return out


def run(step: DetectionStep, stored: dict, messages: list[Message]) -> dict:
    result = step.run(messages, lambda e, s: stored.get((e, s)),
                      lambda p: sorted({s for _, s in stored
                                        if partition_of(s.encode(), PARTITIONS) == p}))
    stored.update(result.states)
    return {s: orjson.loads(v)[1] for (_, s), v in stored.items()}


def test_a_group_s_states_are_let_go_before_the_next_group_is_scored():
    engine = StagingCounter()
    stored: dict = {}
    run(DetectionStep({"count": engine}, 0, live_bytes=0), stored, slices("svc-00", 1))
    engine.alive_when_scoring.clear()
    # 30 records per service; groups of about 60: two or three services each
    counts = run(DetectionStep({"count": engine}, 0, max_records=60, live_bytes=0), stored,
                 batch())
    assert counts == {s: 31 if s == "svc-00" else 30 for s in SERVICES}
    groups = engine.alive_when_scoring
    assert len(groups) >= 4  # several groups, and each saw only its own services alive
    assert all(len(alive) <= 3 for alive in groups), groups
    assert set().union(*groups) == set(SERVICES)
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1:])


def test_grouped_scoring_counts_as_one_group_and_as_slice_by_slice():
    messages = batch()
    grouped = run(DetectionStep({"count": StagingCounter()}, 0, max_records=25), {},
                  messages)
    whole = run(DetectionStep({"count": StagingCounter()}, 0, max_records=10**9), {},
                messages)
    stored: dict = {}
    step = DetectionStep({"count": StagingCounter()}, 0, batched=False)
    for message in messages:
        one_by_one = run(step, stored, [message])
    assert grouped == whole == one_by_one == {s: 30 for s in SERVICES}


def test_ticks_see_the_states_before_their_metric_slices_are_scored():
    """The staged engine's metric slices are scored after the step's ticks (their state
    does not depend on ticks): a tick sees the count stored before the step."""
    engine = StagingCounter()
    stored: dict = {}
    run(DetectionStep({"count": engine}, 0), stored, slices("svc-00", 4))
    engine.ticks.clear()
    run(DetectionStep({"count": engine}, 0, max_records=5), stored, batch())
    seen = [n for service, n in engine.ticks if service == "svc-00"]
    assert seen and all(n == 4 for n in seen)
    assert all(n == 0 for service, n in engine.ticks if service != "svc-00")  # new ones
