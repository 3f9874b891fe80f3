"""When a problem's change goes out as an alert: group_wait, group_interval, repeat_interval.

Per problem a :class:`Track` remembers what was alerted. The rules, each a pure function of
(problem, track, now, mute reason) returning whether to notify and why:

- the first alert waits ``group_wait_ms`` from the opening (or the reopening of a problem
  never alerted) so related detections land in it; it goes out as ``opened``;
- after that, material changes (status, severity, category, affected services, top root
  cause, flapping) are alerted at most once per ``group_interval_ms`` (``updated``);
  acknowledgements, escalations and reopenings go out at once;
- an open, unacknowledged problem is re-alerted every ``repeat_interval_ms`` (``repeated``);
- a silence or inhibition mutes all of these (a ``suppressed`` decision says so once);
- a resolve (or merge) of a problem that was alerted is always sent, muted or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline.events.problem import Problem
from pipeline.events.times import format_ms
from pipeline.settings import CorrelateSettings

Outcome = tuple[str, bool, str]  # (kind, notify, why)


@dataclass(frozen=True)
class Track:
    """What was alerted about one problem."""

    first_due_ms: int  # earliest time of the first alert
    notified: bool = False
    last_notified_ms: int | None = None
    notified_digest: str = ""
    muted: str = ""  # the mute reason last reported

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Track:
        """The inverse of :meth:`to_wire`."""
        return cls(**data)


def digest(p: Problem) -> str:
    """The material content of a problem: a change here is worth an ``updated`` alert."""
    top = p.root_causes[0].service if p.root_causes else ""
    return "|".join((p.status, p.severity, p.category, ",".join(sorted(p.affected)), top,
                     "flapping" if p.flapping else ""))


def _sent(t: Track, p: Problem, now_ms: int) -> Track:
    return replace(t, notified=True, last_notified_ms=now_ms, notified_digest=digest(p),
                   muted="")


def plan(kind: str, p: Problem, t: Track, now_ms: int, settings: CorrelateSettings,
         mute: str) -> tuple[Outcome, Track]:
    """Whether the lifecycle change ``kind`` of ``p`` is alerted now, and the new track."""
    if kind in ("resolved", "merged"):
        if not t.notified:
            return (kind, False, "never alerted, so its resolve is not either"), t
        why = "alerted before, so its resolve is always sent"
        return (kind, True, why + (f" (despite: {mute})" if mute else "")), _sent(t, p, now_ms)
    if not p.active:
        return (kind, False, ""), t
    if mute:
        return (kind, False, f"not alerted: {mute}"), replace(t, muted=mute)
    t = replace(t, muted="")
    if not t.notified:
        if now_ms >= t.first_due_ms:
            return ("opened", True, "first alert"), _sent(t, p, now_ms)
        return (kind, False, f"first alert after group_wait, at {format_ms(t.first_due_ms)}"), t
    if kind in ("acknowledged", "escalated", "reopened"):
        return (kind, True, ""), _sent(t, p, now_ms)
    if kind == "updated" and digest(p) != t.notified_digest:
        due = (t.last_notified_ms or 0) + settings.group_interval_ms
        if now_ms >= due:
            return (kind, True, ""), _sent(t, p, now_ms)
        return (kind, False, f"alerted after group_interval, at {format_ms(due)}"), t
    return (kind, False, ""), t


def next_due(p: Problem, t: Track | None, settings: CorrelateSettings) -> int | None:
    """When time alone would next make an alert about open ``p`` due (see :func:`flush`);
    ``t`` is None for a problem that has no track yet. Mutes are not considered."""
    if not p.active:
        return None
    if t is None or not t.notified:
        first = t.first_due_ms if t is not None else p.opened_at + settings.group_wait_ms
        if p.reopened_at:  # a reopened problem never alerted waits group_wait again
            first = max(first, p.reopened_at[-1] + settings.group_wait_ms)
        return first
    last = t.last_notified_ms or 0
    due = [last + settings.repeat_interval_ms] if p.status == "open" else []
    if digest(p) != t.notified_digest:
        due.append(last + settings.group_interval_ms)
    return min(due, default=None)


def flush(p: Problem, t: Track, now_ms: int, settings: CorrelateSettings,
          mute: str) -> tuple[Outcome | None, Track]:
    """An alert that time alone makes due for an unchanged open problem, if any."""
    if mute:
        if t.muted == mute:
            return None, t
        return ("suppressed", False, f"not alerted: {mute}"), replace(t, muted=mute)
    t = replace(t, muted="")
    if not t.notified:
        if now_ms >= t.first_due_ms:
            return ("opened", True, "group_wait elapsed: first alert"), _sent(t, p, now_ms)
        return None, t
    last = t.last_notified_ms or 0
    if digest(p) != t.notified_digest and now_ms >= last + settings.group_interval_ms:
        return ("updated", True, "changed since the last alert (group_interval elapsed)"), \
            _sent(t, p, now_ms)
    if p.status == "open" and now_ms >= last + settings.repeat_interval_ms:
        return ("repeated", True, "still open and unacknowledged: repeat_interval elapsed"), \
            _sent(t, p, now_ms)
    return None, t
