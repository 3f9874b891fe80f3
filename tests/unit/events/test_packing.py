"""State bytes packing (zstd with the length in front) and damaged input."""

from __future__ import annotations

import os

import pytest

from pipeline.events.packing import MAGIC, PackingError, is_packed, pack, unpack


def test_round_trip_of_compressible_and_random_bytes() -> None:
    for data in (b"", b"x", b'{"keys": ["a", "b"]}' * 500, os.urandom(50_000)):
        packed = pack(data)
        assert is_packed(packed)
        assert unpack(packed) == data
    assert len(pack(b"abc" * 10_000)) < 1_000


def test_not_packed_and_damaged_bytes_are_refused_with_a_reason() -> None:
    packed = pack(b"state bytes " * 200)
    assert not is_packed(b"x\x9c...")  # a zlib stream (states written before)
    with pytest.raises(PackingError, match="bad magic"):
        unpack(b"x\x9c" + packed[2:])
    with pytest.raises(PackingError, match="bad magic"):
        unpack(MAGIC + b"\x01")  # no room for the length
    with pytest.raises(PackingError, match="not readable"):
        unpack(packed[:-5])  # truncated frame
    wrong_size = packed[:len(MAGIC)] + (10).to_bytes(4, "little") + packed[len(MAGIC) + 4:]
    with pytest.raises(PackingError):
        unpack(wrong_size)
    huge = packed[:len(MAGIC)] + (2**32 - 1).to_bytes(4, "little") + packed[len(MAGIC) + 4:]
    with pytest.raises(PackingError, match="claims"):
        unpack(huge)
