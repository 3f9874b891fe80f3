"""Helpers shared by the jar cache and the broker process: run a tool, tail its output, lock.

Every failure is a :class:`~pipeline.errors.BrokerError` naming what was being done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import BrokerError

TAIL_LINES = 20
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_tool(command: list[str], cwd: Path | None, timeout_s: float,
             what: str) -> tuple[str, int]:
    """Run a tool to completion; its combined output (colours removed) and exit code."""
    try:
        done = subprocess.run(
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"{what} did not finish within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise BrokerError(f"{what} could not be run: {exc}") from exc
    return _ANSI_RE.sub("", done.stdout), done.returncode


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so concurrent starts and stops take turns."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a sibling file, then rename it over ``path``."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``, or ``(no output)``."""
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def tail_file(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path``, or ``(no log)``."""
    try:
        return tail(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no log)"
