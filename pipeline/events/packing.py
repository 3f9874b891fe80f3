"""Compression of detector state bytes: zstd level 1, with the length in front.

The detectors write a state per service at nearly every step, so compressing it is on
the hot path: zstd at level 1 (through pyarrow, already a dependency) took a quarter of
zlib level 1's time on a service's model state, for fewer bytes. States written before
it are zlib; the readers tell the two apart by :data:`MAGIC`.
"""

from __future__ import annotations

import struct

import pyarrow as pa

MAGIC = b"\x00zs1"
"""How packed bytes begin (neither a zlib stream nor JSON nor a rule state begins so)."""
MAX_UNPACKED_BYTES = 1 << 30
"""Bytes a packed state may claim to unpack to at most (a larger claim is corrupt)."""

_HEADER = struct.Struct("<I")
_CODEC = pa.Codec("zstd", compression_level=1)


class PackingError(ValueError):
    """Bytes that are not what :func:`pack` makes, or are damaged."""


def pack(data: bytes) -> bytes:
    """``data`` compressed: :data:`MAGIC`, its length, a zstd frame."""
    return MAGIC + _HEADER.pack(len(data)) + _CODEC.compress(data, asbytes=True)


def unpacked_size(data: bytes) -> int:
    """The length :func:`pack` was given, read from the header (``len(data)`` for bytes
    that are not packed): what the bytes take once unpacked, without unpacking them.

    >>> unpacked_size(pack(b"state" * 100)), unpacked_size(b"plain")
    (500, 5)
    """
    if not is_packed(data) or len(data) < len(MAGIC) + _HEADER.size:
        return len(data)
    return _HEADER.unpack_from(data, len(MAGIC))[0]


def is_packed(data: bytes) -> bool:
    """Whether ``data`` is :func:`pack` output (by its first bytes)."""
    return data[:len(MAGIC)] == MAGIC


def unpack(data: bytes) -> bytes:
    """The bytes :func:`pack` was given; raises :class:`PackingError` if damaged.

    >>> unpack(pack(b"state" * 100)) == b"state" * 100
    True
    """
    start = len(MAGIC) + _HEADER.size
    if not is_packed(data) or len(data) < start:
        raise PackingError("not packed state bytes (bad magic)")
    (size,) = _HEADER.unpack_from(data, len(MAGIC))
    if size > MAX_UNPACKED_BYTES:
        raise PackingError(f"packed state claims {size} bytes, over {MAX_UNPACKED_BYTES}")
    try:
        out = _CODEC.decompress(data[start:], decompressed_size=size, asbytes=True)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise PackingError(f"packed state not readable: {exc}") from exc
    if len(out) != size:
        raise PackingError(f"packed state unpacked to {len(out)} bytes, expected {size}")
    return out
