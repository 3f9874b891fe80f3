"""Keep the machine's cores busy from other processes while a test runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_SPIN = ("import time\n"
         "end = time.monotonic() + {max_s}\n"
         "while time.monotonic() < end:\n"
         "    pass\n")


@contextmanager
def busy_cores(processes: int | None = None, max_s: float = 900.0) -> Iterator[list[int]]:
    """One spinning Python process per core (or ``processes``); each ends by itself after
    ``max_s`` and is killed by its PID when the block exits. Yields their PIDs."""
    count = processes if processes is not None else (os.cpu_count() or 2)
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN.format(max_s=max_s)],
                                 stdin=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield [p.pid for p in spinners]
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(timeout=10)
