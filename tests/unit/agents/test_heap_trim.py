"""The heap trimmer: glibc's malloc_trim, and nothing where there is none; Arrow's pool."""

from __future__ import annotations

import platform
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.agents.heap import HeapTrimmer, arrow_memory, environ_for_arrow_pool
from pipeline.errors import SettingsError
from pipeline.settings import load_settings


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


def test_the_system_pool_asks_for_a_restart_with_arrows_variable_set():
    environ = environ_for_arrow_pool("system", {"PATH": "/bin"})
    assert environ == {"PATH": "/bin", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    # restarted with it (or set by the operator): no second restart
    assert environ_for_arrow_pool("system", environ) is None
    # another pool named in the variable is overruled by the setting
    assert environ_for_arrow_pool("system", {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}) == {
        "ARROW_DEFAULT_MEMORY_POOL": "system"}


def test_the_arrow_pool_leaves_the_choice_to_arrow():
    assert environ_for_arrow_pool("arrow", {}) is None
    assert environ_for_arrow_pool("arrow", {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}) is None


def test_an_unknown_pool_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown Arrow memory pool 'jemaloc'"):
        environ_for_arrow_pool("jemaloc", {})
    with pytest.raises(SettingsError, match="worker.arrow_memory_pool.*'jemaloc' is not one"):
        load_settings(environ={"TOCSIN_WORKER_ARROW_MEMORY_POOL": "jemaloc"})
    assert load_settings(environ={}).worker.arrow_memory_pool == "system"


def test_arrow_memory_names_the_pool_and_what_it_holds():
    pool = pa.default_memory_pool()
    held = arrow_memory()["arrow_allocated_bytes"]
    values = pa.array(range(1_000_000), pa.int64())  # 8 MB from the default pool
    memory = arrow_memory()
    assert memory["arrow_pool"] == pool.backend_name
    assert memory["arrow_allocated_bytes"] - held >= 8_000_000
    del values
