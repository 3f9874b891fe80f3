"""Regrouping stored records by service for the detectors, and ticks."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson

from pipeline.detect.step import DetectionStep, Message, Watermarks
from pipeline.events.codec import decode_values
from pipeline.events.schema import RawMessage, RecordKind
from pipeline.events.slices import (
    TICK_KEY,
    Forwarded,
    Tick,
    decode_ticks,
    encode_ticks,
    read_slice,
    split_by_service,
    too_large_rejections,
)
from tests.unit.correlate.support import det

NOW = 1_764_000_000_000
LIMIT = 1_048_576


def test_each_service_gets_its_own_slice_with_all_its_records():
    records = [{"time": NOW - 1000 * i, "service.name": ("b", "a", "c")[i % 3], "name": "cpu",
                "value": float(i), "attributes": {"i": str(i)}} for i in range(30)]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW)
    messages = split_by_service("metrics", batch.to_arrow(), LIMIT).messages
    assert [key for key, _ in messages] == [b"a", b"b", b"c"]
    pieces = {key: read_slice(key, value) for key, value in messages}
    a = pieces[b"a"]
    assert a.signal == "metrics" and a.service == "a"
    assert sorted(a.columns["value"].tolist()) == [float(i) for i in range(1, 30, 3)]
    assert a.columns["time"].dtype.kind == "i" and a.max_time_ms == NOW - 1000
    assert set(a.columns["service"]) == {"a"}
    assert "event_id" not in a.columns
    attributes = [dict(pairs) for pairs in a.columns["attributes"].to_pylist()]
    assert [d["i"] for d in attributes] == [str(int(v)) for v in a.columns["value"]]


def test_spans_keep_their_start_as_event_time():
    span = {"trace_id": "1" * 32, "span_id": "2" * 16, "service.name": "api", "name": "GET /",
            "start": NOW - 5, "duration_ms": 3.0, "status": "error", "kind": "server"}
    batch = decode_values(RecordKind.SPAN, [orjson.dumps(span)], NOW)
    ((key, value),) = split_by_service("traces", batch.to_arrow(), LIMIT).messages
    piece = read_slice(key, value)
    assert piece.signal == "traces" and piece.max_time_ms == NOW - 5
    assert piece.columns["status"] == ["error"] and piece.columns["duration_ms"].tolist() == [3.0]


def test_empty_batch_sends_nothing_and_ticks_round_trip():
    batch = decode_values(RecordKind.LOG, [], NOW)
    assert split_by_service("logs", batch.to_arrow(), LIMIT) == Forwarded([], [])
    ticks = [Tick("logs/2", NOW, backlog=True), Tick("metrics/0", -1, backlog=False)]
    assert decode_ticks(encode_ticks(ticks)) == ticks


def test_watermark_waits_for_sources_with_a_backlog():
    marks = Watermarks()
    assert marks.observe(0, Tick("metrics/0", NOW, backlog=True)) == NOW
    # logs/1 is assigned but nothing came yet while records wait: time cannot pass it
    assert marks.observe(0, Tick("logs/1", -1, backlog=True)) == -1
    assert marks.observe(0, Tick("logs/1", NOW - 60_000, backlog=True)) == NOW - 60_000
    # caught up: logs/1 holds nothing back any more
    assert marks.observe(0, Tick("logs/1", NOW - 30_000, backlog=False)) == NOW
    # a source never goes back in time, and other partitions are separate
    assert marks.observe(0, Tick("metrics/0", NOW - 5, backlog=True)) == NOW
    assert marks.observe(1, Tick("metrics/0", NOW - 5, backlog=False)) == NOW - 5



class _WindowCloser:
    """An engine whose advance closes one window per service it is asked about, ending
    ``lag`` before the watermark: services finish out of time order."""

    def __init__(self, lag: dict[str, int]) -> None:
        self.lag = lag

    class State:
        def to_bytes(self) -> bytes:
            return b""

    def new_state(self):
        return self.State()

    def state_from_bytes(self, data):
        return self.State()

    def process(self, signal, columns, state):
        return state, [], None

    def advance(self, state, watermark_ms):
        return state, [det("window", s, watermark_ms - lag) for s, lag in self.lag.items()]


def _tick(t: int) -> Message:
    return Message(0, TICK_KEY, encode_ticks([Tick("metrics/0", t, backlog=True)]))


def test_step_sends_detections_in_event_time_order():
    step = DetectionStep({"e": _WindowCloser({"orders": 0, "postgres": 50_000})}, 0)
    out = step.run([_tick(NOW)], lambda e, s: None, lambda p: ["any"])
    assert [(d.service, d.time) for d in out.detections] == [
        ("postgres", NOW - 50_000), ("orders", NOW)]


def test_step_watermark_waits_for_every_assigned_partition():
    step = DetectionStep({"e": _WindowCloser({})}, 0)

    def run(message, assigned=(0, 1)):
        return step.run([message], lambda e, s: None, lambda p: [], assigned).watermark_ms

    # partition 1 is assigned but has not ticked yet: nothing has passed
    assert run(_tick(NOW)) == -1
    slow = replace(_tick(NOW - 10_000), partition=1)
    assert run(slow) == NOW - 10_000  # the slower partition decides
    assert run(_tick(NOW + 1), assigned=(0,)) == NOW + 1  # 1 revoked: holds nothing back
    assert step.run([_tick(NOW + 2)], lambda e, s: None, lambda p: []).watermark_ms == NOW + 2


def test_a_service_first_met_in_a_step_is_advanced_by_its_ticks():
    """postgres has no stored state before this step: its slice and then a tick arrive
    together; the tick must close its windows now, before the step's watermark goes out
    (else its detections would follow a later watermark: out of order)."""

    class Recorder(_WindowCloser):
        def __init__(self) -> None:
            super().__init__({})
            self.advanced: list[str] = []

        def process(self, signal, columns, state):
            state.service = columns["service"][0]
            return state, [], None

        def advance(self, state, watermark_ms):
            self.advanced.append(state.service)
            return state, []

    class State(_WindowCloser.State):
        service = ""

    engine = Recorder()
    engine.new_state = State
    records = [{"time": NOW - 120_000, "service.name": "postgres", "name": "heartbeat",
                "value": 1.0}]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW)
    (key, value), = split_by_service("metrics", batch.to_arrow(), LIMIT).messages
    step = DetectionStep({"e": engine}, 0)
    step.run([Message(0, key, value), _tick(NOW)], lambda e, s: None, lambda p: [], [0])
    assert engine.advanced == ["postgres"]


def span_records(n: int, services: tuple[str, ...], body: int = 60) -> list[dict]:
    return [{"trace_id": f"{i:032x}", "span_id": f"{i + 1:016x}",
             "service.name": services[i % len(services)], "name": f"GET /item/{i % 40}",
             "start": NOW - 100_000 + i, "duration_ms": float(i % 97), "kind": "server",
             "host.name": f"{services[i % len(services)]}-5f6585d649-fnmft",
             "attributes": {"http.url": "/x" * body, "k8s.pod.name": f"pod-{i % 3}"}}
            for i in range(n)]


def test_a_large_slice_is_split_into_messages_within_the_limit_in_order():
    records = span_records(6000, ("api", "cart"))
    batch = decode_values(RecordKind.SPAN, [orjson.dumps(records[i:i + 100])
                                            for i in range(0, 6000, 100)], NOW)
    assert len(batch) == 6000
    limit = 65_536
    forwarded = split_by_service("traces", batch.to_arrow(), limit)
    assert forwarded.too_large == []
    assert len(forwarded.messages) > 10
    assert all(len(value) <= limit for _, value in forwarded.messages)
    keys = [key for key, _ in forwarded.messages]
    assert keys == sorted(keys)  # one service's messages follow each other
    for service in ("api", "cart"):
        starts = [t for key, value in forwarded.messages if key == service.encode()
                  for t in read_slice(key, value).columns["start"].tolist()]
        expected = [r["start"] for r in records if r["service.name"] == service]
        assert starts == expected  # every record once, in the order it came


def test_a_record_too_large_alone_is_listed_with_its_row_and_the_rest_goes_on():
    records = span_records(50, ("api", "cart"))
    # random hex: slices are LZ4-compressed, and a repeated letter would shrink to nothing
    blob = random.Random(7).randbytes(100_000).hex()
    records[7]["attributes"] = {"blob": blob}
    batch = decode_values(RecordKind.SPAN, [orjson.dumps(records)], NOW)
    table = batch.to_arrow()
    forwarded = split_by_service("traces", table, 100_000)
    (big,) = forwarded.too_large
    assert big.row == 7 and big.service == "cart" and big.size > 200_000
    sent = sum(read_slice(k, v).columns["start"].size for k, v in forwarded.messages)
    assert sent == 49
    (dead,) = too_large_rejections("traces", table, forwarded.too_large,
                                   [RawMessage("t.traces", 3, 77, b"")],
                                   batch.source_messages, batch.source_indexes, 100_000)
    assert (dead.source.partition, dead.source.offset, dead.index) == (3, 77, 7)
    assert dead.reason.startswith("stored, but not forwarded to the detectors: this traces "
                                  "record alone is")
    row = orjson.loads(dead.payload)
    assert row["attributes"] == {"blob": blob} and row["service"] == "cart"
