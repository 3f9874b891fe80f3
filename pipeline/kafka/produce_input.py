"""Where ``tocsin produce`` reads NDJSON from: a file, a gzip file, or standard input.

A name ending in ``.gz`` is read through gzip; ``-`` is standard input (gzip too when it
starts with gzip's magic bytes, e.g. ``tocsin produce - < replay.ndjson.gz``). Lines come
in blocks of whatever is available (at most about 1 MiB), so a slow pipe's lines are not
held back waiting for more; progress is counted in bytes read from the source (compressed
bytes for gzip), against the file's size when it has one.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import TocsinError

GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 1 << 20
STDIN = "-"


def _regular_file_size(stream: BinaryIO) -> int | None:
    """What is left of ``stream`` when it is a regular file (``< file``), else None."""
    try:
        info = os.fstat(stream.fileno())
        return info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


class LineSource:
    """NDJSON lines of ``name`` (a path, or ``-`` for ``stdin``), read block by block.

    >>> source = LineSource("-", stdin=io.BytesIO(b'{"a":1}\\n\\n{"b":2}'))
    >>> source.read_block(), source.read_block(), source.read_block()
    ((1, [b'{"a":1}', b'']), (3, [b'{"b":2}']), None)
    """

    def __init__(self, name: str, stdin: BinaryIO | None = None) -> None:
        self.name = name
        self.total_bytes: int | None = None
        self._line = 1
        self._tail = b""
        self._done = False
        if name == STDIN:
            raw = stdin if stdin is not None else sys.stdin.buffer
            self.label = "stdin"
            self.total_bytes = _regular_file_size(raw)
        else:
            path = Path(name)
            if not path.is_file():
                raise TocsinError(f"no such file: {path}")
            self.total_bytes = path.stat().st_size
            raw = path.open("rb")
            self.label = path.name
        self._raw = raw
        if name != STDIN:
            gzipped = name.endswith(".gz")
        else:
            if not hasattr(raw, "peek"):
                raw = self._raw = io.BufferedReader(raw)  # type: ignore[arg-type]
            gzipped = raw.peek(2)[:2] == GZIP_MAGIC  # type: ignore[attr-defined]
        self._stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        self._consumed = 0

    @property
    def consumed_bytes(self) -> int:
        """Bytes read from the source so far (compressed bytes for gzip)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):  # a pipe: count what was handed out instead
            return self._consumed

    def read_block(self) -> tuple[int, list[bytes]] | None:
        """(number of the first line, complete lines without their newline) of the next
        block, or None at the end. Blocks only until some input is available."""
        while not self._done:
            try:
                chunk = self._stream.read1(BLOCK_BYTES)  # type: ignore[attr-defined]
            except (OSError, EOFError) as exc:
                raise TocsinError(f"reading {self.label}: {exc}") from exc
            self._consumed += len(chunk)
            if not chunk:
                self._done = True
                if self._tail:
                    lines, self._tail = [self._tail], b""
                    return self._number(lines)
                return None
            lines = (self._tail + chunk).split(b"\n")
            self._tail = lines.pop()
            if lines:
                return self._number(lines)
        return None

    def _number(self, lines: list[bytes]) -> tuple[int, list[bytes]]:
        first = self._line
        self._line += len(lines)
        return first, lines

    def close(self) -> None:
        """Close the file (standard input is left open)."""
        if self.name != STDIN:
            self._stream.close()
            self._raw.close()

    def __enter__(self) -> LineSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
