"""Durations written by people: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d`` and sums like ``1h30m``.

The one parser behind rule files, incident schedules, correlator settings and the CLI.
Callers translate :class:`DurationError` into their own error, naming the field:

>>> parse_duration_ms("1h30m")
5400000
>>> parse_duration_ms(1500, ints_as_ms=True)
1500
>>> parse_duration_ms("5 minutes")
Traceback (most recent call last):
...
pipeline.events.durations.DurationError: expected a duration like 30s, 5m, 1h or 1h30m, got '5...
>>> format_duration(90_000)
'1m30s'
"""

from __future__ import annotations

import re

UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_UNIT = r"(ms|d|h|m|s)"  # "ms" before "m"
_PART = re.compile(rf"(\d+)\s*{_UNIT}")
_WHOLE = re.compile(rf"(?:\d+\s*{_UNIT}\s*)+")
_LIKE = "a duration like 30s, 5m, 1h or 1h30m"


class DurationError(ValueError):
    """A value is not a duration; ``expected`` says what would have been, for messages."""

    def __init__(self, value: object, expected: str) -> None:
        super().__init__(f"expected {expected}, got {value!r}")
        self.value = value
        self.expected = expected


def parse_duration_ms(value: object, *, ints_as_ms: bool = False) -> int:
    """Milliseconds of a duration string (units ms, s, m, h, d, summed: ``1h30m``).

    Blanks around and inside are ignored (``" 5 m "``). A number equal to 0 is zero; with
    ``ints_as_ms``, any integer is taken as milliseconds, as it is: checking its range
    (e.g. > 0) is the caller's, who can name the field. Raises :class:`DurationError`.
    """
    expected = f"milliseconds or {_LIKE}" if ints_as_ms else _LIKE
    if isinstance(value, bool):
        raise DurationError(value, expected)
    if isinstance(value, int | float) and value == 0:
        return 0
    if isinstance(value, int) and ints_as_ms:
        return value
    if not isinstance(value, str) or not _WHOLE.fullmatch(value.strip()):
        raise DurationError(value, expected)
    return sum(int(n) * UNITS_MS[unit] for n, unit in _PART.findall(value))


def format_duration(ms: int) -> str:
    """The shortest duration string for ``ms`` (``300000`` -> ``5m``; 0 or less -> ``0s``)."""
    if ms <= 0:
        return "0s"
    out = []
    for unit, size in UNITS_MS.items():
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
