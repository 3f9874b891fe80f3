"""Table values over one message: chunked, joined, replaced, and safe against a crash
half-way through a write."""

from __future__ import annotations

import logging

from pipeline.events.chunks import HEAD_MAGIC, chunk_key, is_chunk_key, plan_write, read_value
from pipeline.events.sizes import value_budget

LIMIT = 65_536


def write(table: dict, key: bytes, value: bytes, apply: int | None = None) -> None:
    """Apply a planned write (only the first ``apply`` writes: a crash half-way)."""
    writes, stale = plan_write(key, value, table.get(key), LIMIT)
    for k, v in writes[:apply]:
        assert len(v) <= value_budget(LIMIT, k), "every message fits"
        table[k] = v
    if apply is None:
        for k in stale:
            table.pop(k, None)


def test_a_small_value_is_stored_as_it_is():
    table: dict = {}
    write(table, b"orders", b"state")
    assert table == {b"orders": b"state"}
    assert read_value(table.get, b"orders") == b"state"
    assert read_value(table.get, b"absent") is None


def test_a_large_value_goes_in_chunks_and_comes_back_whole():
    table: dict = {}
    value = bytes(range(256)) * 1000  # 256 kB: 4 or 5 chunks
    write(table, b"orders", value)
    assert table[b"orders"].startswith(HEAD_MAGIC)
    chunks = [k for k in table if is_chunk_key(k)]
    assert len(chunks) >= 4 and not is_chunk_key(b"orders")
    assert read_value(table.get, b"orders") == value


def test_rewrites_leave_no_stale_chunks():
    table: dict = {}
    write(table, b"s", b"a" * 300_000)
    write(table, b"s", b"b" * 100_000)
    assert read_value(table.get, b"s") == b"b" * 100_000
    assert sorted(k for k in table if is_chunk_key(k)) == [chunk_key(b"s", 1, 0),
                                                            chunk_key(b"s", 1, 1)]
    write(table, b"s", b"small again")
    assert table == {b"s": b"small again"}


def test_a_crash_before_the_head_is_written_keeps_the_previous_value():
    table: dict = {}
    write(table, b"s", b"old" * 50_000)
    write(table, b"s", b"new" * 60_000, apply=2)  # two chunks of the next generation only
    assert read_value(table.get, b"s") == b"old" * 50_000
    write(table, b"s", b"new" * 60_000)  # the batch runs again after the restart
    assert read_value(table.get, b"s") == b"new" * 60_000


def test_a_lost_chunk_reads_as_absent_and_is_logged(caplog):
    table: dict = {}
    write(table, b"s", b"x" * 200_000)
    del table[chunk_key(b"s", 0, 1)]
    with caplog.at_level(logging.ERROR, logger="tocsin.chunks"):
        assert read_value(table.get, b"s") is None
    assert "incomplete" in caplog.text


def test_a_value_that_looks_like_a_head_is_chunked_not_misread():
    table: dict = {}
    tricky = HEAD_MAGIC + b"\x00" * 20
    write(table, b"s", tricky)
    assert read_value(table.get, b"s") == tricky
