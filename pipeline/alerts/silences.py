"""Silences and maintenance windows: matchers plus a time span, one-off or recurring.

A silence mutes the alerts of problems it matches while it is active: between
``starts_at`` and ``ends_at`` (``None``: no end, recurring only) and, when it has a
:class:`~pipeline.correlate.schedule.Recurrence`, only inside an occurrence. Expiring a
silence ends it at once. Silences never hide the resolve of a problem that was alerted.

A problem is matched through :func:`subject_of`: ``service`` and ``host`` (its top root
cause's, or all affected ones), ``category``, ``severity``, ``status``, ``id``, ``scope``,
``title``, ``detector`` (all member detectors) and every member label (the root cause's
value, or all values) - see :mod:`pipeline.events.matchers` for the matching rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from pipeline.alerts.recurrence import Recurrence, ScheduleError
from pipeline.errors import TocsinError
from pipeline.events.matchers import Matcher, MatcherError, Subject, all_match, parse_matchers
from pipeline.events.problem import Problem


class SilenceError(TocsinError):
    """A silence is invalid; the message names the field."""


@dataclass(frozen=True)
class Silence:
    """Mute matching problems' alerts over a span (one-off) or its recurring windows."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: int
    ends_at: int | None = None
    recurrence: Recurrence | None = None
    comment: str = ""
    created_by: str = ""
    created_at: int = 0
    expired_at: int | None = None

    def __post_init__(self) -> None:
        if not self.matchers:
            raise SilenceError(f"silence {self.id}: needs at least one matcher")
        if self.ends_at is None and self.recurrence is None:
            raise SilenceError(f"silence {self.id}: a one-off silence needs ends_at")
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise SilenceError(f"silence {self.id}: ends_at ({self.ends_at}) must be after "
                               f"starts_at ({self.starts_at})")

    @classmethod
    def create(cls, matchers: Sequence[str | Matcher], starts_at: int, ends_at: int | None = None,
               *, recurrence: Recurrence | None = None, comment: str = "",
               created_by: str = "", created_at: int = 0) -> Silence:
        """A new silence whose id is derived from its content (replays give the same id)."""
        parsed = tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers)
        raw = orjson.dumps([[m.to_wire() for m in parsed], starts_at, ends_at,
                            recurrence.to_wire() if recurrence else None, comment, created_by,
                            created_at])
        ident = "s-" + hashlib.blake2b(raw, digest_size=6).hexdigest()
        return cls(ident, parsed, starts_at, ends_at, recurrence, comment, created_by,
                   created_at)

    def ended(self, now_ms: int) -> bool:
        """Expired, or past ``ends_at``."""
        end = self.end_ms
        return end is not None and now_ms >= end

    @property
    def end_ms(self) -> int | None:
        """When the silence stops for good (expiry or ``ends_at``), None when open-ended."""
        ends = [t for t in (self.ends_at, self.expired_at) if t is not None]
        return min(ends) if ends else None

    def active(self, now_ms: int) -> bool:
        """Whether it mutes alerts at ``now_ms``."""
        if now_ms < self.starts_at or self.ended(now_ms):
            return False
        return self.recurrence is None or self.recurrence.window_at(now_ms) is not None

    def state(self, now_ms: int) -> str:
        """``pending``, ``active``, ``waiting`` (recurring, between windows) or ``expired``."""
        if self.ended(now_ms):
            return "expired"
        if now_ms < self.starts_at:
            return "pending"
        return "active" if self.active(now_ms) else "waiting"

    def expire(self, at_ms: int) -> Silence:
        """The silence ended at ``at_ms`` (no-op when it already ended earlier)."""
        if self.expired_at is not None and self.expired_at <= at_ms:
            return self
        return replace(self, expired_at=at_ms)

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict (``matchers`` as text)."""
        return {"id": self.id, "matchers": [m.to_wire() for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "recurrence": self.recurrence.to_wire() if self.recurrence else None,
                "comment": self.comment, "created_by": self.created_by,
                "created_at": self.created_at, "expired_at": self.expired_at}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Silence:
        """The inverse of :meth:`to_wire`; raises SilenceError naming the bad field."""
        if not isinstance(data, Mapping):
            raise SilenceError(f"silence: expected a mapping, got {data!r}")
        try:
            rec = data.get("recurrence")
            recurrence = None if rec is None else Recurrence.parse(
                str(rec["rule"]), rec["duration_ms"], str(rec.get("timezone", "UTC")))
            for key in ("starts_at", "ends_at", "created_at", "expired_at"):
                value = data.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise SilenceError(f"silence.{key}: expected epoch ms, got {value!r}")
            matchers = parse_matchers(data.get("matchers", ()), "silence.matchers")
            silence = cls(str(data.get("id", "")), matchers, data.get("starts_at", 0),
                          data.get("ends_at"), recurrence, str(data.get("comment", "")),
                          str(data.get("created_by", "")), data.get("created_at", 0),
                          data.get("expired_at"))
        except (MatcherError, ScheduleError, KeyError, TypeError) as exc:
            raise SilenceError(f"silence: {exc}") from None
        if not silence.id:
            raise SilenceError("silence.id: expected a non-empty string")
        return silence


def subject_of(p: Problem) -> Subject:
    """What matchers see of a problem (see the module docstring)."""
    top = p.root_causes[0] if p.root_causes else None
    root_members = [m for m in p.members if top and m.service == top.service]
    subject: dict[str, tuple[str | None, tuple[str, ...]]] = {
        "service": (top.service if top else None, tuple(p.affected)),
        "host": (top.host or None if top else None, tuple(p.hosts)),
        "detector": (None, tuple(sorted({m.detector for m in p.members}))),
    }
    for key in ("category", "severity", "status", "id", "scope", "title"):
        value = getattr(p, key)
        subject[key] = (value, (value,))
    labels: dict[str, set[str]] = {}
    for m in p.members:
        for k, v in m.labels.items():
            labels.setdefault(k, set()).add(v)
    for k, values in labels.items():
        if k not in subject:
            primary = next((m.labels[k] for m in root_members if k in m.labels), None)
            subject[k] = (primary, tuple(sorted(values)))
    return subject


def silencing(p: Problem, silences: Iterable[Silence], now_ms: int) -> Silence | None:
    """The first (by id) active silence matching ``p`` at ``now_ms``."""
    subject = None
    for s in sorted(silences, key=lambda s: s.id):
        if s.active(now_ms):
            subject = subject or subject_of(p)
            if all_match(s.matchers, subject):
                return s
    return None
