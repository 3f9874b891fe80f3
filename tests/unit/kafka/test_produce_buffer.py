"""The producer's buffers: sent by count, size, event-time distance and wall time; and the
NDJSON sources it reads (plain, gzip, standard input)."""

from __future__ import annotations

import gzip
import io
import random

import orjson
import pytest

from pipeline.errors import TocsinError
from pipeline.events.schema import RecordKind
from pipeline.events.sizes import MessageTooLarge
from pipeline.kafka.produce_buffer import BufferLimits, MessageBuffers, event_time_ms
from pipeline.kafka.produce_input import LineSource

M, S = RecordKind.METRIC, RecordKind.SPAN


def rec(t: int, pad: int = 0) -> bytes:
    return orjson.dumps({"time": t, "pad": "x" * pad})



def test_a_full_buffer_goes_at_once():
    buffers = MessageBuffers(BufferLimits(records_per_message=3, max_event_lag_ms=10**9))
    assert buffers.add(M, "a", rec(1), 1, 0) == []
    assert buffers.add(M, "a", rec(2), 2, 0) == []
    (out,) = buffers.add(M, "a", rec(3), 3, 0)
    assert (out.kind, out.service, out.records) == (M, "a", 3)
    assert [r["time"] for r in orjson.loads(out.value)] == [1, 2, 3]
    assert buffers.pending == 0


def test_no_message_is_over_the_size_limit_and_order_is_kept():
    rng = random.Random(3)
    limit = 5000
    buffers = MessageBuffers(BufferLimits(records_per_message=1000, max_value_bytes=limit,
                                          max_event_lag_ms=10**9))
    sent, out = [], []
    for t in range(2000):
        data = rec(t, rng.randint(0, 900))
        sent.append(t)
        out += buffers.add(S, "api", data, t, 0)
    out += buffers.drain()
    assert all(len(m.value) <= limit for m in out)
    assert [r["time"] for m in out for r in orjson.loads(m.value)] == sent


def test_a_record_over_the_limit_alone_is_refused_and_not_held():
    buffers = MessageBuffers(BufferLimits(max_value_bytes=1000))
    with pytest.raises(MessageTooLarge, match="record is 1[0-9]{3} bytes, over the 1000"):
        buffers.add(M, "a", rec(1, 1000), 1, 0)
    assert buffers.pending == 0


def test_a_quiet_service_is_sent_once_event_time_moves_on():
    buffers = MessageBuffers(BufferLimits(records_per_message=1000, max_event_lag_ms=1000))
    assert buffers.add(M, "quiet", rec(0), 0, 0) == []
    out = []
    for t in range(0, 1001, 10):  # a busy service's records reach 1 s later
        out += buffers.add(M, "busy", rec(t), t, 0)
    assert out == []  # the quiet record is exactly 1 s behind: not yet
    (quiet, busy) = buffers.add(M, "busy", rec(1001), 1001, 0)
    assert (quiet.service, quiet.records) == ("quiet", 1)
    assert (busy.service, busy.records) == ("busy", 102)  # its first record is 0 too


def test_records_are_never_held_further_behind_than_the_lag():
    """A sorted stream of many services: every record leaves before the stream is more
    than max_event_lag_ms past it (what keeps replays free of late records)."""
    rng = random.Random(9)
    lag = 1000
    buffers = MessageBuffers(BufferLimits(records_per_message=100, max_event_lag_ms=lag))
    t = 0
    for _ in range(20_000):
        t += rng.choice([0, 0, 1, 5, 40])
        service = f"s{min(int(rng.expovariate(0.5)), 30)}"  # a few busy, many quiet
        for message in buffers.add(S, service, rec(t), t, 0):
            oldest = min(r["time"] for r in orjson.loads(message.value))
            assert t - oldest <= lag + 40  # at most one step past the bound


def test_records_without_a_readable_time_do_not_move_event_time():
    buffers = MessageBuffers(BufferLimits(max_event_lag_ms=0))
    assert buffers.add(M, "a", b'{"time":"yesterday"}', None, 0) == []
    assert buffers.add(M, "b", rec(5), 5, 0) == []
    assert buffers.pending == 2


