"""Units of measure: what a metric's ``unit`` means, and factors between compatible units.

Metric records carry the unit their producer declared, in OpenTelemetry's UCUM style
(``s``, ``ms``, ``%``, ``1``, ``By``, ``MiBy``, ``{request}/s`` ...). A rule threshold may
be written with a unit (``> 1000ms``, ``> 1s``, ``> 80%``); a series is converted to it
before comparing. Known units fall in four dimensions: time, fraction (``1`` is a ratio
0–1, ``%`` its hundredth), bytes and rates (per time). Annotations in braces are dropped
(``{request}/s`` is ``1/s``); a unit that is only an annotation (``{item}``), empty, or
not known here has no dimension: :func:`factor` says to compare it as is.

>>> factor("s", "ms"), factor("1", "%"), factor("MiBy", "By"), factor("{req}/s", "/min")
(1000.0, 100.0, 1048576.0, 60.0)
>>> factor("", "ms"), factor("m{cpu}", "%")  # unknown: as is
(1.0, 1.0)
>>> import math; math.isnan(factor("By", "ms"))  # known, another dimension
True
>>> split_quantity("1000ms"), split_quantity("0.05"), split_quantity("80 %")
((1000.0, 'ms'), (0.05, ''), (80.0, '%'))
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

TIME = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0,
        "h": 3600.0, "d": 86400.0}
FRACTION = {"1": 1.0, "%": 0.01}
BYTES = {"By": 1.0, "B": 1.0, "kBy": 1e3, "KBy": 1e3, "kB": 1e3, "KB": 1e3, "MBy": 1e6,
         "MB": 1e6, "GBy": 1e9, "GB": 1e9, "TBy": 1e12, "TB": 1e12, "KiBy": 1024.0,
         "KiB": 1024.0, "MiBy": 1024.0 ** 2, "MiB": 1024.0 ** 2, "GiBy": 1024.0 ** 3,
         "GiB": 1024.0 ** 3, "TiBy": 1024.0 ** 4, "TiB": 1024.0 ** 4}
ALIASES = {"sec": "s", "second": "s", "seconds": "s", "millisecond": "ms",
           "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns", "minute": "min",
           "minutes": "min", "hour": "h", "hours": "h", "percent": "%", "ratio": "1",
           "byte": "By", "bytes": "By"}
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*?)\s*$")


def _canonical(unit: str) -> str:
    unit = unit.strip()
    return ALIASES.get(unit, ALIASES.get(unit.lower(), unit))


@lru_cache(maxsize=1024)
def dimension(unit: str) -> tuple[str, float] | None:
    """``(dimension, factor to its base unit)`` of a known unit, else None.

    Bases: seconds (time), a ratio 0–1 (fraction), bytes, per second (rate).

    >>> dimension("ms"), dimension("{request}/s"), dimension("{item}"), dimension("")
    (('time', 0.001), ('rate', 1.0), None, None)
    """
    unit = _canonical(unit)
    if not unit:
        return None
    if "{" in unit:  # UCUM annotations: {request}/s is 1/s; {item} alone says nothing
        stripped = _ANNOTATION.sub("", unit)
        if not stripped or stripped == unit:
            return None
        unit = "1" + stripped if stripped.startswith("/") else stripped
    if unit in TIME:
        return "time", TIME[unit]
    if unit in FRACTION:
        return "fraction", FRACTION[unit]
    if unit in BYTES:
        return "bytes", BYTES[unit]
    if "/" in unit:
        top, _, per = unit.partition("/")
        per = _canonical(per)
        if top in ("", "1") and per in TIME:
            return "rate", 1.0 / TIME[per]
    return None


def is_known(unit: str) -> bool:
    """Whether :func:`dimension` knows ``unit``."""
    return dimension(unit) is not None


@lru_cache(maxsize=4096)
def factor(from_unit: str, to_unit: str) -> float:
    """What to multiply a value in ``from_unit`` by to express it in ``to_unit``.

    1.0 when ``from_unit`` (or ``to_unit``) is not a known unit: compared as is; NaN when
    both are known but of different dimensions (the value cannot be compared).
    """
    a, b = dimension(from_unit), dimension(to_unit)
    if a is None or b is None:
        return 1.0
    if a[0] != b[0]:
        return math.nan
    return a[1] / b[1]


def split_quantity(text: str) -> tuple[float, str]:
    """``"1000ms"`` as ``(1000.0, "ms")``; a bare number has unit ``""``.

    Raises ValueError when the text is not a number with an optional known unit.
    """
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"expected a number with an optional unit, got {text!r}")
    number, unit = float(m.group(1)), _canonical(m.group(2))
    if unit and dimension(unit) is None:
        raise ValueError(f"unknown unit {m.group(2)!r}; known: {', '.join(known_units())}")
    return number, unit


def known_units() -> list[str]:
    """The units a threshold may be written in (rates as ``/s``, ``/min`` ...)."""
    return [*TIME, *FRACTION, "By", "kBy", "MBy", "GBy", "KiBy", "MiBy", "GiBy", "/s", "/min",
            "/h"]
