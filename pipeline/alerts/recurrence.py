"""Recurring windows for maintenance silences: cron-like or RRULE-lite, in a time zone.

Two spellings of the same thing, each a start time plus ``duration_ms``:

- cron, five fields ``minute hour day-of-month month day-of-week`` with ``*``, lists,
  ranges, steps and day names (``0 2 * * sat,sun``: 02:00 every weekend day); when both
  day fields are restricted either may match, as in cron;
- RRULE-lite: ``FREQ=DAILY|WEEKLY|MONTHLY`` with ``BYDAY=MO,TU``, ``BYMONTHDAY=1,15``,
  ``BYMONTH``, ``BYHOUR`` (default 0), ``BYMINUTE`` (default 0); ``INTERVAL``, ``COUNT``
  and ``UNTIL`` are not supported (bound the silence with its own start and end).

>>> r = Recurrence.parse("0 2 * * sun", duration_ms=3_600_000)
>>> r.window_at(1_764_469_800_000)   # Sunday 2025-11-30 02:30 UTC
(1764468000000, 1764471600000)
>>> r.window_at(1_764_473_400_000) is None   # 03:30, after the hour
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import TocsinError

DAY_MS = 86_400_000
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RR_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


class ScheduleError(TocsinError):
    """A recurrence could not be parsed; the message names the field."""


@dataclass(frozen=True)
class Recurrence:
    """Start times (sets of minutes, hours, days, months, weekdays Mon=0) and a duration."""

    text: str
    duration_ms: int
    timezone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_or: bool = False  # cron: both day fields restricted, either matches

    @classmethod
    def parse(cls, text: str, duration_ms: int, timezone: str = "UTC") -> Recurrence:
        """A recurrence from cron or ``FREQ=…`` text; raises ScheduleError."""
        if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms <= 0:
            raise ScheduleError(f"recurrence duration_ms: expected a positive integer, got "
                                f"{duration_ms!r}")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"recurrence timezone: unknown time zone {timezone!r}") from None
        body = text.strip()
        if body.upper().startswith("RRULE:"):
            body = body[6:]
        fields = _rrule(body) if "=" in body else _cron(body)
        return cls(text.strip(), duration_ms, timezone, *fields)

    def _day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = d.day in self.days, d.weekday() in self.weekdays
        return (dom or dow) if self.days_or else (dom and dow)

    def window_at(self, ms: int) -> tuple[int, int] | None:
        """The occurrence ``[start, end)`` in epoch ms containing ``ms``, or None."""
        tz = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(ms / 1000, tz).date()
        for back in range(math.ceil(self.duration_ms / DAY_MS) + 1):
            d = today - timedelta(days=back)
            if not self._day_matches(d):
                continue
            for h in sorted(self.hours, reverse=True):
                for m in sorted(self.minutes, reverse=True):
                    start = int(datetime(d.year, d.month, d.day, h, m, tzinfo=tz)
                                .timestamp() * 1000)
                    if start <= ms:  # the latest start at or before ms decides
                        end = start + self.duration_ms
                        return (start, end) if ms < end else None
        return None

    def to_wire(self) -> dict[str, object]:
        """``{"rule", "duration_ms", "timezone"}``."""
        return {"rule": self.text, "duration_ms": self.duration_ms, "timezone": self.timezone}


def _numbers(field: str, lo: int, hi: int, names: tuple[str, ...] = (),
             offset: int = 0) -> frozenset[int]:
    out: set[int] = set()
    for part in field.lower().split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step {step_text!r}")
        if rng == "*":
            a, b = lo, hi
        else:
            a_text, _, b_text = rng.partition("-")
            a = _value(a_text, names, offset)
            b = _value(b_text, names, offset) if b_text else (hi if step else a)
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"{part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step or 1))
    return frozenset(out)


def _value(text: str, names: tuple[str, ...], offset: int) -> int:
    if text in names:
        return names.index(text) + offset
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number{' or a name' if names else ''}")
    return int(text)


def _cron(text: str):
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(f"recurrence {text!r}: expected 5 cron fields (minute hour "
                            "day-of-month month day-of-week) or FREQ=...")
    spec = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12))
    values = []
    try:
        for (_, lo, hi), part in zip(spec, parts[:4], strict=True):
            values.append(_numbers(part, lo, hi))
        cron_days = ("sun", *_DAYS[:6])
        dow = _numbers(parts[4].replace("7", "0"), 0, 6, cron_days)
    except ValueError as exc:
        raise ScheduleError(f"recurrence {text!r}: {exc}") from None
    weekdays = frozenset((d - 1) % 7 for d in dow)  # cron Sun=0 → Python Sun=6
    days_or = parts[2] != "*" and parts[4] != "*"
    return (*values[:2], values[2], values[3], weekdays, days_or)


def _rrule(text: str):
    try:
        kv = dict(item.split("=", 1) for item in text.upper().split(";") if item)
    except ValueError:
        raise ScheduleError(f"recurrence {text!r}: expected KEY=VALUE;... pairs") from None
    unknown = set(kv) - {"FREQ", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYHOUR", "BYMINUTE"}
    if unknown:
        raise ScheduleError(f"recurrence {text!r}: unsupported {', '.join(sorted(unknown))}")
    freq = kv.get("FREQ")
    if freq not in ("DAILY", "WEEKLY", "MONTHLY"):
        raise ScheduleError(f"recurrence {text!r}: FREQ must be DAILY, WEEKLY or MONTHLY")
    try:
        minutes = _numbers(kv.get("BYMINUTE", "0"), 0, 59)
        hours = _numbers(kv.get("BYHOUR", "0"), 0, 23)
        days = _numbers(kv.get("BYMONTHDAY", "*"), 1, 31)
        months = _numbers(kv.get("BYMONTH", "*"), 1, 12)
        weekdays = frozenset(_RR_DAYS.index(d) for d in kv["BYDAY"].split(",")) \
            if "BYDAY" in kv else frozenset(range(7))
    except ValueError as exc:
        raise ScheduleError(f"recurrence {text!r}: {exc} (BYDAY takes MO,TU,WE,...)") from None
    if freq == "WEEKLY" and "BYDAY" not in kv:
        raise ScheduleError(f"recurrence {text!r}: FREQ=WEEKLY needs BYDAY")
    if freq == "MONTHLY" and "BYMONTHDAY" not in kv and "BYDAY" not in kv:
        raise ScheduleError(f"recurrence {text!r}: FREQ=MONTHLY needs BYMONTHDAY or BYDAY")
    return minutes, hours, days, months, weekdays, False