def test_wall_time_sends_what_waited_long_enough():
    buffers = MessageBuffers(BufferLimits(max_wait_ms=500))
    buffers.add(M, "a", rec(1), 1, now_ms=1000)
    buffers.add(M, "b", rec(1), 1, now_ms=1300)
    assert buffers.due(1499) == []
    assert [m.service for m in buffers.due(1500)] == ["a"]
    assert [m.service for m in buffers.due(1800)] == ["b"]
    assert buffers.due(10_000) == []


def test_limits_are_checked():
    with pytest.raises(TocsinError, match="records per message must be an integer >= 1, "
                       "got 0"):
        BufferLimits(records_per_message=0)
    with pytest.raises(TocsinError, match="max wait ms"):
        BufferLimits(max_wait_ms=0)


@pytest.mark.parametrize(("value", "expected"), [
    (1_661_140_279, 1_661_140_279_000), (1_661_140_279_573, 1_661_140_279_573),
    (1_661_140_279_573_000, 1_661_140_279_573), (1_661_140_279_573_000_000, 1_661_140_279_573),
    (1_661_140_279.5, 1_661_140_279_500), ("2022-08-22T03:51:19.573Z", 1_661_140_279_573),
    ("2022-08-22", None), ("soon", None), (True, None), (None, None), (float("nan"), None),
    (1e300, None), ({"a": 1}, None)])
def test_event_time_of_any_wire_form(value, expected):
    assert event_time_ms(value) == expected


LINES = b'{"type":"metric","time":1}\n\n{"type":"log"}\r\n{"last":true}'


def read_all(source: LineSource) -> list[tuple[int, bytes]]:
    out = []
    while (block := source.read_block()) is not None:
        first, lines = block
        out += list(enumerate(lines, start=first))
    return out


EXPECTED = [(1, b'{"type":"metric","time":1}'), (2, b""), (3, b'{"type":"log"}\r'),
            (4, b'{"last":true}')]


def test_plain_and_gzip_files_read_alike(tmp_path):
    plain, packed = tmp_path / "r.ndjson", tmp_path / "r.ndjson.gz"
    plain.write_bytes(LINES)
    packed.write_bytes(gzip.compress(LINES))
    for path in (plain, packed):
        with LineSource(str(path)) as source:
            assert source.total_bytes == path.stat().st_size
            assert read_all(source) == EXPECTED
            assert source.consumed_bytes == path.stat().st_size  # compressed bytes for .gz


def test_standard_input_plain_or_gzip():
    for data in (LINES, gzip.compress(LINES)):
        source = LineSource("-", stdin=io.BytesIO(data))
        assert source.label == "stdin" and read_all(source) == EXPECTED


def test_a_missing_file_and_a_broken_gzip_are_named(tmp_path):
    with pytest.raises(TocsinError, match="no such file: .*nothing.ndjson"):
        LineSource(str(tmp_path / "nothing.ndjson"))
    broken = tmp_path / "broken.ndjson.gz"
    broken.write_bytes(gzip.compress(random.Random(1).randbytes(100_000))[:50_000])
    with LineSource(str(broken)) as source, pytest.raises(TocsinError,
                                                         match="reading broken.ndjson.gz"):
        read_all(source)


def test_a_pipe_hands_over_what_is_there_without_waiting_for_more():
    class Trickle(io.RawIOBase):
        """Gives one line per read, like a pipe written to slowly."""

        def __init__(self) -> None:
            self.parts = [b'{"a":1}\n', b'{"b":2}\n{"c"', b':3}\n']

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            if not self.parts:
                return 0
            part = self.parts.pop(0)
            buffer[:len(part)] = part
            return len(part)

    source = LineSource("-", stdin=io.BufferedReader(Trickle()))
    assert source.read_block() == (1, [b'{"a":1}'])
    assert source.read_block() == (2, [b'{"b":2}'])
    assert source.read_block() == (3, [b'{"c":3}'])
    assert source.read_block() is None
