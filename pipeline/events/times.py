"""Event-time parsing: epoch seconds/ms/us/ns numbers or RFC 3339 strings to epoch ms.

Numbers are told apart by magnitude, as OTLP/JSON producers and log shippers mix them:
below 1e11 is seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

MIN_TIME_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: anything earlier is treated as a producer bug."""

_SECONDS_BELOW = 1e11
_MILLIS_BELOW = 1e14
_MICROS_BELOW = 1e17


def numbers_to_ms(values: np.ndarray) -> np.ndarray:
    """Epoch numbers of any of the four units (by magnitude) as int64 epoch ms."""
    magnitude = np.abs(values)
    if values.dtype.kind in "iu":
        values = values.astype(np.int64, copy=False)
        return np.select(
            [magnitude < _SECONDS_BELOW, magnitude < _MILLIS_BELOW, magnitude < _MICROS_BELOW],
            [values * 1000, values, values // 1000],
            values // 1_000_000,
        ).astype(np.int64)
    scaled = np.select(
        [magnitude < _SECONDS_BELOW, magnitude < _MILLIS_BELOW, magnitude < _MICROS_BELOW],
        [values * 1000.0, values, values / 1000.0],
        values / 1e6,
    )
    return np.floor(scaled).astype(np.int64)


def parse_rfc3339_ms(text: str) -> int:
    """An RFC 3339 timestamp with a UTC offset or ``Z`` as epoch ms.

    Raises ``ValueError`` naming the problem.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no UTC offset (add 'Z' or '+00:00')")
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Epoch ms as an RFC 3339 UTC string with millisecond precision."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
