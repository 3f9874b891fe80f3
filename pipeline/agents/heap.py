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
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


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
