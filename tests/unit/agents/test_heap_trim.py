"""The heap trimmer: glibc's malloc_trim, counted, and nothing where there is none."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from pipeline.agents.heap import HeapTrimmer


def test_a_trimmer_calls_malloc_trim_and_says_whether_memory_went_back():
    answers = iter([1, 0, 1])
    asked = []
    trimmer = HeapTrimmer(lambda pad: asked.append(pad) or next(answers))
    assert trimmer.available
    assert [trimmer.trim(), trimmer.trim(), trimmer.trim()] == [True, False, True]
    assert asked == [0, 0, 0]  # pad 0: keep nothing spare at the top of a heap


def test_without_malloc_trim_the_trimmer_does_nothing():
    trimmer = HeapTrimmer(None)
    assert not trimmer.available
    assert trimmer.trim() is False


def _rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_on_glibc_a_trim_gives_freed_heap_pages_back():
    trimmer = HeapTrimmer.from_libc()
    assert trimmer.available
    # 64 KiB blocks stay under malloc's mmap threshold: they come from the heap, and
    # freeing them (but the last, which pins the heap's top) leaves them resident
    blocks = [bytearray(b"x" * 65_536) for _ in range(1_600)]
    last = blocks.pop()
    del blocks
    before = _rss_anon_kib()
    assert trimmer.trim()
    assert before - _rss_anon_kib() > 50_000  # of the ~100 MiB freed, most went back
    del last
