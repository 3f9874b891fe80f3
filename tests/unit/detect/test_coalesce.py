"""A detect step's slices merged per service only where no tick can close their windows."""

from __future__ import annotations

import orjson

from pipeline.detect.coalesce import operations
from pipeline.detect.step import DetectionStep, Message, Watermarks
from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service

NOW = 1_764_000_000_000
LATENESS = 60_000


def _slices(service: str, times: list[int]) -> list[Message]:
    records = [{"time": t, "service.name": service, "host.name": "h", "name": "cpu",
                "value": float(i)} for i, t in enumerate(times)]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW)
    return [Message(0, key, value) for key, value
            in split_by_service("metrics", batch.to_arrow(), 1_048_576).messages]


def _tick(time_ms: int) -> Message:
    return Message(0, TICK_KEY, encode_ticks([Tick("metrics/0", time_ms, True)]))


def _pieces(messages: list[Message]) -> list[tuple[str, list[int]] | str]:
    ops = operations(messages, Watermarks(), LATENESS)
    return ["tick" if op.ticks is not None else
            (op.piece.service, op.piece.columns["time"].tolist()) for op in ops]


def test_slices_without_a_tick_between_are_merged_in_order() -> None:
    messages = [*_slices("a", [NOW, NOW + 1]), *_slices("b", [NOW]),
                *_slices("a", [NOW + 2])]
    assert _pieces(messages) == [("a", [NOW, NOW + 1, NOW + 2]), ("b", [NOW])]


def test_a_tick_that_cannot_close_their_windows_lets_slices_merge() -> None:
    # the tick's watermark is NOW + 10 - lateness: every later record is after it
    messages = [*_slices("a", [NOW]), _tick(NOW + 10), *_slices("a", [NOW + 20])]
    assert _pieces(messages) == [("a", [NOW, NOW + 20]), "tick"]


def test_a_tick_that_may_close_a_window_keeps_the_later_slice_after_it() -> None:
    late = NOW + 100_000 - LATENESS - 1  # at or before the tick's possible watermark
    messages = [*_slices("a", [NOW]), _tick(NOW + 100_000), *_slices("a", [late])]
    assert _pieces(messages) == [("a", [NOW]), "tick", ("a", [late])]


def test_the_slowest_source_with_a_backlog_bounds_what_ticks_close() -> None:
    # one source far ahead, one behind with a backlog: the watermark follows the slow one
    ahead = Tick("metrics/0", NOW + 600_000, True)
    behind = Tick("metrics/1", NOW, True)
    messages = [*_slices("a", [NOW]), Message(0, TICK_KEY, encode_ticks([ahead, behind])),
                *_slices("a", [NOW + 1_000])]
    assert _pieces(messages) == [("a", [NOW, NOW + 1_000]), "tick"]


def test_a_step_counts_every_slice_and_finds_the_same_watermark() -> None:
    messages = [*_slices("a", [NOW]), _tick(NOW + 10), *_slices("a", [NOW + 20]),
                _tick(NOW + 30)]
    step = DetectionStep({}, LATENESS)
    result = step.run(messages, lambda engine, service: None, lambda p: [])
    assert result.slices == 2
    assert result.watermark_ms == NOW + 30 - LATENESS
