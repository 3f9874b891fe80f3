"""Event-time parsing: epoch seconds/ms/us/ns numbers or RFC 3339 strings to epoch ms.

Numbers are told apart by magnitude, as OTLP/JSON producers and log shippers mix them:
below 1e11 is seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

MIN_TIME_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: anything earlier is treated as a producer bug."""

_DATETIME_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_DATETIME_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_CLIP_MS = float(2**62)  # beyond any time; a float scaled past it is clipped, not wrapped
_INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

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
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.select(
            [magnitude < _SECONDS_BELOW, magnitude < _MILLIS_BELOW, magnitude < _MICROS_BELOW],
            [values * 1000.0, values, values / 1000.0],
            values / 1e6,
        )
    # huge (1e300) or non-finite inputs would wrap around in the cast: clip them far
    # outside any valid time instead, so range checks see them as out of range
    scaled = np.clip(np.nan_to_num(scaled, nan=-_CLIP_MS), -_CLIP_MS, _CLIP_MS)
    return np.floor(scaled).astype(np.int64)


def number_to_ms(value: int | float) -> int:
    """One epoch number (any unit, by magnitude) as epoch ms; never raises on a finite
    number: integers beyond int64 are taken as floats, huge values clip far out of range."""
    if type(value) is int and abs(value) <= _INT64_MAX:
        return int(numbers_to_ms(np.asarray([value], dtype=np.int64))[0])
    bounded = max(min(value, 1e300), -1e300)  # float() of a 400-digit integer overflows
    return int(numbers_to_ms(np.asarray([float(bounded)], dtype=np.float64))[0])


def is_datetime_ms(ms: int) -> bool:
    """Whether ``ms`` lies in years 1 to 9999, the range :func:`format_ms` can show."""
    return _DATETIME_MIN_MS <= ms <= _DATETIME_MAX_MS


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
    """Epoch ms as an RFC 3339 UTC string with millisecond precision (outside years
    1 to 9999, which a datetime cannot hold, as ``epoch ms <n>``)."""
    if not is_datetime_ms(ms):
        return f"epoch ms {ms}"
    return (
        (_EPOCH + timedelta(milliseconds=int(ms)))  # exact, unlike float seconds
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
