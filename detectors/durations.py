"""Durations in rule files: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d`` and sums like ``1h30m``.

>>> parse_duration("1h30m")
5400000
>>> format_duration(90_000)
'1m30s'
"""

from __future__ import annotations

import re

UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:ms|d|h|m|s))+")


def parse_duration(text: object) -> int:
    """Milliseconds of a duration string; ``0`` is accepted as zero. Raises ValueError."""
    if text == 0 and not isinstance(text, bool):
        return 0
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 1h30m, got {text!r}")
    return sum(int(n) * UNITS_MS[unit] for n, unit in _PART.findall(text.strip()))


def format_duration(ms: int) -> str:
    """The shortest duration string for ``ms`` (``300000`` -> ``5m``)."""
    if ms <= 0:
        return "0s"
    out = []
    for unit, size in UNITS_MS.items():
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
