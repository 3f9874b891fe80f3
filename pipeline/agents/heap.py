"""Give the C heap's free pages back to the system while the worker runs.

glibc's malloc gives each thread that allocates an arena of its own and keeps what is freed
there for that arena's next allocations. A worker's threads take turns with large,
short-lived buffers: decoding and inserting an ingest batch, a detection step's states, a
store read. Memory one thread freed stays resident in its arena, and another thread's
growth comes on top of it: at a million distinct series the worker's RSS rose and fell by
about 100 MiB within one detect batch (``bench/ingest_bench.py --series 1000000``).

``malloc_trim(0)`` hands the free pages of every arena back (``madvise``), so another
thread's growth takes pages from the system instead of adding to what the arenas keep.
Trimming every 0.25 s took that peak from 1,084-1,143 to 1,005-1,065 MiB (with the
by-service slices compressed too; ``bench/README.md``). :class:`HeapTrimmer` calls it;
the worker does so every ``worker.heap_trim_interval_s`` off the event loop. With another
C library (musl, macOS), where there is no ``malloc_trim``, the trimmer does nothing.

Arrow allocates its buffers (decoded batches, slices, IPC, its own computations) from a
pool of its own, mimalloc by default, which keeps freed pages for later allocations of
the same thread, where no trim reaches them. The worker has Arrow allocate with ``malloc``
instead (``worker.arrow_memory_pool``), so what it frees goes back with the trims. Arrow
fixes that pool as pyarrow loads, from ``ARROW_DEFAULT_MEMORY_POOL``; choosing the pool
later (``pa.set_memory_pool``) covers pyarrow's calls, but Arrow's internal ones (its
grouping, for one) stay with mimalloc, whose pages per thread kept some 40-60 MiB more.
So ``tocsin worker`` starts itself again (the same process, ``execve``) with the variable
set (:func:`environ_for_arrow_pool`). At a million series the peak went from 1,021-1,051
to 895-925 MiB (``bench/README.md``; the pool chosen in-process only: 941-980 MiB).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping

import pyarrow as pa

from pipeline.settings import ARROW_MEMORY_POOLS

ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def environ_for_arrow_pool(name: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to start this process again with so that Arrow allocates from the
    pool ``name`` (one of :data:`~pipeline.settings.ARROW_MEMORY_POOLS`), or None when it
    needs no restart: ``arrow`` leaves the choice to Arrow, and ``system`` is already set."""
    if name not in ARROW_MEMORY_POOLS:
        raise ValueError(f"unknown Arrow memory pool {name!r}: expected one of "
                         f"{', '.join(ARROW_MEMORY_POOLS)}")
    if name == "arrow" or environ.get(ARROW_POOL_VARIABLE) == "system":
        return None
    return {**environ, ARROW_POOL_VARIABLE: "system"}


def arrow_memory() -> dict[str, object]:
    """Where Arrow allocates in this process (``system``, ``mimalloc``, ...) and the bytes
    its pool holds now."""
    pool = pa.default_memory_pool()
    return {"arrow_pool": pool.backend_name, "arrow_allocated_bytes": pool.bytes_allocated()}


class HeapTrimmer:
    """Calls the C library's ``malloc_trim``, when it has one."""

    def __init__(self, malloc_trim: Callable[[int], int] | None) -> None:
        self._malloc_trim = malloc_trim  # the worker counts calls as a stage

    @classmethod
    def from_libc(cls) -> HeapTrimmer:
        """A trimmer of this process's heap: glibc's ``malloc_trim``, or none."""
        try:
            function = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc
            return cls(None)
        function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
        return cls(function)

    @property
    def available(self) -> bool:
        """Whether trimming does anything here."""
        return self._malloc_trim is not None

    def trim(self) -> bool:
        """Release the free pages of every arena; True when some were released."""
        return self._malloc_trim is not None and bool(self._malloc_trim(0))
